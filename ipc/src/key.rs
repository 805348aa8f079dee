//! System V IPC keys.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// A System V IPC key: the name under which unrelated processes find one semaphore set or
/// shared-memory segment. Never 0: that is `IPC_PRIVATE`, which always makes a new object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub(crate) i32);

impl Key {
    /// The seed framework's key for its heartbeat segment and its semaphore (`0x5095`).
    pub const SEED: Key = Key(0x5095);
    /// nonstop's default key for a pipeline's heartbeat table (`0x4e53`, "NS"), when tasks have
    /// heartbeats and the pipeline names no table; what `nonstop ps` reads by default.
    pub const DEFAULT: Key = Key(0x4e53);

    /// Makes a key, refusing 0 (`IPC_PRIVATE`).
    pub fn new(raw: i32) -> Result<Key> {
        if raw == 0 {
            return Err(Error::Invalid {
                what: "key",
                reason: "0 is IPC_PRIVATE, which never names a shared object".into(),
            });
        }
        Ok(Key(raw))
    }

    /// The raw `key_t` value.
    pub fn raw(self) -> i32 {
        self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `ipcs` prints keys as 8 hex digits; so do we, so operators can grep for them.
        write!(f, "0x{:08x}", self.0 as u32)
    }
}

impl FromStr for Key {
    type Err = Error;

    /// Parses `0x5095` (hex) or `20629` (decimal); any 32-bit pattern but 0.
    fn from_str(s: &str) -> Result<Key> {
        let s = s.trim();
        let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) => u32::from_str_radix(hex, 16).map(|v| v as i32),
            None => s
                .parse::<i32>()
                .or_else(|_| s.parse::<u32>().map(|v| v as i32)),
        };
        let raw = parsed.map_err(|_| Error::Invalid {
            what: "key",
            reason: format!("{s:?} is not a 32-bit number (write it as 0x5095 or 20629)"),
        })?;
        Key::new(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_and_decimal_and_refuses_private() {
        assert_eq!("0x5095".parse::<Key>().unwrap(), Key::SEED);
        assert_eq!("20629".parse::<Key>().unwrap(), Key::SEED);
        assert_eq!("0xffffffff".parse::<Key>().unwrap().raw(), -1);
        assert!("0".parse::<Key>().is_err());
        assert!("0x".parse::<Key>().is_err());
        assert!("nope".parse::<Key>().is_err());
        assert_eq!(Key::SEED.to_string(), "0x00005095");
    }
}
