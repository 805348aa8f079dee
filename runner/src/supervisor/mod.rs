//! `nonstop run`: the supervision loop.
//!
//! One thread, one loop. It waits in `epoll_wait` on a signalfd (SIGCHLD, SIGTERM, SIGINT,
//! SIGHUP) and on the tasks' output pipes (one per task, for stdout and stderr, kept for the
//! runner's life), with a timeout computed from the
//! earliest task deadline, or none: with nothing due, it makes no wake-ups at all. Decisions
//! belong to each task's state machine (`nonstop_scheduler::task::Task`); this module does the
//! I/O they ask for (spawn, signal, reap, copy output to log files) and logs every step.
//!
//! The loop runs in `nonstop-supervisor`, which `nonstop run` executes in its own process once
//! the pipeline is checked ([`handoff`]).

mod adopted;
mod events;
pub mod handoff;

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::errno::Errno;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use nonstop_ipc::{HeartbeatTable, TableOptions};
use nonstop_scheduler::schedule::Now;
use nonstop_scheduler::spawn;
use nonstop_scheduler::task::{AfterExit, Due, Exit, Phase, Task};
use tracing::{debug, error, info, warn};

use crate::logfile::TaskLog;
use crate::pipeline::{self, Pipeline};
use events::{Event, EventLoop};

/// Runs the pipeline at `file` until SIGTERM/SIGINT and every task is stopped: checks it, then
/// hands it to `nonstop-supervisor` in this process ([`handoff`]). If that cannot be done
/// (the supervisor binary is missing), supervises in this image.
pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let shown = file.display().to_string();
    let pipeline = match pipeline::load(file) {
        Ok(p) => p,
        Err(errors) => {
            for e in &errors {
                eprintln!("{}", e.display(&shown));
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    init_logging();
    for w in &pipeline.warnings {
        warn!("{}", w.display(&shown));
    }
    // Blocked before the hand-off, so a SIGTERM sent meanwhile waits for the signalfd.
    events::block_signals().context("cannot block signals")?;
    let e = handoff::exec(file, &pipeline);
    warn!(
        "supervising in this process, without {}: {e:#}",
        handoff::SUPERVISOR
    );
    let nonstop = std::env::current_exe().context("cannot find the nonstop executable")?;
    supervise(&shown, pipeline, nonstop)
}

/// The supervising image: takes the pipeline handed off at `fd` (checked from `file`) and
/// runs it.
pub fn resume(fd: RawFd, file: &Path) -> anyhow::Result<ExitCode> {
    init_logging();
    let (nonstop, pipeline) = handoff::receive(fd)?;
    supervise(&file.display().to_string(), pipeline, nonstop)
}

/// Supervises `pipeline` (from the file shown as `shown`); `nonstop` is the `nonstop` binary,
/// which compresses rotated logs for it (`nonstop compress-log FILE`).
fn supervise(shown: &str, pipeline: Pipeline, nonstop: PathBuf) -> anyhow::Result<ExitCode> {
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
    info!(tasks = supervisor.tasks.len(), pipeline = %shown, "running");
    supervisor.run()?;
    if let Some(table) = table {
        table
            .remove()
            .context("cannot remove the heartbeat table")?;
    }
    info!("all tasks stopped");
    Ok(ExitCode::SUCCESS)
}

fn init_logging() {
    crate::log::init();
}

struct Supervisor {
    tasks: Vec<Task>,
    /// Each task's argv and environment, built once for all its starts.
    prepared: Vec<spawn::Prepared>,
    logs: Vec<Option<TaskLog>>,
    /// For each task whose log cannot be written: the bytes of output lost since the error
    /// was logged (logged once, not once per write, so a full disk does not flood stderr).
    lost: Vec<Option<u64>>,
    /// For each task, the tasks that come `after` it (stopped before it).
    dependents: Vec<Vec<usize>>,
    /// For each task, the tasks it comes `after`.
    dependencies: Vec<Vec<usize>>,
    /// Whether "waiting for ..." was logged for the task (once).
    waiting_logged: Vec<bool>,
    /// Whether "will not start ..." was logged for the task (once).
    blocked_logged: Vec<bool>,
    by_pid: HashMap<Pid, usize>,
    /// Each task's output pipe (read end, write end), for its whole life: every instance gets
    /// the write end as stdout and stderr, and the read end is watched once.
    outputs: Vec<(OwnedFd, OwnedFd)>,
    /// Read end of an output pipe → its task.
    pipes: HashMap<RawFd, usize>,
    /// Running compressions: the task whose log they compress, and the file.
    compressors: HashMap<Pid, (usize, PathBuf)>,
    compress: bool,
    events: EventLoop,
    runner: Pid,
    /// The `nonstop` binary: `nonstop compress-log FILE` compresses a rotated log (the
    /// supervisor does not link the compressor).
    nonstop: PathBuf,
    shutting_down: bool,
    /// A second SIGTERM/SIGINT came while stopping: no more graces.
    hurry: bool,
}

impl Supervisor {
    fn new(
        pipeline: Pipeline,
        events: EventLoop,
        inherited_nofile: (u64, u64),
        nonstop: PathBuf,
    ) -> anyhow::Result<Supervisor> {
        let names: HashMap<String, usize> = pipeline
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let dependencies: Vec<Vec<usize>> = pipeline
            .tasks
            .iter()
            .map(|t| {
                t.after
                    .iter()
                    .filter_map(|d| names.get(d).copied())
                    .collect()
            })
            .collect();
        let mut dependents = vec![Vec::new(); pipeline.tasks.len()];
        for (i, deps) in dependencies.iter().enumerate() {
            for &d in deps {
                dependents[d].push(i);
            }
        }
        let mut logs = Vec::new();
        for task in &pipeline.tasks {
            let log = TaskLog::open(&pipeline.logs, &task.name).with_context(|| {
                format!(
                    "cannot open the log of task {} in {}",
                    task.name,
                    pipeline.logs.dir.display()
                )
            })?;
            logs.push(Some(log));
        }
        let mut prepared = Vec::new();
        let mut outputs = Vec::new();
        let mut pipes = HashMap::new();
        for (i, task) in pipeline.tasks.iter().enumerate() {
            let mut spec = task.spawn.clone();
            if !spec
                .limits
                .iter()
                .any(|l| l.resource == Resource::RLIMIT_NOFILE)
            {
                spec.limits.push(spawn::Limit {
                    resource: Resource::RLIMIT_NOFILE,
                    soft: inherited_nofile.0,
                    hard: inherited_nofile.1,
                });
            }
            prepared
                .push(spawn::Prepared::new(&spec).with_context(|| {
                    format!("cannot prepare the command of task {}", task.name)
                })?);
            let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .context("cannot create an output pipe")?;
            events.watch(&read).context("cannot watch an output pipe")?;
            pipes.insert(read.as_raw_fd(), i);
            outputs.push((read, write));
        }
        Ok(Supervisor {
            tasks: pipeline.tasks.into_iter().map(Task::new).collect(),
            prepared,
            logs,
            dependents,
            lost: vec![None; dependencies.len()],
            waiting_logged: vec![false; dependencies.len()],
            blocked_logged: vec![false; dependencies.len()],
            dependencies,
            by_pid: HashMap::new(),
            outputs,
            pipes,
            compressors: HashMap::new(),
            compress: pipeline.logs.compress,
            events,
            runner: nix::unistd::getpid(),
            nonstop,
            shutting_down: false,
            hurry: false,
        })
    }

    fn run(&mut self) -> anyhow::Result<()> {
        loop {
            let now = Now::read();
            self.handle_deadlines(now);
            if self.shutting_down {
                self.stop_ready(now);
                if self.tasks.iter().all(|t| t.phase().is_final()) {
                    self.stop_adopted()?;
                    // What the tasks wrote last is still in their pipes.
                    for i in 0..self.outputs.len() {
                        self.drain(i);
                    }
                    return Ok(());
                }
            } else {
                self.activate_ready(now);
            }
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            for event in self.events.wait(timeout)? {
                match event {
                    Event::Signal(signal) => self.on_signal(signal),
                    Event::Readable(fd) => self.on_output(fd),
                    Event::ClockChanged => {
                        info!("the wall clock was set: recomputing cron schedules");
                        let now = Now::read();
                        for task in &mut self.tasks {
                            task.wall_clock_changed(now);
                        }
                    }
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.tasks.iter().filter_map(Task::deadline).min()
    }

    fn handle_deadlines(&mut self, now: Now) {
        for i in 0..self.tasks.len() {
            while self.tasks[i].deadline().is_some_and(|d| d <= now.mono) {
                let Some(due) = self.tasks[i].on_deadline(now) else {
                    break;
                };
                let name = self.tasks[i].spec.name.clone();
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

    /// Starts every waiting task whose dependencies are satisfied.
    fn activate_ready(&mut self, now: Now) {
        for i in 0..self.tasks.len() {
            if self.tasks[i].phase() != Phase::Waiting {
                continue;
            }
            let blocking = self.dependencies_where(i, Task::blocks_dependents);
            if !blocking.is_empty() {
                if !self.blocked_logged[i] {
                    warn!(task = %self.tasks[i].spec.name, "will not start: {} ended without success and is not restarted", blocking.join(", "));
                    self.blocked_logged[i] = true;
                }
                continue;
            }
            let missing = self.dependencies_where(i, |d| !d.satisfies_dependents());
            if !missing.is_empty() {
                if !self.waiting_logged[i] {
                    info!(task = %self.tasks[i].spec.name, "waiting for {}", missing.join(", "));
                    self.waiting_logged[i] = true;
                }
                continue;
            }
            if self.tasks[i].activate(now) == Some(Due::Start) {
                self.start(i, now);
            }
        }
    }

    /// The names of the tasks that task `i` comes `after` and that are `such`.
    fn dependencies_where(&self, i: usize, such: impl Fn(&Task) -> bool) -> Vec<&str> {
        self.dependencies[i]
            .iter()
            .map(|&d| &self.tasks[d])
            .filter(|d| such(d))
            .map(|d| d.spec.name.as_str())
            .collect()
    }

    /// During shutdown: stops every task whose dependents are all stopped. Repeats until
    /// nothing changes, since a task stopped at once (idle, backing off) may free a task
    /// before it in the list.
    fn stop_ready(&mut self, now: Now) {
        loop {
            let mut changed = false;
            for i in 0..self.tasks.len() {
                let phase = self.tasks[i].phase();
                if phase.is_final() || matches!(phase, Phase::Stopping { .. }) {
                    continue;
                }
                let dependents_done = self.dependents[i]
                    .iter()
                    .all(|&d| self.tasks[d].phase().is_final());
                if !dependents_done {
                    continue;
                }
                changed = true;
                if let Some((pid, signal)) = self.tasks[i].stop(now) {
                    info!(task = %self.tasks[i].spec.name, pid = pid.as_raw(), "stopping with {}", signal.as_str());
                    signal_group(pid, signal);
                }
            }
            if !changed {
                return;
            }
        }
    }

    /// At shutdown, once every task is stopped: stops the processes the runner adopted (a
    /// task's descendant that left its process group, e.g. with `setsid`, and whose parent
    /// died) and waits for running log compressions. SIGTERM (to the process's group if it
    /// leads one), then SIGKILL after the longest `stop.grace` of the pipeline, or at once on a
    /// second SIGTERM/SIGINT. Gives up, naming them, on processes that a SIGKILL does not end
    /// within [`GIVE_UP`] (stuck in the kernel).
    fn stop_adopted(&mut self) -> anyhow::Result<()> {
        let grace = self
            .tasks
            .iter()
            .map(|t| t.spec.stop.grace)
            .max()
            .unwrap_or_default();
        let mut kill_at = Instant::now() + if self.hurry { Duration::ZERO } else { grace };
        let mut killing = false;
        let mut signalled: HashSet<Pid> = HashSet::new();
        loop {
            let left: Vec<Pid> = adopted::children()
                .into_iter()
                .filter(|pid| !self.compressors.contains_key(pid))
                .collect();
            if left.is_empty() && self.compressors.is_empty() {
                return Ok(());
            }
            let now = Instant::now();
            if !killing && now >= kill_at {
                killing = true;
                signalled.clear();
                if !left.is_empty() {
                    warn!("adopted processes still running after the stop grace; sending SIGKILL");
                }
            }
            if killing && now >= kill_at + GIVE_UP {
                let pids: Vec<String> = left
                    .iter()
                    .chain(self.compressors.keys())
                    .map(|p| p.to_string())
                    .collect();
                error!(
                    "giving up on processes a SIGKILL did not end: {}",
                    pids.join(", ")
                );
                return Ok(());
            }
            let signal = if killing {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            };
            for &pid in &left {
                if signalled.insert(pid) {
                    info!(
                        pid = pid.as_raw(),
                        "stopping an adopted process with {}",
                        signal.as_str()
                    );
                    signal_adopted(pid, signal);
                }
            }
            if killing {
                for &pid in self.compressors.keys() {
                    if signalled.insert(pid) {
                        let _ = kill(pid, Signal::SIGKILL);
                    }
                }
            }
            let until = if killing { kill_at + GIVE_UP } else { kill_at };
            for event in self
                .events
                .wait(Some(until.saturating_duration_since(Instant::now())))?
            {
                match event {
                    Event::Signal(Signal::SIGCHLD) => self.reap(),
                    Event::Signal(s @ (Signal::SIGTERM | Signal::SIGINT)) if !killing => {
                        warn!(
                            "{} received again: killing adopted processes now",
                            s.as_str()
                        );
                        kill_at = Instant::now();
                    }
                    Event::Readable(fd) => self.on_output(fd),
                    _ => {}
                }
            }
        }
    }

    fn start(&mut self, i: usize, now: Now) {
        let write = self.outputs[i].1.as_fd();
        let output = spawn::Output {
            stdout: write,
            stderr: write,
        };
        let task = &mut self.tasks[i];
        match spawn::spawn_prepared(&self.prepared[i], output, self.runner) {
            Ok(pid) => {
                self.by_pid.insert(pid, i);
                task.on_started(pid, now);
                info!(task = %task.spec.name, pid = pid.as_raw(), "started");
            }
            Err(e) => {
                error!(task = %task.spec.name, "cannot start {}: {e}", task.spec.spawn.program.display());
                let after = task.on_exit(Exit::SpawnFailed, now);
                self.log_after_exit(i, Exit::SpawnFailed, None, after);
            }
        }
    }

    fn on_signal(&mut self, signal: Signal) {
        match signal {
            Signal::SIGCHLD => self.reap(),
            Signal::SIGTERM | Signal::SIGINT => {
                if !self.shutting_down {
                    info!("{} received: stopping every task", signal.as_str());
                    self.shutting_down = true;
                    return;
                }
                // Asked again while stopping: no more grace, no more order.
                warn!("{} received again: killing every task now", signal.as_str());
                self.hurry = true;
                for task in &mut self.tasks {
                    if let Some(pid) = task.kill_now() {
                        signal_group(pid, Signal::SIGKILL);
                    }
                }
            }
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
            let ran = match self.tasks[i].phase() {
                Phase::Running { since, .. } | Phase::Stopping { since, .. } => {
                    Some(now.mono.saturating_duration_since(since))
                }
                _ => None,
            };
            let after = self.tasks[i].on_exit(exit, now);
            self.log_after_exit(i, exit, ran.map(|r| (pid, r)), after);
        } else if let Some((task, file)) = self.compressors.remove(&pid) {
            if !exit.success() {
                warn!("compressing {} failed ({exit})", file.display());
            }
            if let Some(log) = &self.logs[task]
                && let Err(e) = log.prune()
            {
                warn!(
                    "cannot prune old logs of {}: {e}",
                    self.tasks[task].spec.name
                );
            }
        } else {
            debug!(pid = pid.as_raw(), "reaped an adopted process ({exit})");
        }
    }

    fn log_after_exit(&self, i: usize, exit: Exit, ran: Option<(Pid, Duration)>, after: AfterExit) {
        let name = &self.tasks[i].spec.name;
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

    /// Copies what a task wrote to its log.
    fn on_output(&mut self, fd: RawFd) {
        if let Some(&i) = self.pipes.get(&fd) {
            self.drain(i);
        }
    }

    /// Copies everything waiting in task `i`'s output pipe to its log.
    fn drain(&mut self, i: usize) {
        let mut buf = [0u8; 1 << 16];
        loop {
            match nix::unistd::read(&self.outputs[i].0, &mut buf) {
                // The runner holds the write end: no end of file while it runs.
                Ok(0) => return,
                Ok(n) => self.write_log(i, &buf[..n]),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return,
                Err(e) => {
                    warn!(task = %self.tasks[i].spec.name, "reading its output failed: {e}");
                    return;
                }
            }
        }
    }

    fn write_log(&mut self, i: usize, data: &[u8]) {
        let Some(log) = self.logs[i].as_mut() else {
            return;
        };
        match log.write(data) {
            Ok(rotated) => {
                if let Some(lost) = self.lost[i].take() {
                    warn!(task = %self.tasks[i].spec.name, "writing {} again; {lost} bytes of output were lost", log.path().display());
                }
                for file in rotated {
                    debug!(task = %self.tasks[i].spec.name, "rotated its log to {}", file.display());
                    if self.compress {
                        self.spawn_compressor(i, file);
                    }
                }
            }
            Err(e) => {
                // Keep supervising; the output is lost until the disk is fixed.
                match &mut self.lost[i] {
                    Some(lost) => *lost += data.len() as u64,
                    None => {
                        error!(task = %self.tasks[i].spec.name, "cannot write {}: {e}; its output is lost until writing works again", log.path().display());
                        self.lost[i] = Some(data.len() as u64);
                    }
                }
            }
        }
    }

    fn spawn_compressor(&mut self, task: usize, file: PathBuf) {
        let spec = spawn::SpawnSpec {
            program: self.nonstop.clone(),
            args: vec!["compress-log".into(), file.clone().into_os_string()],
            ..Default::default()
        };
        // It writes nothing unless it fails: then to the runner's own stderr, beside the
        // runner's log.
        let stderr = std::io::stderr();
        let output = spawn::Output {
            stdout: stderr.as_fd(),
            stderr: stderr.as_fd(),
        };
        match spawn::spawn(&spec, output, self.runner) {
            Ok(pid) => {
                self.compressors.insert(pid, (task, file));
            }
            Err(e) => warn!("cannot start compressing {}: {e}", file.display()),
        }
    }
}

/// How long the runner waits for adopted processes to die after SIGKILL before it gives up.
const GIVE_UP: Duration = Duration::from_secs(5);

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
