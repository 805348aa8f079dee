//! Shared-memory segments: exact sizes, detach on drop, removal.

use nonstop_ipc::{Error, SharedMemory};

use crate::harness::TestKey;

#[test]
fn an_existing_segment_of_another_size_is_an_error_naming_both_sizes_and_the_fix() {
    let key = TestKey::new();
    let (shm, created) = SharedMemory::open_or_create(key.key(), 4096, 0o600).unwrap();
    assert!(created);
    let err = SharedMemory::open_or_create(key.key(), 8192, 0o600).unwrap_err();
    assert!(
        matches!(
            err,
            Error::WrongSize {
                expected: 8192,
                actual: 4096,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    for needle in [
        key.key().to_string(),
        "4096".into(),
        "8192".into(),
        format!("ipcrm -m {}", shm.id()),
    ] {
        assert!(text.contains(&needle), "{needle:?} not in {text:?}");
    }
    // A smaller size is refused too, though the kernel would accept it.
    assert!(matches!(
        SharedMemory::open(key.key(), 100),
        Err(Error::WrongSize { .. })
    ));
}

#[test]
fn handles_detach_on_drop_and_remove_frees_the_key() {
    let key = TestKey::new();
    let (first, _) = SharedMemory::open_or_create(key.key(), 4096, 0o600).unwrap();
    let (second, created) = SharedMemory::open_or_create(key.key(), 4096, 0o600).unwrap();
    assert!(!created);
    assert_eq!(first.id(), second.id());
    assert_eq!(first.attach_count().unwrap(), 2);
    drop(second);
    assert_eq!(first.attach_count().unwrap(), 1);
    first.remove().unwrap();
    assert!(matches!(
        SharedMemory::open_any_size(key.key()),
        Err(Error::NotFound { .. })
    ));
    // The key is free again at once, while `first` is still attached to the old memory.
    let (fresh, created) = SharedMemory::open_or_create(key.key(), 4096, 0o600).unwrap();
    assert!(created);
    assert_ne!(fresh.id(), first.id());
}
