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
