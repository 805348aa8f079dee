//! The runner's children as the kernel sees them: the tasks it started, and the processes it
//! adopted as a child subreaper (a task's descendant whose parent died, such as a daemon that
//! called `setsid` and so left its task's process group). At shutdown, once every task is
//! stopped, what is left here is stopped too ([`Sweep`], a pure decision), so nothing the
//! runner started outlives it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use nonstop_core::Deadline;

/// How long the runner waits for adopted processes to die after SIGKILL before it gives up.
pub const GIVE_UP: Duration = Duration::from_secs(5);

/// Stopping the adopted processes at shutdown, and waiting for running log compressions:
/// SIGTERM to each adopted process, SIGKILL to everything left after the grace (at once
/// after [`Sweep::hurry`]), and giving up, naming them, on processes that a SIGKILL does not
/// end within [`GIVE_UP`] (stuck in the kernel). Compressions are not interrupted within the
/// grace.
#[derive(Debug)]
pub struct Sweep {
    kill_at: Deadline,
    killing: bool,
    signalled: HashSet<Pid>,
}

/// What to do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing is left.
    Done,
    /// Send these signals (SIGCONT follows a SIGTERM), then wait for an exit until `until`.
    /// `escalated` is true the first time SIGKILL replaces SIGTERM for adopted processes.
    Signal {
        /// Each process and its signal.
        signals: Vec<(Pid, Signal)>,
        /// The next decision is due then, if nothing exits before.
        until: Deadline,
        /// The grace just ended with adopted processes left.
        escalated: bool,
    },
    /// These did not end within [`GIVE_UP`] of SIGKILL.
    GiveUp(Vec<Pid>),
}

impl Sweep {
    /// A sweep starting at `now`, SIGKILL due after `grace`.
    pub fn new(now: Instant, grace: Duration) -> Sweep {
        Sweep {
            kill_at: Deadline::after(now, grace),
            killing: false,
            signalled: HashSet::new(),
        }
    }

    /// No more grace (a second SIGTERM): SIGKILL from `now`.
    pub fn hurry(&mut self, now: Instant) {
        if !self.killing {
            self.kill_at = self.kill_at.min(Deadline::At(now));
        }
    }

    /// Whether SIGKILL has replaced SIGTERM.
    pub fn killing(&self) -> bool {
        self.killing
    }

    /// The next step, given the adopted processes and the compressions still running.
    pub fn step(&mut self, now: Instant, adopted: &[Pid], compressors: &[Pid]) -> Step {
        if adopted.is_empty() && compressors.is_empty() {
            return Step::Done;
        }
        let mut escalated = false;
        if !self.killing && self.kill_at.is_due(now) {
            self.killing = true;
            self.signalled.clear();
            escalated = !adopted.is_empty();
        }
        if self.killing && (self.kill_at + GIVE_UP).is_due(now) {
            return Step::GiveUp(adopted.iter().chain(compressors).copied().collect());
        }
        let mut signals = Vec::new();
        let signal = if self.killing {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        };
        for &pid in adopted {
            if self.signalled.insert(pid) {
                signals.push((pid, signal));
            }
        }
        if self.killing {
            for &pid in compressors {
                if self.signalled.insert(pid) {
                    signals.push((pid, Signal::SIGKILL));
                }
            }
        }
        let until = if self.killing {
            self.kill_at + GIVE_UP
        } else {
            self.kill_at
        };
        Step::Signal {
            signals,
            until,
            escalated,
        }
    }
}

/// The live (not zombie) children of this process. From `/proc/self/task/TID/children` when
/// the kernel has it (`CONFIG_PROC_CHILDREN`, one small read), else from every
/// `/proc/PID/stat`.
pub fn children() -> Vec<Pid> {
    let me = nix::unistd::getpid();
    let listed = std::fs::read_dir("/proc/self/task").ok().and_then(|tasks| {
        let mut pids = Vec::new();
        for task in tasks.flatten() {
            let text = std::fs::read_to_string(task.path().join("children")).ok()?;
            pids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
        Some(pids)
    });
    let candidates = match listed {
        Some(pids) => pids,
        None => all_pids(),
    };
    candidates
        .into_iter()
        .filter(|&pid| matches!(parent_and_state(pid), Some((ppid, state)) if ppid == me.as_raw() && state != 'Z'))
        .map(Pid::from_raw)
        .collect()
}

fn all_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The parent and the state letter of `pid`, from `/proc/PID/stat`.
fn parent_and_state(pid: i32) -> Option<(i32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn pid(n: i32) -> Pid {
        Pid::from_raw(n)
    }

    #[test]
    fn a_sweep_terms_once_kills_after_the_grace_then_gives_up() {
        let t0 = Instant::now();
        let mut sweep = Sweep::new(t0, 100 * MS);
        let step = sweep.step(t0, &[pid(10), pid(11)], &[pid(20)]);
        assert_eq!(
            step,
            Step::Signal {
                signals: vec![(pid(10), Signal::SIGTERM), (pid(11), Signal::SIGTERM)],
                until: Deadline::At(t0 + 100 * MS),
                escalated: false
            }
        );
        // Nothing twice; a newly adopted process gets its SIGTERM.
        let step = sweep.step(t0 + 10 * MS, &[pid(10), pid(12)], &[pid(20)]);
        assert_eq!(
            step,
            Step::Signal {
                signals: vec![(pid(12), Signal::SIGTERM)],
                until: Deadline::At(t0 + 100 * MS),
                escalated: false
            }
        );
        // The grace is over: SIGKILL to what is left, compressions included.
        let step = sweep.step(t0 + 100 * MS, &[pid(12)], &[pid(20)]);
        assert_eq!(
            step,
            Step::Signal {
                signals: vec![(pid(12), Signal::SIGKILL), (pid(20), Signal::SIGKILL)],
                until: Deadline::At(t0 + 100 * MS + GIVE_UP),
                escalated: true
            }
        );
        assert!(sweep.killing());
        assert_eq!(
            sweep.step(t0 + 100 * MS + GIVE_UP, &[pid(12)], &[]),
            Step::GiveUp(vec![pid(12)])
        );
        assert_eq!(sweep.step(t0 + 200 * MS + GIVE_UP, &[], &[]), Step::Done);
    }

    #[test]
    fn compressions_are_waited_for_and_hurry_ends_the_grace() {
        let t0 = Instant::now();
        let mut sweep = Sweep::new(t0, Duration::from_secs(5));
        // Only a compression: nothing to signal within the grace.
        assert_eq!(
            sweep.step(t0, &[], &[pid(20)]),
            Step::Signal {
                signals: vec![],
                until: Deadline::At(t0 + Duration::from_secs(5)),
                escalated: false
            }
        );
        sweep.hurry(t0 + 10 * MS);
        assert_eq!(
            sweep.step(t0 + 10 * MS, &[], &[pid(20)]),
            Step::Signal {
                signals: vec![(pid(20), Signal::SIGKILL)],
                until: Deadline::At(t0 + 10 * MS + GIVE_UP),
                escalated: false
            }
        );
        assert_eq!(sweep.step(t0 + 20 * MS, &[], &[]), Step::Done);
    }

    #[test]
    fn a_grace_beyond_the_clock_terms_and_waits_without_a_timeout() {
        let t0 = Instant::now();
        for grace in [
            Duration::from_secs(10_000_000_000_000_000_000),
            Duration::MAX,
        ] {
            let mut sweep = Sweep::new(t0, grace);
            assert_eq!(
                sweep.step(t0, &[pid(10)], &[]),
                Step::Signal {
                    signals: vec![(pid(10), Signal::SIGTERM)],
                    until: Deadline::Never,
                    escalated: false
                }
            );
            // A second SIGTERM still ends the grace.
            sweep.hurry(t0 + MS);
            assert_eq!(
                sweep.step(t0 + MS, &[pid(10)], &[]),
                Step::Signal {
                    signals: vec![(pid(10), Signal::SIGKILL)],
                    until: Deadline::At(t0 + MS + GIVE_UP),
                    escalated: true
                }
            );
        }
    }

    fn is_zombie(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
    }

    #[test]
    fn running_children_are_listed_and_zombies_are_not() {
        let me = nix::unistd::getpid();
        let mut running = Command::new("sleep").arg("1000").spawn().unwrap();
        let mut exited = Command::new("true").spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_zombie(exited.id()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let listed = children();
        let scanned: Vec<i32> = all_pids()
            .into_iter()
            .filter(|&p| parent_and_state(p).is_some_and(|(ppid, _)| ppid == me.as_raw()))
            .collect();
        running.kill().unwrap();
        running.wait().unwrap();
        exited.wait().unwrap();
        assert!(
            listed.contains(&Pid::from_raw(running.id() as i32)),
            "{listed:?}"
        );
        assert!(
            !listed.contains(&Pid::from_raw(exited.id() as i32)),
            "{listed:?}"
        );
        // The full scan (the fallback) sees the same child.
        assert!(scanned.contains(&(running.id() as i32)), "{scanned:?}");
    }
}
