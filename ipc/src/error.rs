//! The one error type of the crate: what failed, on which object, and what to do about it.

use std::time::Duration;

use nix::errno::Errno;

use crate::Key;

/// The kind of System V object an error is about; also names the `ipcs`/`ipcrm` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    /// A semaphore set (`ipcs -s`, `ipcrm -s ID`).
    Semaphore,
    /// A shared-memory segment (`ipcs -m`, `ipcrm -m ID`).
    SharedMemory,
}

impl Object {
    /// The `ipcs`/`ipcrm` flag for this kind of object.
    pub fn flag(self) -> &'static str {
        match self {
            Object::Semaphore => "-s",
            Object::SharedMemory => "-m",
        }
    }
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Object::Semaphore => "semaphore",
            Object::SharedMemory => "shared memory",
        })
    }
}

/// Everything that can go wrong in this crate. Each message names the object and says what an
/// operator can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `EACCES`/`EPERM`: the object belongs to someone else or its mode forbids us.
    #[error(
        "permission denied on {object} key {key}: it belongs to another user or its mode forbids \
         access (see `ipcs {flag}`); run as its owner or remove it with `ipcrm {flag} ID`",
        flag = object.flag()
    )]
    PermissionDenied {
        /// Which kind of object.
        object: Object,
        /// Its key.
        key: Key,
    },

    /// `ENOENT`: nothing exists at the key and we were not asked to create it.
    #[error("no {object} exists at key {key}; start the process that creates it first")]
    NotFound {
        /// Which kind of object.
        object: Object,
        /// Its key.
        key: Key,
    },

    /// `EEXIST`: an object exists at the key where a new one had to be created.
    #[error(
        "{object} key {key} already exists; another program may use this key (see `ipcs {flag}`)",
        flag = object.flag()
    )]
    Exists {
        /// Which kind of object.
        object: Object,
        /// Its key.
        key: Key,
    },

    /// `ENOSPC`/`ENOMEM`: a system-wide limit on System V objects or their memory was reached.
    #[error(
        "cannot create {object} key {key}: system limit reached ({limit}); remove unused objects \
         (`ipcs {flag}`, `ipcrm {flag} ID`) or raise the limit with sysctl",
        flag = object.flag()
    )]
    NoSpace {
        /// Which kind of object.
        object: Object,
        /// Its key.
        key: Key,
        /// The sysctl that bounds it.
        limit: &'static str,
    },

    /// A shared-memory segment exists at the key with another size than the one asked for.
    #[error(
        "shared memory key {key} (id {id}) is {actual} bytes, expected {expected}; another program \
         or another build uses this key. If nothing uses it any more, remove it with `ipcrm -m {id}`"
    )]
    WrongSize {
        /// The key asked for.
        key: Key,
        /// The id of the existing segment.
        id: i32,
        /// The size asked for.
        expected: usize,
        /// The size of the existing segment.
        actual: usize,
    },

    /// The segment at the key does not hold a valid nonstop heartbeat table.
    #[error(
        "shared memory key {key} (id {id}) is not a usable nonstop heartbeat table: {reason}. \
         If nothing uses it any more, remove it with `ipcrm -m {id}`"
    )]
    BadHeader {
        /// The key.
        key: Key,
        /// The id of the segment.
        id: i32,
        /// What is wrong with the header.
        reason: String,
    },

    /// The heartbeat table belongs to another runner, which is running.
    #[error(
        "heartbeat table {key} belongs to another runner (pid {pid}), which is running: two \
         pipelines cannot share one table; give this pipeline another heartbeat.key, or stop \
         that runner first"
    )]
    Owned {
        /// The table's key.
        key: Key,
        /// The owning runner.
        pid: i32,
    },

    /// The semaphore set at the key is not a single semaphore: another program owns the key.
    #[error(
        "semaphore key {key} (id {id}) is a set of {nsems} semaphores, expected 1: another program \
         uses this key. Pick another key, or remove it with `ipcrm -s {id}` if nothing uses it"
    )]
    ForeignSemaphore {
        /// The key.
        key: Key,
        /// The id of the set.
        id: i32,
        /// How many semaphores the set has.
        nsems: u64,
    },

    /// The semaphore exists but its creator never finished initialising it.
    #[error(
        "semaphore key {key} (id {id}) was not initialised by its creator within {waited:?} (it may \
         have died while creating it); remove it with `ipcrm -s {id}` and start again"
    )]
    Uninitialised {
        /// The key.
        key: Key,
        /// The id of the set.
        id: i32,
        /// How long we waited for the creator.
        waited: Duration,
    },

    /// A timed acquire gave up: someone holds the lock for longer than the timeout.
    #[error(
        "timed out after {waited:?} waiting for semaphore key {key} (id {id}); last operation by \
         pid {last_pid}. A live process holds the lock too long (stopped or hung?)"
    )]
    Timeout {
        /// The key.
        key: Key,
        /// The id of the set.
        id: i32,
        /// How long we waited.
        waited: Duration,
        /// The pid of the last process that operated on the semaphore (`GETPID`): most likely
        /// the holder.
        last_pid: i32,
    },

    /// The object was removed (`IPC_RMID`) while we were using it.
    #[error("{object} key {key} (id {id}) was removed while in use")]
    Removed {
        /// Which kind of object.
        object: Object,
        /// The key.
        key: Key,
        /// The id it had.
        id: i32,
    },

    /// Every slot of the table belongs to a live process.
    #[error(
        "heartbeat table key {key} is full: all {capacity} slots belong to live processes; \
         create the table with more slots"
    )]
    TableFull {
        /// The key.
        key: Key,
        /// Its number of slots.
        capacity: u32,
    },

    /// A caller-supplied value is out of range (capacity, name, timeout, key...).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// Why.
        reason: String,
    },

    /// Reading `/proc` for a process identity failed in an unexpected way.
    #[error("cannot read {path}: {source}")]
    Proc {
        /// The path read.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A system call on a process (through its pidfd) failed.
    #[error("{op} on pid {pid} failed: {errno}")]
    Process {
        /// The call, e.g. `pidfd_open`.
        op: &'static str,
        /// The pid.
        pid: i32,
        /// The error number.
        errno: Errno,
    },

    /// Any other failed system call.
    #[error("{op} on {object} key {key} failed: {errno}")]
    Sys {
        /// The call, e.g. `shmat`.
        op: &'static str,
        /// Which kind of object.
        object: Object,
        /// The key.
        key: Key,
        /// The error number.
        errno: Errno,
    },
}

impl Error {
    /// Maps an errno from a call on `object` at `key` to the most helpful variant.
    pub(crate) fn from_errno(op: &'static str, object: Object, key: Key, errno: Errno) -> Error {
        match errno {
            Errno::EACCES | Errno::EPERM => Error::PermissionDenied { object, key },
            Errno::ENOENT => Error::NotFound { object, key },
            Errno::EEXIST => Error::Exists { object, key },
            Errno::ENOSPC | Errno::ENOMEM => Error::NoSpace {
                object,
                key,
                limit: match object {
                    Object::Semaphore => "kernel.sem",
                    Object::SharedMemory => "kernel.shmmni / kernel.shmall",
                },
            },
            errno => Error::Sys {
                op,
                object,
                key,
                errno,
            },
        }
    }
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
