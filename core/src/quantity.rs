//! [`Duration`] and [`ByteSize`]: quantities written the way operators write them.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Why a quantity did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct ParseError {
    what: &'static str,
    input: String,
    reason: String,
}

impl ParseError {
    fn new(what: &'static str, input: &str, reason: impl Into<String>) -> ParseError {
        ParseError {
            what,
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A length of time: `250ms`, `5s`, `5m`, `2h`, `1.5d`, or a plain number of seconds (`30`,
/// `0.5`). Units: `ms`, `s`, `m`, `h`, `d`. Never negative, and at most [`Duration::MAX`]
/// (100 years) when parsed: no timeout or period needs more, and every sum of an instant and
/// such a duration fits the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

/// Why a duration longer than [`Duration::MAX`] is refused.
const TOO_LONG: &str = "too long: a duration is at most 100 years (36500d)";

const DURATION_UNITS: [(&str, f64); 5] = [
    ("ms", 0.001),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
    ("d", 86400.0),
];

impl Duration {
    /// The longest duration that parses: 100 years of 365 days (`36500d`). Longer ones are
    /// refused with an error, not wrapped or saturated.
    pub const MAX: Duration = Duration(std::time::Duration::from_secs(100 * 365 * 86_400));

    /// Whole seconds.
    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }

    /// A number of seconds (from a YAML number), at most [`Duration::MAX`].
    pub fn from_secs_f64(secs: f64) -> Result<Duration, ParseError> {
        Duration::bounded(secs).map_err(|why| ParseError::new("duration", &shown(secs), why))
    }

    /// A whole number of seconds, at most [`Duration::MAX`]; an error shows it as written
    /// (`9223372036854775807`, not the nearest float).
    fn from_secs_int(secs: i128) -> Result<Duration, ParseError> {
        let bad = |why| ParseError::new("duration", &secs.to_string(), why);
        if secs < 0 {
            return Err(bad("must be a finite number of seconds, 0 or more"));
        }
        match u64::try_from(secs) {
            Ok(s) if s <= Duration::MAX.as_secs() => {
                Ok(Duration(std::time::Duration::from_secs(s)))
            }
            _ => Err(bad(TOO_LONG)),
        }
    }

    /// `secs` seconds if that is a duration that parses; else why not.
    fn bounded(secs: f64) -> Result<Duration, &'static str> {
        if !secs.is_finite() || secs < 0.0 {
            return Err("must be a finite number of seconds, 0 or more");
        }
        match std::time::Duration::try_from_secs_f64(secs) {
            Ok(d) if d <= Duration::MAX.0 => Ok(Duration(d)),
            _ => Err(TOO_LONG),
        }
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl FromStr for Duration {
    type Err = ParseError;

    fn from_str(input: &str) -> Result<Duration, ParseError> {
        let (number, unit) = split_unit(input);
        let bad = |reason: &str| ParseError::new("duration", input, reason);
        if input.trim_start().starts_with('-') {
            return Err(bad("a duration cannot be negative"));
        }
        // YAML's and JSON's words for what is not a number (`.inf` reaches a plugin's
        // argument as text: JSON has no infinity).
        let word = input.trim().trim_start_matches('+').to_ascii_lowercase();
        if matches!(word.as_str(), ".inf" | "inf" | "infinity" | ".nan" | "nan") {
            return Err(bad("must be a finite number of seconds, 0 or more"));
        }
        let scale = if unit.is_empty() {
            1.0
        } else {
            DURATION_UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, scale)| *scale)
                .ok_or_else(|| bad("the unit must be one of ms, s, m, h, d (e.g. 250ms, 1.5d)"))?
        };
        if number.is_empty() {
            return Err(bad("expected a number before the unit (e.g. 5s)"));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| bad("expected a number before the unit (e.g. 5s)"))?;
        Duration::bounded(value * scale).map_err(bad)
    }
}

impl fmt::Display for Duration {
    /// The shortest exact form: `250ms`, `5s`, `90s`, `5m`, `2h`, `1d`, `36h`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !self.0.subsec_nanos().is_multiple_of(1_000_000) {
            return write!(f, "{}s", self.0.as_secs_f64());
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if ms >= size && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        deserializer.deserialize_any(QuantityVisitor::<Duration>::new())
    }
}

/// A number of bytes: `10M`, `512KiB`, `1G`, or a plain number of bytes. `K`/`KB`/`KiB` are all
/// 1024 bytes (sizes of log files, not of disks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = ParseError;

    fn from_str(input: &str) -> Result<ByteSize, ParseError> {
        let (number, unit) = split_unit(input);
        let bad = |reason: &str| ParseError::new("size", input, reason);
        if input.trim_start().starts_with('-') {
            return Err(bad("a size cannot be negative"));
        }
        let scale: u64 = match unit.to_ascii_uppercase().as_str() {
            "" | "B" => 1,
            "K" | "KB" | "KIB" => 1 << 10,
            "M" | "MB" | "MIB" => 1 << 20,
            "G" | "GB" | "GIB" => 1 << 30,
            "T" | "TB" | "TIB" => 1 << 40,
            _ => return Err(bad("the unit must be one of B, K, M, G, T (e.g. 10M)")),
        };
        let value: f64 = number
            .parse()
            .map_err(|_| bad("expected a number (e.g. 10M)"))?;
        let bytes = value * scale as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(bad("out of range"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, size) in [
            ("T", 1u64 << 40),
            ("G", 1 << 30),
            ("M", 1 << 20),
            ("K", 1 << 10),
        ] {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ByteSize, D::Error> {
        deserializer.deserialize_any(QuantityVisitor::<ByteSize>::new())
    }
}

/// `" 1.5 d"` → `("1.5", "d")`: the leading number and the unit after it, trimmed.
fn split_unit(input: &str) -> (&str, &str) {
    let s = input.trim();
    let mut split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    // An exponent belongs to the number (`1e3ms`, `1.5E-2s`): no unit begins with `e`.
    let rest = &s.as_bytes()[split..];
    if split > 0 && matches!(rest.first(), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(rest.get(1), Some(b'+' | b'-')));
        let digits = rest[1 + sign..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits > 0 {
            split += 1 + sign + digits;
        }
    }
    let (number, unit) = s.split_at(split);
    (number, unit.trim())
}

/// A number from the file as a message shows it: plainly, or with an exponent when that is
/// shorter (`1e300`, not 301 digits).
fn shown(n: f64) -> String {
    let plain = n.to_string();
    let exponent = format!("{n:e}");
    if exponent.len() < plain.len() {
        exponent
    } else {
        plain
    }
}

/// A quantity parsed from a string, or from a number in its base unit.
trait Quantity: FromStr<Err = ParseError> {
    const EXPECTING: &'static str;
    fn from_number(n: f64) -> Result<Self, ParseError>;
    /// A whole number, exactly (a float has 53 bits of it).
    fn from_integer(n: i128) -> Result<Self, ParseError>;
}

impl Quantity for Duration {
    const EXPECTING: &'static str =
        "a duration such as 250ms, 5s, 5m, 2h, 1.5d or a number of seconds";
    fn from_number(n: f64) -> Result<Self, ParseError> {
        Duration::from_secs_f64(n)
    }
    fn from_integer(n: i128) -> Result<Self, ParseError> {
        Duration::from_secs_int(n)
    }
}

impl Quantity for ByteSize {
    const EXPECTING: &'static str = "a size such as 10M, 512K or a number of bytes";
    fn from_number(n: f64) -> Result<Self, ParseError> {
        if n.is_finite() && n >= 0.0 && n <= u64::MAX as f64 {
            Ok(ByteSize(n as u64))
        } else {
            Err(ParseError::new("size", &shown(n), "out of range"))
        }
    }
    fn from_integer(n: i128) -> Result<Self, ParseError> {
        u64::try_from(n)
            .map(ByteSize)
            .map_err(|_| ParseError::new("size", &n.to_string(), "out of range"))
    }
}

struct QuantityVisitor<T>(std::marker::PhantomData<T>);

impl<T> QuantityVisitor<T> {
    fn new() -> Self {
        QuantityVisitor(std::marker::PhantomData)
    }
}

impl<T: Quantity> Visitor<'_> for QuantityVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::from_integer(v.into()).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::from_integer(v.into()).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        T::from_number(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> std::time::Duration {
        s.parse::<Duration>().unwrap().0
    }

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(d("250ms"), std::time::Duration::from_millis(250));
        assert_eq!(d("5s"), std::time::Duration::from_secs(5));
        assert_eq!(d("5m"), std::time::Duration::from_secs(300));
        assert_eq!(d("2h"), std::time::Duration::from_secs(7200));
        assert_eq!(d("1.5d"), std::time::Duration::from_secs(129_600));
        assert_eq!(d("0.02d"), std::time::Duration::from_millis(1_728_000));
        assert_eq!(d("30"), std::time::Duration::from_secs(30));
        assert_eq!(d("0ms"), std::time::Duration::ZERO);
        assert_eq!(d(" 7 s "), std::time::Duration::from_secs(7));
        for bad in ["", "s", "5x", "-1s", "1.2.3s", "5 sec", "1e999d"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} parsed");
        }
        let err = "5x".parse::<Duration>().unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid duration \"5x\": the unit must be one of ms, s, m, h, d (e.g. 250ms, 1.5d)"
        );
        assert_eq!(
            "-5s".parse::<Duration>().unwrap_err().to_string(),
            "invalid duration \"-5s\": a duration cannot be negative"
        );
        assert_eq!(
            "-1K".parse::<ByteSize>().unwrap_err().to_string(),
            "invalid size \"-1K\": a size cannot be negative"
        );
    }

    #[test]
    fn durations_are_at_most_100_years_in_every_form() {
        let max = std::time::Duration::from_secs(3_153_600_000);
        assert_eq!(Duration::MAX.0, max);
        assert_eq!(Duration::MAX.to_string(), "36500d");
        // The maximum, written every way, parses; and shows as what parses again.
        for at_max in [
            "36500d",
            "876000h",
            "52560000m",
            "3153600000s",
            "3153600000",
        ] {
            let d: Duration = at_max.parse().unwrap();
            assert_eq!(d, Duration::MAX, "{at_max}");
            assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        }
        let v: Vec<Duration> = serde_yaml::from_str("[3153600000, 3153600000.0, 36500d]").unwrap();
        assert!(v.iter().all(|&d| d == Duration::MAX), "{v:?}");
        // A millisecond more, and the values that once passed the check and aborted the runner.
        let too_long = "too long: a duration is at most 100 years (36500d)";
        for above in [
            "36500.00000001d",
            "3153600000.001s",
            "3153600001",
            "36501d",
            "213503982334601d",
            "18446744073709551615",
        ] {
            assert_eq!(
                above.parse::<Duration>().unwrap_err().to_string(),
                format!("invalid duration \"{above}\": {too_long}"),
            );
        }
        for above in [
            "1e19",
            "9.3e18",
            "3153600001",
            "1.8e19",
            "18446744073709551615",
        ] {
            let err = serde_yaml::from_str::<Duration>(above)
                .unwrap_err()
                .to_string();
            assert!(err.contains(too_long), "{above}: {err}");
        }
        assert_eq!(
            Duration::from_secs_f64(1e19).unwrap_err().to_string(),
            format!("invalid duration \"1e19\": {too_long}")
        );
        // Through JSON too (plugin arguments).
        let err = serde_json::from_str::<Duration>("1e19")
            .unwrap_err()
            .to_string();
        assert!(err.contains(too_long), "{err}");
        assert!(serde_json::from_str::<Duration>("\"36500d\"").is_ok());
    }

    /// A whole number is shown as written, not as the nearest float (9223372036854775807 was
    /// `9223372036854776000`), and a size keeps every bit of it.
    #[test]
    fn whole_numbers_are_taken_and_shown_exactly() {
        let err = serde_yaml::from_str::<Duration>("0x7fffffffffffffff")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid duration \"9223372036854775807\": too long"),
            "{err}"
        );
        let size: ByteSize = serde_yaml::from_str("0x7fffffffffffffff").unwrap();
        assert_eq!(size.0, 0x7fff_ffff_ffff_ffff);
        let size: ByteSize = serde_json::from_str("18446744073709551615").unwrap();
        assert_eq!(size.0, u64::MAX);
    }

    /// YAML's infinities and NaN, which reach a plugin's arguments as text (JSON has none),
    /// are refused as what they are.
    #[test]
    fn infinity_and_nan_are_not_durations_as_numbers_or_as_text() {
        for text in [".inf", "inf", ".NaN", "+.inf"] {
            assert_eq!(
                text.parse::<Duration>().unwrap_err().to_string(),
                format!("invalid duration {text:?}: must be a finite number of seconds, 0 or more")
            );
        }
        let err = serde_yaml::from_str::<Duration>(".inf")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid duration \"inf\": must be a finite number"),
            "{err}"
        );
    }

    #[test]
    fn an_exponent_belongs_to_the_number_before_the_unit() {
        assert_eq!(
            "1e3ms".parse::<Duration>().unwrap().0,
            std::time::Duration::from_secs(1)
        );
        assert_eq!(
            "1.5E-1s".parse::<Duration>().unwrap().0,
            std::time::Duration::from_millis(150)
        );
        assert_eq!(
            "2e+1m".parse::<Duration>().unwrap().0,
            std::time::Duration::from_secs(1200)
        );
        // Too long, said as such (not as a bad unit), and the number short.
        let err = "1.7976931348623157e308ms"
            .parse::<Duration>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("too long"), "{err}");
        let err = Duration::from_secs_f64(1e300).unwrap_err().to_string();
        assert!(err.starts_with("invalid duration \"1e300\""), "{err}");
        // A letter that is no exponent is still a unit.
        assert!("5e".parse::<Duration>().is_err());
        assert!("5x".parse::<Duration>().is_err());
    }

    #[test]
    fn durations_display_in_their_shortest_exact_form() {
        for (input, shown) in [
            ("250ms", "250ms"),
            ("90s", "90s"),
            ("1.5m", "90s"),
            ("5m", "5m"),
            ("1.5d", "36h"),
            ("2d", "2d"),
            ("0s", "0ms"),
        ] {
            assert_eq!(input.parse::<Duration>().unwrap().to_string(), shown);
        }
    }

    #[test]
    fn quantities_deserialize_from_strings_and_numbers() {
        let v: Vec<Duration> = serde_yaml::from_str("[5s, 30, 0.5, \"2h\"]").unwrap();
        assert_eq!(
            v.iter().map(|d| d.0.as_millis()).collect::<Vec<_>>(),
            [5000, 30000, 500, 7_200_000]
        );
        let err = serde_yaml::from_str::<Duration>("[1]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("a duration such as 250ms"), "{err}");
        let err = serde_yaml::from_str::<Duration>("-3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be a finite number of seconds"), "{err}");
        let v: Vec<ByteSize> = serde_yaml::from_str("[10M, 512KiB, 100, 1.5K, 2g]").unwrap();
        assert_eq!(
            v.iter().map(|b| b.0).collect::<Vec<_>>(),
            [10 << 20, 512 << 10, 100, 1536, 2 << 30]
        );
        assert_eq!(ByteSize(10 << 20).to_string(), "10M");
        assert!("10 parsecs".parse::<ByteSize>().is_err());
    }
}
