//! The supervision loop.
//!
//! One thread, one loop. It waits in `epoll_wait` ([`events`]) on a signalfd, a timerfd that
//! reports wall-clock changes, and the tasks' output pipes (one per task, for stdout and
//! stderr, kept for the runner's life), with a timeout computed from the earliest task
//! deadline, or none: with nothing due, it makes no wake-ups at all. Decisions belong to each
//! task's state machine (`nonstop_scheduler::task::Task`) and, where several tasks are
//! involved, to `nonstop_scheduler::order` (`after` gating, shutdown order) and
//! [`adopted::Sweep`] (stopping adopted processes); this module does the I/O they ask for
//! (spawn, signal, reap, copy output to log files) and logs every step.

mod adopted;
mod events;
mod output;

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::errno::Errno;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use nonstop_ipc::{HeartbeatTable, TableOptions};
use nonstop_scheduler::order::{Agenda, Gate, Order};
use nonstop_scheduler::schedule::Now;
use nonstop_scheduler::spawn;
use nonstop_scheduler::task::{AfterExit, Due, Exit, Phase, Task};
use tracing::{debug, error, info, warn};

use crate::logfile::TaskLog;
use crate::pipeline::Pipeline;
use adopted::{Step, Sweep};
use events::{Event, EventLoop};

pub use events::block_signals;

/// Supervises `pipeline` (checked from the file shown as `shown`) until SIGTERM/SIGINT and
/// every task is stopped. `nonstop` is the `nonstop` binary (an `O_PATH` descriptor), which
/// compresses rotated logs for it (`nonstop compress-log FILE`).
pub fn supervise(shown: &str, pipeline: Pipeline, nonstop: OwnedFd) -> anyhow::Result<ExitCode> {
    // Whatever started us may have left descriptors open: none may reach a task.
    let marked = spawn::cloexec_inherited().context("cannot list open descriptors")?;
    if marked > 0 {
        debug!("marked {marked} inherited descriptors close-on-exec");
    }
    let events = EventLoop::new().context("cannot set up the event loop")?;
    // Orphaned descendants (daemons that double-fork) become ours, so we reap them.
    nix::sys::prctl::set_child_subreaper(true).context("cannot become a child subreaper")?;
    let table = match pipeline.heartbeat {
        Some(h) => {
            let options = TableOptions {
                slots: h.slots,
                ..TableOptions::default()
            };
            let table = HeartbeatTable::open_or_create(h.key, &options)
                .with_context(|| format!("cannot create the heartbeat table {}", h.key))?;
            info!(key = %h.key, slots = h.slots, "heartbeat table ready");
            Some(table)
        }
        None => None,
    };
    // Every task holds three descriptors for the runner's life (its log and its pipe's two
    // ends): raise our own soft limit to the hard one, as systemd does; tasks get the soft
    // limit we were started with (unless they set `limits.nofile`), so programs that use
    // select() see what they expect.
    let inherited_nofile =
        getrlimit(Resource::RLIMIT_NOFILE).context("cannot read RLIMIT_NOFILE")?;
    if inherited_nofile.0 < inherited_nofile.1 {
        setrlimit(
            Resource::RLIMIT_NOFILE,
            inherited_nofile.1,
            inherited_nofile.1,
        )
        .context("cannot raise RLIMIT_NOFILE")?;
    }
    let mut supervisor = Supervisor::new(pipeline, events, inherited_nofile, nonstop)?;
    info!(tasks = supervisor.entries.len(), pipeline = %shown, "running");
    supervisor.run()?;
    if let Some(table) = table {
        table
            .remove()
            .context("cannot remove the heartbeat table")?;
    }
    info!("all tasks stopped");
    Ok(ExitCode::SUCCESS)
}

/// One task and everything the loop holds for it.
#[derive(Debug)]
struct Entry {
    /// Its state machine: every decision about it.
    task: Task,
    /// Its argv and environment, built once for all its starts.
    prepared: spawn::Prepared,
    /// Its log file.
    log: TaskLog,
    /// While its log cannot be written: the bytes of output lost since the error was logged
    /// (logged once, not once per write, so a full disk does not flood stderr).
    lost: Option<u64>,
    /// Its output pipe (read end, write end), for its whole life: every instance gets the
    /// write end as stdout and stderr, and the read end is watched once.
    output: (OwnedFd, OwnedFd),
    /// Whether "waiting for ..." was logged (once).
    waiting_logged: bool,
    /// Whether "will not start ..." was logged (once).
    blocked_logged: bool,
}

impl Entry {
    fn name(&self) -> &str {
        &self.task.spec.name
    }
}

/// Shutdown, once SIGTERM or SIGINT came.
#[derive(Debug)]
struct Shutdown {
    /// A second SIGTERM/SIGINT came: no more graces.
    hurry: bool,
}

struct Supervisor {
    entries: Vec<Entry>,
    /// The `after` relation.
    order: Order,
    /// The tasks whose start or stop may be due.
    agenda: Agenda,
    by_pid: HashMap<Pid, usize>,
    /// Read end of an output pipe → its task.
    pipes: HashMap<RawFd, usize>,
    /// Running compressions: the task whose log they compress, and the file.
    compressors: HashMap<Pid, (usize, PathBuf)>,
    compress: bool,
    events: EventLoop,
    runner: Pid,
    /// The `nonstop` binary: `nonstop compress-log FILE` compresses a rotated log (the
    /// supervisor does not link the compressor).
    nonstop: OwnedFd,
    shutdown: Option<Shutdown>,
}

impl Supervisor {
    fn new(
        pipeline: Pipeline,
        events: EventLoop,
        inherited_nofile: (u64, u64),
        nonstop: OwnedFd,
    ) -> anyhow::Result<Supervisor> {
        let order = Order::new(&pipeline.tasks);
        let mut entries = Vec::with_capacity(pipeline.tasks.len());
        let mut pipes = HashMap::new();
        for (i, spec) in pipeline.tasks.into_iter().enumerate() {
            let log = TaskLog::open(&pipeline.logs, &spec.name).with_context(|| {
                format!(
                    "cannot open the log of task {} in {}",
                    spec.name,
                    pipeline.logs.dir.display()
                )
            })?;
            let mut spawn_spec = spec.spawn.clone();
            if !spawn_spec
                .limits
                .iter()
                .any(|l| l.resource == Resource::RLIMIT_NOFILE)
            {
                spawn_spec.limits.push(spawn::Limit {
                    resource: Resource::RLIMIT_NOFILE,
                    soft: inherited_nofile.0,
                    hard: inherited_nofile.1,
                });
            }
            let prepared = spawn::Prepared::new(&spawn_spec)
                .with_context(|| format!("cannot prepare the command of task {}", spec.name))?;
            let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .context("cannot create an output pipe")?;
            events.watch(&read).context("cannot watch an output pipe")?;
            pipes.insert(read.as_raw_fd(), i);
            entries.push(Entry {
                task: Task::new(spec),
                prepared,
                log,
                lost: None,
                output: (read, write),
                waiting_logged: false,
                blocked_logged: false,
            });
        }
        Ok(Supervisor {
            agenda: Agenda::all(entries.len()),
            entries,
            order,
            by_pid: HashMap::new(),
            pipes,
            compressors: HashMap::new(),
            compress: pipeline.logs.compress,
            events,
            runner: nix::unistd::getpid(),
            nonstop,
            shutdown: None,
        })
    }

    fn run(&mut self) -> anyhow::Result<()> {
        loop {
            let now = Now::read();
            self.handle_deadlines(now);
            self.work_agenda(now);
            if self.shutdown.is_some() && self.entries.iter().all(|e| e.task.phase().is_final()) {
                self.stop_adopted()?;
                // What the tasks wrote last is still in their pipes.
                for i in 0..self.entries.len() {
                    self.drain(i);
                }
                return Ok(());
            }
            let timeout = if self.agenda.is_empty() {
                self.next_deadline()
                    .map(|d| d.saturating_duration_since(Instant::now()))
            } else {
                // Starts were cut short to take a signal: come back at once.
                Some(Duration::ZERO)
            };
            for event in self.events.wait(timeout)? {
                match event {
                    Event::Signal(signal) => self.on_signal(signal),
                    Event::Readable(fd) => self.on_output(fd),
                    Event::ClockChanged => {
                        info!("the wall clock was set: recomputing cron schedules");
                        let now = Now::read();
                        for entry in &mut self.entries {
                            entry.task.wall_clock_changed(now);
                        }
                    }
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.entries.iter().filter_map(|e| e.task.deadline()).min()
    }

    fn handle_deadlines(&mut self, now: Now) {
        for i in 0..self.entries.len() {
            while self.entries[i]
                .task
                .deadline()
                .is_some_and(|d| d <= now.mono)
            {
                let Some(due) = self.entries[i].task.on_deadline(now) else {
                    break;
                };
                let name = self.entries[i].name().to_owned();
                match due {
                    Due::Start => {
                        self.start(i, now);
                        // One start per task per turn: a start that fails at once with a 0ms
                        // backoff is due again at once, and must not starve the other events.
                        break;
                    }
                    Due::Timeout { pid, signal } => {
                        warn!(task = %name, pid = pid.as_raw(), "run exceeded its timeout; sending {}", signal.as_str());
                        signal_group(pid, signal);
                    }
                    Due::Kill { pid } => {
                        warn!(task = %name, pid = pid.as_raw(), "still running after the stop grace; sending SIGKILL");
                        signal_group(pid, Signal::SIGKILL);
                    }
                    Due::Skipped { pid } => {
                        warn!(task = %name, pid = pid.as_raw(), "skipped a run: the previous run is still going");
                    }
                }
            }
        }
    }

    /// Looks at every task on the agenda: starts waiting tasks whose dependencies are
    /// satisfied or, during shutdown, stops tasks whose dependents have stopped. Stops early,
    /// leaving the rest on the agenda, when a signal is pending, so that a SIGTERM is taken
    /// between two of a thousand starts.
    fn work_agenda(&mut self, now: Now) {
        while let Some(i) = self.agenda.pop() {
            let changed = if self.shutdown.is_some() {
                self.stop_if_due(i, now)
            } else {
                self.start_if_ready(i, now)
            };
            if changed {
                self.agenda.changed(i, &self.order);
                if self.events.signal_pending() {
                    return;
                }
            }
        }
    }

    /// Starts task `i` if it is waiting and its dependencies are satisfied; logs once why it
    /// waits otherwise. Returns whether it changed.
    fn start_if_ready(&mut self, i: usize, now: Now) -> bool {
        if self.entries[i].task.phase() != Phase::Waiting {
            return false;
        }
        let names = |deps: &[usize]| -> String {
            deps.iter()
                .map(|&d| self.entries[d].name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self.order.gate(i, |j| &self.entries[j].task) {
            Gate::Never(deps) => {
                if !self.entries[i].blocked_logged {
                    warn!(task = %self.entries[i].name(), "will not start: {} ended without success and is not restarted", names(&deps));
                    self.entries[i].blocked_logged = true;
                }
                false
            }
            Gate::Wait(deps) => {
                if !self.entries[i].waiting_logged {
                    info!(task = %self.entries[i].name(), "waiting for {}", names(&deps));
                    self.entries[i].waiting_logged = true;
                }
                false
            }
            Gate::Open => {
                if self.entries[i].task.activate(now) == Some(Due::Start) {
                    self.start(i, now);
                }
                true
            }
        }
    }

    /// During shutdown: stops task `i` if every task that comes after it has stopped.
    /// Returns whether it changed.
    fn stop_if_due(&mut self, i: usize, now: Now) -> bool {
        if !self.order.may_stop(i, |j| &self.entries[j].task) {
            return false;
        }
        let entry = &mut self.entries[i];
        if let Some((pid, signal)) = entry.task.stop(now) {
            info!(task = %entry.name(), pid = pid.as_raw(), "stopping with {}", signal.as_str());
            signal_group(pid, signal);
        }
        true
    }

    /// At shutdown, once every task is stopped: stops the processes the runner adopted (a
    /// task's descendant that left its process group, e.g. with `setsid`, and whose parent
    /// died) and waits for running log compressions ([`Sweep`]): SIGTERM (to the process's
    /// group if it leads one), then SIGKILL after the longest `stop.grace` of the pipeline, or
    /// at once on a second SIGTERM/SIGINT.
    fn stop_adopted(&mut self) -> anyhow::Result<()> {
        let grace = self
            .entries
            .iter()
            .map(|e| e.task.spec.stop.grace)
            .max()
            .unwrap_or_default();
        let mut sweep = Sweep::new(Instant::now(), grace);
        if self.shutdown.as_ref().is_some_and(|s| s.hurry) {
            sweep.hurry(Instant::now());
        }
        loop {
            let compressors: Vec<Pid> = self.compressors.keys().copied().collect();
            let adopted: Vec<Pid> = adopted::children()
                .into_iter()
                .filter(|pid| !self.compressors.contains_key(pid))
                .collect();
            let until = match sweep.step(Instant::now(), &adopted, &compressors) {
                Step::Done => return Ok(()),
                Step::GiveUp(pids) => {
                    let pids: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
                    error!(
                        "giving up on processes a SIGKILL did not end: {}",
                        pids.join(", ")
                    );
                    return Ok(());
                }
                Step::Signal {
                    signals,
                    until,
                    escalated,
                } => {
                    if escalated {
                        warn!(
                            "adopted processes still running after the stop grace; sending SIGKILL"
                        );
                    }
                    for (pid, signal) in signals {
                        if compressors.contains(&pid) {
                            let _ = kill(pid, signal);
                        } else {
                            info!(
                                pid = pid.as_raw(),
                                "stopping an adopted process with {}",
                                signal.as_str()
                            );
                            signal_adopted(pid, signal);
                        }
                    }
                    until
                }
            };
            for event in self
                .events
                .wait(Some(until.saturating_duration_since(Instant::now())))?
            {
                match event {
                    Event::Signal(Signal::SIGCHLD) => self.reap(),
                    Event::Signal(s @ (Signal::SIGTERM | Signal::SIGINT)) if !sweep.killing() => {
                        warn!(
                            "{} received again: killing adopted processes now",
                            s.as_str()
                        );
                        sweep.hurry(Instant::now());
                    }
                    Event::Readable(fd) => self.on_output(fd),
                    _ => {}
                }
            }
        }
    }

    fn start(&mut self, i: usize, now: Now) {
        let entry = &mut self.entries[i];
        let write = entry.output.1.as_fd();
        let output = spawn::Output {
            stdout: write,
            stderr: write,
        };
        match spawn::spawn_prepared(&entry.prepared, output, self.runner) {
            Ok(pid) => {
                self.by_pid.insert(pid, i);
                entry.task.on_started(pid, now);
                info!(task = %entry.name(), pid = pid.as_raw(), "started");
            }
            Err(e) => {
                error!(task = %entry.name(), "cannot start {}: {e}", entry.task.spec.spawn.program.display());
                let after = entry.task.on_exit(Exit::SpawnFailed, now);
                self.log_after_exit(i, Exit::SpawnFailed, None, after);
            }
        }
        // Running (or failed to start): the tasks after it may start (or never will).
        self.agenda.changed(i, &self.order);
    }

    fn on_signal(&mut self, signal: Signal) {
        match signal {
            Signal::SIGCHLD => self.reap(),
            Signal::SIGTERM | Signal::SIGINT => match &mut self.shutdown {
                None => {
                    info!("{} received: stopping every task", signal.as_str());
                    self.shutdown = Some(Shutdown { hurry: false });
                    self.agenda.push_all();
                }
                Some(shutdown) => {
                    // Asked again while stopping: no more grace, no more order.
                    warn!("{} received again: killing every task now", signal.as_str());
                    shutdown.hurry = true;
                    for entry in &mut self.entries {
                        if let Some(pid) = entry.task.kill_now() {
                            signal_group(pid, Signal::SIGKILL);
                        }
                    }
                }
            },
            Signal::SIGHUP => {
                warn!("SIGHUP received: reloading is not supported by this build yet; ignored");
            }
            other => debug!("ignored {}", other.as_str()),
        }
    }

    /// Reaps every exited child: SIGCHLD coalesces, so loop until none is left.
    fn reap(&mut self) {
        loop {
            let status = match nix::sys::wait::waitpid(
                Pid::from_raw(-1),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            ) {
                Ok(status) => status,
                Err(Errno::ECHILD) => return,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    error!("waitpid failed: {e}");
                    return;
                }
            };
            if status == nix::sys::wait::WaitStatus::StillAlive {
                return;
            }
            let Some((pid, exit)) = Exit::from_wait(status) else {
                continue;
            };
            self.on_reaped(pid, exit);
        }
    }

    fn on_reaped(&mut self, pid: Pid, exit: Exit) {
        if let Some(i) = self.by_pid.remove(&pid) {
            // Whatever is left of its process group goes with it.
            let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
            let now = Now::read();
            let task = &mut self.entries[i].task;
            let ran = match task.phase() {
                Phase::Running { since, .. } | Phase::Stopping { since, .. } => {
                    Some(now.mono.saturating_duration_since(since))
                }
                _ => None,
            };
            let after = task.on_exit(exit, now);
            self.log_after_exit(i, exit, ran.map(|r| (pid, r)), after);
            self.agenda.changed(i, &self.order);
        } else if let Some((task, file)) = self.compressors.remove(&pid) {
            if !exit.success() {
                warn!("compressing {} failed ({exit})", file.display());
            }
            if let Err(e) = self.entries[task].log.prune() {
                warn!(
                    "cannot prune old logs of {}: {e}",
                    self.entries[task].name()
                );
            }
        } else {
            debug!(pid = pid.as_raw(), "reaped an adopted process ({exit})");
        }
    }

    fn log_after_exit(&self, i: usize, exit: Exit, ran: Option<(Pid, Duration)>, after: AfterExit) {
        let name = self.entries[i].name();
        let pid = ran.map_or(0, |(p, _)| p.as_raw());
        let ran = ran.map_or(String::new(), |(_, r)| format!(" after {}", human(r)));
        match after {
            AfterExit::Restart { delay } => {
                warn!(task = %name, pid, "exited with {exit}{ran}; restarting in {}", human(delay));
            }
            AfterExit::Done => {
                info!(task = %name, pid, "exited with {exit}{ran}; not restarted (restart policy)");
            }
            AfterExit::CrashLoop { limit } => error!(
                task = %name, pid,
                "exited with {exit}{ran}: more than {} exits within {}; failed, not restarted until started again",
                limit.max, human(limit.within)
            ),
            AfterExit::NextRun { next } => {
                let wait = human(next.saturating_duration_since(Instant::now()));
                if exit.success() {
                    info!(task = %name, pid, "run finished with {exit}{ran}; next run in {wait}");
                } else {
                    warn!(task = %name, pid, "run failed with {exit}{ran}; next run in {wait}");
                }
            }
            AfterExit::NoMoreRuns => {
                info!(task = %name, pid, "run finished with {exit}{ran}; its schedule has no further runs");
            }
            AfterExit::Stopped => info!(task = %name, pid, "stopped ({exit})"),
        }
    }
}

/// Sends `signal` to an adopted process: to its process group if it leads one (a daemon that
/// called `setsid`), else to it alone (its group belongs to someone else); then SIGCONT.
fn signal_adopted(pid: Pid, signal: Signal) {
    if nix::unistd::getpgid(Some(pid)) == Ok(pid) {
        signal_group(pid, signal);
    } else {
        let _ = kill(pid, signal);
        if signal != Signal::SIGKILL {
            let _ = kill(pid, Signal::SIGCONT);
        }
    }
}

/// Sends `signal` to the process group `pid`, then SIGCONT so that a stopped process sees it.
fn signal_group(pid: Pid, signal: Signal) {
    let group = Pid::from_raw(-pid.as_raw());
    if let Err(e) = kill(group, signal)
        && e != Errno::ESRCH
    {
        warn!(pid = pid.as_raw(), "cannot send {}: {e}", signal.as_str());
    }
    if signal != Signal::SIGKILL {
        let _ = kill(group, Signal::SIGCONT);
    }
}

/// `1.5s`, `250ms`, `2m3s`.
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        let s = d.as_secs();
        format!("{}m{}s", s / 60, s % 60)
    }
}
