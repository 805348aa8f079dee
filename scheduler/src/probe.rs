//! Probes: hang detection for programs that cannot beat (redis, nginx, postgres). A
//! [`ProbeSpec`] says what to try (run a program, connect, fetch a URL) and how often;
//! [`Probing`] is one instance's probe schedule and verdicts, pure like `Task`: the runner
//! tells it when a probe is due, started, and how it ended, and it answers ready, healthy,
//! failing or hung. The runner does the I/O (non-blocking, in its event loop).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nonstop_core::Deadline;
use serde::{Deserialize, Serialize};

use crate::spawn::SpawnSpec;

/// What a probe tries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ProbeCheck {
    /// Runs a program (as the task: same user, directory, environment); exit 0 is healthy.
    Exec(SpawnSpec),
    /// Connects; a connection is healthy.
    Tcp(SocketAddr),
    /// `GET path` over HTTP/1.0; a 2xx status is healthy.
    Http {
        /// Where to connect.
        addr: SocketAddr,
        /// The `Host` header (as written in the URL).
        host: String,
        /// The path and query.
        path: String,
    },
}

/// `probe:` of a task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeSpec {
    /// What to try.
    pub check: ProbeCheck,
    /// Time between the starts of two probes.
    pub every: Duration,
    /// A probe still going after this long has failed (at most `every`).
    pub timeout: Duration,
    /// This many failed probes in a row, once the instance has been healthy, make it hung.
    pub failures: u32,
    /// Longest time from the start to the first healthy probe; failures before it do not
    /// count, and not being healthy by then is a hang.
    pub start: Duration,
}

/// What is due for the probe of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeDue {
    /// Start a probe now.
    Start,
    /// The probe in flight ran out of time: cancel it; it failed
    /// ([`Probing::on_result`] with `false`).
    TimedOut,
}

/// What a probe's result means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The first healthy probe of this instance: it is ready.
    Ready,
    /// Healthy again.
    Healthy,
    /// Failed, `failed` in a row (0: still starting, not counted).
    Failing {
        /// Failures in a row that count.
        failed: u32,
    },
    /// Hung: `failures` in a row, or never healthy within `start`.
    Hung {
        /// Failures in a row that counted (0 when it never became healthy).
        failed: u32,
    },
}

/// One instance's probes.
#[derive(Debug, Clone)]
pub struct Probing {
    every: Duration,
    timeout: Duration,
    failures: u32,
    start: Duration,
    started: Instant,
    next: Deadline,
    in_flight: Option<Deadline>,
    failed: u32,
    healthy_once: bool,
}

impl Probing {
    /// The probes of an instance started at `started`: the first at once.
    pub fn new(spec: &ProbeSpec, started: Instant) -> Probing {
        Probing {
            every: spec.every,
            timeout: spec.timeout.min(spec.every),
            failures: spec.failures.max(1),
            start: spec.start,
            started,
            next: Deadline::At(started),
            in_flight: None,
            failed: 0,
            healthy_once: false,
        }
    }

    /// When it needs attention: the timeout of the probe in flight, else the next probe.
    pub fn deadline(&self) -> Deadline {
        self.in_flight.unwrap_or(self.next)
    }

    /// Whether a probe is in flight.
    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Failures in a row since the last healthy probe.
    pub fn failed(&self) -> u32 {
        self.failed
    }

    /// Whether it has been healthy once.
    pub fn healthy_once(&self) -> bool {
        self.healthy_once
    }

    /// The deadline passed: what to do, if anything.
    pub fn on_deadline(&mut self, now: Instant) -> Option<ProbeDue> {
        match self.in_flight {
            Some(until) if until.is_due(now) => {
                self.in_flight = None;
                Some(ProbeDue::TimedOut)
            }
            Some(_) => None,
            None => {
                let Deadline::At(next) = self.next else {
                    return None;
                };
                if next > now {
                    return None;
                }
                self.in_flight = Some(Deadline::after(now, self.timeout));
                // On the grid from the start, so probes do not drift; a late wake-up skips
                // to the next point after now.
                self.next = Deadline::first_after(next, self.every, now);
                Some(ProbeDue::Start)
            }
        }
    }

    /// The probe in flight ended, healthy or not (a timeout is a failure).
    pub fn on_result(&mut self, healthy: bool, now: Instant) -> Health {
        self.in_flight = None;
        if healthy {
            self.failed = 0;
            if self.healthy_once {
                return Health::Healthy;
            }
            self.healthy_once = true;
            return Health::Ready;
        }
        if !self.healthy_once {
            return if Deadline::after(self.started, self.start).is_due(now) {
                Health::Hung { failed: 0 }
            } else {
                Health::Failing { failed: 0 }
            };
        }
        self.failed = self.failed.saturating_add(1);
        if self.failed >= self.failures {
            Health::Hung {
                failed: self.failed,
            }
        } else {
            Health::Failing {
                failed: self.failed,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ProbeSpec {
        ProbeSpec {
            check: ProbeCheck::Tcp(([127, 0, 0, 1], 1).into()),
            every: Duration::from_millis(100),
            timeout: Duration::from_millis(50),
            failures: 3,
            start: Duration::from_millis(1000),
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn probes_run_on_a_grid_and_a_timeout_is_a_failure() {
        let t0 = Instant::now();
        let mut p = Probing::new(&spec(), t0);
        assert_eq!(p.deadline(), Deadline::At(t0), "the first at once");
        assert_eq!(p.on_deadline(t0), Some(ProbeDue::Start));
        assert_eq!(
            p.deadline(),
            Deadline::At(t0 + 50 * MS),
            "the timeout of the probe in flight"
        );
        assert_eq!(p.on_deadline(t0 + 10 * MS), None);
        assert_eq!(p.on_result(true, t0 + 10 * MS), Health::Ready);
        assert_eq!(p.deadline(), Deadline::At(t0 + 100 * MS));
        assert_eq!(p.on_deadline(t0 + 100 * MS), Some(ProbeDue::Start));
        assert_eq!(p.on_deadline(t0 + 150 * MS), Some(ProbeDue::TimedOut));
        assert!(!p.in_flight());
        assert_eq!(
            p.on_result(false, t0 + 150 * MS),
            Health::Failing { failed: 1 }
        );
        // A late wake-up skips to the grid point after it.
        assert_eq!(p.on_deadline(t0 + 330 * MS), Some(ProbeDue::Start));
        assert_eq!(p.on_result(true, t0 + 331 * MS), Health::Healthy);
        assert_eq!(p.deadline(), Deadline::At(t0 + 400 * MS));
    }

    #[test]
    fn failures_in_a_row_after_the_first_success_make_it_hung() {
        let t0 = Instant::now();
        let mut p = Probing::new(&spec(), t0);
        p.on_deadline(t0);
        assert_eq!(p.on_result(true, t0), Health::Ready);
        let mut at = t0;
        let mut verdicts = Vec::new();
        for _ in 0..3 {
            at += 100 * MS;
            p.on_deadline(at);
            verdicts.push(p.on_result(false, at));
        }
        assert_eq!(
            verdicts,
            [
                Health::Failing { failed: 1 },
                Health::Failing { failed: 2 },
                Health::Hung { failed: 3 }
            ]
        );
        // A success in between resets the count.
        let mut p = Probing::new(&spec(), t0);
        p.on_deadline(t0);
        p.on_result(true, t0);
        for (i, healthy) in [false, false, true, false, false].into_iter().enumerate() {
            let at = t0 + (i as u32 + 1) * 100 * MS;
            p.on_deadline(at);
            assert!(!matches!(p.on_result(healthy, at), Health::Hung { .. }));
        }
    }

    #[test]
    fn while_starting_failures_do_not_count_until_the_start_period_ends() {
        let t0 = Instant::now();
        let mut p = Probing::new(&spec(), t0);
        for i in 0..10 {
            let at = t0 + i * 100 * MS;
            p.on_deadline(at);
            assert_eq!(p.on_result(false, at), Health::Failing { failed: 0 }, "{i}");
        }
        p.on_deadline(t0 + 1000 * MS);
        assert_eq!(
            p.on_result(false, t0 + 1000 * MS),
            Health::Hung { failed: 0 },
            "never healthy within start"
        );
    }

    #[test]
    fn probes_every_and_start_too_long_for_the_clock_never_panic() {
        let t0 = Instant::now();
        for huge in [
            nonstop_core::Duration::MAX.0,
            Duration::from_secs_f64(1e19),
            Duration::MAX,
        ] {
            let mut p = Probing::new(
                &ProbeSpec {
                    every: huge,
                    timeout: huge,
                    start: huge,
                    ..spec()
                },
                t0,
            );
            assert_eq!(p.on_deadline(t0), Some(ProbeDue::Start), "{huge:?}");
            assert!(!p.deadline().is_due(t0 + 1000 * MS));
            // Failures while starting do not count: `start` is far ahead.
            assert_eq!(p.on_result(false, t0), Health::Failing { failed: 0 });
            assert_eq!(p.on_result(true, t0), Health::Ready);
            assert!(!p.deadline().is_due(t0 + 1000 * MS));
        }
    }
}
