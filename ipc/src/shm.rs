//! [`SharedMemory`]: one attached System V shared-memory segment of an exact size.

use std::ptr::NonNull;

use nix::errno::Errno;
use nix::libc::{self, c_int};

use crate::error::Object;
use crate::{Error, Key, Result};

/// An attached System V shared-memory segment. Detached on drop; the segment itself lives on
/// until [`SharedMemory::remove`] and the last detach.
///
/// The crate reads and writes the mapping only through atomics (see [`crate::table`]), since
/// other processes may write it at any time.
#[derive(Debug)]
pub struct SharedMemory {
    id: c_int,
    key: Key,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is process-wide memory, valid until `Drop` detaches it; this type hands out
// only a raw pointer to it, and every typed access in this crate goes through atomics.
unsafe impl Send for SharedMemory {}
// SAFETY: as above; `&SharedMemory` permits no unsynchronised access by itself.
unsafe impl Sync for SharedMemory {}

impl SharedMemory {
    /// Attaches the segment at `key`, creating it (zero-filled, with permission bits `mode`)
    /// if it does not exist. Returns whether this call created it.
    ///
    /// An existing segment of another size is [`Error::WrongSize`].
    pub fn open_or_create(key: Key, size: usize, mode: u32) -> Result<(SharedMemory, bool)> {
        if size == 0 {
            return Err(Error::Invalid {
                what: "shared memory size",
                reason: "must be at least 1 byte".into(),
            });
        }
        for _ in 0..100 {
            let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as c_int;
            // SAFETY: shmget takes plain integers and touches no memory of ours.
            let id = unsafe { libc::shmget(key.raw(), size, flags) };
            if id >= 0 {
                return SharedMemory::attach(id, key, size).map(|shm| (shm, true));
            }
            match Errno::last() {
                Errno::EEXIST => match SharedMemory::open(key, size) {
                    // Removed between our two calls: try to create it again.
                    Err(Error::NotFound { .. }) => continue,
                    other => return other.map(|shm| (shm, false)),
                },
                // On creation, EINVAL means the size is outside the kernel's limits.
                Errno::EINVAL => {
                    return Err(Error::Invalid {
                        what: "shared memory size",
                        reason: format!(
                            "{size} bytes for key {key} is outside the kernel's limits \
                             (sysctl kernel.shmmax, kernel.shmall)"
                        ),
                    });
                }
                errno => {
                    return Err(Error::from_errno(
                        "shmget",
                        Object::SharedMemory,
                        key,
                        errno,
                    ));
                }
            }
        }
        Err(Error::Sys {
            op: "shmget",
            object: Object::SharedMemory,
            key,
            errno: Errno::EAGAIN,
        })
    }

    /// Attaches the existing segment at `key`, which must be exactly `size` bytes.
    pub fn open(key: Key, size: usize) -> Result<SharedMemory> {
        let (id, actual) = SharedMemory::lookup(key)?;
        if actual != size {
            return Err(Error::WrongSize {
                key,
                id,
                expected: size,
                actual,
            });
        }
        SharedMemory::attach(id, key, size)
    }

    /// Attaches the existing segment at `key`, whatever its size.
    pub fn open_any_size(key: Key) -> Result<SharedMemory> {
        let (id, size) = SharedMemory::lookup(key)?;
        SharedMemory::attach(id, key, size)
    }

    /// Marks the segment at `key` for removal if there is one; returns whether there was.
    /// Used for cleaning up after a crash, when nothing holds a handle.
    pub fn remove_key(key: Key) -> Result<bool> {
        let (id, _) = match SharedMemory::lookup(key) {
            Ok(found) => found,
            Err(Error::NotFound { .. } | Error::Removed { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        // SAFETY: IPC_RMID does not use the buffer argument.
        if unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) } < 0 {
            return match Errno::last() {
                Errno::EIDRM | Errno::EINVAL => Ok(false),
                errno => Err(Error::from_errno(
                    "shmctl(IPC_RMID)",
                    Object::SharedMemory,
                    key,
                    errno,
                )),
            };
        }
        Ok(true)
    }

    /// Finds the segment at `key`: its id and size.
    fn lookup(key: Key) -> Result<(c_int, usize)> {
        // Size 0 matches a segment of any size; we compare the real size ourselves, since the
        // kernel accepts any size up to the segment's.
        // SAFETY: shmget takes plain integers and touches no memory of ours.
        let id = unsafe { libc::shmget(key.raw(), 0, 0) };
        if id < 0 {
            let errno = Errno::last();
            return Err(Error::from_errno(
                "shmget",
                Object::SharedMemory,
                key,
                errno,
            ));
        }
        let ds = stat(id, key)?;
        Ok((id, ds.shm_segsz))
    }

    fn attach(id: c_int, key: Key, len: usize) -> Result<SharedMemory> {
        // SAFETY: a null address lets the kernel choose where to map; no memory of ours is
        // touched. Failure is reported as (void *)-1, checked below.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        if addr as isize == -1 {
            let errno = Errno::last();
            return Err(match errno {
                Errno::EIDRM | Errno::EINVAL => Error::Removed {
                    object: Object::SharedMemory,
                    key,
                    id,
                },
                errno => Error::from_errno("shmat", Object::SharedMemory, key, errno),
            });
        }
        let ptr = NonNull::new(addr.cast::<u8>()).ok_or(Error::Sys {
            op: "shmat",
            object: Object::SharedMemory,
            key,
            errno: Errno::EFAULT,
        })?;
        Ok(SharedMemory { id, key, ptr, len })
    }

    /// The start of the mapping (page-aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a segment has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The key.
    pub fn key(&self) -> Key {
        self.key
    }

    /// The kernel's id (what `ipcs -m` shows and `ipcrm -m` takes).
    pub fn id(&self) -> i32 {
        self.id
    }

    /// How many processes have the segment attached now (`shm_nattch`).
    pub fn attach_count(&self) -> Result<u64> {
        Ok(stat(self.id, self.key)?.shm_nattch)
    }

    /// Marks the segment for removal: the key is freed at once, the memory when the last
    /// process detaches.
    pub fn remove(&self) -> Result<()> {
        // SAFETY: IPC_RMID does not use the buffer argument.
        if unsafe { libc::shmctl(self.id, libc::IPC_RMID, std::ptr::null_mut()) } < 0 {
            let errno = Errno::last();
            return Err(Error::from_errno(
                "shmctl(IPC_RMID)",
                Object::SharedMemory,
                self.key,
                errno,
            ));
        }
        Ok(())
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: `ptr` is the address shmat returned and has not been detached; nothing
        // borrowed from this value outlives it (borrows are tied to `&self`).
        unsafe {
            libc::shmdt(self.ptr.as_ptr().cast());
        }
    }
}

fn stat(id: c_int, key: Key) -> Result<libc::shmid_ds> {
    // SAFETY: shmid_ds is plain old data; all zeroes is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one shmid_ds through a pointer to a live, writable one.
    if unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } < 0 {
        let errno = Errno::last();
        return Err(match errno {
            Errno::EIDRM | Errno::EINVAL => Error::Removed {
                object: Object::SharedMemory,
                key,
                id,
            },
            errno => Error::from_errno("shmctl(IPC_STAT)", Object::SharedMemory, key, errno),
        });
    }
    Ok(ds)
}
