//! [`HeartbeatTable`]: nonstop's heartbeat table in System V shared memory.
//!
//! A process [registers](HeartbeatTable::register) under a name with a timeout and gets a
//! [`Registration`]; it then calls [`Registration::beat`] from its work loop. A watchdog takes
//! [`HeartbeatTable::snapshot`]s and looks for slots whose last beat is older than their
//! timeout. Taking and freeing slots hold the table's semaphore; beating and reading do not.
//! The byte layout is in [`layout`].

pub mod layout;

use std::sync::atomic::{Ordering, fence};
use std::time::Duration;

use layout::{Header, Slot};

use crate::process::{Liveness, ProcessId};
use crate::sem::{SemGuard, SemOptions, Semaphore};
use crate::shm::SharedMemory;
use crate::{Error, Key, Result, clock};

/// How to open or create a [`HeartbeatTable`].
#[derive(Debug, Clone)]
pub struct TableOptions {
    /// Number of slots when creating. Default 1024.
    pub slots: u32,
    /// Permission bits of a newly created segment and semaphore. Default `0o600`.
    pub mode: u32,
    /// Longest wait for the table's lock before [`Error::Timeout`]. Default 5 s.
    pub lock_timeout: Duration,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            slots: 1024,
            mode: 0o600,
            lock_timeout: Duration::from_secs(5),
        }
    }
}

/// One active slot as read at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// Index of the slot in the table.
    pub index: u32,
    /// The registered process.
    pub process: ProcessId,
    /// Its name.
    pub name: String,
    /// Hung after this long without a beat.
    pub timeout: Duration,
    /// Until the program's first beat, hung this long after registering instead (slow
    /// starters); [`Duration::ZERO`]: the same as `timeout`.
    pub start_timeout: Duration,
    /// When it registered (`CLOCK_MONOTONIC` ns).
    pub registered_ns: u64,
    /// Its last beat (`CLOCK_MONOTONIC` ns).
    pub last_beat_ns: u64,
}

impl SlotInfo {
    /// Time since the last beat, as of `now_ns` (from [`clock::now_ns`]).
    pub fn age(&self, now_ns: u64) -> Duration {
        Duration::from_nanos(now_ns.saturating_sub(self.last_beat_ns))
    }

    /// Whether the program has beaten since it registered. A process that registers itself
    /// has (registering is a beat); one a runner registered for a task has not until it
    /// stores its first beat (the runner stores `registered_ns - 1`).
    pub fn beaten(&self) -> bool {
        self.last_beat_ns >= self.registered_ns
    }

    /// When it is hung without another beat (`CLOCK_MONOTONIC` ns): its last beat plus the
    /// timeout or, before its first beat, its registration plus the longer of the timeout and
    /// the start timeout.
    pub fn deadline_ns(&self) -> u64 {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        if self.beaten() {
            self.last_beat_ns.saturating_add(ns(self.timeout))
        } else {
            self.registered_ns
                .saturating_add(ns(self.timeout.max(self.start_timeout)))
        }
    }

    /// Whether its deadline has passed.
    pub fn is_stale(&self, now_ns: u64) -> bool {
        now_ns > self.deadline_ns()
    }
}

/// The heartbeat table: a validated, attached segment and its semaphore.
#[derive(Debug)]
pub struct HeartbeatTable {
    shm: SharedMemory,
    sem: Semaphore,
    capacity: u32,
    lock_timeout: Duration,
    created: bool,
}

impl HeartbeatTable {
    /// Attaches the table at `key`, creating it with `options.slots` slots if it does not
    /// exist. An existing segment must be a valid table of exactly that many slots.
    pub fn open_or_create(key: Key, options: &TableOptions) -> Result<HeartbeatTable> {
        if options.slots == 0 || options.slots > layout::MAX_SLOTS {
            return Err(Error::Invalid {
                what: "number of heartbeat slots",
                reason: format!("{} is not in 1..={}", options.slots, layout::MAX_SLOTS),
            });
        }
        let sem = Semaphore::open_or_create(key, &sem_options(options))?;
        let guard = sem.acquire_timeout(options.lock_timeout)?;
        // Under the lock, nobody can see the header half-written. Lock-free readers are safe
        // too: the magic is stored last.
        let size = layout::segment_size(options.slots);
        let (shm, created) = SharedMemory::open_or_create(key, size, options.mode)?;
        if created {
            initialise_header(&shm, options.slots);
        } else {
            validate_header(&shm)?;
        }
        drop(guard);
        Ok(HeartbeatTable {
            shm,
            sem,
            capacity: options.slots,
            lock_timeout: options.lock_timeout,
            created,
        })
    }

    /// Attaches the existing table at `key`, whatever its number of slots (`options.slots`
    /// and `options.mode` are not used).
    pub fn open(key: Key, options: &TableOptions) -> Result<HeartbeatTable> {
        let sem = Semaphore::open(key, &sem_options(options))?;
        let guard = sem.acquire_timeout(options.lock_timeout)?;
        let shm = SharedMemory::open_any_size(key)?;
        let capacity = validate_header(&shm)?;
        drop(guard);
        Ok(HeartbeatTable {
            shm,
            sem,
            capacity,
            lock_timeout: options.lock_timeout,
            created: false,
        })
    }

    /// Whether this handle created the segment (rather than attaching an existing one).
    pub fn created(&self) -> bool {
        self.created
    }

    /// The runner that owns the table, as recorded in its header, if any.
    pub fn owner(&self) -> Option<ProcessId> {
        let h = header(&self.shm);
        let pid = h.owner_pid.load(Ordering::Acquire);
        (pid > 0).then(|| ProcessId {
            pid,
            start_time: h.owner_start.load(Ordering::Acquire),
        })
    }

    /// Records `me` as the table's owner (a runner, for the life of its pipeline). A table
    /// without an owner, or whose owner is gone, is taken: returns the owner that died, if
    /// any. A table whose owner is another live process is refused with [`Error::Owned`]:
    /// two runners never share one table.
    pub fn claim(&self, me: ProcessId) -> Result<Option<ProcessId>> {
        let _guard = self.lock()?;
        let previous = self.owner();
        if let Some(owner) = previous
            && owner != me
            && owner.liveness() == Liveness::Alive
        {
            return Err(Error::Owned {
                key: self.key(),
                pid: owner.pid,
            });
        }
        let h = header(&self.shm);
        h.owner_start.store(me.start_time, Ordering::Release);
        h.owner_pid.store(me.pid, Ordering::Release);
        let previous = previous.filter(|&p| p != me);
        if previous.is_some() {
            // The slots the dead owner held for its tasks belong to nobody now, with an
            // instance in them or not (its tasks died with it).
            for slot in self.slots() {
                let state = slot.state.load(Ordering::Relaxed);
                if state == layout::STATE_RESERVED
                    || (state == layout::STATE_ACTIVE && is_task_slot(slot))
                {
                    clear_slot(slot);
                }
            }
        }
        Ok(previous)
    }

    /// Clears the owner if it is `me` (a runner that leaves the table in place).
    pub fn release(&self, me: ProcessId) -> Result<()> {
        let _guard = self.lock()?;
        if self.owner() == Some(me) {
            let h = header(&self.shm);
            h.owner_pid.store(0, Ordering::Release);
            h.owner_start.store(0, Ordering::Release);
        }
        Ok(())
    }

    /// The key of the segment and of the semaphore.
    pub fn key(&self) -> Key {
        self.shm.key()
    }

    /// Number of slots.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The shared-memory segment.
    pub fn shared_memory(&self) -> &SharedMemory {
        &self.shm
    }

    /// The semaphore that guards taking and freeing slots.
    pub fn semaphore(&self) -> &Semaphore {
        &self.sem
    }

    fn slots(&self) -> &[Slot] {
        // SAFETY: the segment is `segment_size(capacity)` bytes (checked on attach: by size on
        // creation, by validate_header otherwise), page-aligned, and lives as long as `self`.
        // `Slot` is made of atomics only, so shared references to memory that other processes
        // write concurrently are sound.
        unsafe {
            std::slice::from_raw_parts(
                self.shm.as_ptr().add(layout::HEADER_SIZE).cast::<Slot>(),
                self.capacity as usize,
            )
        }
    }

    fn lock(&self) -> Result<SemGuard<'_>> {
        self.sem.acquire_timeout(self.lock_timeout)
    }

    /// Registers this process under `name`: it is hung when it does not beat for `timeout`.
    /// The slot is freed when the [`Registration`] is dropped.
    ///
    /// A slot left by an earlier process with this same pid is reclaimed first; when the table
    /// is full, the slots of processes that no longer exist are freed before giving up with
    /// [`Error::TableFull`].
    pub fn register(&self, name: &str, timeout: Duration) -> Result<Registration<'_>> {
        let process = ProcessId::current()?;
        let info = self.register_process(process, name, timeout)?;
        Ok(Registration {
            table: self,
            slot: &self.slots()[info.index as usize],
            clock: clock::CoarseClock::get(),
            info,
        })
    }

    /// Registers another process (for example a child that cannot register itself). The slot
    /// stays until [`HeartbeatTable::free`] or until the process is gone and
    /// [`HeartbeatTable::free_dead`] runs.
    pub fn register_process(
        &self,
        process: ProcessId,
        name: &str,
        timeout: Duration,
    ) -> Result<SlotInfo> {
        let name_bytes = validate_name(name)?;
        let timeout_ns = timeout_ns(timeout)?;
        let _guard = self.lock()?;
        let index = self.take_free(process)?;
        let now = clock::now_ns();
        write_slot(&self.slots()[index], |slot| {
            slot.pid.store(process.pid, Ordering::Relaxed);
            slot.start_time.store(process.start_time, Ordering::Relaxed);
            slot.timeout_ns.store(timeout_ns, Ordering::Relaxed);
            slot.start_timeout_ns.store(0, Ordering::Relaxed);
            slot.registered_ns.store(now, Ordering::Relaxed);
            slot.last_beat_ns.store(now, Ordering::Relaxed);
            store_name(slot, name_bytes);
            slot.state.store(layout::STATE_ACTIVE, Ordering::Relaxed);
        });
        Ok(SlotInfo {
            index: index as u32,
            process,
            name: name.to_owned(),
            timeout,
            start_timeout: Duration::ZERO,
            registered_ns: now,
            last_beat_ns: now,
        })
    }

    /// With the lock held: a free slot, after freeing the slots of dead processes if needed.
    fn take_free(&self, process: ProcessId) -> Result<usize> {
        match self.find_free(process) {
            Some(i) => Ok(i),
            None => {
                self.free_dead_locked();
                self.find_free(process).ok_or(Error::TableFull {
                    key: self.key(),
                    capacity: self.capacity,
                })
            }
        }
    }

    /// Reserves a slot for a task of the runner that owns the table: it stays reserved
    /// (state 2, no process) across the task's instances, so the task's environment can name
    /// it before any instance starts (`NONSTOP_HEARTBEAT`). Each instance [`arm`]s it before
    /// it starts and [`occupy`]s it once its pid is known; [`vacate`] when it is gone;
    /// [`free_reserved`] when the runner is done with it.
    ///
    /// [`arm`]: HeartbeatTable::arm
    /// [`occupy`]: HeartbeatTable::occupy
    /// [`vacate`]: HeartbeatTable::vacate
    /// [`free_reserved`]: HeartbeatTable::free_reserved
    pub fn reserve(&self, name: &str, timeout: Duration, start_timeout: Duration) -> Result<u32> {
        let name_bytes = validate_name(name)?;
        let timeout_ns = timeout_ns(timeout)?;
        let start_ns = u64::try_from(start_timeout.as_nanos()).unwrap_or(u64::MAX);
        let _guard = self.lock()?;
        let index = self.take_free(ProcessId {
            pid: 0,
            start_time: 0,
        })?;
        write_slot(&self.slots()[index], |slot| {
            slot.pid.store(0, Ordering::Relaxed);
            slot.start_time.store(0, Ordering::Relaxed);
            slot.timeout_ns.store(timeout_ns, Ordering::Relaxed);
            slot.start_timeout_ns.store(start_ns, Ordering::Relaxed);
            slot.registered_ns.store(0, Ordering::Relaxed);
            slot.last_beat_ns.store(0, Ordering::Relaxed);
            store_name(slot, name_bytes);
            slot.flags.store(layout::FLAG_TASK, Ordering::Relaxed);
            slot.state.store(layout::STATE_RESERVED, Ordering::Relaxed);
        });
        Ok(index as u32)
    }

    /// Gives a slot [`reserve`](HeartbeatTable::reserve)d for a task, and reserved now (no
    /// instance in it), another name and timeouts: the task's new definition (a reload).
    pub fn update_reserved(
        &self,
        index: u32,
        name: &str,
        timeout: Duration,
        start_timeout: Duration,
    ) -> Result<()> {
        let name_bytes = validate_name(name)?;
        let timeout_ns = timeout_ns(timeout)?;
        let start_ns = u64::try_from(start_timeout.as_nanos()).unwrap_or(u64::MAX);
        let _guard = self.lock()?;
        let slot = self.reserved_slot(index)?;
        write_slot(slot, |slot| {
            slot.timeout_ns.store(timeout_ns, Ordering::Relaxed);
            slot.start_timeout_ns.store(start_ns, Ordering::Relaxed);
            store_name(slot, name_bytes);
        });
        Ok(())
    }

    /// Before an instance of a reserved slot's task starts: stamps its last beat "never"
    /// (one nanosecond before now) and returns now, the registration time to give
    /// [`occupy`](HeartbeatTable::occupy). No lock: the slot is reserved, which no reader
    /// looks into, and the instance's own beats may land from here on.
    pub fn arm(&self, index: u32) -> u64 {
        let now = clock::now_ns();
        if let Some(slot) = self.slots().get(index as usize) {
            slot.last_beat_ns
                .store(now.saturating_sub(1), Ordering::Relaxed);
        }
        now
    }

    /// The instance of a reserved slot's task started as `process` (at `registered_ns`, from
    /// [`arm`](HeartbeatTable::arm)): the slot becomes active, watched from then on. Its last
    /// beat is left as it is: the program may have beaten already.
    pub fn occupy(&self, index: u32, process: ProcessId, registered_ns: u64) -> Result<SlotInfo> {
        let _guard = self.lock()?;
        let slot = self.reserved_slot(index)?;
        write_slot(slot, |slot| {
            slot.pid.store(process.pid, Ordering::Relaxed);
            slot.start_time.store(process.start_time, Ordering::Relaxed);
            slot.registered_ns.store(registered_ns, Ordering::Relaxed);
            slot.state.store(layout::STATE_ACTIVE, Ordering::Relaxed);
        });
        read_slot(index, slot).ok_or(Error::Invalid {
            what: "heartbeat slot",
            reason: format!("slot {index} could not be read back"),
        })
    }

    /// The instance in a task's slot is gone: the slot is reserved again, with no process.
    pub fn vacate(&self, index: u32) -> Result<()> {
        let _guard = self.lock()?;
        let slot = self.reserved_slot(index)?;
        write_slot(slot, |slot| {
            slot.pid.store(0, Ordering::Relaxed);
            slot.start_time.store(0, Ordering::Relaxed);
            slot.state.store(layout::STATE_RESERVED, Ordering::Relaxed);
        });
        Ok(())
    }

    /// Frees a slot [`reserve`](HeartbeatTable::reserve)d for a task, whatever its state.
    pub fn free_reserved(&self, index: u32) -> Result<()> {
        let _guard = self.lock()?;
        clear_slot(self.reserved_slot(index)?);
        Ok(())
    }

    /// With the lock held: slot `index`, which must be reserved or active (a task's).
    fn reserved_slot(&self, index: u32) -> Result<&Slot> {
        let slot = self.slots().get(index as usize).ok_or(Error::Invalid {
            what: "heartbeat slot",
            reason: format!("{index} is not below the table's {} slots", self.capacity),
        })?;
        match slot.state.load(Ordering::Relaxed) {
            layout::STATE_RESERVED | layout::STATE_ACTIVE => Ok(slot),
            _ => Err(Error::Invalid {
                what: "heartbeat slot",
                reason: format!("slot {index} is not reserved for a task (it was freed)"),
            }),
        }
    }

    /// With the lock held: the first usable slot, reclaiming one left by an earlier process
    /// that had `process`'s pid (it must be gone: the pid is ours now).
    fn find_free(&self, process: ProcessId) -> Option<usize> {
        let mut first_free = None;
        for (i, slot) in self.slots().iter().enumerate() {
            // An odd seq with the lock held means its writer died mid-write: the slot is junk.
            let torn = slot.seq.load(Ordering::Relaxed) & 1 == 1;
            let state = slot.state.load(Ordering::Relaxed);
            if torn || state == layout::STATE_FREE {
                first_free.get_or_insert(i);
                continue;
            }
            if state == layout::STATE_ACTIVE
                && !is_task_slot(slot)
                && process.pid > 0
                && slot.pid.load(Ordering::Relaxed) == process.pid
                && slot.start_time.load(Ordering::Relaxed) != process.start_time
            {
                clear_slot(slot);
                first_free.get_or_insert(i);
            }
        }
        first_free
    }

    /// Every active slot, read without the lock. A slot being rewritten at this very instant
    /// is retried; one whose writer died mid-write is left out.
    pub fn snapshot(&self) -> Vec<SlotInfo> {
        self.slots()
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| read_slot(i as u32, slot))
            .collect()
    }

    /// The `state` field of slot `index` (free, active or reserved: see [`layout`]).
    pub fn slot_state(&self, index: u32) -> u32 {
        self.slots()
            .get(index as usize)
            .map_or(layout::STATE_FREE, |s| s.state.load(Ordering::Acquire))
    }

    /// Stores `now_ns` as slot `index`'s last beat (for [`crate::Heartbeat`]).
    #[inline]
    pub(crate) fn beat_slot(&self, index: u32, now_ns: u64, order: Ordering) {
        if let Some(slot) = self.slots().get(index as usize) {
            slot.last_beat_ns.store(now_ns, order);
        }
    }

    /// The current state of one slot, if it is active.
    pub fn slot(&self, index: u32) -> Option<SlotInfo> {
        self.slots()
            .get(index as usize)
            .and_then(|slot| read_slot(index, slot))
    }

    /// Frees the slots of processes that no longer exist (gone, zombie, or pid recycled) and
    /// of writers that died mid-write. Returns the freed slots.
    pub fn free_dead(&self) -> Result<Vec<SlotInfo>> {
        let _guard = self.lock()?;
        Ok(self.free_dead_locked())
    }

    fn free_dead_locked(&self) -> Vec<SlotInfo> {
        let mut freed = Vec::new();
        for (i, slot) in self.slots().iter().enumerate() {
            if slot.seq.load(Ordering::Relaxed) & 1 == 1 {
                clear_slot(slot);
                continue;
            }
            let Some(info) = read_slot(i as u32, slot) else {
                continue;
            };
            // A task's process that died is the runner's to see to: it vacates the slot.
            if is_task_slot(slot) {
                continue;
            }
            if info.process.liveness() != Liveness::Alive {
                clear_slot(slot);
                freed.push(info);
            }
        }
        freed
    }

    /// Frees `info`'s slot if it still holds that same registration (same process, same
    /// registration time); returns whether it did. Use it after killing a hung process.
    pub fn free(&self, info: &SlotInfo) -> Result<bool> {
        let _guard = self.lock()?;
        let Some(slot) = self.slots().get(info.index as usize) else {
            return Ok(false);
        };
        let same = !is_task_slot(slot)
            && read_slot(info.index, slot).is_some_and(|now| {
                now.process == info.process && now.registered_ns == info.registered_ns
            });
        if same {
            clear_slot(slot);
        }
        Ok(same)
    }

    /// Removes the segment and the semaphore from the system: their key is free at once;
    /// the memory goes when the last process detaches (this one, when the table is dropped).
    /// Calls on the table fail with [`Error::Removed`] from then on.
    pub fn remove(&self) -> Result<()> {
        let shm = self.shm.remove();
        let sem = self.sem.remove_ref();
        shm.and(sem)
    }
}

/// A slot held by this process; frees it when dropped.
#[derive(Debug)]
pub struct Registration<'t> {
    table: &'t HeartbeatTable,
    slot: &'t Slot,
    clock: clock::CoarseClock,
    info: SlotInfo,
}

impl Registration<'_> {
    /// Records that this process is alive and making progress: one read of the coarse
    /// monotonic clock and one atomic store. No system call, no lock.
    #[inline]
    pub fn beat(&self) {
        self.slot
            .last_beat_ns
            .store(self.clock.now_ns(), Ordering::Relaxed);
    }

    /// The slot as registered.
    pub fn info(&self) -> &SlotInfo {
        &self.info
    }

    /// Frees the slot now, reporting failures that dropping would ignore.
    pub fn free(self) -> Result<bool> {
        let result = self.table.free(&self.info);
        std::mem::forget(self);
        result
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        // Failure means the lock timed out or the table was removed; the watchdog's
        // `free_dead` frees the slot once this process is gone.
        let _ = self.table.free(&self.info);
    }
}

fn sem_options(options: &TableOptions) -> SemOptions {
    SemOptions {
        mode: options.mode,
        ..SemOptions::default()
    }
}

fn header(shm: &SharedMemory) -> &Header {
    // SAFETY: callers checked `shm.len() >= HEADER_SIZE` (validate_header) or created the
    // segment with a size that includes the header. The mapping is page-aligned and lives as
    // long as `shm`; `Header` is made of atomics only.
    unsafe { &*shm.as_ptr().cast::<Header>() }
}

fn initialise_header(shm: &SharedMemory, slots: u32) {
    let h = header(shm);
    h.version.store(layout::VERSION, Ordering::Relaxed);
    h.header_size
        .store(layout::HEADER_SIZE as u32, Ordering::Relaxed);
    h.slot_size
        .store(layout::SLOT_SIZE as u32, Ordering::Relaxed);
    h.capacity.store(slots, Ordering::Relaxed);
    h.clock.store(layout::CLOCK_MONOTONIC, Ordering::Relaxed);
    h.magic.store(layout::MAGIC, Ordering::Release);
}

/// Checks the header against this build's layout and the segment's size; returns the capacity.
fn validate_header(shm: &SharedMemory) -> Result<u32> {
    let bad = |reason: String| Error::BadHeader {
        key: shm.key(),
        id: shm.id(),
        reason,
    };
    if shm.len() < layout::HEADER_SIZE {
        return Err(bad(format!(
            "it is {} bytes, smaller than the {}-byte header",
            shm.len(),
            layout::HEADER_SIZE
        )));
    }
    let h = header(shm);
    let magic = h.magic.load(Ordering::Acquire);
    if magic == 0 {
        return Err(bad(
            "its magic number is 0: it was never initialised (its creator died while creating \
             it, or another program made it)"
                .into(),
        ));
    }
    if magic != layout::MAGIC {
        return Err(bad(format!(
            "its magic number is {magic:#018x}, expected {:#018x} (\"nonstop\\0\"): another \
             program uses this key",
            layout::MAGIC
        )));
    }
    let field = |name: &str, value: u32, expected: u32| {
        if value == expected {
            Ok(())
        } else {
            Err(bad(format!(
                "its header says {name} {value}, this build of nonstop uses {expected}"
            )))
        }
    };
    field(
        "layout version",
        h.version.load(Ordering::Relaxed),
        layout::VERSION,
    )?;
    field(
        "header size",
        h.header_size.load(Ordering::Relaxed),
        layout::HEADER_SIZE as u32,
    )?;
    field(
        "slot size",
        h.slot_size.load(Ordering::Relaxed),
        layout::SLOT_SIZE as u32,
    )?;
    field(
        "clock",
        h.clock.load(Ordering::Relaxed),
        layout::CLOCK_MONOTONIC,
    )?;
    let capacity = h.capacity.load(Ordering::Relaxed);
    if capacity == 0 || capacity > layout::MAX_SLOTS {
        return Err(bad(format!(
            "its header says {capacity} slots, outside 1..={}",
            layout::MAX_SLOTS
        )));
    }
    let expected = layout::segment_size(capacity);
    if shm.len() != expected {
        return Err(bad(format!(
            "its header says {capacity} slots ({expected} bytes) but the segment is {} bytes",
            shm.len()
        )));
    }
    Ok(capacity)
}

fn timeout_ns(timeout: Duration) -> Result<u64> {
    match u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX) {
        0 => Err(Error::Invalid {
            what: "heartbeat timeout",
            reason: "must be longer than 0".into(),
        }),
        ns => Ok(ns),
    }
}

fn store_name(slot: &Slot, name: &[u8]) {
    for (i, cell) in slot.name.iter().enumerate() {
        cell.store(name.get(i).copied().unwrap_or(0), Ordering::Relaxed);
    }
}

fn validate_name(name: &str) -> Result<&[u8]> {
    let invalid = |reason: String| Error::Invalid {
        what: "heartbeat name",
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    if name.len() > layout::NAME_MAX {
        return Err(invalid(format!(
            "{name:?} is {} bytes, at most {} fit",
            name.len(),
            layout::NAME_MAX
        )));
    }
    if name.contains('\0') {
        return Err(invalid(format!("{name:?} contains a NUL byte")));
    }
    Ok(name.as_bytes())
}

/// With the lock held: runs `write` between the two seqlock bumps.
fn write_slot(slot: &Slot, write: impl FnOnce(&Slot)) {
    // If seq is already odd, a writer died mid-write; we overwrite everything anyway.
    let begin = slot.seq.load(Ordering::Relaxed) | 1;
    slot.seq.store(begin, Ordering::Relaxed);
    fence(Ordering::Release);
    write(slot);
    slot.seq.store(begin.wrapping_add(1), Ordering::Release);
}

fn clear_slot(slot: &Slot) {
    write_slot(slot, |slot| {
        slot.state.store(layout::STATE_FREE, Ordering::Relaxed);
        slot.pid.store(0, Ordering::Relaxed);
        slot.start_time.store(0, Ordering::Relaxed);
        slot.timeout_ns.store(0, Ordering::Relaxed);
        slot.start_timeout_ns.store(0, Ordering::Relaxed);
        slot.registered_ns.store(0, Ordering::Relaxed);
        slot.last_beat_ns.store(0, Ordering::Relaxed);
        slot.flags.store(0, Ordering::Relaxed);
        store_name(slot, &[]);
    });
}

/// Whether `slot` is a runner's task slot ([`layout::FLAG_TASK`]): freed only by
/// [`HeartbeatTable::free_reserved`], never as dead or recycled by anyone else.
fn is_task_slot(slot: &Slot) -> bool {
    slot.flags.load(Ordering::Relaxed) & layout::FLAG_TASK != 0
}

/// Reads one slot consistently (seqlock); `None` if it is free or stays torn.
fn read_slot(index: u32, slot: &Slot) -> Option<SlotInfo> {
    for attempt in 0..1000 {
        let before = slot.seq.load(Ordering::Acquire);
        if before & 1 == 0 {
            let state = slot.state.load(Ordering::Relaxed);
            let pid = slot.pid.load(Ordering::Relaxed);
            let start_time = slot.start_time.load(Ordering::Relaxed);
            let timeout_ns = slot.timeout_ns.load(Ordering::Relaxed);
            let start_timeout_ns = slot.start_timeout_ns.load(Ordering::Relaxed);
            let registered_ns = slot.registered_ns.load(Ordering::Relaxed);
            let mut name = [0u8; layout::NAME_CAPACITY];
            for (byte, cell) in name.iter_mut().zip(&slot.name) {
                *byte = cell.load(Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            if slot.seq.load(Ordering::Relaxed) == before {
                if state != layout::STATE_ACTIVE {
                    return None;
                }
                let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                return Some(SlotInfo {
                    index,
                    process: ProcessId { pid, start_time },
                    name: String::from_utf8_lossy(&name[..len]).into_owned(),
                    timeout: Duration::from_nanos(timeout_ns),
                    start_timeout: Duration::from_nanos(start_timeout_ns),
                    registered_ns,
                    // Not covered by the seqlock: beats store it at any time, atomically.
                    last_beat_ns: slot.last_beat_ns.load(Ordering::Relaxed),
                });
            }
        }
        if attempt < 100 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    None
}

#[cfg(test)]
mod tests;
