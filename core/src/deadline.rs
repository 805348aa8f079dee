//! [`Deadline`]: an instant on the monotonic clock, or never, with arithmetic that cannot
//! panic.
//!
//! `Instant + Duration` panics when the sum does not fit the clock's count (a little under
//! 2^63 seconds on Linux), and `Duration * n` when the product does not fit a `Duration`. A
//! duration from a pipeline or a plugin's arguments is bounded at check time
//! ([`Duration::MAX`](crate::Duration::MAX)), but a deadline computed from it must not depend
//! on that: every deadline of the runner, the scheduler and the plugins is a [`Deadline`],
//! whose sums saturate to [`Deadline::Never`], a value like any other (it sorts after every
//! instant, so the earliest of several deadlines is their `min`, and waiting for it is
//! waiting without a timeout).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use nonstop_core::Deadline;
//!
//! let now = Instant::now();
//! let soon = Deadline::after(now, Duration::from_secs(5));
//! assert!(!soon.is_due(now));
//! assert_eq!(soon.remaining(now), Some(Duration::from_secs(5)));
//! // Far beyond what the clock counts: never, not a panic.
//! assert_eq!(Deadline::after(now, Duration::MAX), Deadline::Never);
//! assert_eq!(soon.min(Deadline::Never), soon);
//! ```

use std::ops::Add;
use std::time::{Duration, Instant};

/// When something is due: at an instant of the monotonic clock ([`Instant`]), or never.
///
/// Ordered by time, [`Deadline::Never`] after every instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Deadline {
    /// At this instant.
    At(Instant),
    /// Never: nothing is due, or it is due further ahead than the clock counts.
    Never,
}

impl Deadline {
    /// `d` after `start`, or [`Deadline::Never`] if that is beyond what [`Instant`] counts.
    pub fn after(start: Instant, d: Duration) -> Deadline {
        start.checked_add(d).map_or(Deadline::Never, Deadline::At)
    }

    /// The instant, unless it is never.
    pub fn instant(self) -> Option<Instant> {
        match self {
            Deadline::At(at) => Some(at),
            Deadline::Never => None,
        }
    }

    /// Whether it has come at `now` (at or before it). Never is never due.
    pub fn is_due(self, now: Instant) -> bool {
        matches!(self, Deadline::At(at) if at <= now)
    }

    /// The time left from `now` (zero once it is due); `None` for never, which is waiting
    /// without a timeout.
    pub fn remaining(self, now: Instant) -> Option<Duration> {
        self.instant().map(|at| at.saturating_duration_since(now))
    }

    /// The first point of the grid `start + k × period` (k ≥ 1) strictly after `now`: the
    /// next run of a schedule, or probe, that keeps to its grid however late it wakes. A zero
    /// period has no grid: it is due at once (the later of `start` and `now`).
    pub fn first_after(start: Instant, period: Duration, now: Instant) -> Deadline {
        if period.is_zero() {
            return Deadline::At(start.max(now));
        }
        // start + k·period > now  ⟺  k·period > now - start: the smallest such k.
        let behind = now.saturating_duration_since(start).as_nanos();
        let periods = behind / period.as_nanos() + 1;
        match period.as_nanos().checked_mul(periods) {
            Some(ahead) => Deadline::after(start, duration_of_nanos(ahead)),
            None => Deadline::Never,
        }
    }
}

impl Add<Duration> for Deadline {
    type Output = Deadline;

    /// `d` later, saturating to [`Deadline::Never`]; never stays never.
    fn add(self, d: Duration) -> Deadline {
        match self {
            Deadline::At(at) => Deadline::after(at, d),
            Deadline::Never => Deadline::Never,
        }
    }
}

impl From<Instant> for Deadline {
    fn from(at: Instant) -> Deadline {
        Deadline::At(at)
    }
}

impl From<Option<Instant>> for Deadline {
    /// `None` is never.
    fn from(at: Option<Instant>) -> Deadline {
        at.map_or(Deadline::Never, Deadline::At)
    }
}

/// `nanos` nanoseconds, [`Duration::MAX`] if they do not fit.
fn duration_of_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    match u64::try_from(nanos / NANOS_PER_SEC) {
        // The remainder is below 10^9: it fits a u32.
        Ok(secs) => Duration::new(secs, (nanos % NANOS_PER_SEC) as u32),
        Err(_) => Duration::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_sum_beyond_the_clock_is_never_not_a_panic() {
        let now = Instant::now();
        assert_eq!(Deadline::after(now, S), Deadline::At(now + S));
        assert_eq!(Deadline::after(now, Duration::ZERO), Deadline::At(now));
        // The largest durations there are: each alone, and added again and again.
        for huge in [
            Duration::MAX,
            Duration::from_secs(u64::MAX),
            Duration::from_secs(i64::MAX as u64),
            Duration::from_secs_f64(1e19),
            Duration::from_secs_f64(9.3e18),
        ] {
            assert_eq!(Deadline::after(now, huge), Deadline::Never, "{huge:?}");
            assert_eq!(Deadline::At(now) + huge, Deadline::Never, "{huge:?}");
            assert_eq!(Deadline::Never + huge, Deadline::Never);
        }
        // Just below what the clock counts, then one step over it.
        let half = Duration::from_secs(i64::MAX as u64 / 2);
        let mut d = Deadline::At(now);
        for _ in 0..4 {
            d = d + half;
        }
        assert_eq!(d, Deadline::Never);
        assert_eq!(Deadline::Never + Duration::ZERO, Deadline::Never);
    }

    #[test]
    fn never_sorts_after_every_instant_and_is_never_due() {
        let now = Instant::now();
        let far = Deadline::after(now, Duration::from_secs(100 * 365 * 86_400));
        assert!(Deadline::At(now) < far && far < Deadline::Never);
        assert_eq!(
            [Deadline::Never, far, Deadline::At(now)].into_iter().min(),
            Some(Deadline::At(now))
        );
        assert!(!Deadline::Never.is_due(now));
        assert!(Deadline::At(now).is_due(now));
        assert!(!far.is_due(now));
        assert_eq!(Deadline::Never.remaining(now), None);
        assert_eq!(Deadline::Never.instant(), None);
        assert_eq!(Deadline::At(now).remaining(now + S), Some(Duration::ZERO));
        assert_eq!(Deadline::from(None), Deadline::Never);
        assert_eq!(Deadline::from(Some(now)), Deadline::At(now));
    }

    #[test]
    fn first_after_keeps_to_the_grid_and_saturates() {
        let t0 = Instant::now();
        let p = 10 * S;
        // Before the first point, at a point, between points: strictly after now.
        assert_eq!(Deadline::first_after(t0, p, t0), Deadline::At(t0 + p));
        assert_eq!(
            Deadline::first_after(t0, p, t0 + 3 * S),
            Deadline::At(t0 + p)
        );
        assert_eq!(
            Deadline::first_after(t0, p, t0 + 20 * S),
            Deadline::At(t0 + 30 * S)
        );
        assert_eq!(
            Deadline::first_after(t0, p, t0 + 25 * S),
            Deadline::At(t0 + 30 * S)
        );
        // A start still ahead of now: its first point after it.
        assert_eq!(
            Deadline::first_after(t0 + S, p, t0),
            Deadline::At(t0 + 11 * S)
        );
        // No grid: at once.
        assert_eq!(
            Deadline::first_after(t0, Duration::ZERO, t0 + S),
            Deadline::At(t0 + S)
        );
        // A period too long for the clock, or a product too large for a Duration.
        assert_eq!(
            Deadline::first_after(t0, Duration::MAX, t0),
            Deadline::Never
        );
        assert_eq!(
            Deadline::first_after(t0, Duration::from_secs(u64::MAX / 2), t0 + S),
            Deadline::Never
        );
        assert_eq!(duration_of_nanos(u128::MAX), Duration::MAX);
        assert_eq!(
            duration_of_nanos(1_500_000_000),
            Duration::from_millis(1500)
        );
    }
}
