//! The pipeline file as written: serde structs that reject unknown fields and wrong types.
//! `validate` turns them into typed, checked values.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use nonstop_core::{ByteSize, Duration};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// `heartbeat:`: the System V heartbeat table the runner creates for its tasks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub key: IpcKey,
    pub slots: Option<u32>,
}

/// `control:`: the control socket.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub socket: PathBuf,
}

/// `containment:`.
#[derive(Debug, Clone, Copy)]
pub enum Containment {
    Auto,
    Cgroup,
    ProcessGroup,
}

impl<'de> Deserialize<'de> for Containment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        word(
            d,
            "containment",
            &["auto", "cgroup", "process-group"],
            &[
                Containment::Auto,
                Containment::Cgroup,
                Containment::ProcessGroup,
            ],
        )
    }
}

/// `logs:`: where task output goes and how it is rotated.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    pub dir: Option<PathBuf>,
    pub max_size: Option<ByteSize>,
    pub keep: Option<u32>,
    pub compress: Option<bool>,
    pub timestamps: Option<bool>,
}

/// One entry of `tasks:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub command: Option<Vec<String>>,
    pub plugin: Option<String>,
    pub args: Option<serde_yaml::Value>,
    pub restart: Option<Restart>,
    pub every: Option<Duration>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub timeout: Option<Duration>,
    pub backoff: Option<Backoff>,
    pub crash_loop: Option<CrashLoop>,
    pub stop: Option<Stop>,
    #[serde(default)]
    pub after: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    #[serde(default)]
    pub clear_env: bool,
    pub cwd: Option<PathBuf>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub umask: Option<Umask>,
    pub limits: Option<Limits>,
    pub heartbeat: Option<TaskHeartbeat>,
    pub probe: Option<Probe>,
    pub instances: Option<u32>,
    #[serde(default)]
    pub on_failure: Vec<String>,
}

/// A task's `probe:`: one of `exec`, `tcp`, `http`, and how often.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    pub exec: Option<Vec<String>>,
    pub tcp: Option<String>,
    pub http: Option<String>,
    pub every: Option<Duration>,
    pub timeout: Option<Duration>,
    pub failures: Option<u32>,
    pub start: Option<Duration>,
}

/// A task's `heartbeat:`: `DURATION` (the timeout) or `{ timeout: DURATION, start: DURATION }`.
#[derive(Debug)]
pub struct TaskHeartbeat {
    pub timeout: Duration,
    pub start: Option<Duration>,
}

impl<'de> Deserialize<'de> for TaskHeartbeat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            timeout: Duration,
            start: Option<Duration>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TaskHeartbeat;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration (30s) or { timeout: DURATION, start: DURATION }")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TaskHeartbeat, A::Error> {
                // Through the map itself, so that an error inside names its field.
                let full = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(TaskHeartbeat {
                    timeout: full.timeout,
                    start: full.start,
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TaskHeartbeat, E> {
                timeout_only(Duration::deserialize(de::value::StrDeserializer::<E>::new(
                    v,
                )))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TaskHeartbeat, E> {
                timeout_only(Duration::deserialize(de::value::U64Deserializer::<E>::new(
                    v,
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TaskHeartbeat, E> {
                timeout_only(Duration::deserialize(de::value::I64Deserializer::<E>::new(
                    v,
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<TaskHeartbeat, E> {
                timeout_only(Duration::deserialize(de::value::F64Deserializer::<E>::new(
                    v,
                )))
            }
        }
        fn timeout_only<E>(timeout: Result<Duration, E>) -> Result<TaskHeartbeat, E> {
            Ok(TaskHeartbeat {
                timeout: timeout?,
                start: None,
            })
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Always,
    OnFailure,
    Never,
}

impl<'de> Deserialize<'de> for Restart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        word(
            d,
            "restart policy",
            &["always", "on-failure", "never"],
            &[Restart::Always, Restart::OnFailure, Restart::Never],
        )
    }
}

/// One of the words `names`, as the value at the same place in `values`. A word that is not
/// one of them is an unknown variant, as serde says it; anything but a word (a number, a list)
/// is named as what it is (serde_yaml would say "expected a Value::Tagged enum").
fn word<'de, D: Deserializer<'de>, T: Copy>(
    d: D,
    what: &str,
    names: &'static [&'static str],
    values: &[T],
) -> Result<T, D::Error> {
    let value = serde_yaml::Value::deserialize(d)?;
    if let Some(text) = value.as_str() {
        return match names.iter().position(|n| *n == text) {
            Some(i) => Ok(values[i]),
            // serde's own words, requoted like every other message (see `serde_message`).
            None => Err(de::Error::unknown_variant(text, names)),
        };
    }
    let shown = match &value {
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        serde_yaml::Value::Sequence(_) => "(a list)".into(),
        serde_yaml::Value::Mapping(_) => "(a map)".into(),
        serde_yaml::Value::Tagged(t) => format!("(tagged {})", t.tag),
        serde_yaml::Value::Null | serde_yaml::Value::String(_) => "(nothing)".into(),
    };
    Err(de::Error::custom(format!(
        "invalid {what} {shown}: expected one of {}",
        names.join(", ")
    )))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    pub initial: Option<Duration>,
    pub max: Option<Duration>,
    pub stable: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashLoop {
    pub max: Option<u32>,
    pub within: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stop {
    pub signal: Option<SignalName>,
    pub grace: Option<Duration>,
}

/// `limits:`, one optional field per resource (`man 2 setrlimit`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(rename = "as")]
    pub address_space: Option<Limit>,
    pub core: Option<Limit>,
    pub cpu: Option<Limit>,
    pub data: Option<Limit>,
    pub fsize: Option<Limit>,
    pub locks: Option<Limit>,
    pub memlock: Option<Limit>,
    pub msgqueue: Option<Limit>,
    pub nice: Option<Limit>,
    pub nofile: Option<Limit>,
    pub nproc: Option<Limit>,
    pub rss: Option<Limit>,
    pub rtprio: Option<Limit>,
    pub sigpending: Option<Limit>,
    pub stack: Option<Limit>,
}

/// An environment value: any scalar, kept as text (`PORT: 5005` is the string "5005").
#[derive(Debug, Clone)]
pub struct EnvValue(pub String);

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = EnvValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<EnvValue, E> {
                Ok(EnvValue(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A umask, written in octal: `"027"`, `027` or `0o027`.
#[derive(Debug, Clone, Copy)]
pub struct Umask(pub u32);

impl<'de> Deserialize<'de> for Umask {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Umask;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an octal umask such as \"027\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Umask, E> {
                let digits = v.trim().trim_start_matches("0o");
                match u32::from_str_radix(digits, 8) {
                    Ok(mask) if mask <= 0o777 && !digits.is_empty() => Ok(Umask(mask)),
                    _ => Err(E::custom(format!(
                        "invalid umask {v:?}: expected octal digits from 000 to 777, e.g. \"027\""
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Umask, E> {
                // YAML reads `027` as the number 27: its digits were meant as octal.
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Umask, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

/// Why a real-time signal cannot be a stop signal.
const REAL_TIME: &str = "a real-time signal (32 to 64 on Linux: SIGRTMIN to SIGRTMAX, the first \
    ones the C library's own) cannot be a stop signal here: the runner stops tasks with one of \
    the standard signals, 1 to 31, such as TERM (15), INT (2), HUP (1), QUIT (3) or USR1 (10)";

/// A signal: `TERM`, `SIGTERM`, `term` or `15`; a standard signal (1 to 31), which is what
/// the runner's signalling (`nix::sys::signal::Signal`, the cgroup's and the process group's)
/// can send.
#[derive(Debug, Clone, Copy)]
pub struct SignalName(pub nix::sys::signal::Signal);

impl<'de> Deserialize<'de> for SignalName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SignalName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a signal name such as TERM, INT, HUP, QUIT, USR1, or its number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SignalName, E> {
                let upper = v.trim().to_ascii_uppercase();
                let name = if upper.starts_with("SIG") {
                    upper
                } else {
                    format!("SIG{upper}")
                };
                if name.starts_with("SIGRTMIN") || name.starts_with("SIGRTMAX") {
                    return Err(E::custom(format!("{v:?}: {REAL_TIME}")));
                }
                name.parse().map(SignalName).map_err(|_| {
                    E::custom(format!(
                        "unknown signal {v:?}: expected a name such as TERM, INT, HUP, QUIT, USR1"
                    ))
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SignalName, E> {
                match v {
                    0 => Err(E::custom(
                        "signal 0 sends nothing (it only tests that a process exists): give a \
                         signal such as TERM (15)",
                    )),
                    32..=64 => Err(E::custom(format!("signal {v}: {REAL_TIME}"))),
                    _ => i32::try_from(v)
                        .ok()
                        .and_then(|n| nix::sys::signal::Signal::try_from(n).ok())
                        .map(SignalName)
                        .ok_or_else(|| {
                            E::custom(format!(
                                "unknown signal number {v}: Linux's signals are 1 to 64"
                            ))
                        }),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SignalName, E> {
                Err(E::custom(format!(
                    "unknown signal number {v}: Linux's signals are 1 to 64"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A System V key: `0x4e53` or `20051`, as a number or a string.
#[derive(Debug, Clone, Copy)]
pub struct IpcKey(pub nonstop_ipc::Key);

impl<'de> Deserialize<'de> for IpcKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IpcKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a System V key such as 0x4e53")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IpcKey, E> {
                v.parse().map(IpcKey).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IpcKey, E> {
                u32::try_from(v)
                    .map_err(|_| E::custom(format!("key {v} does not fit in 32 bits")))
                    .and_then(|v| nonstop_ipc::Key::new(v as i32).map_err(E::custom))
                    .map(IpcKey)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IpcKey, E> {
                i32::try_from(v)
                    .map_err(|_| E::custom(format!("key {v} does not fit in 32 bits")))
                    .and_then(|v| nonstop_ipc::Key::new(v).map_err(E::custom))
                    .map(IpcKey)
            }
        }
        d.deserialize_any(V)
    }
}

/// A resource limit: a number, `unlimited`, or `{ soft: N, hard: M }`. A single value sets both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub soft: u64,
    pub hard: u64,
}

pub const UNLIMITED: u64 = u64::MAX;

fn limit_value<E: de::Error>(v: &str) -> Result<u64, E> {
    match v.trim() {
        "unlimited" | "infinity" => Ok(UNLIMITED),
        other => other.parse().map_err(|_| {
            E::custom(format!(
                "invalid limit {v:?}: expected a number or \"unlimited\""
            ))
        }),
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Limit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, \"unlimited\", or { soft: N, hard: M }")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Limit, E> {
                Ok(Limit { soft: v, hard: v })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Limit, E> {
                let n = limit_value(v)?;
                Ok(Limit { soft: n, hard: n })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Limit, A::Error> {
                let (mut soft, mut hard) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    let value: LimitNumber = map.next_value()?;
                    match key.as_str() {
                        "soft" => soft = Some(value.0),
                        "hard" => hard = Some(value.0),
                        other => {
                            return Err(de::Error::unknown_field(other, &["soft", "hard"]));
                        }
                    }
                }
                match (soft, hard) {
                    (Some(soft), Some(hard)) if soft <= hard => Ok(Limit { soft, hard }),
                    (Some(_), Some(_)) => Err(de::Error::custom("soft limit above hard limit")),
                    (Some(soft), None) => Ok(Limit { soft, hard: soft }),
                    (None, Some(hard)) => Ok(Limit { soft: hard, hard }),
                    (None, None) => Err(de::Error::custom("expected soft and/or hard")),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// One side of `{ soft, hard }`: a number or `unlimited`.
struct LimitNumber(u64);

impl<'de> Deserialize<'de> for LimitNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LimitNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or \"unlimited\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LimitNumber, E> {
                Ok(LimitNumber(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LimitNumber, E> {
                limit_value(v).map(LimitNumber)
            }
        }
        d.deserialize_any(V)
    }
}
