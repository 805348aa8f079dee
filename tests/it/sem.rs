//! Semaphores across processes: creation races, SEM_UNDO on SIGKILL, timeouts.

use std::time::{Duration, Instant};

use nonstop_ipc::{Error, SemOptions, Semaphore};

use crate::harness::{Proc, TestKey};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn racing_creators_all_get_one_initialised_lock_that_excludes() {
    let dir = tempfile::tempdir().unwrap();
    const PROCS: usize = 4;
    const ROUNDS: u64 = 200;
    // Several rounds: each is a fresh key, so each is a fresh race to create.
    for round in 0..5 {
        let key = TestKey::new();
        let file = dir.path().join(format!("counter-{round}"));
        std::fs::write(&file, "0\n").unwrap();
        let file_arg = file.to_str().unwrap();
        let rounds = ROUNDS.to_string();
        let mut procs: Vec<Proc> = (0..PROCS)
            .map(|_| Proc::helper(&["sem-race", &key.arg(), &rounds, file_arg]))
            .collect();
        for p in &mut procs {
            p.send("go");
        }
        for p in &mut procs {
            assert_eq!(p.line(30 * SECOND), "ok");
            assert!(p.wait(10 * SECOND).success());
        }
        // No increment lost: the lock excluded. Value back to 1: initialised once, to 1.
        let count: u64 = std::fs::read_to_string(&file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(count, PROCS as u64 * ROUNDS, "round {round}: lost updates");
        let sem = Semaphore::open(key.key(), &SemOptions::default()).unwrap();
        assert_eq!(sem.value().unwrap(), 1);
    }
}

#[test]
fn lock_of_a_sigkilled_holder_is_released_by_the_kernel() {
    let key = TestKey::new();
    let mut holder = Proc::helper(&["hold", &key.arg()]);
    assert_eq!(holder.line(10 * SECOND), "locked");
    let sem = Semaphore::open(key.key(), &SemOptions::default()).unwrap();
    assert_eq!(sem.value().unwrap(), 0);
    assert!(sem.try_acquire().unwrap().is_none());

    holder.sigkill();
    holder.wait(10 * SECOND);
    let start = Instant::now();
    let guard = sem.acquire_timeout(5 * SECOND).unwrap();
    assert!(start.elapsed() < SECOND, "took {:?}", start.elapsed());
    drop(guard);
    assert_eq!(sem.value().unwrap(), 1);
}

#[test]
fn acquiring_a_lock_nobody_releases_times_out_with_a_typed_error() {
    let key = TestKey::new();
    let holder = Proc::helper(&["hold", &key.arg()]);
    assert_eq!(holder.line(10 * SECOND), "locked");
    let sem = Semaphore::open(key.key(), &SemOptions::default()).unwrap();
    let wait = Duration::from_millis(300);
    let start = Instant::now();
    let err = sem.acquire_timeout(wait).unwrap_err();
    let elapsed = start.elapsed();
    assert!(
        elapsed >= wait && elapsed < 5 * SECOND,
        "waited {elapsed:?}"
    );
    match &err {
        Error::Timeout { last_pid, .. } => assert_eq!(*last_pid, holder.pid()),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(&format!("pid {}", holder.pid())), "{text}");
    assert!(text.contains(&key.key().to_string()), "{text}");
}

#[test]
fn a_guard_releases_on_drop_and_a_removed_semaphore_is_an_error() {
    let key = TestKey::new();
    let sem = Semaphore::open_or_create(key.key(), &SemOptions::default()).unwrap();
    assert_eq!(sem.value().unwrap(), 1);
    {
        let _guard = sem.acquire().unwrap();
        assert_eq!(sem.value().unwrap(), 0);
        assert!(sem.try_acquire().unwrap().is_none());
    }
    assert_eq!(sem.value().unwrap(), 1);
    let again = Semaphore::open(key.key(), &SemOptions::default()).unwrap();
    sem.remove().unwrap();
    assert!(matches!(
        again.acquire_timeout(SECOND),
        Err(Error::Removed { .. })
    ));
    assert!(matches!(
        Semaphore::open(key.key(), &SemOptions::default()),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn semaphores_are_created_owner_only_by_default() {
    let key = TestKey::new();
    let _sem = Semaphore::open_or_create(key.key(), &SemOptions::default()).unwrap();
    let sysv = std::fs::read_to_string("/proc/sysvipc/sem").unwrap();
    let line = sysv
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&key.key().raw().to_string()))
        .unwrap_or_else(|| panic!("key {} not in /proc/sysvipc/sem", key.key()));
    let perms = line.split_whitespace().nth(2).unwrap();
    assert_eq!(perms, "600", "{line}");
}
