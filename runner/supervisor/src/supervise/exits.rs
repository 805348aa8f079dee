//! Reaping: what a child's exit means (a task's main process, a log compression, the guard,
//! a process the runner adopted), when a task's last process is gone (its cgroup emptied),
//! and the log line that says what follows.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use nonstop_scheduler::schedule::Now;
use nonstop_scheduler::task::{AfterExit, Exit, MainExit, Phase, Task};
use tracing::{debug, error, info, warn};

use super::{Supervisor, human, human_until};

impl Supervisor {
    /// Reaps every exited child: SIGCHLD coalesces, so loop until none is left.
    pub(super) fn reap(&mut self) {
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

    pub(super) fn on_reaped(&mut self, pid: Pid, exit: Exit) {
        if let Some(i) = self.by_pid.remove(&pid) {
            self.on_main_exit(i, pid, exit);
        } else if self.probe_pids.contains_key(&pid) {
            self.on_probe_exit(pid, exit);
        } else if self.is_reload_check(pid) {
            self.on_reload_checked(exit);
        } else if let Some((task, file)) = self.compressions.exited(pid) {
            if !exit.success() {
                warn!("compressing {} failed ({exit})", file.display());
            }
            let log = &mut self.entries[task].log;
            log.set_compressing(None);
            if let Err(e) = log.prune() {
                warn!(
                    "cannot prune old logs of {}: {e}",
                    self.entries[task].name()
                );
            }
            self.start_compressions();
        } else if self.guard.as_ref().is_some_and(|g| g.pid() == pid) {
            warn!(
                pid = pid.as_raw(),
                "the guard died ({exit}); starting another"
            );
            self.restart_guard();
        } else {
            debug!(pid = pid.as_raw(), "reaped an adopted process ({exit})");
        }
    }

    /// Task `i`'s main process `pid` exited. With a cgroup, what it left decides what that
    /// means ([`MainExit`]); without, whatever is left of its process group is killed.
    pub(super) fn on_main_exit(&mut self, i: usize, pid: Pid, exit: Exit) {
        let now = Now::read();
        let entry = &mut self.entries[i];
        if let (Some(slot), Some(watch)) = (entry.slot, &mut self.watch) {
            watch.vacate(slot);
        }
        self.stop_probing(i);
        let entry = &mut self.entries[i];
        let rest = match &entry.cgroup {
            // Usually empty: one read of an open file; listing the rest only if there is one.
            Some(cgroup) if cgroup.populated().unwrap_or(true) => cgroup.pids().unwrap_or_default(),
            Some(_) => Vec::new(),
            None => {
                let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
                if let Some(guard) = &mut self.guard {
                    guard.remove_group(pid);
                }
                Vec::new()
            }
        };
        let ran = ran_for(&entry.task, now);
        let name = entry.task.spec.name.clone();
        match entry.task.on_main_exit(exit, !rest.is_empty(), now) {
            MainExit::Gone(after) => self.ended(i, exit, ran.map(|r| (pid, r)), after),
            MainExit::Daemonized => warn!(
                task = %name, pid = pid.as_raw(),
                "exited with {exit} and left {} running (pids {}): taken for a program that put \
                 itself in the background; the task is up while they run, is stopped with them, \
                 and starts again only once they are gone",
                processes(rest.len()), pids(&rest)
            ),
            MainExit::KillRest => {
                info!(
                    task = %name, pid = pid.as_raw(),
                    "exited with {exit}; killing the {} it left (pids {})",
                    processes(rest.len()), pids(&rest)
                );
                self.signal_task(i, pid, Signal::SIGKILL);
            }
            MainExit::Wait => debug!(
                task = %name, pid = pid.as_raw(),
                "exited with {exit}; waiting for the {} it left (pids {})",
                processes(rest.len()), pids(&rest)
            ),
        }
        if self.entries[i].task.lingering().is_some() {
            self.watch_cgroup(i);
        }
    }

    /// Task `i`'s main process is gone but others of its cgroup are not: watches its
    /// `cgroup.events` until they are. Only then: a task whose last process is its main one
    /// (nearly all, and every stop) costs no epoll registration, wake-up or removal. Looks
    /// once more after registering, so an emptying in between is not missed.
    fn watch_cgroup(&mut self, i: usize) {
        let Some(cgroup) = &self.entries[i].cgroup else {
            return;
        };
        let fd = cgroup.events().as_raw_fd();
        if !self.watches.contains_key(&fd) {
            if let Err(e) = self.events.watch_changes(&cgroup.events()) {
                warn!(task = %self.entries[i].name(), "cannot watch {}: {e}", cgroup.events_path().display());
                return;
            }
            self.watches.insert(fd, i);
        }
        self.on_cgroup_event(i);
    }

    /// A task's `cgroup.events` changed: if it waited for its last processes, they may be
    /// gone.
    pub(super) fn on_cgroup_event(&mut self, i: usize) {
        let entry = &mut self.entries[i];
        let Some(exit) = entry.task.lingering() else {
            return;
        };
        let Some(cgroup) = &entry.cgroup else {
            return;
        };
        match cgroup.populated() {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                warn!(task = %entry.name(), "{e}");
                return;
            }
        }
        if self.watches.remove(&cgroup.events().as_raw_fd()).is_some() {
            let _ = self.events.unwatch(&cgroup.events());
        }
        let entry = &mut self.entries[i];
        let now = Now::read();
        let pid = entry.task.phase().pid();
        let ran = ran_for(&entry.task, now);
        if let Some(after) = entry.task.on_gone(now) {
            self.ended(i, exit, pid.zip(ran), after);
        }
    }

    /// Task `i`'s run is over, every process of it gone: its last output is logged, then what
    /// follows; the tasks next to it in `after` may have something to do. A task stopped for
    /// good gives its cgroup back now, while others may still be stopping.
    fn ended(&mut self, i: usize, exit: Exit, ran: Option<(Pid, Duration)>, after: AfterExit) {
        self.finish_output(i);
        self.log_after_exit(i, exit, ran, after);
        self.check_failure(i, exit, after);
        self.next_failure(i);
        // A reload changed it while it ran: the new definition starts now; or, if an operator
        // was stopping it, takes its place and stays stopped.
        let stopped = after == AfterExit::Stopped && self.shutdown.is_none();
        if (after == AfterExit::Restarted || stopped)
            && !self.entries[i].removed
            && let Some(made) = self.entries[i].replacement.take()
        {
            self.replace(i, *made);
            if stopped {
                self.entries[i].task.stop_by_operator(Now::read());
            }
        }
        // A reload removed it: what it held goes now.
        if after.stopped() && self.entries[i].removed && self.shutdown.is_none() {
            self.forget(i);
        }
        self.agenda.changed(i, &self.order);
        // Stopped for good: at shutdown. (A task an operator stopped may be started again; it
        // keeps its cgroup.)
        if after.stopped()
            && self.shutdown.is_some()
            && let Some(cgroup) = self.entries[i].cgroup.take()
        {
            // The guard removes it on its own CPU while this loop goes on with the other
            // tasks' exits; without a guard, here.
            let name = cgroup.path().file_name().and_then(|n| n.to_str());
            let handed = match (&mut self.guard, name) {
                (Some(guard), Some(name)) => {
                    guard.remove_cgroup(name);
                    true
                }
                _ => false,
            };
            if !handed && let Err(e) = cgroup.remove() {
                warn!(task = %self.entries[i].name(), "{e}");
            }
            // Its descriptors stay open until the runner exits (see `retired`).
            self.retired.push(cgroup);
        }
    }

    pub(super) fn log_after_exit(
        &self,
        i: usize,
        exit: Exit,
        ran: Option<(Pid, Duration)>,
        after: AfterExit,
    ) {
        let name = self.entries[i].name();
        let pid = ran.map_or(0, |(p, _)| p.as_raw());
        let hung = if self.entries[i].hung {
            ", stopped as hung (a failure)"
        } else {
            ""
        };
        let ran = ran.map_or(String::new(), |(_, r)| format!(" after {}{hung}", human(r)));
        // A plugin task's crash is its library's: say which.
        let ran = match (&self.entries[i].task.spec.plugin, exit) {
            (Some(library), Exit::Signal(_)) => format!("{ran} (plugin {})", library.display()),
            _ => ran,
        };
        match after {
            AfterExit::Restart { delay } => {
                warn!(task = %name, pid, "exited with {exit}{ran}; restarting in {}", human(delay));
            }
            AfterExit::Restarted => {
                info!(task = %name, pid, "exited with {exit}{ran}; starting again (restart requested)");
            }
            AfterExit::Done => {
                info!(task = %name, pid, "exited with {exit}{ran}; not restarted (restart policy)");
            }
            AfterExit::CrashLoop { limit } => error!(
                task = %name, pid,
                "exited with {exit}{ran}: more than {} exits within {}; failed, not restarted until started again",
                limit.max, human(limit.within)
            ),
            AfterExit::NextRun { next, skipped } => {
                let wait = human_until(next, Instant::now());
                let skipped = match skipped {
                    Some(0) => String::new(),
                    Some(1) => "; 1 start was skipped while it ran".into(),
                    Some(n) => format!("; {n} starts were skipped while it ran"),
                    None => "; starts were skipped while it ran".into(),
                };
                if exit.success() {
                    info!(task = %name, pid, "run finished with {exit}{ran}; next run {wait}{skipped}");
                } else {
                    warn!(task = %name, pid, "run failed with {exit}{ran}; next run {wait}{skipped}");
                }
            }
            AfterExit::NoMoreRuns => {
                info!(task = %name, pid, "run finished with {exit}{ran}; its schedule has no further runs");
            }
            AfterExit::Stopped => info!(task = %name, pid, "stopped ({exit})"),
            AfterExit::ShuttingDown => info!(
                task = %name, pid,
                "exited with {exit}{ran}; stopped, not started again: the runner is shutting down"
            ),
        }
    }
}

/// How long task `task`'s current process has run, if one runs.
fn ran_for(task: &Task, now: Now) -> Option<Duration> {
    match task.phase() {
        Phase::Running { since, .. } | Phase::Stopping { since, .. } => {
            Some(now.mono.saturating_duration_since(since))
        }
        _ => None,
    }
}

/// "1 process", "3 processes".
fn processes(n: usize) -> String {
    if n == 1 {
        "1 process".into()
    } else {
        format!("{n} processes")
    }
}

/// "12, 13, 14".
pub(super) fn pids(pids: &[Pid]) -> String {
    pids.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
