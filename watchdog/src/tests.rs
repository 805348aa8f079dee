//! Every decision, on made-up slots and instants: no table, no process.

use std::time::Duration;

use nonstop_ipc::{ProcessId, SeedSlot, SlotInfo};

use super::*;

const MS: u64 = 1_000_000;

fn slot(registered_ns: u64, last_beat_ns: u64) -> SlotInfo {
    SlotInfo {
        index: 3,
        process: ProcessId {
            pid: 4242,
            start_time: 77,
        },
        name: "web".into(),
        timeout: Duration::from_millis(100),
        start_timeout: Duration::from_secs(2),
        registered_ns,
        last_beat_ns,
    }
}

#[test]
fn the_deadline_is_the_last_beat_plus_the_timeout_and_passes_strictly_after_it() {
    let beat = Beat::from(&slot(1000 * MS, 1500 * MS));
    assert!(beat.beaten);
    assert_eq!(beat.deadline_ns, 1600 * MS);
    assert_eq!(check(&beat, 1600 * MS), Check::Due(1600 * MS));
    assert_eq!(check(&beat, 1600 * MS + 1), Check::Overdue);
    assert_eq!(beat.age(1650 * MS), Duration::from_millis(150));
}

#[test]
fn before_its_first_beat_a_slow_starter_has_its_start_timeout() {
    // The runner registered it at 1000 ms and stored "no beat yet" (one ns before).
    let beat = Beat::from(&slot(1000 * MS, 1000 * MS - 1));
    assert!(!beat.beaten);
    assert_eq!(beat.deadline_ns, 3000 * MS);
    assert_eq!(check(&beat, 1200 * MS), Check::Due(3000 * MS));
    assert_eq!(check(&beat, 3000 * MS + 1), Check::Overdue);
    // A start timeout shorter than the timeout does not shorten the first deadline.
    let mut quick = slot(1000 * MS, 1000 * MS - 1);
    quick.start_timeout = Duration::from_millis(10);
    assert_eq!(Beat::from(&quick).deadline_ns, 1100 * MS);
}

#[test]
fn the_earliest_deadline_is_when_to_wake() {
    let beats = [
        Beat::from(&slot(0, 900 * MS)),
        Beat::from(&slot(0, 500 * MS)),
        Beat::from(&slot(0, 700 * MS)),
    ];
    assert_eq!(next_deadline(&beats), Some(600 * MS));
    assert_eq!(next_deadline(&[]), None);
}

#[test]
fn only_the_same_process_is_stopped_and_protected_pids_never() {
    let beat = Beat::from(&slot(0, 500 * MS));
    let now = 900 * MS;
    let protected = Protected::new(100, [50, 1]);
    assert_eq!(
        act(&beat, now, Identity::Same, &protected),
        Action::Stop {
            age: Duration::from_millis(400)
        }
    );
    assert_eq!(
        act(&beat, now, Identity::Gone, &protected),
        Action::Free(FreeReason::Gone)
    );
    assert_eq!(
        act(&beat, now, Identity::Recycled, &protected),
        Action::Free(FreeReason::Recycled)
    );
    for pid in [-1, 0, 1, 50, 100] {
        let beat = Beat {
            pid,
            ..beat.clone()
        };
        assert_eq!(
            act(&beat, now, Identity::Same, &protected),
            Action::Free(FreeReason::Protected),
            "pid {pid}"
        );
    }
}

#[test]
fn ps_states() {
    let beat = Beat::from(&slot(0, 500 * MS));
    assert_eq!(state(&beat, 550 * MS, Identity::Same), State::Ok);
    assert_eq!(state(&beat, 700 * MS, Identity::Same), State::Late);
    assert_eq!(state(&beat, 550 * MS, Identity::Gone), State::Dead);
    assert_eq!(state(&beat, 550 * MS, Identity::Recycled), State::Dead);
    assert_eq!(
        [State::Ok, State::Late, State::Dead].map(State::as_str),
        ["ok", "late", "dead"]
    );
}

#[test]
fn the_seed_layout_is_hung_when_now_minus_atime_reaches_the_timeout() {
    let seed = SeedSlot {
        index: 0,
        pid: 4242,
        name: "server".into(),
        timeout_secs: 30,
        atime: 1_700_000_000,
    };
    let beat = Beat::from(&seed);
    let at = |secs: u64| secs * 1_000_000_000;
    assert_eq!(
        check(&beat, at(1_700_000_029) + 999_999_999),
        Check::Due(beat.deadline_ns)
    );
    assert_eq!(check(&beat, at(1_700_000_030)), Check::Overdue);
    assert_eq!(beat.timeout, Duration::from_secs(30));
    // A record with a negative time or timeout (corrupt) is overdue, not a panic.
    let junk = Beat::from(&SeedSlot {
        timeout_secs: -5,
        atime: -1,
        ..seed
    });
    assert_eq!(check(&junk, at(1)), Check::Overdue);
}

#[test]
fn in_the_seed_layout_a_process_younger_than_the_last_beat_is_another_process() {
    assert_eq!(Identity::for_seed(None, 1000), Identity::Gone);
    assert_eq!(Identity::for_seed(Some(900), 1000), Identity::Same);
    assert_eq!(Identity::for_seed(Some(1001), 1000), Identity::Same);
    assert_eq!(Identity::for_seed(Some(1002), 1000), Identity::Recycled);
}
