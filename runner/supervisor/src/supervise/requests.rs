//! What the control socket's requests do: `status` (every task, as JSON), `start`, `stop` and
//! `restart` of named tasks, and `shutdown`. The answers' schema is docs/control.md's; its
//! version is [`SCHEMA`], raised whenever a field changes meaning or goes away (new fields
//! do not raise it).

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use nonstop_scheduler::schedule::Now;
use nonstop_scheduler::task::{Exit, Kind, Phase, Readiness, Started};
use tracing::info;

use super::control::error;
use super::json::Object;
use super::{Entry, Supervisor};

/// The version of the answers' schema.
pub(super) const SCHEMA: u32 = 1;

/// The wall-clock time of the monotonic instant `at`, seen from `now` (the last or first time
/// a timestamp holds, when it is beyond them: a timestamp ends in the year 9999).
pub(super) fn wall_of(now: Now, at: Instant) -> jiff::Timestamp {
    let signed =
        |d: Duration| jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    if at <= now.mono {
        now.wall
            .checked_sub(signed(now.mono - at))
            .unwrap_or(jiff::Timestamp::MIN)
    } else {
        now.wall
            .checked_add(signed(at - now.mono))
            .unwrap_or(jiff::Timestamp::MAX)
    }
}

pub(super) fn time(at: jiff::Timestamp) -> String {
    format!("{at:.3}")
}

/// A phase's word: the `state` of `nonstop status` and of SIGUSR1's lines.
pub(super) fn state_word(phase: Phase) -> &'static str {
    match phase {
        Phase::Waiting => "waiting",
        Phase::Running { .. } => "running",
        Phase::Stopping { .. } => "stopping",
        Phase::Backoff { .. } => "backoff",
        Phase::Idle { .. } => "idle",
        Phase::Exited(_) => "exited",
        Phase::Failed => "failed",
        Phase::Stopped => "stopped",
    }
}

fn exit_json(out: &mut String, exit: Option<Exit>) {
    match exit {
        None => out.push_str("null"),
        Some(Exit::Code(code)) => Object::new(out).num("code", code).end(),
        Some(Exit::Signal(signal)) => Object::new(out).str("signal", signal.as_str()).end(),
        Some(Exit::SpawnFailed) => Object::new(out).bool("spawn_failed", true).end(),
    }
}

impl Supervisor {
    /// Answers one request line from client `pid` on connection `fd`; `None` when the answer
    /// comes later (a reload's, when it is over).
    pub(super) fn handle_request(&mut self, line: &str, pid: i32, fd: RawFd) -> Option<Vec<u8>> {
        let mut words = line.split_whitespace();
        let Some(verb) = words.next() else {
            return Some(error("empty request"));
        };
        let names: Vec<&str> = words.collect();
        if verb == "reload" {
            info!(client = pid, "reload requested");
            // Its answer comes when the check is over, which may take up to its limit.
            if let Some(control) = &mut self.control {
                control.allow(fd, super::reload::CHECK_TIME + super::control::CLIENT_TIME);
            }
            self.begin_reload(Some(fd));
            return None;
        }
        Some(match verb {
            "status" => self.status(),
            "start" | "stop" | "restart" => self.act(verb, &names, pid),
            "shutdown" => {
                if self.shutdown.is_none() {
                    info!(client = pid, "shutdown requested: stopping every task");
                    self.begin_shutdown("shutdown requested");
                }
                ok(|_| {})
            }
            "metrics" => ok(|o| {
                o.str("text", &self.metrics_text());
            }),
            other => error(&format!(
                "unknown request \"{other}\": expected status, start, stop, restart, reload or \
                 shutdown"
            )),
        })
    }

    /// `start|stop|restart NAME...`: every name must be a task, or nothing is done.
    fn act(&mut self, verb: &str, names: &[&str], pid: i32) -> Vec<u8> {
        if names.is_empty() {
            return error(&format!("{verb} needs at least one task name"));
        }
        if self.shutdown.is_some() {
            return error("the runner is shutting down");
        }
        let mut which = Vec::with_capacity(names.len());
        for name in names {
            match self.resolve(name) {
                found if !found.is_empty() => which.extend(found),
                _ => return error(&format!("no task named \"{name}\"")),
            }
        }
        let now = Now::read();
        let mut results = Vec::with_capacity(which.len());
        for i in which {
            let result = match verb {
                "start" => self.operator_start(i, now, pid),
                "stop" => self.operator_stop(i, now, pid),
                _ => self.operator_restart(i, now, pid),
            };
            results.push((i, result));
        }
        ok(|o| {
            o.with("tasks", |out| {
                out.push('[');
                for (n, (i, result)) in results.iter().enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    Object::new(out)
                        .str("name", self.entries[*i].name())
                        .str("result", result)
                        .end();
                }
                out.push(']');
            });
        })
    }

    fn operator_start(&mut self, i: usize, now: Now, pid: i32) -> &'static str {
        let entry = &mut self.entries[i];
        match entry.task.start() {
            Started::AlreadyRunning => "already running",
            Started::AfterStop => {
                info!(task = %entry.name(), client = pid, "start requested: starting again once stopped");
                "starting once stopped"
            }
            Started::Now => {
                info!(task = %entry.name(), client = pid, "start requested");
                entry.blocked_logged = false;
                entry.waiting_logged = false;
                self.start(i, now);
                "started"
            }
        }
    }

    fn operator_stop(&mut self, i: usize, now: Now, pid: i32) -> &'static str {
        let entry = &mut self.entries[i];
        let was = entry.task.phase();
        match entry.task.stop_by_operator(now) {
            Some((main, signal)) => {
                info!(task = %entry.name(), client = pid, pid = main.as_raw(), "stop requested: sending {}", signal.as_str());
                self.signal_task(i, main, signal);
                "stopping"
            }
            None if matches!(was, Phase::Stopping { .. }) => "stopping",
            None => {
                if was != Phase::Stopped {
                    info!(task = %entry.name(), client = pid, "stop requested: stopped (no process ran)");
                    self.agenda.changed(i, &self.order);
                }
                "stopped"
            }
        }
    }

    fn operator_restart(&mut self, i: usize, now: Now, pid: i32) -> &'static str {
        let entry = &mut self.entries[i];
        match entry.task.restart(now) {
            Some((main, signal)) => {
                info!(task = %entry.name(), client = pid, pid = main.as_raw(), "restart requested: sending {}", signal.as_str());
                self.signal_task(i, main, signal);
                "restarting"
            }
            None if matches!(entry.task.phase(), Phase::Stopping { .. }) => "restarting",
            None => self.operator_start(i, now, pid),
        }
    }

    /// Starts the shutdown (SIGTERM's, a control request's; logged by the caller): every task
    /// is stopped in order.
    pub(super) fn begin_shutdown(&mut self, why: &str) {
        // A reload's check has nothing left to do: its end is answered "shutting down".
        if let Some(pid) = self.reload_check_pid() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        self.notifier
            .stopping(&format!("stopping {} tasks ({why})", self.entries.len()));
        self.shutdown = Some(super::Shutdown {
            since: Instant::now(),
            hurry: false,
        });
        // Nothing starts from now: a task that ends before its turn to stop is stopped too.
        for entry in &mut self.entries {
            entry.task.shut_down();
        }
        self.agenda.push_all();
    }

    /// Whether task `i` counts as healthy for `nonstop health`: a resident task is running
    /// and ready, its heartbeat on time and its probe not failing; one that exited with
    /// success and is not restarted (a one-shot) is done, which is healthy too. Periodic
    /// tasks do not count.
    pub(super) fn healthy(&self, entry: &Entry, heartbeat: Option<(&str, Duration)>) -> bool {
        let Kind::Resident(restart) = entry.task.spec.kind else {
            return true;
        };
        // An `on_failure` task is stopped until a failure starts it.
        if entry.task.spec.on_demand {
            return true;
        }
        match entry.task.phase() {
            Phase::Running { .. } => {
                entry.task.ready()
                    && heartbeat.is_none_or(|(state, _)| state == "ok")
                    && entry.probe.as_ref().is_none_or(|p| p.failed() == 0)
            }
            Phase::Exited(exit) => exit.success() && !restart.restarts(true),
            _ => false,
        }
    }

    /// Task `entry`'s heartbeat, while an instance runs: `starting` (no beat yet), `ok` or
    /// `late`, and the time since its last beat.
    pub(super) fn heartbeat_of(&self, entry: &Entry) -> Option<(&'static str, Duration)> {
        // No process, no heartbeat: a task that failed before its first beat still awaits
        // one (its readiness is reset only at the next start), which is not "starting".
        entry.task.phase().pid()?;
        match (&self.watch, entry.slot) {
            (Some(_), Some(_)) if entry.task.awaits(Readiness::Heartbeat) => {
                Some(("starting", Duration::ZERO))
            }
            (Some(watch), Some(slot)) if entry.task.phase().pid().is_some() => {
                watch.beat_state(slot)
            }
            _ => None,
        }
    }

    /// `status`: the runner and every task.
    fn status(&self) -> Vec<u8> {
        let now = Now::read();
        let mut tasks = String::with_capacity(300 * self.entries.len());
        let mut healthy = true;
        tasks.push('[');
        for (n, entry) in self.entries.iter().filter(|e| !e.removed).enumerate() {
            if n > 0 {
                tasks.push(',');
            }
            let heartbeat = self.heartbeat_of(entry);
            let task_healthy = self.healthy(entry, heartbeat);
            healthy &= task_healthy;
            self.task_status(&mut tasks, entry, now, heartbeat, task_healthy);
        }
        tasks.push(']');
        let uptime = now.mono.saturating_duration_since(self.started);
        ok(|o| {
            o.with("runner", |out| {
                Object::new(out)
                    .num("pid", self.runner.as_raw())
                    .str("pipeline", &self.shown)
                    .str("since", &time(wall_of(now, self.started)))
                    .secs("uptime", uptime)
                    .path("logs", &self.globals.logs.dir)
                    .str("containment", self.containment.word())
                    .bool("shutting_down", self.shutdown.is_some())
                    .end();
            })
            .bool("healthy", healthy)
            .raw("tasks", &tasks);
        })
    }

    fn task_status(
        &self,
        out: &mut String,
        entry: &Entry,
        now: Now,
        heartbeat: Option<(&str, Duration)>,
        healthy: bool,
    ) {
        let task = &entry.task;
        let phase = task.phase();
        let mut o = Object::new(out);
        o.str("name", entry.name())
            .str(
                "kind",
                match task.spec.kind {
                    Kind::Resident(_) => "resident",
                    Kind::Periodic { .. } => "periodic",
                },
            )
            .str("state", state_word(phase));
        let since = match phase {
            Phase::Running { since, .. } | Phase::Stopping { since, .. } => Some(since),
            _ => None,
        };
        o.opt_num("pid", phase.pid().map(|p| p.as_raw()))
            .opt_str("since", since.map(|s| time(wall_of(now, s))).as_deref());
        match since {
            Some(s) => o.secs("uptime", now.mono.saturating_duration_since(s)),
            None => o.raw("uptime", "null"),
        };
        o.num("starts", task.starts())
            .num("restarts", task.starts().saturating_sub(1))
            .with("last_exit", |out| exit_json(out, task.last_exit()));
        // Never (beyond what the clock counts) is no time: null.
        let next = match phase {
            Phase::Idle { next } => next.instant(),
            Phase::Backoff { until } => until.instant(),
            _ => None,
        };
        o.opt_str("next_start", next.map(|n| time(wall_of(now, n))).as_deref())
            .bool("ready", phase.pid().is_some() && task.ready())
            .bool("healthy", healthy);
        match heartbeat {
            Some((state, age)) => o.with("heartbeat", |out| {
                Object::new(out).str("state", state).secs("age", age).end();
            }),
            None => o.raw("heartbeat", "null"),
        };
        match &entry.probe {
            Some(probe) => o.with("probe", |out| {
                let state = if !probe.healthy_once() {
                    "starting"
                } else if probe.failed() == 0 {
                    "healthy"
                } else {
                    "failing"
                };
                Object::new(out)
                    .str("state", state)
                    .num("failures", probe.failed())
                    .end();
            }),
            None => o.raw("probe", "null"),
        };
        o.path("log", entry.log.path());
        o.end();
    }
}

/// A success: `{"schema":1,"ok":true, ...}` with what `fill` adds, and a newline.
fn ok(fill: impl FnOnce(&mut Object<'_>)) -> Vec<u8> {
    let mut out = String::new();
    let mut o = Object::new(&mut out);
    o.num("schema", SCHEMA).bool("ok", true);
    fill(&mut o);
    o.end();
    out.push('\n');
    out.into_bytes()
}
