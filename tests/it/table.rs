//! The heartbeat table across processes: concurrent registration, dead and recycled
//! processes, and a C program written against the documented layout.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use nonstop_ipc::{Error, HeartbeatTable, Liveness, ProcessId, TableOptions, clock};

use crate::harness::{Proc, TestKey, c_program, wait_until};

const SECOND: Duration = Duration::from_secs(1);

fn table(key: &TestKey, slots: u32) -> HeartbeatTable {
    let options = TableOptions {
        slots,
        ..TableOptions::default()
    };
    HeartbeatTable::open_or_create(key.key(), &options).unwrap()
}

fn slot_of(line: &str) -> u32 {
    line.strip_prefix("slot ")
        .unwrap_or_else(|| panic!("expected `slot N`, got {line:?}"))
        .parse()
        .unwrap()
}

#[test]
fn sixty_four_processes_registering_at_once_get_distinct_slots_and_a_full_table_is_an_error() {
    const N: u32 = 64;
    let key = TestKey::new();
    let table = table(&key, N);
    let mut procs: Vec<Proc> = (0..N)
        .map(|i| Proc::helper(&["register", &key.arg(), &N.to_string(), &format!("svc-{i}")]))
        .collect();
    // Everyone is started and attached before anyone registers.
    for p in &mut procs {
        p.send("go");
    }
    let slots: Vec<u32> = procs
        .iter()
        .map(|p| slot_of(&p.line(30 * SECOND)))
        .collect();
    let distinct: HashSet<u32> = slots.iter().copied().collect();
    assert_eq!(distinct.len(), N as usize, "slots {slots:?}");

    let snapshot = table.snapshot();
    assert_eq!(snapshot.len(), N as usize);
    for (i, (p, slot)) in procs.iter().zip(&slots).enumerate() {
        let info = snapshot.iter().find(|s| s.index == *slot).unwrap();
        assert_eq!(info.process.pid, p.pid());
        assert_eq!(info.name, format!("svc-{i}"));
        assert_eq!(info.timeout, 60 * SECOND);
        assert_eq!(info.process.liveness(), Liveness::Alive);
    }

    let err = table.register("one-too-many", SECOND).unwrap_err();
    assert!(
        matches!(err, Error::TableFull { capacity: N, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&key.key().to_string()));

    for p in &mut procs {
        p.close_stdin();
    }
    for p in &mut procs {
        assert_eq!(p.line(10 * SECOND), "freed");
        assert!(p.wait(10 * SECOND).success());
    }
    assert!(table.snapshot().is_empty());
}

#[test]
fn slots_of_killed_and_zombie_processes_are_freed_and_a_full_table_reclaims_them() {
    let key = TestKey::new();
    let table = table(&key, 2);
    let mut killed = Proc::helper(&["register", &key.arg(), "2", "killed"]);
    let mut zombie = Proc::helper(&["register", &key.arg(), "2", "zombie"]);
    for p in [&mut killed, &mut zombie] {
        p.send("go");
        slot_of(&p.line(10 * SECOND));
    }
    killed.sigkill();
    killed.wait(10 * SECOND);
    // Killed but not reaped: /proc still lists it, as a zombie.
    zombie.sigkill();
    let zombie_pid = zombie.pid();
    assert!(wait_until(10 * SECOND, || {
        std::fs::read_to_string(format!("/proc/{zombie_pid}/stat"))
            .is_ok_and(|s| s.rsplit(')').next().unwrap().trim_start().starts_with('Z'))
    }));

    // SIGKILL runs no destructor: both slots are still taken.
    let before = table.snapshot();
    assert_eq!(before.len(), 2);
    for info in &before {
        assert_eq!(info.process.liveness(), Liveness::Gone, "{info:?}");
    }
    // The table is full, but of dead processes: registering reclaims their slots.
    let me = table.register("me", SECOND).unwrap();
    let left = table.snapshot();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].process, ProcessId::current().unwrap());

    // A sweep frees exactly the dead ones.
    let mut doomed = Proc::helper(&["register", &key.arg(), "2", "doomed"]);
    doomed.send("go");
    slot_of(&doomed.line(10 * SECOND));
    doomed.sigkill();
    doomed.wait(10 * SECOND);
    assert_eq!(table.snapshot().len(), 2);
    let freed = table.free_dead().unwrap();
    assert_eq!(freed.len(), 1, "{freed:?}");
    assert_eq!(freed[0].name, "doomed");
    assert_eq!(table.snapshot().len(), 1);
    drop(me);
    assert!(table.snapshot().is_empty());
    zombie.wait(10 * SECOND);
}

#[test]
fn a_slot_whose_pid_now_belongs_to_another_process_is_not_taken_for_it() {
    let key = TestKey::new();
    let table = table(&key, 4);
    let me = ProcessId::current().unwrap();
    // As if an earlier process with our pid registered and died: same pid, other start time.
    let impostor = ProcessId {
        pid: me.pid,
        start_time: me.start_time - 1,
    };
    let stale = table.register_process(impostor, "old", SECOND).unwrap();
    assert_eq!(
        table.slot(stale.index).unwrap().process.liveness(),
        Liveness::Recycled
    );
    // A live process that is not the registered one (it holds a lock on a key of its own).
    let other_key = TestKey::new();
    let other = Proc::helper(&["hold", &other_key.arg()]);
    assert_eq!(other.line(10 * SECOND), "locked");
    let other_id = ProcessId::of(other.pid()).unwrap().unwrap();
    let recycled = ProcessId {
        start_time: other_id.start_time + 1,
        ..other_id
    };
    assert_eq!(recycled.liveness(), Liveness::Recycled);
    assert_eq!(other_id.liveness(), Liveness::Alive);
    let wrong = table
        .register_process(recycled, "recycled", SECOND)
        .unwrap();
    assert_ne!(wrong.index, stale.index);
    let freed = table.free_dead().unwrap();
    let names: HashSet<String> = freed.into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        HashSet::from(["old".to_owned(), "recycled".to_owned()])
    );
    assert!(table.snapshot().is_empty());

    // Registering from our own pid reclaims the stale slot of the earlier process.
    let stale = table.register_process(impostor, "old", SECOND).unwrap();
    let mine = table.register("mine", SECOND).unwrap();
    assert_eq!(mine.info().index, stale.index);
    assert_eq!(table.snapshot().len(), 1);
}

#[test]
fn beats_are_seen_by_readers_and_stale_slots_detected() {
    let key = TestKey::new();
    let table = table(&key, 4);
    let me = table
        .register("beater", Duration::from_millis(100))
        .unwrap();
    let first = table.slot(me.info().index).unwrap().last_beat_ns;
    assert!(wait_until(5 * SECOND, || {
        me.beat();
        table.slot(me.info().index).unwrap().last_beat_ns > first
    }));
    let info = table.slot(me.info().index).unwrap();
    assert!(!info.is_stale(clock::now_ns()));
    assert!(info.is_stale(info.last_beat_ns + 101_000_000));
    assert!(!info.is_stale(info.last_beat_ns + 99_000_000));
}

#[test]
fn a_c_program_using_the_documented_layout_registers_and_beats() {
    let key = TestKey::new();
    let table = table(&key, 8);
    let mut client = Proc::spawn(
        Command::new(c_program("heartbeat_client")).args([key.arg().as_str(), "c-client"]),
    );
    let index = slot_of(&client.line(10 * SECOND));
    let info = table.slot(index).expect("the C program's slot is active");
    assert_eq!(info.name, "c-client");
    assert_eq!(info.process, ProcessId::of(client.pid()).unwrap().unwrap());
    assert_eq!(info.process.liveness(), Liveness::Alive);
    assert_eq!(info.timeout, 30 * SECOND);
    // It beats every 2 ms: its timestamp moves.
    assert!(wait_until(5 * SECOND, || {
        table.slot(index).unwrap().last_beat_ns > info.last_beat_ns
    }));
    client.close_stdin();
    assert_eq!(client.line(10 * SECOND), "freed");
    assert!(client.wait(10 * SECOND).success());
    assert!(table.snapshot().is_empty());
    // And Rust can take the slot the C program gave back.
    let me = table.register("after-c", SECOND).unwrap();
    assert_eq!(me.info().index, 0);
}

#[test]
fn the_c_program_refuses_a_segment_that_is_not_a_nonstop_table() {
    let key = TestKey::new();
    let (_shm, _) = nonstop_ipc::SharedMemory::open_or_create(key.key(), 64 + 128, 0o600).unwrap();
    let _sem = nonstop_ipc::Semaphore::open_or_create(key.key(), &Default::default()).unwrap();
    let mut client = Proc::spawn(
        Command::new(c_program("heartbeat_client")).args([key.arg().as_str(), "c-client"]),
    );
    assert_eq!(client.wait(10 * SECOND).code(), Some(1));
}

#[test]
fn a_table_of_another_user_is_a_permission_error_that_says_so() {
    let key = TestKey::new();
    if nix::unistd::getuid().is_root() {
        // Owner-only by default: another user cannot attach it.
        let _table = table(&key, 4);
        let mut other = Proc::helper(&["open-as-nobody", &key.arg()]);
        let line = other.line(10 * SECOND);
        assert!(line.starts_with("error permission denied"), "{line}");
        assert!(line.contains(&key.key().to_string()), "{line}");
        assert!(!other.wait(10 * SECOND).success());
    } else {
        // Not root: a mode that forbids even the owner (root would bypass it).
        let options = TableOptions {
            mode: 0o000,
            ..TableOptions::default()
        };
        let err = HeartbeatTable::open_or_create(key.key(), &options).unwrap_err();
        assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
        assert!(err.to_string().starts_with("permission denied"), "{err}");
    }
}
