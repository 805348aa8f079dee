//! The heartbeat table's layout, byte by byte. This module is the contract with every other
//! program that attaches the segment (the C header `ipc/include/nonstop_heartbeat.h` states
//! the same numbers and checks them with `_Static_assert`; this file checks them with `const`
//! assertions). All integers are native-endian; all offsets are from the segment start.
//!
//! ```text
//! Header, 64 bytes at offset 0
//!   0  u64  magic        0x00706f74736e6f6e: the bytes "nonstop\0"; written last, with
//!                        release ordering, by the creator: 0 means "not initialised"
//!   8  u32  version      layout version, 1
//!  12  u32  header_size  64
//!  16  u32  slot_size    128
//!  20  u32  capacity     number of slots, 1..=65536
//!  24  u32  clock        clock id of every timestamp: 1 (CLOCK_MONOTONIC, read coarse)
//!  28  i32  owner_pid    the runner that owns the table (created it, or took it over from
//!                        an owner that died); 0 = none. Written with the semaphore held
//!  32  u64  owner_start  the owner's start time (field 22 of /proc/PID/stat)
//!  40  u64  reserved[3]  0
//!
//! Slot i, 128 bytes at offset 64 + 128 * i
//!   0  u32  seq            seqlock: odd while a writer (holding the semaphore) changes the
//!                          slot; readers retry while odd or if it changed under them
//!   4  u32  state          0 = free, 1 = active, 2 = reserved (held by a runner for one
//!                          of its tasks between two instances: no process; only state 0
//!                          may be taken by a registering process)
//!   8  i32  pid            the registered process
//!  12  u32  flags          bit 0 (FLAG_TASK): a slot reserved by the runner for one of its
//!                          tasks, active or not: only that runner frees it (a registering
//!                          process never takes it over, even while its process is dead and
//!                          not yet vacated); other bits 0
//!  16  u64  start_time     field 22 of /proc/PID/stat (clock ticks since boot): with pid,
//!                          names the process even after the pid is recycled
//!  24  u64  timeout_ns     hung when no beat for longer than this
//!  32  u64  registered_ns  CLOCK_MONOTONIC ns when the slot was taken
//!  40  u64  last_beat_ns   CLOCK_MONOTONIC ns of the last beat; the only field written
//!                          without the semaphore, by one atomic 8-byte store. A runner
//!                          that registers a task's process stores registered_ns - 1: the
//!                          program has beaten once last_beat_ns >= registered_ns
//!  48  u8   name[64]       UTF-8, NUL-padded, at most 63 bytes
//! 112  u64  start_timeout_ns  the first deadline, from registered_ns, until the program's
//!                          first beat (for slow starters); 0 = timeout_ns
//! 120  u64  reserved       0
//! ```
//!
//! Protocol: take the semaphore (same key, one semaphore, `SEM_UNDO`) to take or free a slot;
//! while holding it, bump `seq` to odd, write the fields, bump `seq` to even. Beat by an atomic
//! store to `last_beat_ns`, no lock. Fields are only ever appended in later versions, in the
//! reserved space or by raising `version`.

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, AtomicU64};

/// `"nonstop\0"` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"nonstop\0");
/// The layout version this build reads and writes.
pub const VERSION: u32 = 1;
/// Size of [`Header`] in bytes.
pub const HEADER_SIZE: usize = 64;
/// Size of one [`Slot`] in bytes.
pub const SLOT_SIZE: usize = 128;
/// Bytes reserved for a name, including at least one NUL.
pub const NAME_CAPACITY: usize = 64;
/// Longest name in bytes.
pub const NAME_MAX: usize = NAME_CAPACITY - 1;
/// Most slots a table may have.
pub const MAX_SLOTS: u32 = 1 << 16;
/// `CLOCK_MONOTONIC`: the clock of every timestamp.
pub const CLOCK_MONOTONIC: u32 = 1;
/// `state` of a free slot.
pub const STATE_FREE: u32 = 0;
/// `state` of a slot held by a process.
pub const STATE_ACTIVE: u32 = 1;
/// `state` of a slot a runner holds for one of its tasks while no instance runs.
pub const STATE_RESERVED: u32 = 2;
/// `flags` bit: the slot is a runner's task slot (see the layout).
pub const FLAG_TASK: u32 = 1;

/// The table header.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Header {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub header_size: AtomicU32,
    pub slot_size: AtomicU32,
    pub capacity: AtomicU32,
    pub clock: AtomicU32,
    pub owner_pid: AtomicI32,
    pub owner_start: AtomicU64,
    pub reserved: [AtomicU64; 3],
}

/// One slot.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Slot {
    pub seq: AtomicU32,
    pub state: AtomicU32,
    pub pid: AtomicI32,
    pub flags: AtomicU32,
    pub start_time: AtomicU64,
    pub timeout_ns: AtomicU64,
    pub registered_ns: AtomicU64,
    pub last_beat_ns: AtomicU64,
    pub name: [AtomicU8; NAME_CAPACITY],
    pub start_timeout_ns: AtomicU64,
    pub reserved: AtomicU64,
}

const _: () = {
    assert!(size_of::<Header>() == HEADER_SIZE);
    assert!(offset_of!(Header, magic) == 0);
    assert!(offset_of!(Header, version) == 8);
    assert!(offset_of!(Header, header_size) == 12);
    assert!(offset_of!(Header, slot_size) == 16);
    assert!(offset_of!(Header, capacity) == 20);
    assert!(offset_of!(Header, clock) == 24);
    assert!(offset_of!(Header, owner_pid) == 28);
    assert!(offset_of!(Header, owner_start) == 32);
    assert!(offset_of!(Header, reserved) == 40);

    assert!(size_of::<Slot>() == SLOT_SIZE);
    assert!(offset_of!(Slot, seq) == 0);
    assert!(offset_of!(Slot, state) == 4);
    assert!(offset_of!(Slot, pid) == 8);
    assert!(offset_of!(Slot, start_time) == 16);
    assert!(offset_of!(Slot, timeout_ns) == 24);
    assert!(offset_of!(Slot, registered_ns) == 32);
    assert!(offset_of!(Slot, last_beat_ns) == 40);
    assert!(offset_of!(Slot, name) == 48);
    assert!(offset_of!(Slot, start_timeout_ns) == 112);
    assert!(offset_of!(Slot, reserved) == 120);
    // The 8-byte atomics must be naturally aligned for the stores to be single and atomic;
    // the segment is page-aligned and every offset above is a multiple of 8.
    assert!(HEADER_SIZE.is_multiple_of(8) && SLOT_SIZE.is_multiple_of(8));
};

/// Segment size in bytes for a table of `slots` slots.
pub const fn segment_size(slots: u32) -> usize {
    HEADER_SIZE + SLOT_SIZE * slots as usize
}
