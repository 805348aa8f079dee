//! Keeping a vfork child on its parent's CPU.
//!
//! When the first process enters an empty cgroup, the kernel reports `populated 1` in its
//! `cgroup.events` at once, through a work item that wakes a kworker on the current CPU; that
//! happens inside `clone3(CLONE_INTO_CGROUP)`, just before the kernel chooses a CPU for the
//! child, which then sees the parent's CPU busy and sends the child to another one. With
//! `CLONE_VFORK` the parent waits for the child's `execve`, so every start became a hand-off
//! between CPUs (two cross-CPU wake-ups; costly in a VM): 150-250 µs more per first start into
//! a new cgroup, measured in BENCHMARKS.md. For the length of the clone only, the parent is
//! pinned to the CPU it runs on, so the child is created there too (a vfork child belongs
//! where its suspended parent is); the child restores the parent's own mask before `execve`,
//! and the kernel may still move it then (`sched_exec` balancing), as for any start. Done for
//! every start, with or without a cgroup: the fork balancing sends some children away
//! without one too, less often.

use nix::libc;

/// A CPU mask as the kernel's `sched_{get,set}affinity` take it: room for 1024 CPUs.
pub(super) type CpuMask = [u64; 16];

/// The calling thread, pinned to its current CPU until dropped; `original` is its own mask,
/// for the child to restore.
pub(super) struct Pinned {
    pub(super) original: CpuMask,
    /// Bytes of `original` the kernel filled in.
    pub(super) len: usize,
}

/// Pins the calling thread to the CPU it runs on, if it may run on more than one.
pub(super) fn pin() -> Option<Pinned> {
    let mut original: CpuMask = [0; 16];
    // SAFETY: the kernel writes at most `size_of_val(&original)` bytes into our array and
    // returns how many.
    let len = unsafe {
        libc::syscall(
            libc::SYS_sched_getaffinity,
            0,
            std::mem::size_of_val(&original),
            original.as_mut_ptr(),
        )
    };
    if len <= 0 || original.iter().map(|w| w.count_ones()).sum::<u32>() <= 1 {
        return None;
    }
    // SAFETY: no arguments; reads the CPU number (from the vDSO or rseq).
    let cpu = unsafe { libc::sched_getcpu() };
    let cpu = usize::try_from(cpu)
        .ok()
        .filter(|&c| c < 64 * original.len())?;
    let mut one: CpuMask = [0; 16];
    one[cpu / 64] = 1 << (cpu % 64);
    // SAFETY: the kernel reads `len` bytes of our array.
    let r = unsafe { libc::syscall(libc::SYS_sched_setaffinity, 0, len, one.as_ptr()) };
    (r == 0).then_some(Pinned {
        original,
        len: len as usize,
    })
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: as in `pin`: the kernel reads `len` bytes of the mask it gave us. It was
        // ours a moment ago; the call cannot fail unless the cpuset shrank meanwhile, in which
        // case the kernel keeps what is allowed.
        unsafe {
            libc::syscall(
                libc::SYS_sched_setaffinity,
                0,
                self.len,
                self.original.as_ptr(),
            );
        }
    }
}

/// In the child: restores the parent's own mask. Async-signal-safe (one system call).
pub(super) fn restore(mask: &CpuMask, len: usize) -> bool {
    // SAFETY: the kernel reads `len` bytes of the parent's mask, which stays valid while the
    // parent is suspended.
    unsafe { libc::syscall(libc::SYS_sched_setaffinity, 0, len, mask.as_ptr()) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask() -> (CpuMask, usize) {
        let mut m: CpuMask = [0; 16];
        // SAFETY: the kernel writes at most the array's size into it.
        let len = unsafe {
            libc::syscall(
                libc::SYS_sched_getaffinity,
                0,
                std::mem::size_of_val(&m),
                m.as_mut_ptr(),
            )
        };
        (m, len as usize)
    }

    #[test]
    fn pinning_is_undone_on_drop() {
        // In a thread of its own: affinity is per thread.
        std::thread::spawn(|| {
            let (before, _) = mask();
            match pin() {
                Some(pinned) => {
                    let (during, _) = mask();
                    assert_eq!(during.iter().map(|w| w.count_ones()).sum::<u32>(), 1);
                    assert_eq!(pinned.original, before);
                    drop(pinned);
                    assert_eq!(mask().0, before);
                }
                // A single CPU: nothing to pin.
                None => assert_eq!(before.iter().map(|w| w.count_ones()).sum::<u32>(), 1),
            }
        })
        .join()
        .unwrap();
    }
}
