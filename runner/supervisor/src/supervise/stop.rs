//! Stopping: tasks at shutdown in the reverse order of `after`, the processes the runner
//! adopted ([`Sweep`]), signals to a task's cgroup or process group, and the guard that stops
//! everything if the runner dies.

use std::time::Instant;

use anyhow::Context;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use nonstop_scheduler::schedule::Now;
use nonstop_scheduler::spawn::guard::Guard;
use tracing::{debug, error, info, warn};

use super::adopted::{self, Step, Sweep};
use super::contain::Containment;
use super::events::Event;
use super::exits::pids;
use super::{Shutdown, Supervisor};
use crate::lock::Lock;

impl Supervisor {
    /// During shutdown: stops task `i` if every task that comes after it has stopped.
    /// Returns whether it changed.
    pub(super) fn stop_if_due(&mut self, i: usize, now: Now) -> bool {
        if !self.order.may_stop(i, |j| &self.entries[j].task) {
            return false;
        }
        if let Some((pid, signal)) = self.entries[i].task.stop(now) {
            info!(task = %self.entries[i].name(), pid = pid.as_raw(), "stopping with {}", signal.as_str());
            self.signal_task(i, pid, signal);
        }
        true
    }

    /// At shutdown, once every task is stopped: stops the processes the runner adopted (a
    /// task's descendant that left its process group, e.g. with `setsid`, and whose parent
    /// died) and waits for running log compressions ([`Sweep`]): SIGTERM (to the process's
    /// group if it leads one), then SIGKILL after the longest `stop.grace` of the pipeline, or
    /// at once on a second SIGTERM/SIGINT.
    pub(super) fn stop_adopted(&mut self) -> anyhow::Result<()> {
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
            let compressors = self.compressions.pids();
            let guard = self.guard.as_ref().map(Guard::pid);
            let adopted: Vec<Pid> = adopted::children()
                .into_iter()
                .filter(|pid| !self.compressions.is_running(*pid) && Some(*pid) != guard)
                .collect();
            let step = sweep.step(Instant::now(), &adopted, &compressors);
            // Compressions that wait start as running ones end, within the grace; from the
            // SIGKILLs on, none starts.
            if sweep.killing() {
                self.close_compressions();
            }
            let until = match step {
                Step::Done => return Ok(()),
                Step::GiveUp(left) => {
                    error!(
                        "giving up on processes a SIGKILL did not end: {}",
                        pids(&left)
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
            for event in self.events.wait(until.remaining(Instant::now()))? {
                match event {
                    Event::Signal(s)
                        if s.signo == nix::libc::SIGTERM || s.signo == nix::libc::SIGINT =>
                    {
                        let repeated = self.shutdown.as_ref().is_some_and(Shutdown::repeated);
                        if repeated && !sweep.killing() {
                            warn!(
                                sender = s.pid,
                                "{} received again: killing adopted processes now",
                                s.name()
                            );
                            sweep.hurry(Instant::now());
                        }
                    }
                    Event::Signal(s) => self.on_signal(s),
                    Event::Readable(fd) => self.on_readable(fd),
                    Event::ClockChanged => {}
                }
            }
        }
    }

    /// Sends `signal` to task `i` (main process `pid`): every process in its cgroup (SIGKILL
    /// through `cgroup.kill`), or its process group; then SIGCONT.
    pub(super) fn signal_task(&self, i: usize, pid: Pid, signal: Signal) {
        let entry = &self.entries[i];
        let result = match &entry.cgroup {
            Some(cgroup) if signal == Signal::SIGKILL => cgroup.kill(),
            Some(cgroup) => cgroup.signal(signal).map(drop),
            None => {
                signal_group(pid, signal);
                Ok(())
            }
        };
        if let Err(e) = result {
            warn!(task = %entry.name(), pid = pid.as_raw(), "cannot send {}: {e}", signal.as_str());
        }
    }

    /// Starts a guard again (the last one died), telling it the process groups of the running
    /// tasks.
    pub(super) fn restart_guard(&mut self) {
        let groups: Vec<Pid> = match self.containment {
            Containment::Groups => self.by_pid.keys().copied().collect(),
            Containment::Cgroups(_) => Vec::new(),
        };
        match start_guard(&self.containment, &self.lock, &groups, self.entries.len()) {
            Ok(guard) => self.guard = Some(guard),
            Err(e) => {
                error!("cannot start a new guard: {e:#}; if this runner dies, its tasks live on");
                self.guard = None;
            }
        }
    }
}

/// Starts the guard for `containment`, holding `lock`.
pub(super) fn start_guard(
    containment: &Containment,
    lock: &Lock,
    groups: &[Pid],
    tasks: usize,
) -> anyhow::Result<Guard> {
    // The guard is forked: lines kept for the log would be written twice.
    crate::log::flush();
    let cgroup = match containment {
        Containment::Cgroups(c) => Some(c),
        Containment::Groups => None,
    };
    let keep = [lock.as_raw_fd()];
    let guard = Guard::start(cgroup, &keep, groups, 2 * tasks).context("cannot start the guard")?;
    debug!(pid = guard.pid().as_raw(), "guard started");
    Ok(guard)
}

/// A message to the guard could not be written: logged the first time.
pub(super) fn guard_unreachable(guard: &mut Guard) {
    if !guard.warned {
        guard.warned = true;
        error!(
            pid = guard.pid().as_raw(),
            "cannot tell the guard about a task (it is stopped, or its pipe is full); if this \
             runner dies, such tasks may live on"
        );
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
