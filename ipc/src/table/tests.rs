//! Unit tests of the table against corrupt, foreign and torn shared memory. They write raw
//! bytes into the segment, which only this crate may do.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::testing::TestKey;

fn options(slots: u32) -> TableOptions {
    TableOptions {
        slots,
        ..TableOptions::default()
    }
}

/// Writes `value` at byte `offset` of the segment, as a foreign or broken program would.
fn poke(shm: &SharedMemory, offset: usize, value: u8) {
    assert!(offset < shm.len());
    // SAFETY: `offset` is inside the mapping; a volatile byte write through a raw pointer
    // creates no reference, and the table reads this memory only through atomics.
    unsafe { shm.as_ptr().add(offset).write_volatile(value) }
}

fn bad_header_reason(result: Result<HeartbeatTable>) -> String {
    match result {
        Err(Error::BadHeader { reason, .. }) => reason,
        other => panic!("expected a bad header, got {other:?}"),
    }
}

/// xorshift64: a small deterministic generator, so a failure is reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn a_foreign_segment_of_the_right_size_is_a_bad_header_not_a_panic() {
    let key = TestKey::new();
    let size = layout::segment_size(4);
    let (shm, _) = SharedMemory::open_or_create(key.key(), size, 0o600).unwrap();
    let reason = bad_header_reason(HeartbeatTable::open_or_create(key.key(), &options(4)));
    assert!(reason.contains("never initialised"), "{reason}");
    for (i, b) in b"<?xml version".iter().enumerate() {
        poke(&shm, i, *b);
    }
    let err = HeartbeatTable::open(key.key(), &options(4)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("another program uses this key"), "{text}");
    assert!(text.contains(&format!("ipcrm -m {}", shm.id())), "{text}");
}

#[test]
fn a_segment_too_small_for_a_header_is_a_bad_header() {
    let key = TestKey::new();
    let (_shm, _) = SharedMemory::open_or_create(key.key(), 10, 0o600).unwrap();
    let _sem = Semaphore::open_or_create(key.key(), &SemOptions::default()).unwrap();
    let reason = bad_header_reason(HeartbeatTable::open(key.key(), &options(1)));
    assert!(
        reason.contains("smaller than the 64-byte header"),
        "{reason}"
    );
    assert!(matches!(
        HeartbeatTable::open_or_create(key.key(), &options(1)),
        Err(Error::WrongSize {
            expected: 192,
            actual: 10,
            ..
        })
    ));
}

#[test]
fn each_header_field_is_checked() {
    let key = TestKey::new();
    let table = HeartbeatTable::open_or_create(key.key(), &options(2)).unwrap();
    let shm = table.shared_memory();
    // (offset, the word we write there, what the message must say)
    let cases: [(usize, u8, &str); 5] = [
        (8, 2, "layout version 2"),
        (12, 65, "header size 65"),
        (16, 64, "slot size 64"),
        (24, 7, "clock 7"),
        (20, 3, "3 slots (448 bytes) but the segment is 320 bytes"),
    ];
    for (offset, value, expected) in cases {
        let before = header(shm);
        let saved = [
            before.version.load(Ordering::Relaxed),
            before.header_size.load(Ordering::Relaxed),
            before.slot_size.load(Ordering::Relaxed),
            before.capacity.load(Ordering::Relaxed),
            before.clock.load(Ordering::Relaxed),
        ];
        poke(shm, offset, value);
        let reason = bad_header_reason(HeartbeatTable::open(key.key(), &options(2)));
        assert!(reason.contains(expected), "{reason:?} lacks {expected:?}");
        let h = header(shm);
        h.version.store(saved[0], Ordering::Relaxed);
        h.header_size.store(saved[1], Ordering::Relaxed);
        h.slot_size.store(saved[2], Ordering::Relaxed);
        h.capacity.store(saved[3], Ordering::Relaxed);
        h.clock.store(saved[4], Ordering::Relaxed);
        HeartbeatTable::open(key.key(), &options(2)).unwrap();
    }
    poke(shm, 20, 0);
    let reason = bad_header_reason(HeartbeatTable::open(key.key(), &options(2)));
    assert!(reason.contains("0 slots"), "{reason}");
}

#[test]
fn random_corruption_never_panics_and_never_reads_out_of_bounds() {
    let key = TestKey::new();
    let table = HeartbeatTable::open_or_create(key.key(), &options(8)).unwrap();
    let reg = table.register("victim", Duration::from_secs(5)).unwrap();
    let shm = table.shared_memory();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..2000 {
        // Header: the attach either succeeds (only reserved bytes changed) or is refused.
        let offset = (rng.next() % layout::HEADER_SIZE as u64) as usize;
        let old = header(shm).magic.load(Ordering::Relaxed);
        poke(shm, offset, rng.next() as u8);
        match HeartbeatTable::open(key.key(), &options(8)) {
            Ok(t) => assert_eq!(t.capacity(), 8, "round {round}"),
            Err(Error::BadHeader { .. }) => {}
            Err(e) => panic!("round {round}: {e:?}"),
        }
        // Restore the header from a clean copy of the fields.
        initialise_header(shm, 8);
        header(shm)
            .magic
            .store(old.max(layout::MAGIC), Ordering::Relaxed);
        for r in 0..3 {
            header(shm).reserved[r].store(0, Ordering::Relaxed);
        }
        header(shm).owner_pid.store(0, Ordering::Relaxed);
        header(shm).owner_start.store(0, Ordering::Relaxed);
        // Slots: any bytes are readable without panicking.
        let offset = layout::HEADER_SIZE + (rng.next() % (8 * layout::SLOT_SIZE as u64)) as usize;
        poke(shm, offset, rng.next() as u8);
        let _ = table.snapshot();
    }
    // After all that, a sweep and a registration still work.
    drop(reg);
    table.free_dead().unwrap();
    for slot in table.slots() {
        // Leave even seqs, so every slot is readable again.
        if slot.seq.load(Ordering::Relaxed) & 1 == 1 {
            slot.seq.fetch_add(1, Ordering::Relaxed);
        }
        slot.state.store(layout::STATE_FREE, Ordering::Relaxed);
    }
    let again = table.register("after", Duration::from_secs(1)).unwrap();
    assert_eq!(table.slot(again.info().index).unwrap().name, "after");
}

#[test]
fn a_slot_left_mid_write_is_skipped_by_readers_and_reclaimed_by_writers() {
    let key = TestKey::new();
    let table = HeartbeatTable::open_or_create(key.key(), &options(2)).unwrap();
    let first = table.register("first", Duration::from_secs(5)).unwrap();
    let index = first.info().index as usize;
    std::mem::forget(first);
    // As if its writer died between the two seqlock bumps.
    table.slots()[index].seq.fetch_add(1, Ordering::Relaxed);
    assert!(table.snapshot().is_empty());
    let second = table.register("second", Duration::from_secs(5)).unwrap();
    assert_eq!(
        second.info().index as usize,
        index,
        "the torn slot is taken first"
    );
    assert_eq!(table.snapshot().len(), 1);
}

#[test]
fn names_and_timeouts_are_validated() {
    let key = TestKey::new();
    let table = HeartbeatTable::open_or_create(key.key(), &options(2)).unwrap();
    let second = Duration::from_secs(1);
    for bad in ["", "a\0b", &"x".repeat(64)] {
        assert!(
            matches!(table.register(bad, second), Err(Error::Invalid { .. })),
            "{bad:?}"
        );
    }
    assert!(table.register(&"x".repeat(63), second).is_ok());
    assert!(matches!(
        table.register("zero", Duration::ZERO),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        HeartbeatTable::open_or_create(key.key(), &options(0)),
        Err(Error::Invalid { .. })
    ));
}

#[test]
fn one_live_owner_at_a_time_and_a_dead_one_is_replaced() {
    let key = TestKey::new();
    let table = HeartbeatTable::open_or_create(key.key(), &options(4)).unwrap();
    assert!(table.created());
    assert_eq!(table.owner(), None);
    let me = ProcessId::current().unwrap();
    assert_eq!(table.claim(me).unwrap(), None);
    assert_eq!(table.owner(), Some(me));
    // Claiming again is fine; another handle sees the owner and is not the creator.
    assert_eq!(table.claim(me).unwrap(), None);
    let other = HeartbeatTable::open_or_create(key.key(), &options(4)).unwrap();
    assert!(!other.created());
    assert_eq!(other.owner(), Some(me));
    // A live process that is not us: refused, naming it.
    let mut child = std::process::Command::new("sleep")
        .arg("100")
        .spawn()
        .unwrap();
    let live = ProcessId::of(child.id() as i32).unwrap().unwrap();
    match table.claim(live) {
        Err(Error::Owned { pid, .. }) => assert_eq!(pid, me.pid),
        other => panic!("{other:?}"),
    }
    // Once the owner is gone (here: a made-up identity), the table is taken over.
    let dead = ProcessId {
        pid: me.pid,
        start_time: me.start_time + 1,
    };
    header(table.shared_memory())
        .owner_start
        .store(dead.start_time, Ordering::Relaxed);
    assert_eq!(table.claim(live).unwrap(), Some(dead));
    assert_eq!(table.owner(), Some(live));
    // Only the owner releases it.
    table.release(me).unwrap();
    assert_eq!(table.owner(), Some(live));
    table.release(live).unwrap();
    assert_eq!(table.owner(), None);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_reserved_slot_is_kept_across_instances_and_never_taken_by_a_registration() {
    let key = TestKey::new();
    let table = HeartbeatTable::open_or_create(key.key(), &options(2)).unwrap();
    let index = table
        .reserve("task", Duration::from_millis(100), Duration::from_secs(2))
        .unwrap();
    assert_eq!(table.slot_state(index), layout::STATE_RESERVED);
    assert!(
        table.snapshot().is_empty(),
        "a reserved slot has no process"
    );

    // The other slot goes to a registration, and then the table is full: the reserved slot is
    // not taken, whatever the state of its (absent) process.
    let me = table.register("other", Duration::from_secs(1)).unwrap();
    assert_ne!(me.info().index, index);
    let full = table.register_process(
        ProcessId {
            pid: 1,
            start_time: 1,
        },
        "third",
        Duration::from_secs(1),
    );
    assert!(matches!(full, Err(Error::TableFull { .. })), "{full:?}");

    // An instance: armed (no beat yet), occupied, beaten, vacated.
    let registered = table.arm(index);
    let process = ProcessId::current().unwrap();
    let info = table.occupy(index, process, registered).unwrap();
    assert_eq!(info.process, process);
    assert_eq!(info.start_timeout, Duration::from_secs(2));
    assert!(!info.beaten(), "the runner's registration is not a beat");
    assert_eq!(
        info.deadline_ns(),
        registered + 2_000_000_000,
        "before the first beat, the start timeout counts from the registration"
    );
    table.beat_slot(index, registered, Ordering::Relaxed);
    let info = table.slot(index).unwrap();
    assert!(info.beaten(), "a beat in the same coarse tick counts");
    assert_eq!(info.deadline_ns(), registered + 100_000_000);
    table.vacate(index).unwrap();
    assert_eq!(table.slot_state(index), layout::STATE_RESERVED);
    assert!(table.slot(index).is_none());

    table.free_reserved(index).unwrap();
    assert_eq!(table.slot_state(index), layout::STATE_FREE);
    assert!(table.vacate(index).is_err(), "a freed slot is no task's");
    drop(me);
}

#[test]
fn a_new_owner_frees_the_slots_a_dead_owner_reserved() {
    let key = TestKey::new();
    let table = HeartbeatTable::open_or_create(key.key(), &options(4)).unwrap();
    // A process that has exited: reap a child so its pid is gone.
    let child = std::process::Command::new("true").spawn().unwrap();
    let dead = ProcessId {
        pid: child.id() as i32,
        start_time: 1,
    };
    let mut child = child;
    child.wait().unwrap();
    table.claim(dead).unwrap();
    let index = table
        .reserve("task", Duration::from_secs(1), Duration::ZERO)
        .unwrap();
    let me = ProcessId::current().unwrap();
    assert_eq!(table.claim(me).unwrap(), Some(dead));
    assert_eq!(table.slot_state(index), layout::STATE_FREE);
}

/// A task's process that died is the runner's to see to: until the runner vacates or frees
/// its slot, no registration or reservation takes it as "dead", and no sweep frees it; a
/// runner that takes the table over from a dead owner frees it.
#[test]
fn a_task_slot_whose_process_died_is_taken_by_nobody_but_its_runner() {
    let key = TestKey::new();
    let table = HeartbeatTable::open_or_create(key.key(), &options(1)).unwrap();
    let me = ProcessId::current().unwrap();
    table.claim(me).unwrap();
    let index = table
        .reserve("task", Duration::from_secs(1), Duration::ZERO)
        .unwrap();
    // Its instance ran and exited; the runner has not vacated the slot yet.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let gone = ProcessId::of(child.id() as i32).unwrap().unwrap();
    child.wait().unwrap();
    let registered = table.arm(index);
    let info = table.occupy(index, gone, registered).unwrap();
    let full = table.reserve("other", Duration::from_secs(1), Duration::ZERO);
    assert!(matches!(full, Err(Error::TableFull { .. })), "{full:?}");
    let full = table.register("other", Duration::from_secs(1));
    assert!(matches!(full, Err(Error::TableFull { .. })), "{full:?}");
    assert!(table.free_dead().unwrap().is_empty());
    assert!(
        !table.free(&info).unwrap(),
        "a sweep does not free a task's slot"
    );
    assert_eq!(table.slot_state(index), layout::STATE_ACTIVE);
    // The runner's own calls still work.
    table.vacate(index).unwrap();
    assert_eq!(table.slot_state(index), layout::STATE_RESERVED);
    table.occupy(index, gone, registered).unwrap();
    // A runner that takes over from a dead owner frees it, instance and all.
    let dead = ProcessId {
        pid: gone.pid,
        start_time: gone.start_time,
    };
    header(&table.shm)
        .owner_pid
        .store(dead.pid, Ordering::Relaxed);
    header(&table.shm)
        .owner_start
        .store(dead.start_time, Ordering::Relaxed);
    assert_eq!(table.claim(me).unwrap(), Some(dead));
    assert_eq!(table.slot_state(index), layout::STATE_FREE);
}
