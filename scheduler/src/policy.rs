//! Restart policies: when a resident task is started again, after how long, and when to give up.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// When a resident task is restarted after it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Restart {
    /// After every exit.
    Always,
    /// After an exit with a non-zero status or by a signal.
    OnFailure,
    /// Never: an exit is final.
    Never,
}

impl Restart {
    /// Whether an exit that `succeeded` (status 0) leads to a restart.
    pub fn restarts(self, succeeded: bool) -> bool {
        match self {
            Restart::Always => true,
            Restart::OnFailure => !succeeded,
            Restart::Never => false,
        }
    }

    /// The pipeline's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Always => "always",
            Restart::OnFailure => "on-failure",
            Restart::Never => "never",
        }
    }
}

/// Capped exponential backoff between restarts. The delay starts at `initial`, doubles after
/// every run shorter than `stable` up to `max`, and goes back to `initial` after a run of at
/// least `stable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// The first delay, and the delay after a stable run. May be zero: restart at once.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// A run at least this long resets the delay.
    pub stable: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            stable: Duration::from_secs(10),
        }
    }
}

/// The state of a [`Backoff`]: the delay the next quick exit gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffState {
    next: Duration,
}

impl Backoff {
    /// A fresh state.
    pub fn start(&self) -> BackoffState {
        BackoffState { next: self.initial }
    }

    /// The delay before restarting a task that ran for `ran`, advancing `state`.
    pub fn delay(&self, state: &mut BackoffState, ran: Duration) -> Duration {
        if ran >= self.stable {
            state.next = self.initial;
        }
        let delay = state.next.min(self.max);
        // Saturating: `Duration * 2` panics past `Duration::MAX`.
        state.next = delay.saturating_mul(2).min(self.max);
        delay
    }
}

/// The crash-loop limit: more than `max` exits within `within` and the task is `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashLoop {
    /// Exits allowed within the window; one more fails the task.
    pub max: u32,
    /// The window.
    pub within: Duration,
}

impl Default for CrashLoop {
    fn default() -> Self {
        CrashLoop {
            max: 10,
            within: Duration::from_secs(60),
        }
    }
}

/// Exit times within the window of a [`CrashLoop`].
#[derive(Debug, Clone, Default)]
pub struct CrashLoopState {
    exits: VecDeque<Instant>,
}

impl CrashLoop {
    /// Records an exit at `now`; true if that makes the task a crash loop.
    pub fn record_exit(&self, state: &mut CrashLoopState, now: Instant) -> bool {
        while state
            .exits
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) > self.within)
        {
            state.exits.pop_front();
        }
        state.exits.push_back(now);
        state.exits.len() > self.max as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn backoff_doubles_caps_and_resets_after_a_stable_run() {
        let b = Backoff {
            initial: 100 * MS,
            max: 1000 * MS,
            stable: 5000 * MS,
        };
        let mut s = b.start();
        let quick = 10 * MS;
        let delays: Vec<u128> = (0..6).map(|_| b.delay(&mut s, quick).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(&mut s, 5000 * MS), 100 * MS);
        assert_eq!(b.delay(&mut s, quick), 200 * MS);
    }

    #[test]
    fn a_backoff_too_long_to_double_stays_at_its_maximum() {
        for huge in [nonstop_core::Duration::MAX.0, Duration::MAX] {
            let b = Backoff {
                initial: huge,
                max: huge,
                stable: huge,
            };
            let mut s = b.start();
            for _ in 0..3 {
                assert_eq!(b.delay(&mut s, MS), huge);
            }
        }
    }

    #[test]
    fn zero_initial_backoff_restarts_at_once_every_time() {
        let b = Backoff {
            initial: Duration::ZERO,
            ..Backoff::default()
        };
        let mut s = b.start();
        for _ in 0..5 {
            assert_eq!(b.delay(&mut s, MS), Duration::ZERO);
        }
    }

    #[test]
    fn crash_loop_counts_exits_within_the_window_only() {
        let c = CrashLoop {
            max: 3,
            within: Duration::from_secs(10),
        };
        let mut s = CrashLoopState::default();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert!(!c.record_exit(&mut s, at(0)));
        assert!(!c.record_exit(&mut s, at(1000)));
        assert!(!c.record_exit(&mut s, at(2000)));
        // The first exit left the window: still three within it.
        assert!(!c.record_exit(&mut s, at(10_500)));
        // 1000, 2000, 10500 and 10900 are four exits within 10 s: one more than `max`.
        assert!(c.record_exit(&mut s, at(10_900)));
    }

    #[test]
    fn restart_policies() {
        assert!(Restart::Always.restarts(true) && Restart::Always.restarts(false));
        assert!(!Restart::OnFailure.restarts(true) && Restart::OnFailure.restarts(false));
        assert!(!Restart::Never.restarts(true) && !Restart::Never.restarts(false));
    }
}
