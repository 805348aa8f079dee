//! The heartbeat clock: `CLOCK_MONOTONIC_COARSE` in nanoseconds.
//!
//! One clock for the whole system, so a timestamp written by one process compares with one
//! read in another; it never jumps with `date` or NTP. The coarse variant is read from the vDSO
//! without a system call in a few nanoseconds, with the resolution of a scheduler tick
//! (1-4 ms), which is plenty for heartbeat timeouts of 100 ms and more.

use nix::libc;

/// Nanoseconds on `CLOCK_MONOTONIC_COARSE`. Never 0 on a running system.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec. CLOCK_MONOTONIC_COARSE exists on every Linux
    // since 2.6.32, so the call cannot fail and its result needs no check.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Seconds since the epoch, as the seed framework's `time(0)` (wall clock, may jump).
#[inline]
pub fn wall_seconds() -> i64 {
    // SAFETY: a null pointer asks time() to only return the value.
    unsafe { libc::time(std::ptr::null_mut()) as i64 }
}
