//! Serde representations of the spec types that are not serde's own: a signal and a resource
//! as their numbers, a schedule as its text. Used through `#[serde(with)]` and
//! `#[serde(into, try_from)]` on the specs; the runner hands specs from the process that
//! checked the pipeline to the one that supervises it (same binary, so no version skew).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::schedule::{CronSchedule, Schedule, Zone};

/// `Signal` as its number.
pub mod signal {
    use nix::sys::signal::Signal;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Serializes the signal's number.
    pub fn serialize<S: Serializer>(signal: &Signal, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(*signal as i32)
    }

    /// Deserializes a signal number.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Signal, D::Error> {
        let n = i32::deserialize(d)?;
        Signal::try_from(n).map_err(|_| D::Error::custom(format!("no signal number {n}")))
    }
}

/// `Resource` as its number.
pub mod resource {
    use nix::sys::resource::Resource;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Every resource a task may limit.
    pub const ALL: [Resource; 15] = [
        Resource::RLIMIT_AS,
        Resource::RLIMIT_CORE,
        Resource::RLIMIT_CPU,
        Resource::RLIMIT_DATA,
        Resource::RLIMIT_FSIZE,
        Resource::RLIMIT_LOCKS,
        Resource::RLIMIT_MEMLOCK,
        Resource::RLIMIT_MSGQUEUE,
        Resource::RLIMIT_NICE,
        Resource::RLIMIT_NOFILE,
        Resource::RLIMIT_NPROC,
        Resource::RLIMIT_RSS,
        Resource::RLIMIT_RTPRIO,
        Resource::RLIMIT_SIGPENDING,
        Resource::RLIMIT_STACK,
    ];

    /// Its name as a pipeline's `limits:` spells it: `nofile`, `as`, ...
    pub fn name(resource: Resource) -> &'static str {
        match resource {
            Resource::RLIMIT_AS => "as",
            Resource::RLIMIT_CORE => "core",
            Resource::RLIMIT_CPU => "cpu",
            Resource::RLIMIT_DATA => "data",
            Resource::RLIMIT_FSIZE => "fsize",
            Resource::RLIMIT_LOCKS => "locks",
            Resource::RLIMIT_MEMLOCK => "memlock",
            Resource::RLIMIT_MSGQUEUE => "msgqueue",
            Resource::RLIMIT_NICE => "nice",
            Resource::RLIMIT_NOFILE => "nofile",
            Resource::RLIMIT_NPROC => "nproc",
            Resource::RLIMIT_RSS => "rss",
            Resource::RLIMIT_RTPRIO => "rtprio",
            Resource::RLIMIT_SIGPENDING => "sigpending",
            Resource::RLIMIT_STACK => "stack",
            _ => "(another resource)",
        }
    }

    /// Serializes the resource's number.
    pub fn serialize<S: Serializer>(resource: &Resource, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(*resource as i32)
    }

    /// Deserializes a resource number.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Resource, D::Error> {
        let n = i32::deserialize(d)?;
        ALL.into_iter()
            .find(|r| *r as i32 == n)
            .ok_or_else(|| D::Error::custom(format!("no resource number {n}")))
    }
}

/// A [`Schedule`] as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScheduleText {
    /// `every`.
    Every(Duration),
    /// `cron` and `timezone` (`None`: the local zone).
    Cron {
        /// The expression.
        expr: String,
        /// The IANA zone name.
        zone: Option<String>,
    },
}

impl From<Schedule> for ScheduleText {
    fn from(s: Schedule) -> ScheduleText {
        match s {
            Schedule::Every(period) => ScheduleText::Every(period),
            Schedule::Cron(c) => ScheduleText::Cron {
                expr: c.text().to_owned(),
                zone: match c.zone() {
                    Zone::Local => None,
                    Zone::Named(name, _) => Some(name.clone()),
                },
            },
        }
    }
}

impl TryFrom<ScheduleText> for Schedule {
    type Error = crate::Error;

    fn try_from(s: ScheduleText) -> Result<Schedule, crate::Error> {
        Ok(match s {
            ScheduleText::Every(period) => Schedule::Every(period),
            ScheduleText::Cron { expr, zone } => {
                let zone = match zone {
                    None => Zone::Local,
                    Some(name) => Zone::named(&name)?,
                };
                Schedule::Cron(Box::new(CronSchedule::parse(&expr, zone)?))
            }
        })
    }
}
