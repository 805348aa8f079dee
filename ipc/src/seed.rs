//! [`SeedTable`]: the seed framework's heartbeat table, read and written in its exact layout so
//! that services built on that framework (`CPActive`) are watched by nonstop unchanged.
//!
//! ```c
//! struct st_procinfo {      // 72 bytes on x86-64 Linux
//!     int    pid;           //  0
//!     char   pname[51];     //  4, NUL-terminated, at most 50 bytes
//!                           // 55, 1 byte padding
//!     int    timeout;       // 56, seconds
//!                           // 60, 4 bytes padding
//!     time_t atime;         // 64, time(0) of the last beat (wall clock)
//! };
//! // 1000 records; segment and semaphore both at key 0x5095 by default.
//! ```
//!
//! The semantics are `CPActive`'s: registering reuses the record that already holds this pid
//! (left by an earlier process with the same pid), else takes the first record whose pid is 0,
//! under the semaphore; a beat stores `time(0)`; freeing zeroes the record. This layout cannot
//! tell a recycled pid from the registered process, and its wall-clock beats jump with the
//! clock: those are the seed's limits, kept for compatibility. nonstop's own
//! [`HeartbeatTable`](crate::HeartbeatTable) has neither.

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU8, Ordering};
use std::time::Duration;

use crate::sem::{SemGuard, SemOptions, Semaphore};
use crate::shm::SharedMemory;
use crate::{Error, Key, Result, clock};

/// Number of records (`MAXNUMP`).
pub const SEED_SLOTS: usize = 1000;
/// Size of `pname`, including the terminating NUL.
pub const SEED_NAME_CAPACITY: usize = 51;
/// Size of one `st_procinfo`.
pub const SEED_RECORD_SIZE: usize = 72;

#[repr(C)]
#[derive(Debug)]
struct Record {
    pid: AtomicI32,
    pname: [AtomicU8; SEED_NAME_CAPACITY],
    timeout: AtomicI32,
    atime: AtomicI64,
}

const _: () = {
    assert!(size_of::<Record>() == SEED_RECORD_SIZE);
    assert!(offset_of!(Record, pid) == 0);
    assert!(offset_of!(Record, pname) == 4);
    assert!(offset_of!(Record, timeout) == 56);
    assert!(offset_of!(Record, atime) == 64);
};

/// How to open or create a [`SeedTable`].
#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// Permission bits of a newly created segment and semaphore. Default `0o600`; the seed
    /// itself used `0640` and `0666`, which lets other users' services register.
    pub mode: u32,
    /// Longest wait for the semaphore before [`Error::Timeout`]. Default 5 s.
    pub lock_timeout: Duration,
}

impl Default for SeedOptions {
    fn default() -> Self {
        SeedOptions {
            mode: 0o600,
            lock_timeout: Duration::from_secs(5),
        }
    }
}

/// One used record as read at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSlot {
    /// Index of the record.
    pub index: u32,
    /// The registered pid.
    pub pid: i32,
    /// Its name (`pname`).
    pub name: String,
    /// Its timeout in seconds.
    pub timeout_secs: i32,
    /// Its last beat, seconds since the epoch.
    pub atime: i64,
}

impl SeedSlot {
    /// Whether it is hung as the seed's checkproc decides: `now - atime >= timeout`, with `now`
    /// in seconds since the epoch ([`clock::wall_seconds`]).
    pub fn is_stale(&self, now: i64) -> bool {
        now.saturating_sub(self.atime) >= i64::from(self.timeout_secs)
    }
}

/// The seed framework's table at a key: 1000 `st_procinfo` records and their semaphore.
#[derive(Debug)]
pub struct SeedTable {
    shm: SharedMemory,
    sem: Semaphore,
    lock_timeout: Duration,
}

impl SeedTable {
    /// Attaches the table at `key` (the seed uses [`Key::SEED`]), creating the segment and the
    /// semaphore if they do not exist.
    pub fn open_or_create(key: Key, options: &SeedOptions) -> Result<SeedTable> {
        SeedTable::attach(key, options, true)
    }

    /// Attaches the existing table at `key`; creates nothing (for readers such as
    /// `nonstop ps`). The segment must be exactly the seed's size.
    pub fn open(key: Key, options: &SeedOptions) -> Result<SeedTable> {
        SeedTable::attach(key, options, false)
    }

    fn attach(key: Key, options: &SeedOptions, create: bool) -> Result<SeedTable> {
        let sem_options = SemOptions {
            mode: options.mode,
            // The seed's CSEM sets the value with SETVAL but makes no semop, so `sem_otime`
            // stays 0 until its first lock: do not wait long for it.
            init_timeout: Duration::from_millis(50),
            ..SemOptions::default()
        };
        let sem = if create {
            Semaphore::open_or_create(key, &sem_options)
        } else {
            Semaphore::open(key, &sem_options)
        };
        let sem = match sem {
            Err(Error::Uninitialised { .. }) => Semaphore::open_unchecked(key, &sem_options)?,
            other => other?,
        };
        let size = SEED_SLOTS * SEED_RECORD_SIZE;
        let shm = if create {
            SharedMemory::open_or_create(key, size, options.mode)?.0
        } else {
            SharedMemory::open(key, size)?
        };
        Ok(SeedTable {
            shm,
            sem,
            lock_timeout: options.lock_timeout,
        })
    }

    fn records(&self) -> &[Record] {
        // SAFETY: the segment is exactly SEED_SLOTS records long (checked by open_or_create),
        // page-aligned, and lives as long as `self`; `Record` is made of atomics only.
        unsafe { std::slice::from_raw_parts(self.shm.as_ptr().cast::<Record>(), SEED_SLOTS) }
    }

    fn lock(&self) -> Result<SemGuard<'_>> {
        self.sem.acquire_timeout(self.lock_timeout)
    }

    /// Registers this process, as `CPActive::AddPInfo(timeout, name)`.
    pub fn register(&self, name: &str, timeout_secs: i32) -> Result<SeedRegistration<'_>> {
        if name.len() >= SEED_NAME_CAPACITY || name.contains('\0') {
            return Err(Error::Invalid {
                what: "seed heartbeat name",
                reason: format!(
                    "{name:?} must be at most {} bytes without NUL",
                    SEED_NAME_CAPACITY - 1
                ),
            });
        }
        if timeout_secs <= 0 {
            return Err(Error::Invalid {
                what: "seed heartbeat timeout",
                reason: format!("{timeout_secs} s: must be at least 1 s"),
            });
        }
        let pid = std::process::id() as i32;
        let _guard = self.lock()?;
        let records = self.records();
        let index = records
            .iter()
            .position(|r| r.pid.load(Ordering::Relaxed) == pid)
            .or_else(|| {
                records
                    .iter()
                    .position(|r| r.pid.load(Ordering::Relaxed) == 0)
            })
            .ok_or(Error::TableFull {
                key: self.shm.key(),
                capacity: SEED_SLOTS as u32,
            })?;
        let record = &records[index];
        for (i, cell) in record.pname.iter().enumerate() {
            cell.store(
                name.as_bytes().get(i).copied().unwrap_or(0),
                Ordering::Relaxed,
            );
        }
        record.timeout.store(timeout_secs, Ordering::Relaxed);
        record.atime.store(clock::wall_seconds(), Ordering::Relaxed);
        record.pid.store(pid, Ordering::Release);
        Ok(SeedRegistration {
            table: self,
            record,
            index: index as u32,
            pid,
        })
    }

    /// Every used record (pid not 0).
    pub fn snapshot(&self) -> Vec<SeedSlot> {
        self.records()
            .iter()
            .enumerate()
            .filter_map(|(i, r)| read_record(i as u32, r))
            .collect()
    }

    /// Zeroes the records of processes that no longer exist (or are zombies), as checkproc
    /// does for `kill(pid, 0)` failures. Returns the freed records.
    pub fn free_dead(&self) -> Result<Vec<SeedSlot>> {
        let _guard = self.lock()?;
        let mut freed = Vec::new();
        for (i, record) in self.records().iter().enumerate() {
            let Some(slot) = read_record(i as u32, record) else {
                continue;
            };
            if !crate::process::is_running(slot.pid)? {
                clear_record(record);
                freed.push(slot);
            }
        }
        Ok(freed)
    }

    /// Zeroes `slot`'s record if it still holds the same pid; returns whether it did.
    pub fn free(&self, slot: &SeedSlot) -> Result<bool> {
        let _guard = self.lock()?;
        let Some(record) = self.records().get(slot.index as usize) else {
            return Ok(false);
        };
        let same = record.pid.load(Ordering::Relaxed) == slot.pid;
        if same {
            clear_record(record);
        }
        Ok(same)
    }

    /// The shared-memory segment.
    pub fn shared_memory(&self) -> &SharedMemory {
        &self.shm
    }

    /// The semaphore.
    pub fn semaphore(&self) -> &Semaphore {
        &self.sem
    }

    /// Removes the segment and the semaphore from the system.
    pub fn remove(self) -> Result<()> {
        let shm = self.shm.remove();
        let sem = self.sem.remove();
        shm.and(sem)
    }
}

/// A record held by this process; zeroed when dropped, like `CPActive`'s destructor.
#[derive(Debug)]
pub struct SeedRegistration<'t> {
    table: &'t SeedTable,
    record: &'t Record,
    index: u32,
    pid: i32,
}

impl SeedRegistration<'_> {
    /// `CPActive::UptATime`: stores `time(0)`, without a lock.
    #[inline]
    pub fn beat(&self) {
        self.record
            .atime
            .store(clock::wall_seconds(), Ordering::Relaxed);
    }

    /// Index of the record.
    pub fn index(&self) -> u32 {
        self.index
    }
}

impl Drop for SeedRegistration<'_> {
    fn drop(&mut self) {
        // Zero the record only if it is still ours (a watchdog may have freed it meanwhile).
        if let Ok(_guard) = self.table.lock()
            && self.record.pid.load(Ordering::Relaxed) == self.pid
        {
            clear_record(self.record);
        }
    }
}

fn clear_record(record: &Record) {
    record.pid.store(0, Ordering::Release);
    for cell in &record.pname {
        cell.store(0, Ordering::Relaxed);
    }
    record.timeout.store(0, Ordering::Relaxed);
    record.atime.store(0, Ordering::Relaxed);
}

fn read_record(index: u32, record: &Record) -> Option<SeedSlot> {
    let pid = record.pid.load(Ordering::Acquire);
    if pid == 0 {
        return None;
    }
    let mut name = [0u8; SEED_NAME_CAPACITY];
    for (byte, cell) in name.iter_mut().zip(&record.pname) {
        *byte = cell.load(Ordering::Relaxed);
    }
    let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Some(SeedSlot {
        index,
        pid,
        name: String::from_utf8_lossy(&name[..len]).into_owned(),
        timeout_secs: record.timeout.load(Ordering::Relaxed),
        atime: record.atime.load(Ordering::Relaxed),
    })
}
