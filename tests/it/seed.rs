//! The seed framework's table: a C service built the seed's way is seen by nonstop.

use std::process::Command;
use std::time::Duration;

use nonstop_ipc::{SeedOptions, SeedTable, clock};

use crate::harness::{Proc, TestKey, c_program};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn a_seed_style_c_service_is_seen_and_its_record_freed() {
    let key = TestKey::new();
    let mut client = Proc::spawn(
        Command::new(c_program("seed_client")).args([key.arg().as_str(), "seed-client"]),
    );
    let line = client.line(10 * SECOND);
    let index: u32 = line.strip_prefix("slot ").unwrap().parse().unwrap();
    // The C program created the segment (0640) and the semaphore (0666, SETVAL only).
    let table = SeedTable::open_or_create(key.key(), &SeedOptions::default()).unwrap();
    let slots = table.snapshot();
    assert_eq!(slots.len(), 1, "{slots:?}");
    let slot = &slots[0];
    assert_eq!(slot.index, index);
    assert_eq!(slot.pid, client.pid());
    assert_eq!(slot.name, "seed-client");
    assert_eq!(slot.timeout_secs, 30);
    let now = clock::wall_seconds();
    assert!(
        (now - slot.atime).abs() <= 2,
        "atime {} now {now}",
        slot.atime
    );
    assert!(!slot.is_stale(now));
    assert!(slot.is_stale(slot.atime + 30));

    // Rust registers beside it, in the next record, under the same semaphore.
    let me = table.register("rust-seed", 5).unwrap();
    assert_ne!(me.index(), index);
    me.beat();
    assert_eq!(table.snapshot().len(), 2);
    drop(me);

    client.close_stdin();
    assert_eq!(client.line(10 * SECOND), "freed");
    assert!(client.wait(10 * SECOND).success());
    assert!(table.snapshot().is_empty());
}

#[test]
fn records_of_dead_seed_services_are_freed() {
    let key = TestKey::new();
    let mut client =
        Proc::spawn(Command::new(c_program("seed_client")).args([key.arg().as_str(), "doomed"]));
    client.line(10 * SECOND);
    let table = SeedTable::open_or_create(key.key(), &SeedOptions::default()).unwrap();
    client.sigkill();
    client.wait(10 * SECOND);
    assert_eq!(table.snapshot().len(), 1);
    let freed = table.free_dead().unwrap();
    assert_eq!(freed.len(), 1);
    assert_eq!(freed[0].name, "doomed");
    assert!(table.snapshot().is_empty());
}

/// The watchdog's decisions over the seed's layout: a seed-style C service that stops beating
/// is overdue once `time(0) - atime` reaches its timeout, its pid is taken for the same process
/// (it started before its last beat), so it is to be stopped; the same record read as if its pid
/// belonged to a process started later is freed instead, and once the service is gone, too.
#[test]
fn a_hung_seed_service_is_found_by_the_watchdog_decisions() {
    use nonstop_watchdog::{Action, Beat, Check, FreeReason, Identity, Protected};

    let key = TestKey::new();
    let mut client = Proc::spawn(Command::new(c_program("seed_client")).args([
        key.arg().as_str(),
        "stuck",
        "1",
        "hang",
    ]));
    client.line(10 * SECOND);
    let table = SeedTable::open(key.key(), &SeedOptions::default()).unwrap();
    let slot = table.snapshot().pop().unwrap();
    assert_eq!(slot.pid, client.pid());
    let beat = Beat::from(&slot);
    let now_ns = || clock::wall_seconds() as u64 * 1_000_000_000;
    // Not yet: it registered less than its 1 s timeout ago (in whole seconds).
    assert!(
        crate::harness::wait_until(5 * SECOND, || nonstop_watchdog::check(&beat, now_ns())
            == Check::Overdue),
        "never overdue: {slot:?}"
    );
    let started = nonstop_ipc::started_at(client.pid()).unwrap();
    let identity = Identity::for_seed(started, slot.atime as u64);
    assert_eq!(identity, Identity::Same);
    let protected = Protected::new(std::process::id() as i32, []);
    match nonstop_watchdog::act(&beat, now_ns(), identity, &protected) {
        Action::Stop { age } => assert!(age >= SECOND, "{age:?}"),
        other => panic!("{other:?}"),
    }
    let later = Identity::for_seed(Some(slot.atime as u64 + 10), slot.atime as u64);
    assert_eq!(
        nonstop_watchdog::act(&beat, now_ns(), later, &protected),
        Action::Free(FreeReason::Recycled)
    );
    client.sigkill();
    client.wait(10 * SECOND);
    let gone = Identity::for_seed(nonstop_ipc::started_at(slot.pid).unwrap(), 0);
    assert_eq!(gone, Identity::Gone);
}

#[test]
fn nonstop_ps_lists_a_seed_table() {
    let key = TestKey::new();
    let mut client =
        Proc::spawn(Command::new(c_program("seed_client")).args([key.arg().as_str(), "legacy"]));
    client.line(10 * SECOND);
    let out = Command::new(crate::harness::nonstop())
        .args(["ps", "--layout", "seed", "--key", &key.arg()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = text
        .lines()
        .find(|l| l.contains("legacy"))
        .unwrap_or_else(|| panic!("{text}"));
    let words: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(words[1], client.pid().to_string(), "{row}");
    assert_eq!(words[3], "30s", "{row}");
    assert_eq!(words[5], "ok", "{row}");
    client.close_stdin();
    assert!(client.wait(10 * SECOND).success());
}
