//! System V IPC for nonstop: the only crate that talks to the kernel's semaphores and shared
//! memory.
//!
//! - [`Semaphore`]: one SysV semaphore used as a lock. Created race-free (the creator wins
//!   `IPC_CREAT | IPC_EXCL` and initialises it; openers wait until it is initialised), locked with
//!   `SEM_UNDO` so the kernel releases the lock of a process that dies holding it, and acquired
//!   with a timeout ([`Semaphore::acquire_timeout`]) so a wedged lock is an [`Error::Timeout`],
//!   not a hang. The lock is a [`SemGuard`] that releases on drop.
//! - [`SharedMemory`]: one attached segment of an exact size, detached on drop.
//! - [`HeartbeatTable`]: nonstop's heartbeat table: a checked header, then fixed slots that
//!   record a process (pid plus start time, see [`ProcessId`]), its name, timeout and last beat.
//!   Taking a slot ([`HeartbeatTable::register`]) holds the semaphore; a beat
//!   ([`Registration::beat`]) is one atomic store of a `CLOCK_MONOTONIC_COARSE` timestamp.
//!   The layout, byte by byte, is in [`table::layout`].
//! - [`Heartbeat`]: the slot a runner registered for one of its tasks, found through
//!   `NONSTOP_HEARTBEAT` ([`Heartbeat::from_env`]); the task only beats.
//! - [`SeedTable`]: the seed framework's `st_procinfo` table (key `0x5095`), so services built on
//!   it are watched unchanged.
//!
//! Everything is created owner-only (`0o600`) unless the options say otherwise. Errors are one
//! [`Error`] type whose messages say what to do (often: which `ipcrm` command removes what).
//!
//! ```no_run
//! use std::time::Duration;
//! use nonstop_ipc::{HeartbeatTable, Key, TableOptions};
//!
//! # fn main() -> Result<(), nonstop_ipc::Error> {
//! let table = HeartbeatTable::open_or_create(Key::new(0x4e53)?, &TableOptions::default())?;
//! let me = table.register("ingest", Duration::from_secs(30))?;
//! loop {
//!     // ... one unit of work ...
//!     me.beat();
//! #   break;
//! }
//! # Ok(())
//! # }
//! ```

pub mod clock;
mod error;
pub mod heartbeat;
mod key;
mod process;
pub mod seed;
mod sem;
mod shm;
pub mod table;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{Error, Object, Result};
pub use heartbeat::Heartbeat;
pub use key::Key;
pub use process::{Liveness, PidFd, ProcessId, ancestors, started_at};
pub use seed::{SeedOptions, SeedRegistration, SeedSlot, SeedTable};
pub use sem::{SemGuard, SemOptions, Semaphore};
pub use shm::SharedMemory;
pub use table::{HeartbeatTable, Registration, SlotInfo, TableOptions};
