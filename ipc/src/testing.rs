//! Test support (feature `testing`): IPC keys that are unique and cleaned up.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::{Error, Key, SemOptions, Semaphore, SharedMemory};

/// Every key a [`TestKey`] hands out has this top byte, so a check after a test suite can find
/// anything a test left behind (`cargo xtask ci` does).
pub const TEST_KEY_TOP_BYTE: u32 = 0x7e;

/// A key that no segment or semaphore uses yet. Whatever is created at it is removed when the
/// `TestKey` is dropped, also when the test panics.
#[derive(Debug)]
pub struct TestKey(Key);

impl TestKey {
    /// A fresh key: top byte [`TEST_KEY_TOP_BYTE`], then 16 bits of the pid and a counter.
    #[allow(clippy::new_without_default)]
    pub fn new() -> TestKey {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let quick = SemOptions {
            init_timeout: Duration::ZERO,
            ..SemOptions::default()
        };
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let raw = (TEST_KEY_TOP_BYTE << 24) | ((std::process::id() & 0xffff) << 8) | (n & 0xff);
            let key = Key(raw as i32);
            let no_shm = matches!(
                SharedMemory::open_any_size(key),
                Err(Error::NotFound { .. })
            );
            let no_sem = matches!(Semaphore::open(key, &quick), Err(Error::NotFound { .. }));
            if no_shm && no_sem {
                return TestKey(key);
            }
            assert!(n < 1 << 20, "no free test key");
        }
    }

    /// The key.
    pub fn key(&self) -> Key {
        self.0
    }

    /// The key as a command-line argument (`0x7e...`).
    pub fn arg(&self) -> String {
        format!("{:#x}", self.0.raw() as u32)
    }
}

impl Drop for TestKey {
    fn drop(&mut self) {
        let _ = SharedMemory::remove_key(self.0);
        let _ = Semaphore::remove_key(self.0);
    }
}
