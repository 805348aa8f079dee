//! The heartbeat clock: `CLOCK_MONOTONIC_COARSE` in nanoseconds.
//!
//! One clock for the whole system, so a timestamp written by one process compares with one
//! read in another; it never jumps with `date` or NTP. The coarse variant is read from the vDSO
//! without a system call, with the resolution of a scheduler tick (1-4 ms): plenty for
//! heartbeat timeouts of 100 ms and more.
//!
//! A beat is mostly this clock read, so it calls the vDSO's own `clock_gettime` entry point
//! (vdso(7)), found once with `dlsym`; glibc's `clock_gettime` reaches the same code through an
//! extra indirect call that costs about as much again (see BENCHMARKS.md). Where the vDSO cannot
//! be found that way (static or non-glibc builds), libc's `clock_gettime` serves.

use std::sync::OnceLock;

use nix::libc;

type ClockGettime = unsafe extern "C" fn(libc::clockid_t, *mut libc::timespec) -> libc::c_int;

/// A resolved way to read `CLOCK_MONOTONIC_COARSE`; copy it into hot loops.
#[derive(Clone, Copy)]
pub struct CoarseClock(ClockGettime);

impl std::fmt::Debug for CoarseClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CoarseClock").finish()
    }
}

impl CoarseClock {
    /// The process-wide clock, resolved on first use.
    pub fn get() -> CoarseClock {
        static CLOCK: OnceLock<CoarseClock> = OnceLock::new();
        *CLOCK.get_or_init(|| CoarseClock(resolve()))
    }

    /// The same clock read through libc's `clock_gettime` (for comparison in benchmarks).
    pub fn via_libc() -> CoarseClock {
        CoarseClock(libc::clock_gettime)
    }

    /// Nanoseconds on `CLOCK_MONOTONIC_COARSE`. Never 0 on a running system.
    #[inline]
    pub fn now_ns(self) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `self.0` has clock_gettime's C signature (libc's, or the vDSO's, which vdso(7)
        // documents as the same) and `ts` is a valid, writable timespec. The coarse monotonic
        // clock exists on every Linux since 2.6.32, so the call cannot fail.
        unsafe {
            (self.0)(libc::CLOCK_MONOTONIC_COARSE, &mut ts);
        }
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}

/// The vDSO's `clock_gettime`, or libc's.
fn resolve() -> ClockGettime {
    // x86-64 names it __vdso_clock_gettime, arm64 and riscv __kernel_clock_gettime.
    for symbol in [c"__vdso_clock_gettime", c"__kernel_clock_gettime"] {
        // SAFETY: RTLD_NOLOAD never loads anything: it only returns a handle to the vDSO if
        // the dynamic linker already mapped it (glibc does, under this name). No initialiser
        // runs. The handle is never closed; the vDSO is never unmapped anyway.
        let handle = unsafe {
            libc::dlopen(
                c"linux-vdso.so.1".as_ptr(),
                libc::RTLD_NOLOAD | libc::RTLD_LAZY,
            )
        };
        if handle.is_null() {
            break;
        }
        // SAFETY: `handle` is a valid handle and `symbol` a NUL-terminated name.
        let found = unsafe { libc::dlsym(handle, symbol.as_ptr()) };
        if !found.is_null() {
            // SAFETY: this vDSO symbol is clock_gettime with the C signature of ClockGettime
            // (vdso(7)); a data pointer from dlsym converts to a function pointer on Linux.
            return unsafe { std::mem::transmute::<*mut libc::c_void, ClockGettime>(found) };
        }
    }
    libc::clock_gettime
}

/// Nanoseconds on `CLOCK_MONOTONIC_COARSE`. Never 0 on a running system.
#[inline]
pub fn now_ns() -> u64 {
    CoarseClock::get().now_ns()
}

/// Seconds since the epoch, as the seed framework's `time(0)` (wall clock, may jump).
#[inline]
pub fn wall_seconds() -> i64 {
    // SAFETY: a null pointer asks time() to only return the value.
    unsafe { libc::time(std::ptr::null_mut()) as i64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resolved_clock_agrees_with_libc_and_never_goes_back() {
        let clock = CoarseClock::get();
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let ours = clock.now_ns();
        // SAFETY: `ts` is a valid, writable timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
        let libc_ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        assert!(ours > 0);
        assert!(
            libc_ns >= ours && libc_ns - ours < 1_000_000_000,
            "{ours} vs {libc_ns}"
        );
        let mut last = ours;
        for _ in 0..10_000 {
            let now = clock.now_ns();
            assert!(now >= last);
            last = now;
        }
    }
}
