//! Descriptor slots: what a child needs from the runner's descriptor table (its stdin, stdout,
//! stderr, and the program to execute from a descriptor) is put, just before each clone, at a
//! few low descriptor numbers reserved once. The child then shares the runner's table
//! (`CLONE_FILES`) and makes its own with `close_range(K, ~0, CLOSE_RANGE_UNSHARE)`, which
//! copies only the descriptors below `K`: a start costs the same whether the runner holds ten
//! descriptors or ten thousand (without this, the kernel copies the whole table into each child
//! and closes every close-on-exec descriptor at `execve`, about 2 µs each: 1 ms per start with
//! 100 tasks).
//!
//! `CLOSE_RANGE_UNSHARE` needs Linux 5.9; on older kernels the child gets a full copy as
//! before.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard, OnceLock};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::stat::Mode;

use crate::Error;

/// The reserved descriptors. Each holds a close-on-exec duplicate that the next spawn
/// replaces; `stdin` always holds `/dev/null`.
#[derive(Debug)]
pub(super) struct Slots {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub program: OwnedFd,
    /// Whether the kernel has `CLOSE_RANGE_UNSHARE`.
    pub unshare: bool,
}

impl Slots {
    /// The first descriptor number above every slot: the child keeps `[0, below)`.
    pub fn below(&self) -> RawFd {
        [&self.stdin, &self.stdout, &self.stderr, &self.program]
            .iter()
            .map(|fd| fd.as_raw_fd())
            .max()
            .unwrap_or(2)
            + 1
    }

    /// Puts `fd` in `slot` (close-on-exec).
    pub fn put(slot: &mut OwnedFd, fd: BorrowedFd<'_>) -> Result<(), Error> {
        nix::unistd::dup3(fd, slot, OFlag::O_CLOEXEC)
            .map_err(|e| Error::spawn("passing a descriptor to the child", e.into()))
    }
}

static SLOTS: OnceLock<Result<Mutex<Slots>, String>> = OnceLock::new();

/// Reserves the slots now, at the lowest free descriptor numbers: the runner calls this first
/// thing, so that they are 3 to 6. Spawning reserves them on first use otherwise.
pub fn reserve() -> Result<(), Error> {
    lock().map(drop)
}

/// The slots, locked for one spawn (the runner has one thread; tests spawn from several).
pub(super) fn lock() -> Result<MutexGuard<'static, Slots>, Error> {
    let slots = SLOTS.get_or_init(|| open().map(Mutex::new).map_err(|e| e.to_string()));
    match slots {
        Ok(mutex) => Ok(mutex
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())),
        Err(why) => Err(Error::io(
            "reserving descriptor slots for children",
            std::io::Error::other(why.clone()),
        )),
    }
}

fn open() -> Result<Slots, Error> {
    let devnull = nix::fcntl::open(
        "/dev/null",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("opening /dev/null", e.into()))?;
    let another = || -> Result<OwnedFd, Error> {
        let fd = fcntl(&devnull, FcntlArg::F_DUPFD_CLOEXEC(3))
            .map_err(|e| Error::io("reserving a descriptor slot", e.into()))?;
        Ok(owned(fd))
    };
    Ok(Slots {
        stdout: another()?,
        stderr: another()?,
        program: another()?,
        stdin: devnull,
        unshare: unshare_supported(),
    })
}

/// Takes ownership of a descriptor `fcntl(F_DUPFD_CLOEXEC)` just returned.
fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` is a descriptor this process just created and nothing else refers to.
    unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
}

/// Whether `close_range` knows `CLOSE_RANGE_UNSHARE` (Linux 5.9): asked on a range that
/// closes nothing, in a table that is not shared, so it changes nothing.
fn unshare_supported() -> bool {
    // SAFETY: close_range on the range [~0, ~0], which holds no descriptor; with
    // CLOSE_RANGE_UNSHARE on an unshared table it only validates its arguments.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            u32::MAX,
            u32::MAX,
            nix::libc::CLOSE_RANGE_UNSHARE,
        )
    };
    rc == 0
}
