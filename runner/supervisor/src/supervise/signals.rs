//! What each signal means to the runner: TERM and INT stop (a repeat within a second is the
//! same request), HUP reloads the pipeline, USR1 logs the status of every task, USR2 reopens
//! the task logs, CHLD reaps; the rest are logged and ignored. `events::SIGNALS` lists the
//! signals the runner takes.

use std::time::Instant;

use nix::sys::signal::Signal;
use nonstop_core::Deadline;
use nonstop_scheduler::schedule::Now;
use nonstop_scheduler::task::Phase;
use tracing::{error, info, warn};

use super::events::Received;
use super::requests::{state_word, wall_of};
use super::{REPEAT, Supervisor, human, human_until};

impl Supervisor {
    /// Every signal the runner takes (`events::SIGNALS`) has a meaning: TERM and INT stop,
    /// HUP reloads the pipeline, USR1 logs each task's status, USR2 reopens the task logs,
    /// CHLD reaps; the others are logged and ignored.
    pub(super) fn on_signal(&mut self, signal: Received) {
        use nix::libc::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
        match signal.signo {
            SIGCHLD => self.reap(),
            SIGTERM | SIGINT => self.on_stop_request(signal),
            SIGHUP => {
                info!(sender = signal.pid, "SIGHUP received: reloading");
                self.begin_reload(None);
            }
            SIGUSR1 => self.log_status(),
            SIGUSR2 => self.reopen_logs(),
            _ => info!(
                sender = signal.pid,
                "{} received: ignored (nonstop gives it no meaning)",
                signal.name()
            ),
        }
    }

    /// SIGTERM or SIGINT: the first starts the shutdown; one that comes at least
    /// [`REPEAT`] later ends the graces (Ctrl-C twice); one within [`REPEAT`] of the first is
    /// the same request sent twice (`timeout` signals both the runner and its process group).
    pub(super) fn on_stop_request(&mut self, signal: Received) {
        let name = signal.name();
        match &mut self.shutdown {
            None => {
                info!(sender = signal.pid, "{name} received: stopping every task");
                self.begin_shutdown(&name);
            }
            Some(shutdown) if !shutdown.repeated() || shutdown.hurry => {
                info!(
                    sender = signal.pid,
                    "{name} received again within {}: the same request; the graces still apply",
                    human(REPEAT)
                );
            }
            Some(shutdown) => {
                // Asked again while stopping: no more grace, no more order.
                warn!(
                    sender = signal.pid,
                    "{name} received again: killing every task now"
                );
                shutdown.hurry = true;
                for i in 0..self.entries.len() {
                    if let Some(pid) = self.entries[i].task.kill_now() {
                        self.signal_task(i, pid, Signal::SIGKILL);
                    }
                }
            }
        }
    }

    /// SIGUSR1: one line per task, `status task=NAME state=STATE` and what goes with the
    /// state: `pid` and `since` (UTC) for a process, `starts`, and a few words. The states are
    /// waiting, running, stopping, backoff, idle, exited, failed, stopped.
    pub(super) fn log_status(&self) {
        let now = Now::read();
        info!(
            tasks = self.live(),
            containment = %self.containment.word(),
            "status of every task follows"
        );
        let wall = |at: Instant| format!("{:.0}", wall_of(now, at));
        let until = |at: Deadline| human_until(at, now.mono);
        for entry in self.entries.iter().filter(|e| !e.removed) {
            let task = &entry.task;
            let (name, starts) = (entry.name(), task.starts());
            let state = state_word(task.phase());
            let (process, detail) = match task.phase() {
                Phase::Running { pid, since } => (
                    Some((pid, since)),
                    task.lingering()
                        .map(|exit| format!("its main process exited ({exit}); others of it run"))
                        .unwrap_or_default(),
                ),
                Phase::Stopping { pid, since, .. } => (Some((pid, since)), String::new()),
                Phase::Backoff { until: at } => (None, format!("restarting {}", until(at))),
                Phase::Idle { next } => (None, format!("next run {}", until(next))),
                Phase::Exited(exit) => (None, format!("{exit}; not restarted")),
                Phase::Failed => (None, "crash loop; not restarted until started again".into()),
                Phase::Waiting | Phase::Stopped => (None, String::new()),
            };
            match (process, detail.is_empty()) {
                (Some((pid, since)), true) => {
                    info!(task = %name, state = %state, pid = pid.as_raw(), since = %wall(since), starts, "status")
                }
                (Some((pid, since)), false) => {
                    info!(task = %name, state = %state, pid = pid.as_raw(), since = %wall(since), starts, note = detail.as_str(), "status")
                }
                (None, true) => info!(task = %name, state = %state, starts, "status"),
                (None, false) => {
                    info!(task = %name, state = %state, starts, note = detail.as_str(), "status")
                }
            }
        }
    }

    /// SIGUSR2: every task's log file is opened again by its name, so that a log moved away
    /// (by logrotate, say) is followed by a new one.
    pub(super) fn reopen_logs(&mut self) {
        let mut reopened = 0;
        for entry in &mut self.entries {
            match entry.log.reopen() {
                Ok(()) => reopened += 1,
                Err(e) => {
                    error!(task = %entry.task.spec.name, "cannot reopen {}: {e}", entry.log.path().display())
                }
            }
        }
        // The runner's own log (run -d) too: what is written from now on goes to the file
        // that has its name (logrotate without copytruncate: move it, then signal).
        let own = match &self.own_log {
            None => String::new(),
            Some(path) => match reopen_own_log(path) {
                Ok(()) => format!(" and {}", path.display()),
                Err(e) => {
                    error!("cannot reopen {}: {e}", path.display());
                    String::new()
                }
            },
        };
        info!("SIGUSR2 received: reopened {reopened} task logs{own}");
    }
}

/// Opens `path` (appending, creating it) as this process's stdout and stderr.
fn reopen_own_log(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    crate::log::flush();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(nix::libc::O_CLOEXEC)
        .open(path)?;
    nix::unistd::dup2_stdout(&file)?;
    nix::unistd::dup2_stderr(&file)?;
    Ok(())
}
