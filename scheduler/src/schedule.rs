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
use nonstop_core::Deadline;
use serde::{Deserialize, Serialize};

use crate::Error;

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
    pub fn named(name: &str) -> Result<Zone, Error> {
        TimeZone::get(name)
            .map(|tz| Zone::Named(name.to_owned(), tz))
            .map_err(|e| Error::Schedule(e.to_string()))
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
    /// Parses `text` (`"0 3 * * *"`, or `"*/5 * * * * *"` with seconds). An error names the
    /// field that is wrong: `the hour field "25": out of range (hours are 0-23)`.
    pub fn parse(text: &str, zone: Zone) -> Result<CronSchedule, Error> {
        // croner also takes a seventh field, the year; nonstop's expressions are cron's (5
        // fields) or with seconds first (6), as documented: a year is refused, not taken.
        let fields = text.split_whitespace().count();
        if fields > 6 {
            return Err(Error::Schedule(format!(
                "{fields} fields: a cron expression has 5 (minute hour day-of-month month \
                 day-of-week) or 6, with seconds first; a year field is not supported"
            )));
        }
        let cron = text
            .parse::<croner::Cron>()
            .map_err(|e| Error::Schedule(explain(text, &e)))?;
        Ok(CronSchedule {
            cron,
            text: text.to_owned(),
            zone,
        })
    }

    /// Whether it ever matches from now on (`0 0 30 2 *`, the 30th of February, never does).
    pub fn fires(&self) -> bool {
        self.next_after(Timestamp::now()).is_some()
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

/// The shorthands croner takes for a whole expression.
const NICKNAMES: [&str; 6] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@hourly",
];

/// The fields of a cron expression of 5 fields, and what each takes.
const FIELDS: [(&str, &str); 6] = [
    ("second", "seconds are 0-59"),
    ("minute", "minutes are 0-59"),
    ("hour", "hours are 0-23"),
    ("day-of-month", "days of the month are 1-31, L, W"),
    ("month", "months are 1-12 or JAN-DEC"),
    (
        "day-of-week",
        "days of the week are 0-7 (0 and 7: Sunday) or SUN-SAT, L, #",
    ),
];

/// Why `text` is not a cron expression, naming the field at fault: each field is tried alone,
/// with `*` in every other, and the first that fails is the one named.
fn explain(text: &str, error: &croner::errors::CronError) -> String {
    let fields: Vec<&str> = text.split_whitespace().collect();
    if let [word] = fields[..]
        && word.starts_with('@')
    {
        // cron's @reboot is a program run once when cron starts: here that is a resident
        // task that is not restarted, so it is said as that, not supported twice.
        if word.eq_ignore_ascii_case("@reboot") {
            return "@reboot is not a schedule: for a task run once when the runner starts, \
                    remove `cron` (a resident task) and set `restart: never`"
                .into();
        }
        return format!(
            "unknown shorthand \"{word}\": the shorthands are {}, else 5 or 6 fields",
            NICKNAMES.join(", ")
        );
    }
    let names = match fields.len() {
        0 => return "it is empty".into(),
        5 => &FIELDS[1..],
        6 => &FIELDS[..],
        n => {
            return format!(
                "{n} fields: a cron expression has 5 (minute hour day-of-month month \
                 day-of-week) or 6, with seconds first"
            );
        }
    };
    for (i, field) in fields.iter().enumerate() {
        let alone: Vec<&str> = (0..fields.len())
            .map(|j| if j == i { *field } else { "*" })
            .collect();
        if alone.join(" ").parse::<croner::Cron>().is_err() {
            let (name, takes) = names[i];
            return format!(
                "the {name} field \"{field}\" is not valid ({takes}; lists a,b, ranges a-b and \
                 steps */n)"
            );
        }
    }
    error.to_string()
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
    pub fn first(&self, now: Now) -> Option<Deadline> {
        match self {
            Schedule::Every(_) => Some(Deadline::At(now.mono)),
            Schedule::Cron(c) => c.next_after(now.wall).map(|t| wall_to_mono(t, now)),
        }
    }

    /// The next start after the run scheduled at `scheduled`, strictly later than `now`:
    /// starts that fell due while a run was still going are passed over (the task logs each
    /// as a skip when it falls due). A period too long for the clock is never due again.
    pub fn next(&self, scheduled: Instant, now: Now) -> Option<Deadline> {
        match self {
            // The first point of the grid after now (a zero period: now).
            Schedule::Every(period) => Some(Deadline::first_after(scheduled, *period, now.mono)),
            Schedule::Cron(c) => c.next_after(now.wall).map(|t| wall_to_mono(t, now)),
        }
    }
}

impl Schedule {
    /// How many starts fell due from `first` (a start that was due) to `now`, both included:
    /// a count for `every`; `None` for `cron`, whose starts are not counted.
    pub fn missed(&self, first: Instant, now: Now) -> Option<u64> {
        match self {
            Schedule::Every(period) if !period.is_zero() => {
                let behind = now.mono.saturating_duration_since(first).as_nanos();
                Some(u64::try_from(behind / period.as_nanos() + 1).unwrap_or(u64::MAX))
            }
            Schedule::Every(_) => Some(1),
            Schedule::Cron(_) => None,
        }
    }
}

/// The monotonic instant at which the wall clock is expected to show `at`.
fn wall_to_mono(at: Timestamp, now: Now) -> Deadline {
    match Duration::try_from(at.duration_since(now.wall)) {
        Ok(ahead) => Deadline::after(now.mono, ahead),
        Err(_) => Deadline::At(now.mono),
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
        assert_eq!(s.first(now), Some(Deadline::At(t0)));
        // A run that ended after 3 s: the next start is on the grid, not 10 s after the end.
        let later = Now {
            mono: t0 + Duration::from_secs(3),
            ..now
        };
        assert_eq!(
            s.next(t0, later),
            Some(Deadline::At(t0 + Duration::from_secs(10)))
        );
        // A run that overran to 25 s missed the starts at 10 s and 20 s.
        let late = Now {
            mono: t0 + Duration::from_secs(25),
            ..now
        };
        assert_eq!(
            s.next(t0, late),
            Some(Deadline::At(t0 + Duration::from_secs(30)))
        );
        // Exactly on a grid point: that one is missed too, the next is strictly later.
        let on = Now {
            mono: t0 + Duration::from_secs(20),
            ..now
        };
        assert_eq!(
            s.next(t0, on),
            Some(Deadline::At(t0 + Duration::from_secs(30)))
        );
    }

    #[test]
    fn a_period_too_long_for_the_clock_is_never_due_again() {
        let t0 = Instant::now();
        let now = now_at(t0, "2026-01-01T00:00:00Z");
        // At the pipeline's maximum: a hundred years on.
        let max = Schedule::Every(nonstop_core::Duration::MAX.0);
        assert_eq!(
            max.next(t0, now),
            Some(Deadline::At(t0 + nonstop_core::Duration::MAX.0))
        );
        // Beyond it (no check can let these through, but no sum may panic either).
        for huge in [Duration::from_secs_f64(1e19), Duration::MAX] {
            let s = Schedule::Every(huge);
            assert_eq!(s.first(now), Some(Deadline::At(t0)));
            assert_eq!(s.next(t0, now), Some(Deadline::Never));
            assert_eq!(s.missed(t0, now), Some(1));
        }
    }

    #[test]
    fn cron_maps_the_next_wall_match_onto_the_monotonic_clock() {
        let utc = Zone::named("UTC").unwrap();
        let daily = CronSchedule::parse("0 3 * * *", utc.clone()).unwrap();
        let t0 = Instant::now();
        let now = now_at(t0, "2026-01-01T02:59:00Z");
        let s = Schedule::Cron(Box::new(daily));
        assert_eq!(
            s.first(now),
            Some(Deadline::At(t0 + Duration::from_secs(60)))
        );
        // With seconds.
        let secs = CronSchedule::parse("*/15 * * * * *", utc.clone()).unwrap();
        let secs = Schedule::Cron(Box::new(secs));
        let now = now_at(t0, "2026-01-01T00:00:01Z");
        assert_eq!(
            secs.first(now),
            Some(Deadline::At(t0 + Duration::from_secs(14)))
        );
        // In another zone: 03:00 in Berlin (UTC+1 in January) is 02:00 UTC.
        let berlin = Zone::named("Europe/Berlin").unwrap();
        let s = Schedule::Cron(Box::new(CronSchedule::parse("0 3 * * *", berlin).unwrap()));
        let now = now_at(t0, "2026-01-01T01:00:00Z");
        assert_eq!(
            s.first(now),
            Some(Deadline::At(t0 + Duration::from_secs(3600)))
        );
        assert_eq!(s.to_string(), "cron \"0 3 * * *\" (Europe/Berlin)");
        assert!(CronSchedule::parse("61 * * * *", utc.clone()).is_err());
        assert!(CronSchedule::parse("not cron", utc.clone()).is_err());
        assert!(Zone::named("Mars/Olympus_Mons").is_err());
    }

    #[test]
    fn a_bad_cron_expression_is_explained_by_its_field() {
        let utc = Zone::named("UTC").unwrap();
        let error = |text: &str| {
            CronSchedule::parse(text, utc.clone())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error("0 61 * * *"),
            "the hour field \"61\" is not valid (hours are 0-23; lists a,b, ranges a-b and \
             steps */n)"
        );
        assert_eq!(
            error("*/5 0 0 1 13 *"),
            "the month field \"13\" is not valid (months are 1-12 or JAN-DEC; lists a,b, ranges \
             a-b and steps */n)"
        );
        assert!(error("0 3 * *").starts_with("4 fields: a cron expression has 5"));
        // croner would take a year as a seventh field; the documented forms are 5 or 6.
        assert_eq!(
            error("0 0 0 1 1 * 2999"),
            "7 fields: a cron expression has 5 (minute hour day-of-month month day-of-week) or \
             6, with seconds first; a year field is not supported"
        );
        assert_eq!(error(""), "it is empty");
        // Valid, but no date ever matches.
        let never = CronSchedule::parse("0 0 30 2 *", utc.clone()).unwrap();
        assert!(!never.fires());
        let daily = CronSchedule::parse("0 3 * * *", utc).unwrap();
        assert!(daily.fires());
    }
}
