//! Warnings that a crowd can repeat thousands of times a second (connections refused or
//! closed to make room, `accept` failing for want of descriptors): the first is logged, then
//! at most one line per [`INTERVAL`], saying how many were held back. A [`Throttle`] is pure:
//! the caller passes the instant and logs what it is told to; its [`Throttle::deadline`]
//! joins the loop's deadlines only while something is held back, so an idle runner still
//! never wakes.

use std::time::{Duration, Instant};

/// At most one line per this long for each kind of warning.
pub(super) const INTERVAL: Duration = Duration::from_secs(5);

/// One kind of warning's rate.
#[derive(Debug, Default)]
pub(super) struct Throttle {
    /// When a line was last logged.
    logged: Option<Instant>,
    /// How many came since then without a line.
    held: u64,
}

impl Throttle {
    /// One more came at `now`: `Some(n)` if it is to be logged, `n` being how many were held
    /// back before it (since the last line); `None` if it is held back.
    pub(super) fn hit(&mut self, now: Instant) -> Option<u64> {
        match self.next_line() {
            Some(next) if now < next => {
                self.held = self.held.saturating_add(1);
                None
            }
            _ => {
                self.logged = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }

    /// When the ones held back are to be told (a summary line); `None` when none is held.
    pub(super) fn deadline(&self) -> Option<Instant> {
        if self.held == 0 {
            return None;
        }
        self.next_line()
    }

    /// At or after its deadline: how many were held back (`Some`, then forgotten), for a
    /// summary line; `None` before it or with none held.
    pub(super) fn due(&mut self, now: Instant) -> Option<u64> {
        if self.deadline().is_some_and(|d| d <= now) {
            self.logged = Some(now);
            return Some(std::mem::take(&mut self.held));
        }
        None
    }

    /// The earliest instant another line may be logged.
    fn next_line(&self) -> Option<Instant> {
        // An instant too far to add to is never reached: nothing more is logged before it.
        self.logged.map(|at| at.checked_add(INTERVAL).unwrap_or(at))
    }
}

/// ` (N more since the last such line)` for a line logged after `held` were held back, or
/// nothing.
pub(super) fn more(held: u64) -> String {
    if held == 0 {
        String::new()
    } else {
        format!(" ({held} more since the last such line)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_logged_then_one_line_per_interval_counts_the_rest() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        assert_eq!(t.deadline(), None);
        assert_eq!(t.hit(t0), Some(0));
        // Nothing held: no wake-up.
        assert_eq!(t.deadline(), None);
        // A hundred thousand in the next second: none logged.
        for n in 0..100_000u32 {
            assert_eq!(t.hit(t0 + Duration::from_micros(10 * u64::from(n))), None);
        }
        assert_eq!(t.deadline(), Some(t0 + INTERVAL));
        assert_eq!(t.due(t0 + INTERVAL - Duration::from_millis(1)), None);
        assert_eq!(t.due(t0 + INTERVAL), Some(100_000));
        assert_eq!(t.deadline(), None);
        assert_eq!(t.due(t0 + 3 * INTERVAL), None);
        // After a quiet interval, the next one is logged at once, with what was held.
        assert_eq!(t.hit(t0 + INTERVAL + Duration::from_secs(1)), None);
        assert_eq!(t.hit(t0 + 2 * INTERVAL), Some(1));
        assert_eq!(t.hit(t0 + 10 * INTERVAL), Some(0));
    }

    #[test]
    fn the_summary_names_what_was_held() {
        assert_eq!(more(0), "");
        assert_eq!(more(7), " (7 more since the last such line)");
    }
}
