//! [`Heartbeat`]: the slot a runner gave a task, found through `NONSTOP_HEARTBEAT`.
//!
//! A task with `heartbeat:` in its pipeline gets a slot in the runner's table, registered for
//! each of its instances by the runner itself; its environment names it as
//! `NONSTOP_HEARTBEAT=KEY:SLOT` (the key as `ipcs` prints it, the slot in decimal, for example
//! `0x00004e53:3`). The program only beats:
//!
//! ```no_run
//! # fn main() -> Result<(), nonstop_ipc::Error> {
//! let heartbeat = nonstop_ipc::Heartbeat::from_env()?;
//! loop {
//!     // ... one unit of work ...
//!     heartbeat.beat();
//! #   break;
//! }
//! # Ok(())
//! # }
//! ```

use std::sync::atomic::Ordering;

use crate::table::layout;
use crate::{Error, HeartbeatTable, Key, Result, TableOptions, clock};

/// The environment variable that names a task's slot: `KEY:SLOT`.
pub const ENV: &str = "NONSTOP_HEARTBEAT";

/// A slot of a runner's table that this process beats for (its task's).
#[derive(Debug)]
pub struct Heartbeat {
    table: HeartbeatTable,
    index: u32,
    clock: clock::CoarseClock,
}

impl Heartbeat {
    /// The slot named by `NONSTOP_HEARTBEAT`. Fails, saying why, when the variable is not set
    /// (the process was not started by a task with `heartbeat:`), is malformed, or names a
    /// table or slot that does not exist or was freed.
    pub fn from_env() -> Result<Heartbeat> {
        match std::env::var(ENV) {
            Ok(value) => Heartbeat::from_spec(&value),
            Err(std::env::VarError::NotPresent) => Err(invalid(format!(
                "{ENV} is not set: this process was not started by a nonstop task with \
                 `heartbeat:` (a process nonstop did not start registers itself instead)"
            ))),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(invalid(format!("{ENV} is not valid UTF-8")))
            }
        }
    }

    /// The slot named by `spec`, written as in `NONSTOP_HEARTBEAT` (`KEY:SLOT`).
    pub fn from_spec(spec: &str) -> Result<Heartbeat> {
        let (key, index) = parse(spec)?;
        let table = match HeartbeatTable::open(key, &TableOptions::default()) {
            Err(Error::NotFound { .. }) => {
                return Err(invalid(format!(
                    "{ENV}={spec}: there is no heartbeat table at key {key}; the runner that \
                     gave this task its slot is not running"
                )));
            }
            other => other?,
        };
        if index >= table.capacity() {
            return Err(invalid(format!(
                "{ENV}={spec}: the table at {key} has {} slots, there is no slot {index}",
                table.capacity()
            )));
        }
        let state = table.slot_state(index);
        if state != layout::STATE_ACTIVE && state != layout::STATE_RESERVED {
            return Err(invalid(format!(
                "{ENV}={spec}: slot {index} is free; the runner that gave it to this task has \
                 stopped or freed it"
            )));
        }
        Ok(Heartbeat {
            table,
            index,
            clock: clock::CoarseClock::get(),
        })
    }

    /// Records that this task is alive and making progress: one read of the coarse
    /// monotonic clock and one atomic store, as [`crate::Registration::beat`].
    #[inline]
    pub fn beat(&self) {
        self.table
            .beat_slot(self.index, self.clock.now_ns(), Ordering::Relaxed);
    }

    /// The table's key.
    pub fn key(&self) -> Key {
        self.table.key()
    }

    /// The slot's index.
    pub fn index(&self) -> u32 {
        self.index
    }
}

/// `KEY:SLOT` as a [`Key`] and a slot index.
pub fn parse(spec: &str) -> Result<(Key, u32)> {
    let (key, index) = spec.split_once(':').ok_or_else(|| {
        invalid(format!(
            "{ENV}={spec:?} is not KEY:SLOT (for example 0x00004e53:3)"
        ))
    })?;
    let key: Key = key.parse()?;
    let index = index.parse::<u32>().map_err(|_| {
        invalid(format!(
            "{ENV}={spec:?}: the slot {index:?} is not a number (KEY:SLOT, for example 0x00004e53:3)"
        ))
    })?;
    Ok((key, index))
}

/// `KEY:SLOT`, as [`parse`] reads it.
pub fn format(key: Key, index: u32) -> String {
    format!("{key}:{index}")
}

fn invalid(reason: String) -> Error {
    Error::Invalid {
        what: "heartbeat slot",
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_formats_and_says_what_is_wrong() {
        let key = Key::new(0x4e53).unwrap();
        assert_eq!(format(key, 3), "0x00004e53:3");
        assert_eq!(parse("0x00004e53:3").unwrap(), (key, 3));
        assert_eq!(parse("20051:0").unwrap(), (key, 0));
        let err = parse("0x4e53").unwrap_err().to_string();
        assert!(err.contains("is not KEY:SLOT"), "{err}");
        let err = parse("0x4e53:x").unwrap_err().to_string();
        assert!(err.contains("the slot \"x\" is not a number"), "{err}");
        assert!(parse("0:1").is_err());
    }
}
