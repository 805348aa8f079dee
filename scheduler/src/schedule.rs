//! When periodic tasks run: `every` a period on the monotonic clock, or on a `cron` expression
//! on the wall clock of a time zone.
//!
//! Time zones come from the system's database (`/usr/share/zoneinfo`, the `tzdata` package),
//! read when a pipeline is loaded: nothing is compiled in, so the runner stays small and follows
//! the system's updates.

use std::fmt;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// A periodic task's schedule. Serialized as its text (`every`: the period; `cron`: the
/// expression and the zone's name), so deserializing parses the expression and looks the zone
/// up again.
#[derive(Clone, Serialize, Deserialize)]
#[serde(
    into = "crate::wire::ScheduleText",
    try_from = "crate::wire::ScheduleText"
)]
pub enum Schedule {
    /// Every period, measured from the scheduled start of the first run, so runs do not drift.
    Every(Duration),
    /// On a cron expression (5 fields, or 6 with seconds first) in a time zone.
    Cron(Box<CronSchedule>),
}

/// A parsed cron expression and its time zone.
#[derive(Clone)]
pub struct CronSchedule {
    cron: croner::Cron,
    text: String,
    zone: Zone,
}

/// The time zone of a cron schedule.
#[derive(Clone, Debug, PartialEq)]
pub enum Zone {
    /// The system's local time zone (`TZ` or `/etc/localtime`).
    Local,
    /// A named IANA zone.
    Named(String, TimeZone),
}

impl Zone {
    /// The IANA zone `name` from the system's database.
    pub fn named(name: &str) -> Result<Zone, String> {
        TimeZone::get(name)
            .map(|tz| Zone::Named(name.to_owned(), tz))
            .map_err(|e| e.to_string())
    }

    fn time_zone(&self) -> TimeZone {
        match self {
            Zone::Local => TimeZone::system(),
            Zone::Named(_, tz) => tz.clone(),
        }
    }
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CronSchedule")
            .field("text", &self.text)
            .field("zone", &self.zone)
            .finish()
    }
}

impl CronSchedule {
    /// Parses `text` (`"0 3 * * *"`, or `"*/5 * * * * *"` with seconds).
    pub fn parse(text: &str, zone: Zone) -> Result<CronSchedule, String> {
        let cron = text.parse::<croner::Cron>().map_err(|e| e.to_string())?;
        Ok(CronSchedule {
            cron,
            text: text.to_owned(),
            zone,
        })
    }

    /// The expression, as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Its time zone.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// The first matching wall-clock time strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let zoned = after.to_zoned(self.zone.time_zone());
        self.cron
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|z| z.timestamp())
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every(period) => write!(f, "every {}", nonstop_core::Duration(*period)),
            Schedule::Cron(c) => match &c.zone {
                Zone::Local => write!(f, "cron \"{}\"", c.text),
                Zone::Named(name, _) => write!(f, "cron \"{}\" ({name})", c.text),
            },
        }
    }
}

/// "Now" on both clocks, read once, so a decision uses one consistent instant.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// The monotonic clock: every deadline.
    pub mono: Instant,
    /// The wall clock: cron only.
    pub wall: Timestamp,
}

impl Now {
    /// Reads both clocks.
    pub fn read() -> Now {
        Now {
            mono: Instant::now(),
            wall: Timestamp::now(),
        }
    }
}

impl Schedule {
    /// When the first run is due: at once for `every`, at the next match for `cron`. `None`
    /// if a cron expression never matches again.
    pub fn first(&self, now: Now) -> Option<Instant> {
        match self {
            Schedule::Every(_) => Some(now.mono),
            Schedule::Cron(c) => c.next_after(now.wall).map(|t| wall_to_mono(t, now)),
        }
    }

    /// The next start after the run scheduled at `scheduled`, strictly later than `now`:
    /// starts that fell due while a run was still going are passed over (the task logs each
    /// as a skip when it falls due).
    pub fn next(&self, scheduled: Instant, now: Now) -> Option<Instant> {
        match self {
            Schedule::Every(period) => {
                if period.is_zero() {
                    return Some(now.mono);
                }
                let next = scheduled + *period;
                if next > now.mono {
                    return Some(next);
                }
                // The first point of the grid after now.
                let behind = now.mono.duration_since(next).as_nanos();
                let periods = behind / period.as_nanos() + 1;
                let ahead = u64::try_from(period.as_nanos() * periods).unwrap_or(u64::MAX);
                Some(next + Duration::from_nanos(ahead))
            }
            Schedule::Cron(c) => c.next_after(now.wall).map(|t| wall_to_mono(t, now)),
        }
    }
}

/// The monotonic instant at which the wall clock is expected to show `at`.
fn wall_to_mono(at: Timestamp, now: Now) -> Instant {
    match Duration::try_from(at.duration_since(now.wall)) {
        Ok(ahead) => now.mono + ahead,
        Err(_) => now.mono,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_at(mono: Instant, wall: &str) -> Now {
        Now {
            mono,
            wall: wall.parse().unwrap(),
        }
    }

    #[test]
    fn every_starts_at_once_and_keeps_the_grid() {
        let t0 = Instant::now();
        let s = Schedule::Every(Duration::from_secs(10));
        let now = now_at(t0, "2026-01-01T00:00:00Z");
        assert_eq!(s.first(now), Some(t0));
        // A run that ended after 3 s: the next start is on the grid, not 10 s after the end.
        let later = Now {
            mono: t0 + Duration::from_secs(3),
            ..now
        };
        assert_eq!(s.next(t0, later), Some(t0 + Duration::from_secs(10)));
        // A run that overran to 25 s missed the starts at 10 s and 20 s.
        let late = Now {
            mono: t0 + Duration::from_secs(25),
            ..now
        };
        assert_eq!(s.next(t0, late), Some(t0 + Duration::from_secs(30)));
        // Exactly on a grid point: that one is missed too, the next is strictly later.
        let on = Now {
            mono: t0 + Duration::from_secs(20),
            ..now
        };
        assert_eq!(s.next(t0, on), Some(t0 + Duration::from_secs(30)));
    }

    #[test]
    fn cron_maps_the_next_wall_match_onto_the_monotonic_clock() {
        let utc = Zone::named("UTC").unwrap();
        let daily = CronSchedule::parse("0 3 * * *", utc.clone()).unwrap();
        let t0 = Instant::now();
        let now = now_at(t0, "2026-01-01T02:59:00Z");
        let s = Schedule::Cron(Box::new(daily));
        assert_eq!(s.first(now), Some(t0 + Duration::from_secs(60)));
        // With seconds.
        let secs = CronSchedule::parse("*/15 * * * * *", utc.clone()).unwrap();
        let secs = Schedule::Cron(Box::new(secs));
        let now = now_at(t0, "2026-01-01T00:00:01Z");
        assert_eq!(secs.first(now), Some(t0 + Duration::from_secs(14)));
        // In another zone: 03:00 in Berlin (UTC+1 in January) is 02:00 UTC.
        let berlin = Zone::named("Europe/Berlin").unwrap();
        let s = Schedule::Cron(Box::new(CronSchedule::parse("0 3 * * *", berlin).unwrap()));
        let now = now_at(t0, "2026-01-01T01:00:00Z");
        assert_eq!(s.first(now), Some(t0 + Duration::from_secs(3600)));
        assert_eq!(s.to_string(), "cron \"0 3 * * *\" (Europe/Berlin)");
        assert!(CronSchedule::parse("61 * * * *", utc.clone()).is_err());
        assert!(CronSchedule::parse("not cron", utc).is_err());
        assert!(Zone::named("Mars/Olympus_Mons").is_err());
    }
}
