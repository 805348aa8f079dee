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
mod compressions;
mod contain;
mod control;
pub mod descriptors;
mod entry;
mod events;
mod exits;
mod failure;
mod json;
mod metrics;
mod notify;
mod output;
mod probe;
mod reload;
mod requests;
mod signals;
mod stop;
mod throttle;
mod watch;

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use nonstop_core::Deadline;
use nonstop_ipc::ProcessId;
use nonstop_scheduler::cgroup::Cgroup;
use nonstop_scheduler::order::{Agenda, Gate, Order};
use nonstop_scheduler::schedule::Now;
use nonstop_scheduler::spawn::{self, guard::Guard};
use nonstop_scheduler::task::{Due, Exit, Phase, Readiness};
use tracing::{debug, error, info, warn};

use crate::lock::Lock;
use crate::pipeline::{LogConfig, Pipeline};
use contain::Containment;
use entry::{Entry, Made, Making, make};
use events::{Event, EventLoop};
use stop::{guard_unreachable, start_guard};
use watch::Watch;

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
    // The low descriptor numbers through which children get their standard streams, before
    // anything else takes them (see `spawn::reserve_descriptor_slots`).
    spawn::reserve_descriptor_slots().context("cannot reserve descriptors for children")?;
    let me = ProcessId::current().context("cannot read this process's identity")?;
    // One runner per pipeline: refused here, before anything of the first runner's is touched.
    let lock = Lock::acquire(&pipeline.logs.dir, me)?;
    let events = EventLoop::new().context("cannot set up the event loop")?;
    // Refused here too, before anything is created, if another runner serves the socket.
    let control = match &pipeline.control {
        Some(c) => Some(control::Control::bind(&c.socket, &events)?),
        None => None,
    };
    let watch = match pipeline.heartbeat {
        Some(h) => Some(Watch::open(h, me)?),
        None => None,
    };
    // Orphaned descendants (daemons that double-fork) become ours, so we reap them.
    nix::sys::prctl::set_child_subreaper(true).context("cannot become a child subreaper")?;
    // Every task holds three descriptors for the runner's life (its log and its pipe's two
    // ends), and three more for its cgroup (its directory, `cgroup.events`, `cgroup.procs`):
    // raise our own soft limit to the hard one, as systemd does; tasks get the soft limit we
    // were started with (unless they set `limits.nofile`), so programs that use select() see
    // what they expect.
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
    let containment = contain::setup(pipeline.containment, &pipeline.logs.dir)?;
    // A pipeline that needs more descriptors than the hard limit would start its first tasks
    // and leave the rest failing to start, and the control socket unable to accept: refused
    // now, before anything of it starts, with the numbers.
    let cgroups = matches!(containment, Containment::Cgroups(_));
    let need = descriptors::need(&pipeline.tasks, cgroups, 0);
    if let Some(why) = need.over(inherited_nofile.1) {
        // What was made goes as it drops: the pipeline's cgroup, the heartbeat table, the
        // control socket, and last the lock.
        anyhow::bail!("cannot run {shown}: {why}; {}", descriptors::ADVICE);
    }
    debug!(
        "{} tasks need about {} descriptors; the limit is {}",
        need.tasks,
        descriptors::grouped(need.descriptors),
        descriptors::grouped(inherited_nofile.1)
    );
    let mut supervisor = Supervisor::new(
        shown,
        pipeline,
        control,
        events,
        inherited_nofile,
        nonstop,
        containment,
        lock,
        watch,
    )?;
    match &supervisor.control {
        Some(c) => {
            info!(tasks = supervisor.entries.len(), pipeline = %shown, control = %c.path().display(), "running")
        }
        None => info!(tasks = supervisor.entries.len(), pipeline = %shown, "running"),
    }
    // Log lines are written together, once per turn of the loop (see `log`).
    crate::log::batch();
    let result = supervisor.run();
    crate::log::unbatch();
    result?;
    supervisor.tear_down();
    // Its slots freed, the table removed or released (see `Watch`'s drop).
    drop(supervisor.watch.take());
    info!("all tasks stopped");
    // Every task is stopped and the guard is gone: what is left is descriptors (about six per
    // task: its log, its pipe, its cgroup's) and memory. The kernel closes and frees them all
    // as this process exits, in one pass, faster than a `close` each (a measurable part of
    // stopping a hundred tasks, BENCHMARKS.md); nothing of the supervisor's does more on drop
    // (its `Drop` is for an error, which ends it with tasks and their cgroups still there).
    std::mem::forget(supervisor);
    Ok(ExitCode::SUCCESS)
}

/// The sections of a pipeline other than its tasks.
#[derive(Debug, PartialEq)]
struct Globals {
    heartbeat: Option<crate::pipeline::HeartbeatConfig>,
    logs: LogConfig,
    containment: crate::pipeline::ContainmentMode,
    control: Option<crate::pipeline::ControlConfig>,
}

/// Shutdown, once SIGTERM or SIGINT came.
#[derive(Debug)]
struct Shutdown {
    /// When the first came.
    since: Instant,
    /// A second SIGTERM/SIGINT came (at least [`REPEAT`] after the first): no more graces.
    hurry: bool,
}

/// A second SIGTERM or SIGINT ends the graces only if it comes this long after the first;
/// sooner, it is the same request delivered twice.
const REPEAT: Duration = Duration::from_secs(1);

impl Shutdown {
    /// Whether a SIGTERM or SIGINT now is asked again, not the first delivered twice: it
    /// comes at least [`REPEAT`] after the first.
    fn repeated(&self) -> bool {
        self.since.elapsed() >= REPEAT
    }
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
    /// Log compressions, running and waiting.
    compressions: compressions::Compressions,
    events: EventLoop,
    runner: Pid,
    /// The `nonstop` binary: `nonstop compress-log FILE` compresses a rotated log (the
    /// supervisor does not link the compressor).
    nonstop: OwnedFd,
    shutdown: Option<Shutdown>,
    /// How tasks are contained.
    containment: Containment,
    /// The open `cgroup.events` of the task cgroups watched for changes (those whose main
    /// process is gone while others are not) → the task.
    watches: HashMap<RawFd, usize>,
    /// Ends the pipeline's processes if this process dies; `None` once dismissed.
    guard: Option<Guard>,
    /// The heartbeat table and hang detection, if the pipeline has a table.
    watch: Option<Watch>,
    /// Sockets of tcp and http probes in flight → their task.
    probe_fds: HashMap<RawFd, usize>,
    /// Processes of exec probes in flight → their task.
    probe_pids: HashMap<Pid, usize>,
    /// `/dev/null`, the output of exec probes (if any task has one).
    devnull: Option<OwnedFd>,
    /// systemd's notifications (`READY=1`, `STOPPING=1`, `WATCHDOG=1`), when it asked.
    notifier: notify::Notifier,
    /// The control socket, if it could be served.
    control: Option<control::Control>,
    /// The pipeline file as shown (`nonstop status`).
    shown: String,
    /// The pipeline's sections other than its tasks, as the runner started with them (a
    /// reload cannot change them).
    globals: Globals,
    /// The `nofile` limit the runner was started with (tasks get it).
    inherited_nofile: (u64, u64),
    /// A reload in progress: its checking child.
    reloading: Option<reload::Reloading>,
    /// When the runner started supervising.
    started: Instant,
    /// `metrics: FILE`, rewritten as the loop turns.
    metrics: Option<metrics::MetricsFile>,
    /// The runner's own log file (`run -d`), opened again on SIGUSR2.
    own_log: Option<PathBuf>,
    /// The cgroups of tasks stopped for good, their directories removed: their descriptors
    /// are closed by the kernel when the runner exits (see `supervise`), not one `close` at a
    /// time while the other tasks are stopping.
    retired: Vec<Cgroup>,
    /// Task cgroups made under a name of their own because a killed one could not be removed
    /// (see `make_cgroup`): the last number used.
    renewed: u64,
    /// The pipeline lock (the guard holds it too). The last field, so the last dropped: a
    /// runner that fails lets the next one in only once its table, cgroup and socket are gone.
    lock: Lock,
}

impl Drop for Supervisor {
    /// Only after an error: a normal end tears down ([`Supervisor::tear_down`]) and forgets
    /// the supervisor. Whatever the tasks started is ended as if the runner had died (by the
    /// guard, waited for; without one, here), then the fields' own drops remove the heartbeat
    /// table (`Watch`), the pipeline's cgroup (`Containment`) and the control socket
    /// (`Control`), and the lock goes last.
    fn drop(&mut self) {
        match self.guard.take() {
            Some(mut guard) => {
                let pid = guard.pid();
                // The process groups it has not been told of yet.
                if !guard.flush() {
                    guard_unreachable(&mut guard);
                }
                // Its pipe closes without a goodbye: it kills what runs, and removes the
                // pipeline's cgroup.
                drop(guard);
                let _ = nix::sys::wait::waitpid(pid, None);
            }
            None if !self.by_pid.is_empty() => {
                error!("ending the tasks' processes (the runner has no guard)");
                match &self.containment {
                    Containment::Cgroups(cgroup) => {
                        let _ = cgroup.kill();
                        let _ = cgroup.wait_empty(Duration::from_secs(5));
                    }
                    Containment::Groups => {
                        for pid in self.by_pid.keys() {
                            let _ = nix::sys::signal::kill(
                                Pid::from_raw(-pid.as_raw()),
                                Signal::SIGKILL,
                            );
                        }
                    }
                }
            }
            None => {}
        }
    }
}

impl Supervisor {
    #[allow(clippy::too_many_arguments)]
    fn new(
        shown: &str,
        pipeline: Pipeline,
        control: Option<control::Control>,
        events: EventLoop,
        inherited_nofile: (u64, u64),
        nonstop: OwnedFd,
        containment: Containment,
        lock: Lock,
        watch: Option<Watch>,
    ) -> anyhow::Result<Supervisor> {
        // Built first, holding what the runner made so far: if a task cannot be made ready
        // below, it is dropped, and its drop removes all of it (see `Drop for Supervisor`).
        let mut supervisor = Supervisor {
            control,
            shown: shown.to_owned(),
            globals: Globals {
                heartbeat: pipeline.heartbeat,
                logs: pipeline.logs.clone(),
                containment: pipeline.containment,
                control: pipeline.control.clone(),
            },
            inherited_nofile,
            reloading: None,
            started: Instant::now(),
            metrics: pipeline.metrics.clone().map(metrics::MetricsFile::new),
            own_log: pipeline.own_log.clone(),
            agenda: Agenda::all(0),
            entries: Vec::with_capacity(pipeline.tasks.len()),
            order: Order::new(&pipeline.tasks),
            by_pid: HashMap::new(),
            pipes: HashMap::new(),
            compressions: compressions::Compressions::for_this_machine(),
            events,
            runner: nix::unistd::getpid(),
            nonstop,
            shutdown: None,
            containment,
            watches: HashMap::new(),
            guard: None,
            watch,
            probe_fds: HashMap::new(),
            probe_pids: HashMap::new(),
            devnull: None,
            notifier: notify::Notifier::from_env(),
            retired: Vec::new(),
            renewed: 0,
            lock,
        };
        let socket = supervisor.control.as_ref().map(|c| c.path().to_owned());
        let with = Making {
            inherited_nofile,
            socket: socket.as_deref(),
            nonstop: supervisor.nonstop.as_raw_fd(),
        };
        let fingerprints = pipeline.fingerprints;
        for (i, spec) in pipeline.tasks.into_iter().enumerate() {
            let made = make(
                i,
                spec,
                fingerprints.get(i).copied().unwrap_or(0),
                &with,
                &mut supervisor.watch,
                None,
            )?;
            let entry = Entry::open(made, &pipeline.logs, &supervisor.events)?;
            supervisor.pipes.insert(entry.output.0.as_raw_fd(), i);
            supervisor.entries.push(entry);
        }
        supervisor.agenda = Agenda::all(supervisor.entries.len());
        // Rotated logs that an earlier runner left uncompressed (queued still at its
        // shutdown, or its compression killed) are compressed now, in the same queue.
        if pipeline.logs.compress {
            let keep = usize::try_from(pipeline.logs.keep).unwrap_or(usize::MAX);
            for (i, entry) in supervisor.entries.iter().enumerate() {
                match crate::logfile::uncompressed_rotations(entry.log.path()) {
                    Ok(left) if !left.is_empty() => {
                        debug!(task = %entry.name(), "{} rotated logs left uncompressed", left.len());
                        supervisor.compressions.queue(i, left, keep);
                    }
                    Ok(_) => {}
                    Err(e) => warn!(task = %entry.name(), "cannot list its rotated logs: {e}"),
                }
            }
        }
        if supervisor
            .entries
            .iter()
            .any(|e| e.probe_prepared.is_some())
        {
            supervisor.devnull = Some(open_devnull().context("cannot open /dev/null")?);
        }
        supervisor.guard = Some(start_guard(
            &supervisor.containment,
            &supervisor.lock,
            &[],
            supervisor.entries.len(),
        )?);
        Ok(supervisor)
    }

    /// After the loop, every task stopped: dismisses the guard, waiting for it (it removes the
    /// task cgroups it was handed first), then removes the pipeline's cgroup and whatever is
    /// left below it, so that when this process ends nothing of the pipeline is left, the
    /// lock included.
    fn tear_down(&mut self) {
        // Its socket file goes (see `Control`'s drop).
        drop(self.control.take());
        // The metrics say every task is stopped, not what they said a second ago.
        if let Some(metrics) = &mut self.metrics {
            metrics.force();
        }
        self.metrics_turn(Instant::now());
        // The guard first: it removes the task cgroups it was handed before it exits.
        if let Some(guard) = self.guard.take() {
            let pid = guard.pid();
            guard.dismiss();
            let _ = nix::sys::wait::waitpid(pid, None);
        }
        if let Containment::Cgroups(pipeline) = &self.containment
            && let Err(e) = pipeline.remove()
        {
            warn!("{e}");
        }
        debug!("releasing {}", self.lock.path().display());
    }

    fn run(&mut self) -> anyhow::Result<()> {
        // What an earlier runner left uncompressed (queued in `new`).
        self.start_compressions();
        loop {
            let now = Now::read();
            self.handle_deadlines(now);
            self.work_agenda(now);
            // The loop is turning: systemd's watchdog may be told so.
            self.notifier.turn(now.mono);
            self.metrics_turn(now.mono);
            if !self.notifier.is_ready() && self.shutdown.is_none() && self.started_and_ready() {
                let running = self
                    .entries
                    .iter()
                    .filter(|e| matches!(e.task.phase(), Phase::Running { .. }))
                    .count();
                self.notifier.ready(&format!(
                    "{running} of {} tasks running",
                    self.entries.len()
                ));
            }
            if self.shutdown.is_some() && self.entries.iter().all(|e| e.task.phase().is_final()) {
                self.stop_adopted()?;
                // What the tasks wrote last is still in their pipes. Its rotations stay as
                // they are: no compression starts any more.
                self.close_compressions();
                for i in 0..self.entries.len() {
                    self.finish_output(i);
                }
                return Ok(());
            }
            let timeout = if self.agenda.is_empty() {
                // Never: sleep until an event, with no timeout.
                self.next_deadline().remaining(Instant::now())
            } else {
                // Starts were cut short to take a signal: come back at once.
                Some(Duration::ZERO)
            };
            crate::log::flush();
            if let Some(guard) = &mut self.guard
                && !guard.flush()
            {
                guard_unreachable(guard);
            }
            for event in self.events.wait(timeout)? {
                match event {
                    Event::Signal(signal) => self.on_signal(signal),
                    Event::Readable(fd) => self.on_readable(fd),
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

    /// Whether the pipeline's start is over: no task waits to start (but those that never
    /// will, behind one that failed) and every running one is ready (its first heartbeat or
    /// healthy probe).
    fn started_and_ready(&self) -> bool {
        self.agenda.is_empty()
            && self.entries.iter().all(|e| match e.task.phase() {
                Phase::Waiting => e.blocked_logged,
                Phase::Running { .. } => e.task.ready(),
                _ => true,
            })
    }

    /// The earliest deadline of everything the loop waits for.
    fn next_deadline(&self) -> Deadline {
        let tasks = self.entries.iter().map(|e| e.task.deadline());
        let probes = self
            .entries
            .iter()
            .filter_map(|e| e.probe.as_ref().map(probe::ProbeRun::deadline));
        let watch = self.watch.as_ref().map(Watch::deadline);
        let systemd = self.notifier.deadline();
        let control = self.control.as_ref().map(control::Control::deadline);
        let metrics = self.metrics.as_ref().map(metrics::MetricsFile::deadline);
        let reload = self.reloading.as_ref().map(reload::Reloading::deadline);
        tasks
            .chain(probes)
            .chain(watch)
            .chain([systemd])
            .chain(control)
            .chain(metrics)
            .chain(reload)
            .fold(Deadline::Never, Deadline::min)
    }

    fn handle_deadlines(&mut self, now: Now) {
        if let Some(control) = &mut self.control {
            control.expire(now.mono, &self.events);
        }
        self.time_reload(now.mono);
        self.sweep(now);
        self.drive_probes(now);
        for i in 0..self.entries.len() {
            while self.entries[i].task.deadline().is_due(now.mono) {
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
                        let limit = match &self.entries[i].task.spec.kind {
                            nonstop_scheduler::task::Kind::Periodic {
                                timeout: Some(t), ..
                            } => {
                                format!(" of {}", human(*t))
                            }
                            _ => String::new(),
                        };
                        self.entries[i].failure =
                            Some(format!("timeout: the run exceeded its timeout{limit}"));
                        self.signal_task(i, pid, signal);
                    }
                    Due::Kill { pid } => {
                        warn!(task = %name, pid = pid.as_raw(), "still running after the stop grace; sending SIGKILL");
                        self.signal_task(i, pid, Signal::SIGKILL);
                    }
                    Due::Skipped { pid } => {
                        warn!(task = %name, pid = pid.as_raw(), "skipped a run: the previous run is still going");
                    }
                }
            }
        }
    }

    /// Looks at every task on the agenda: starts waiting tasks whose dependencies are
    /// satisfied or, during shutdown, stops tasks whose dependents have stopped. While
    /// starting, it stops early, leaving the rest on the agenda, when a signal is pending, so
    /// that a SIGTERM is taken between two of a thousand starts. While stopping it does not:
    /// a stop only sends a signal, and going back to the loop at each task's SIGCHLD made the
    /// stops one after the other, each waiting for the previous task's exit.
    fn work_agenda(&mut self, now: Now) {
        while let Some(i) = self.agenda.pop() {
            let changed = if self.shutdown.is_some() {
                self.stop_if_due(i, now)
            } else {
                self.start_if_ready(i, now)
            };
            if changed {
                self.agenda.changed(i, &self.order);
                if self.shutdown.is_none() && self.events.signal_pending() {
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
                .map(|&d| {
                    let task = &self.entries[d].task;
                    match task.phase() {
                        Phase::Running { .. } if task.awaits(Readiness::Heartbeat) => {
                            format!("{} (running, no heartbeat yet)", task.spec.name)
                        }
                        Phase::Running { .. } if task.awaits(Readiness::Probe) => {
                            format!("{} (running, no healthy probe yet)", task.spec.name)
                        }
                        _ => task.spec.name.clone(),
                    }
                })
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

    fn start(&mut self, i: usize, now: Now) {
        if let Err(e) = self.make_cgroup(i) {
            let entry = &mut self.entries[i];
            error!(task = %entry.name(), "cannot start {}: {e:#}", entry.task.spec.spawn.program.display());
            let after = entry.task.on_exit(Exit::SpawnFailed, now);
            self.log_after_exit(i, Exit::SpawnFailed, None, after);
            self.check_failure(i, Exit::SpawnFailed, after);
            self.agenda.changed(i, &self.order);
            return;
        }
        let entry = &mut self.entries[i];
        let write = entry.output.1.as_fd();
        let output = spawn::Output {
            stdout: write,
            stderr: write,
        };
        let cgroup = entry.cgroup.as_ref().map(Cgroup::as_fd);
        let armed = entry
            .slot
            .zip(self.watch.as_ref())
            .map(|(s, w)| (s, w.arm(s)));
        match spawn::spawn_prepared(&entry.prepared, output, self.runner, cgroup) {
            Ok(pid) => {
                self.by_pid.insert(pid, i);
                entry.task.on_started(pid, now);
                entry.hung = false;
                entry.failure = None;
                info!(task = %entry.name(), pid = pid.as_raw(), "started");
                entry.probe = entry
                    .task
                    .spec
                    .probe
                    .as_ref()
                    .map(|p| probe::ProbeRun::new(p, now.mono));
                let awaited = !self.order.dependents(i).is_empty();
                if let (Some((slot, registered)), Some(watch)) = (armed, &mut self.watch) {
                    watch.occupy(slot, pid, registered, awaited);
                }
                if entry.cgroup.is_none()
                    && let Some(guard) = &mut self.guard
                {
                    guard.add_group(pid);
                }
            }
            Err(e) => {
                error!(task = %entry.name(), "cannot start {}: {e}", entry.task.spec.spawn.program.display());
                let after = entry.task.on_exit(Exit::SpawnFailed, now);
                self.log_after_exit(i, Exit::SpawnFailed, None, after);
                self.check_failure(i, Exit::SpawnFailed, after);
            }
        }
        // Running (or failed to start): the tasks after it may start (or never will).
        self.agenda.changed(i, &self.order);
    }

    /// Task `i`'s running instance showed `what` (`how`, for the log): if that makes it
    /// ready, the tasks after it may start.
    fn on_ready(&mut self, i: usize, what: Readiness, how: &str) {
        let entry = &mut self.entries[i];
        if entry.task.on_ready(what) {
            info!(task = %entry.name(), "ready: {how}");
            self.agenda.changed(i, &self.order);
        } else {
            debug!(task = %entry.name(), "{how}; not ready yet");
        }
    }

    /// With cgroups, task `i`'s cgroup, made at its first start (between the starts of other
    /// tasks, so that making a hundred overlaps with the tasks already starting) and kept
    /// across restarts, unless it was killed: a killed cgroup is [spent](Cgroup::spent) (a
    /// child cloned into it may be SIGKILLed at once), so the task gets a fresh one.
    fn make_cgroup(&mut self, i: usize) -> anyhow::Result<()> {
        let Containment::Cgroups(pipeline) = &self.containment else {
            return Ok(());
        };
        let entry = &mut self.entries[i];
        let name = format!("{}.task", entry.name());
        match entry.cgroup.take() {
            Some(cgroup) if !cgroup.spent() => {
                entry.cgroup = Some(cgroup);
                return Ok(());
            }
            Some(spent) => {
                // Every process of it is gone (a task starts again only then): remove it and
                // make the same name anew, a new kernel object. Should it still be busy, the
                // fresh one gets a name of its own, and the old one goes with the pipeline's.
                if self.watches.remove(&spent.events().as_raw_fd()).is_some() {
                    let _ = self.events.unwatch(&spent.events());
                }
                let file = spent.path().file_name().map(|n| n.as_bytes().to_vec());
                drop(spent);
                let removed = match file {
                    Some(file) => pipeline.remove_child(&file),
                    None => Ok(()),
                };
                let name = match removed {
                    Ok(()) => name,
                    Err(e) => {
                        self.renewed = self.renewed.wrapping_add(1);
                        let fresh = format!("{name}~{}", self.renewed);
                        warn!(task = %entry.name(), "{e}; starting it in {fresh} instead");
                        fresh
                    }
                };
                debug!(task = %entry.name(), "a fresh cgroup, {name}: the last one was killed");
                entry.cgroup = Some(pipeline.create_child(&name)?);
            }
            None => entry.cgroup = Some(pipeline.create_child(&name)?),
        }
        Ok(())
    }
}

/// `/dev/null` for writing: the output of exec probes.
fn open_devnull() -> std::io::Result<OwnedFd> {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map(Into::into)
}

/// `1.5s`, `250ms`, `2m3s`; from a day on, `3d4h` (a backoff may be 100 years long).
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 86_400 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{}d{}h", s / 86_400, s % 86_400 / 3600)
    }
}

/// `in 1.5s` until `deadline` from `now`, or `never` (beyond what the clock counts).
fn human_until(deadline: Deadline, now: Instant) -> String {
    match deadline.remaining(now) {
        Some(left) => format!("in {}", human(left)),
        None => "never".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_deadlines_read_as_words_up_to_a_hundred_years_and_never() {
        let now = Instant::now();
        for (d, shown) in [
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(123), "2m3s"),
            (Duration::from_secs(3 * 86_400 + 4 * 3600 + 5), "3d4h"),
            (nonstop_core::Duration::MAX.0, "36500d0h"),
            (Duration::MAX, "213503982334601d7h"),
        ] {
            assert_eq!(human(d), shown);
        }
        let max = Deadline::after(now, nonstop_core::Duration::MAX.0);
        assert_eq!(human_until(max, now), "in 36500d0h");
        assert_eq!(human_until(Deadline::Never, now), "never");
    }
}
