//! [`Task`]: one task's state machine. Pure: it is told what happened (started, exited, a
//! deadline passed, stop) at a given instant and answers what to do; the runner does the I/O.
//! Every transition is unit-tested without processes.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use nonstop_core::Deadline;
use serde::{Deserialize, Serialize};

use crate::policy::{Backoff, BackoffState, CrashLoop, CrashLoopState, Restart};
use crate::probe::ProbeSpec;
use crate::schedule::{Now, Schedule};
use crate::spawn::SpawnSpec;

/// A task as configured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Its name in the pipeline.
    pub name: String,
    /// How to start it. (The runner keeps only `program` here once it has prepared the rest:
    /// see `spawn::Prepared`.)
    pub spawn: SpawnSpec,
    /// Resident or periodic.
    pub kind: Kind,
    /// Delays between restarts (resident).
    pub backoff: Backoff,
    /// When to give up restarting (resident).
    pub crash_loop: CrashLoop,
    /// How to stop it.
    pub stop: StopSpec,
    /// Tasks that must be up (resident) or have succeeded once (periodic) before it starts.
    pub after: Vec<String>,
    /// Its heartbeat: hung when it does not beat in time.
    pub heartbeat: Option<HeartbeatSpec>,
    /// Its probe: hung when enough probes fail in a row (boxed: most tasks have none).
    pub probe: Option<Box<ProbeSpec>>,
    /// For a plugin task, its library: `spawn` is then the task host (`nonstop plugin-host run
    /// LIBRARY ARGS`), which the runner executes from its own binary.
    pub plugin: Option<std::path::PathBuf>,
    /// For one of the copies `instances: N` makes (named `NAME.I`), the task's own name: an
    /// operator's command for `NAME` acts on every copy.
    pub instance_of: Option<String>,
    /// Tasks to start when this one fails (crash-loop limit, hung, timeout, a failure it is
    /// not restarted after).
    pub on_failure: Vec<String>,
    /// Named in another task's `on_failure`: started by failures (and operators), not with
    /// the pipeline. It begins `Stopped`.
    pub on_demand: bool,
}

/// `heartbeat:` of a task: each instance gets a slot in the pipeline's table, and is hung
/// when it does not beat for `timeout` (or, before its first beat, for `start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatSpec {
    /// Longest time between two beats.
    pub timeout: Duration,
    /// Longest time from the start to the first beat; at least `timeout`.
    pub start: Duration,
}

/// Resident or periodic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Kind {
    /// Runs all the time; restarted per policy when it exits.
    Resident(Restart),
    /// Runs on a schedule; a run still going past `timeout` is stopped.
    Periodic {
        /// When it runs.
        schedule: Schedule,
        /// Longest run.
        timeout: Option<Duration>,
    },
}

/// How a task is stopped: `signal` to its process group, then SIGKILL after `grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopSpec {
    /// The first signal.
    #[serde(with = "crate::wire::signal")]
    pub signal: Signal,
    /// Time between it and SIGKILL.
    pub grace: Duration,
}

impl Default for StopSpec {
    fn default() -> Self {
        StopSpec {
            signal: Signal::SIGTERM,
            grace: Duration::from_secs(5),
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `exit(code)`.
    Code(i32),
    /// Killed by a signal.
    Signal(Signal),
    /// It could not be started at all.
    SpawnFailed,
}

impl Exit {
    /// From a `waitpid` status; `None` for stops and continues.
    pub fn from_wait(status: WaitStatus) -> Option<(Pid, Exit)> {
        match status {
            WaitStatus::Exited(pid, code) => Some((pid, Exit::Code(code))),
            WaitStatus::Signaled(pid, signal, _) => Some((pid, Exit::Signal(signal))),
            _ => None,
        }
    }

    /// Exit status 0.
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "status {code}"),
            Exit::Signal(signal) => write!(f, "signal {}", signal.as_str()),
            Exit::SpawnFailed => f.write_str("failure to start"),
        }
    }
}

/// Why a task is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The runner shuts down.
    Shutdown,
    /// A periodic run exceeded its `timeout`.
    Timeout,
    /// The watchdog found it hung: its exit counts as a failure, whatever its status.
    Hung,
    /// An operator stopped it (`nonstop stop`): it stays stopped until started again.
    Operator,
    /// An operator restarts it (`nonstop restart`): it starts again at once when it is gone,
    /// and the exit counts toward neither the crash-loop limit nor the backoff.
    Restart,
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started yet (waiting for its dependencies).
    Waiting,
    /// A process runs.
    Running {
        /// Its pid (and process group).
        pid: Pid,
        /// When it started.
        since: Instant,
    },
    /// The stop signal was sent; SIGKILL follows at `kill_at` (never once sent).
    Stopping {
        /// Its pid (and process group).
        pid: Pid,
        /// When it started.
        since: Instant,
        /// When SIGKILL is due.
        kill_at: Deadline,
        /// Why.
        reason: StopReason,
    },
    /// A resident task waits to be restarted.
    Backoff {
        /// When.
        until: Deadline,
    },
    /// A periodic task waits for its next run.
    Idle {
        /// When.
        next: Deadline,
    },
    /// A resident task exited and its policy does not restart it.
    Exited(Exit),
    /// Restarted too often: not restarted until started again.
    Failed,
    /// Stopped for shutdown, or by an operator.
    Stopped,
}

impl Phase {
    /// The pid of its process, if one runs.
    pub fn pid(&self) -> Option<Pid> {
        match *self {
            Phase::Running { pid, .. } | Phase::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// No process and none will be started while the runner shuts down.
    pub fn is_final(&self) -> bool {
        matches!(self, Phase::Exited(_) | Phase::Failed | Phase::Stopped)
    }
}

/// What the runner must do after an exit was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// Restart after `delay` (resident).
    Restart {
        /// The backoff delay.
        delay: Duration,
    },
    /// The policy does not restart it (resident).
    Done,
    /// An operator restarts it: start again now.
    Restarted,
    /// Too many exits within the crash-loop window: the task is failed.
    CrashLoop {
        /// The limit that was exceeded.
        limit: CrashLoop,
    },
    /// Next run at `next` (periodic).
    NextRun {
        /// When.
        next: Deadline,
        /// Starts that fell due while the run went on and were skipped: a count for `every`,
        /// `Some(0)` for none; `None` for a cron task that skipped some (not counted).
        skipped: Option<u64>,
    },
    /// The cron expression never matches again (periodic).
    NoMoreRuns,
    /// It was stopped for shutdown or by an operator.
    Stopped,
    /// It ended while the runner shuts down, not by the runner's stop (it exited on its own,
    /// or for an operator's restart, or timed out): stopped all the same, since nothing
    /// starts during a shutdown.
    ShuttingDown,
}

impl AfterExit {
    /// Whether the task is stopped for good: it stays stopped until started again.
    pub fn stopped(self) -> bool {
        matches!(self, AfterExit::Stopped | AfterExit::ShuttingDown)
    }
}

/// What the runner does when a task's main process has exited while other processes of the
/// task (its cgroup) still run. See [`Task::on_main_exit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MainExit {
    /// Nothing of the task is left: the exit is recorded.
    Gone(AfterExit),
    /// It exited 0 and left processes running: a program that daemonized itself (`redis
    /// --daemonize yes`). The task counts as running until they are gone, and is stopped with
    /// them; it is not started again meanwhile, so no second copy piles up.
    Daemonized,
    /// It failed and left processes: kill them; the exit is recorded when they are gone.
    KillRest,
    /// It is being stopped: the rest gets what is left of the grace.
    Wait,
}

/// What a passed deadline asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Start a process now.
    Start,
    /// A periodic run exceeded its timeout: send it the stop signal.
    Timeout {
        /// Its pid.
        pid: Pid,
        /// The signal.
        signal: Signal,
    },
    /// The grace time is over: SIGKILL its process group.
    Kill {
        /// Its pid.
        pid: Pid,
    },
    /// A periodic start came while the previous run was still going: it is skipped, and so
    /// is every start until the run ends (told once per run; the count comes with
    /// [`AfterExit::NextRun`]).
    Skipped {
        /// The pid of the run still going.
        pid: Pid,
    },
}

/// One task and its state.
#[derive(Debug)]
pub struct Task {
    /// The configuration.
    pub spec: TaskSpec,
    phase: Phase,
    backoff: BackoffState,
    crash_loop: CrashLoopState,
    /// Periodic: the scheduled time of the current or last run.
    scheduled: Option<Instant>,
    /// Periodic, while running: the next scheduled start (or, once a start was skipped, the
    /// first one skipped).
    upcoming: Option<Deadline>,
    /// Periodic: whether the current run has overrun a start.
    skipping: bool,
    /// Successful runs (status 0) since the runner started.
    successes: u64,
    /// Processes started since the runner started.
    starts: u64,
    /// The main process exited with this while others of the task still run
    /// ([`Task::on_main_exit`]); recorded when they are gone ([`Task::on_gone`]).
    main_exit: Option<Exit>,
    /// What the running instance still has to show before it is ready ([`Readiness`] bits):
    /// nothing for a task without a heartbeat or probe; its program's first beat, its first
    /// healthy probe, or both ([`Task::on_ready`]).
    pending: u8,
    /// How the last process ended, if one has.
    last_exit: Option<Exit>,
    /// The runner shuts down ([`Task::shut_down`]): nothing of this task starts again.
    closing: bool,
}

/// What an operator's `nonstop start` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// Start a process now ([`Due::Start`]'s meaning); a failed task's crash-loop count and
    /// backoff start over.
    Now,
    /// A process runs already.
    AlreadyRunning,
    /// It was being stopped by an operator: it starts again once it is gone.
    AfterStop,
}

/// What shows that an instance is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Its program's first heartbeat.
    Heartbeat = 1,
    /// Its first healthy probe.
    Probe = 2,
}

impl Task {
    /// A task that has not started.
    pub fn new(spec: TaskSpec) -> Task {
        Task {
            backoff: spec.backoff.start(),
            phase: if spec.on_demand {
                Phase::Stopped
            } else {
                Phase::Waiting
            },
            spec,
            crash_loop: CrashLoopState::default(),
            scheduled: None,
            upcoming: None,
            skipping: false,
            successes: 0,
            starts: 0,
            main_exit: None,
            pending: 0,
            last_exit: None,
            closing: false,
        }
    }

    /// How the last process ended, if one has.
    pub fn last_exit(&self) -> Option<Exit> {
        self.last_exit
    }

    /// Whether the running instance is ready (see [`Task::satisfies_dependents`]).
    pub fn ready(&self) -> bool {
        self.pending == 0
    }

    /// Whether the running instance still waits for `what` to be ready.
    pub fn awaits(&self, what: Readiness) -> bool {
        self.pending & what as u8 != 0
    }

    /// The running instance showed `what` (its program's first heartbeat, its first healthy
    /// probe). Returns whether that made it ready.
    pub fn on_ready(&mut self, what: Readiness) -> bool {
        if !matches!(self.phase, Phase::Running { .. }) || !self.awaits(what) {
            return false;
        }
        self.pending &= !(what as u8);
        self.pending == 0
    }

    /// Where it is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Runs that ended with status 0.
    pub fn successes(&self) -> u64 {
        self.successes
    }

    /// Processes started.
    pub fn starts(&self) -> u64 {
        self.starts
    }

    /// Whether tasks that come `after` this one may start: a resident task is running and
    /// ready (with a heartbeat, once its program has beaten), or has exited successfully and
    /// is not restarted (a one-shot: `restart: never` or `on-failure`); a periodic one has
    /// succeeded at least once.
    pub fn satisfies_dependents(&self) -> bool {
        match self.spec.kind {
            Kind::Resident(_) => match self.phase {
                Phase::Running { .. } => self.ready(),
                Phase::Exited(exit) => exit.success(),
                _ => false,
            },
            Kind::Periodic { .. } => self.successes > 0,
        }
    }

    /// Whether this task will never satisfy its dependents again without being started again
    /// (it failed, or exited unsuccessfully and is not restarted, or was stopped).
    pub fn blocks_dependents(&self) -> bool {
        self.phase.is_final() && !self.satisfies_dependents()
    }

    /// Dependencies are satisfied: leave `Waiting`. Returns [`Due::Start`] if a process
    /// must start now; a periodic task may instead become idle until its first run.
    pub fn activate(&mut self, now: Now) -> Option<Due> {
        if self.phase != Phase::Waiting {
            return None;
        }
        match &self.spec.kind {
            Kind::Resident(_) => Some(Due::Start),
            Kind::Periodic { schedule, .. } => match schedule.first(now) {
                Some(Deadline::At(first)) if first <= now.mono => {
                    self.scheduled = Some(first);
                    Some(Due::Start)
                }
                Some(first) => {
                    self.phase = Phase::Idle { next: first };
                    None
                }
                None => {
                    self.phase = Phase::Exited(Exit::Code(0));
                    None
                }
            },
        }
    }

    /// The next instant this task needs attention ([`Deadline::Never`] for none).
    pub fn deadline(&self) -> Deadline {
        match self.phase {
            Phase::Backoff { until } => until,
            Phase::Idle { next } => next,
            Phase::Stopping { kill_at, .. } => kill_at,
            Phase::Running { since, .. } => match &self.spec.kind {
                Kind::Periodic { timeout, .. } => {
                    let timeout_at = timeout.map_or(Deadline::Never, |t| Deadline::after(since, t));
                    // Once a start is skipped, the others of this run need no wake-up each;
                    // while shutting down, no start is due at all.
                    let upcoming = match self.upcoming {
                        Some(upcoming) if !self.skipping && !self.closing => upcoming,
                        _ => Deadline::Never,
                    };
                    upcoming.min(timeout_at)
                }
                Kind::Resident(_) => Deadline::Never,
            },
            _ => Deadline::Never,
        }
    }

    /// A deadline passed: what to do (at most one thing per call; call again while the
    /// deadline is still past).
    pub fn on_deadline(&mut self, now: Now) -> Option<Due> {
        match self.phase {
            Phase::Backoff { until } if until.is_due(now.mono) => Some(Due::Start),
            Phase::Idle { next } if next.is_due(now.mono) => {
                self.scheduled = next.instant();
                Some(Due::Start)
            }
            Phase::Stopping {
                pid,
                since,
                kill_at,
                reason,
            } if kill_at.is_due(now.mono) => {
                self.phase = Phase::Stopping {
                    pid,
                    since,
                    kill_at: Deadline::Never,
                    reason,
                };
                Some(Due::Kill { pid })
            }
            Phase::Running { pid, since } => {
                let Kind::Periodic { timeout, .. } = &self.spec.kind else {
                    return None;
                };
                if let Some(timeout) = timeout
                    && Deadline::after(since, *timeout).is_due(now.mono)
                {
                    self.phase = Phase::Stopping {
                        pid,
                        since,
                        kill_at: Deadline::after(now.mono, self.spec.stop.grace),
                        reason: StopReason::Timeout,
                    };
                    return Some(Due::Timeout {
                        pid,
                        signal: self.spec.stop.signal,
                    });
                }
                match self.upcoming {
                    Some(upcoming)
                        if upcoming.is_due(now.mono) && !self.skipping && !self.closing =>
                    {
                        self.skipping = true;
                        Some(Due::Skipped { pid })
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The process for [`Due::Start`] started as `pid`.
    pub fn on_started(&mut self, pid: Pid, now: Now) {
        self.starts += 1;
        self.pending = 0;
        if self.spec.heartbeat.is_some() {
            self.pending |= Readiness::Heartbeat as u8;
        }
        if self.spec.probe.is_some() {
            self.pending |= Readiness::Probe as u8;
        }
        self.phase = Phase::Running {
            pid,
            since: now.mono,
        };
        if let Kind::Periodic { schedule, .. } = &self.spec.kind {
            let scheduled = *self.scheduled.get_or_insert(now.mono);
            self.upcoming = schedule.next(scheduled, now);
        }
    }

    /// The main process exited with `exit`; `rest` says whether other processes of the task
    /// still run (its cgroup is populated). Without a cgroup the runner cannot know and passes
    /// `false`. See [`MainExit`].
    pub fn on_main_exit(&mut self, exit: Exit, rest: bool, now: Now) -> MainExit {
        if !rest {
            return MainExit::Gone(self.on_exit(exit, now));
        }
        self.main_exit = Some(exit);
        match self.phase {
            Phase::Stopping { .. } => MainExit::Wait,
            _ if exit.success() => MainExit::Daemonized,
            _ => MainExit::KillRest,
        }
    }

    /// The main process exited earlier ([`Task::on_main_exit`]) and now the last process of
    /// the task is gone: records the exit. `None` if there was nothing to wait for.
    pub fn on_gone(&mut self, now: Now) -> Option<AfterExit> {
        let exit = self.main_exit.take()?;
        Some(self.on_exit(exit, now))
    }

    /// The main process's exit while others of the task still run, if that is the case.
    pub fn lingering(&self) -> Option<Exit> {
        self.main_exit
    }

    /// The process exited (or, with [`Exit::SpawnFailed`], never started).
    pub fn on_exit(&mut self, exit: Exit, now: Now) -> AfterExit {
        let (since, stopping_for) = match self.phase {
            Phase::Running { since, .. } => (since, None),
            Phase::Stopping { since, reason, .. } => (since, Some(reason)),
            _ => (now.mono, None),
        };
        // A hung process stopped by the watchdog failed, even if it exits 0 on SIGTERM.
        let success = exit.success() && stopping_for != Some(StopReason::Hung);
        if success {
            self.successes += 1;
        }
        self.last_exit = Some(exit);
        match stopping_for {
            Some(StopReason::Shutdown | StopReason::Operator) => {
                self.phase = Phase::Stopped;
                return AfterExit::Stopped;
            }
            // Whatever else ended it (its own exit, a restart or a timeout asked before), nothing
            // starts during a shutdown.
            _ if self.closing => {
                self.skipping = false;
                self.upcoming = None;
                self.phase = Phase::Stopped;
                return AfterExit::ShuttingDown;
            }
            Some(StopReason::Restart) => {
                self.skipping = false;
                self.phase = Phase::Backoff {
                    until: Deadline::At(now.mono),
                };
                return AfterExit::Restarted;
            }
            _ => {}
        }
        match &self.spec.kind {
            Kind::Resident(restart) => {
                if !restart.restarts(success) {
                    self.phase = Phase::Exited(exit);
                    return AfterExit::Done;
                }
                if self
                    .spec
                    .crash_loop
                    .record_exit(&mut self.crash_loop, now.mono)
                {
                    self.phase = Phase::Failed;
                    return AfterExit::CrashLoop {
                        limit: self.spec.crash_loop,
                    };
                }
                let ran = now.mono.saturating_duration_since(since);
                let delay = self.spec.backoff.delay(&mut self.backoff, ran);
                self.phase = Phase::Backoff {
                    until: Deadline::after(now.mono, delay),
                };
                AfterExit::Restart { delay }
            }
            Kind::Periodic { schedule, .. } => {
                self.skipping = false;
                let (next, skipped) = match self.upcoming.take() {
                    // Overran: the first start after now; the ones between were skipped.
                    Some(Deadline::At(upcoming)) if upcoming <= now.mono => {
                        (schedule.next(upcoming, now), schedule.missed(upcoming, now))
                    }
                    Some(upcoming) => (Some(upcoming), Some(0)),
                    None => {
                        let scheduled = self.scheduled.unwrap_or(now.mono);
                        (schedule.next(scheduled, now), Some(0))
                    }
                };
                match next {
                    Some(next) => {
                        self.phase = Phase::Idle { next };
                        AfterExit::NextRun { next, skipped }
                    }
                    None => {
                        self.phase = Phase::Exited(exit);
                        AfterExit::NoMoreRuns
                    }
                }
            }
        }
    }

    /// The runner must stop at once (a second SIGTERM or SIGINT): returns the pid whose process
    /// group gets SIGKILL now, without the grace, if a process runs. A task without a process
    /// is stopped at once.
    pub fn kill_now(&mut self) -> Option<Pid> {
        match self.phase {
            Phase::Running { pid, since } | Phase::Stopping { pid, since, .. } => {
                self.phase = Phase::Stopping {
                    pid,
                    since,
                    kill_at: Deadline::Never,
                    reason: StopReason::Shutdown,
                };
                Some(pid)
            }
            Phase::Exited(_) | Phase::Failed | Phase::Stopped => None,
            _ => {
                self.phase = Phase::Stopped;
                None
            }
        }
    }

    /// The wall clock was set: a cron task's next start, computed on the old clock, is computed
    /// again. `every` tasks live on the monotonic clock and are not affected.
    pub fn wall_clock_changed(&mut self, now: Now) {
        let Kind::Periodic {
            schedule: schedule @ Schedule::Cron(_),
            ..
        } = &self.spec.kind
        else {
            return;
        };
        let next = schedule.first(now);
        match self.phase {
            Phase::Idle { .. } => {
                self.phase = match next {
                    Some(next) => Phase::Idle { next },
                    None => Phase::Exited(Exit::Code(0)),
                };
            }
            Phase::Running { .. } | Phase::Stopping { .. } => self.upcoming = next,
            _ => {}
        }
    }

    /// The watchdog found the running instance hung: returns the pid to send the stop signal
    /// to (SIGKILL follows after the grace), if a process runs and is not already stopping.
    /// Its exit will count as a failure.
    pub fn on_hung(&mut self, now: Now) -> Option<(Pid, Signal)> {
        let Phase::Running { pid, since } = self.phase else {
            return None;
        };
        self.phase = Phase::Stopping {
            pid,
            since,
            kill_at: Deadline::after(now.mono, self.spec.stop.grace),
            reason: StopReason::Hung,
        };
        Some((pid, self.spec.stop.signal))
    }

    /// An operator's `nonstop start`: a task with no process starts now, whatever its phase
    /// (failed, exited, stopped, idle until its next run, in backoff, or waiting for the tasks
    /// it comes after: an operator's start does not wait for them). A failed task's crash-loop
    /// count and backoff start over.
    pub fn start(&mut self) -> Started {
        match self.phase {
            Phase::Running { .. } => Started::AlreadyRunning,
            Phase::Stopping {
                pid,
                since,
                kill_at,
                reason,
            } => {
                if reason == StopReason::Operator {
                    self.phase = Phase::Stopping {
                        pid,
                        since,
                        kill_at,
                        reason: StopReason::Restart,
                    };
                    Started::AfterStop
                } else {
                    Started::AlreadyRunning
                }
            }
            _ => {
                self.crash_loop = CrashLoopState::default();
                self.backoff = self.spec.backoff.start();
                Started::Now
            }
        }
    }

    /// An operator's `nonstop stop`: returns the pid to send the stop signal to (SIGKILL
    /// follows after the grace), if a process runs and is not already stopping. The task is
    /// stopped until started again; one without a process is stopped at once.
    pub fn stop_by_operator(&mut self, now: Now) -> Option<(Pid, Signal)> {
        self.stop_for(now, StopReason::Operator)
    }

    /// An operator's `nonstop restart`: stops the running process (returned, as for
    /// [`Task::stop_by_operator`]) and starts the task again once it is gone. A task with no
    /// process is not touched here: the runner starts it ([`Task::start`]).
    pub fn restart(&mut self, now: Now) -> Option<(Pid, Signal)> {
        self.crash_loop = CrashLoopState::default();
        self.backoff = self.spec.backoff.start();
        self.stop_for(now, StopReason::Restart)
    }

    /// Stops a running process for `reason`; a process already stopping keeps its kill
    /// deadline and takes the new reason.
    fn stop_for(&mut self, now: Now, reason: StopReason) -> Option<(Pid, Signal)> {
        match self.phase {
            Phase::Running { pid, since } => {
                self.phase = Phase::Stopping {
                    pid,
                    since,
                    kill_at: Deadline::after(now.mono, self.spec.stop.grace),
                    reason,
                };
                Some((pid, self.spec.stop.signal))
            }
            Phase::Stopping {
                pid,
                since,
                kill_at,
                ..
            } => {
                self.phase = Phase::Stopping {
                    pid,
                    since,
                    kill_at,
                    reason,
                };
                None
            }
            _ if reason == StopReason::Restart => None,
            _ => {
                self.phase = Phase::Stopped;
                None
            }
        }
    }

    /// The runner begins to shut down: nothing of this task starts again. One without a
    /// process (waiting, in backoff, idle until its next run) is stopped now; one with a
    /// process is stopped in its turn ([`Task::stop`]), and should it end before, on its own
    /// or for a restart, it is stopped all the same ([`AfterExit::ShuttingDown`]). A task that
    /// exited or failed keeps its phase.
    pub fn shut_down(&mut self) {
        self.closing = true;
        if matches!(
            self.phase,
            Phase::Waiting | Phase::Backoff { .. } | Phase::Idle { .. }
        ) {
            self.phase = Phase::Stopped;
        }
    }

    /// The runner shuts down: returns the pid to send the stop signal to, if a process runs.
    /// A task without a process is stopped at once (one that exited or failed keeps its
    /// phase); one already stopping (a timeout) keeps its kill deadline but is not restarted.
    pub fn stop(&mut self, now: Now) -> Option<(Pid, Signal)> {
        if matches!(self.phase, Phase::Exited(_) | Phase::Failed) {
            return None;
        }
        self.stop_for(now, StopReason::Shutdown)
    }
}

#[cfg(test)]
mod tests;
