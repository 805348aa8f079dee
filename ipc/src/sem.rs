//! [`Semaphore`]: one System V semaphore used as a lock, created race-free, released by the
//! kernel if its holder dies (`SEM_UNDO`), acquired with a timeout.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc::{self, c_int};
use nonstop_core::Deadline;

use crate::error::Object;
use crate::{Error, Key, Result};

// glibc exports `semtimedop`, but the `libc` crate does not declare it.
unsafe extern "C" {
    fn semtimedop(
        semid: c_int,
        sops: *mut libc::sembuf,
        nsops: libc::size_t,
        timeout: *const libc::timespec,
    ) -> c_int;
}

/// How to open or create a [`Semaphore`].
#[derive(Debug, Clone)]
pub struct SemOptions {
    /// Permission bits for a newly created set. Default `0o600` (owner only).
    pub mode: u32,
    /// Initial value set by the creator. Default 1 (a free lock).
    pub initial: u16,
    /// Whether lock operations use `SEM_UNDO`, so the kernel releases a lock whose holder dies.
    /// Default `true`; turn it off only for counting semaphores.
    pub undo: bool,
    /// How long an opener waits for the creator to finish initialising. Default 2 s.
    pub init_timeout: Duration,
}

impl Default for SemOptions {
    fn default() -> Self {
        SemOptions {
            mode: 0o600,
            initial: 1,
            undo: true,
            init_timeout: Duration::from_secs(2),
        }
    }
}

/// One System V semaphore (a set of one), used as a lock.
///
/// Creation is race-free: the process that wins `IPC_CREAT | IPC_EXCL` sets the value and then
/// performs one `semop` (without `SEM_UNDO`) so that `sem_otime` becomes non-zero; every other
/// opener waits until it is. The value is never seen uninitialised.
#[derive(Debug)]
pub struct Semaphore {
    id: c_int,
    key: Key,
    flags: i16,
}

impl Semaphore {
    /// Opens the semaphore at `key`, creating and initialising it if it does not exist.
    pub fn open_or_create(key: Key, options: &SemOptions) -> Result<Semaphore> {
        // Bounded: each turn means another process removed the set between our two calls.
        for _ in 0..100 {
            let mode = (options.mode & 0o777) as c_int;
            // SAFETY: semget takes plain integers and touches no memory of ours.
            let id = unsafe { libc::semget(key.raw(), 1, libc::IPC_CREAT | libc::IPC_EXCL | mode) };
            if id >= 0 {
                let sem = Semaphore::with_id(id, key, options);
                if let Err(e) = sem.initialise(options.initial) {
                    // Leave nothing half-made that others would wait on.
                    let _ = sem.remove_ref();
                    return Err(e);
                }
                return Ok(sem);
            }
            match Errno::last() {
                Errno::EEXIST => match Semaphore::open(key, options) {
                    Err(Error::NotFound { .. }) => continue,
                    other => return other,
                },
                errno => return Err(Error::from_errno("semget", Object::Semaphore, key, errno)),
            }
        }
        Err(Error::Sys {
            op: "semget",
            object: Object::Semaphore,
            key,
            errno: Errno::EAGAIN,
        })
    }

    /// Opens an existing semaphore at `key`, waiting up to `options.init_timeout` for its
    /// creator to initialise it. `options.mode` and `options.initial` are not used.
    pub fn open(key: Key, options: &SemOptions) -> Result<Semaphore> {
        // SAFETY: semget takes plain integers and touches no memory of ours.
        let id = unsafe { libc::semget(key.raw(), 0, 0) };
        if id < 0 {
            return Err(Error::from_errno(
                "semget",
                Object::Semaphore,
                key,
                Errno::last(),
            ));
        }
        let sem = Semaphore::with_id(id, key, options);
        sem.wait_initialised(options.init_timeout)?;
        Ok(sem)
    }

    /// Opens an existing semaphore without waiting for `sem_otime`: for sets made by programs
    /// that initialise with `SETVAL` alone (the seed's CSEM). Still refuses a foreign set.
    pub(crate) fn open_unchecked(key: Key, options: &SemOptions) -> Result<Semaphore> {
        // SAFETY: semget takes plain integers and touches no memory of ours.
        let id = unsafe { libc::semget(key.raw(), 0, 0) };
        if id < 0 {
            return Err(Error::from_errno(
                "semget",
                Object::Semaphore,
                key,
                Errno::last(),
            ));
        }
        let sem = Semaphore::with_id(id, key, options);
        sem.wait_initialised(Duration::ZERO).or_else(|e| match e {
            Error::Uninitialised { .. } => Ok(()),
            e => Err(e),
        })?;
        Ok(sem)
    }

    fn with_id(id: c_int, key: Key, options: &SemOptions) -> Semaphore {
        Semaphore {
            id,
            key,
            flags: if options.undo {
                libc::SEM_UNDO as i16
            } else {
                0
            },
        }
    }

    /// The creator's half of the handshake: value, then one semop so `sem_otime != 0`.
    fn initialise(&self, initial: u16) -> Result<()> {
        // Set one more than wanted, then take one away with a real semop: that stamps
        // sem_otime. No SEM_UNDO here, or the kernel would undo it when we exit.
        let value = c_int::from(initial) + 1;
        // SAFETY: SETVAL reads its fourth argument as an int (the `val` member of union semun).
        if unsafe { libc::semctl(self.id, 0, libc::SETVAL, value) } < 0 {
            return Err(self.sys_error("semctl(SETVAL)"));
        }
        self.op(-1, 0, None).map(|_| ())
    }

    fn wait_initialised(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let ds = self.stat()?;
            if ds.sem_nsems != 1 {
                return Err(Error::ForeignSemaphore {
                    key: self.key,
                    id: self.id,
                    nsems: ds.sem_nsems,
                });
            }
            if ds.sem_otime != 0 {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(Error::Uninitialised {
                    key: self.key,
                    id: self.id,
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn stat(&self) -> Result<libc::semid_ds> {
        // SAFETY: semid_ds is plain old data; all zeroes is a valid value.
        let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: IPC_STAT writes one semid_ds through the pointer (the `buf` member of union
        // semun), which points to a live, writable semid_ds.
        if unsafe { libc::semctl(self.id, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) } < 0 {
            return Err(self.sys_error("semctl(IPC_STAT)"));
        }
        Ok(ds)
    }

    /// Performs one semop. `Ok(false)` means the timeout (or IPC_NOWAIT) expired.
    fn op(&self, delta: i16, flags: i16, timeout: Option<Duration>) -> Result<bool> {
        // No timeout, or one beyond what the clock counts: wait without one.
        let deadline = timeout.map_or(Deadline::Never, |t| Deadline::after(Instant::now(), t));
        loop {
            let mut buf = libc::sembuf {
                sem_num: 0,
                sem_op: delta,
                sem_flg: flags,
            };
            let rc = match deadline.remaining(Instant::now()) {
                None => {
                    // SAFETY: `buf` is one valid sembuf and we pass nsops = 1.
                    unsafe { libc::semop(self.id, &mut buf, 1) }
                }
                Some(left) => {
                    let ts = libc::timespec {
                        tv_sec: left.as_secs() as libc::time_t,
                        tv_nsec: left.subsec_nanos() as libc::c_long,
                    };
                    // SAFETY: `buf` is one valid sembuf (nsops = 1) and `ts` a valid timespec;
                    // the kernel only reads them.
                    unsafe { semtimedop(self.id, &mut buf, 1, &ts) }
                }
            };
            if rc == 0 {
                return Ok(true);
            }
            match Errno::last() {
                Errno::EINTR => continue,
                Errno::EAGAIN => return Ok(false),
                Errno::EIDRM | Errno::EINVAL => {
                    return Err(Error::Removed {
                        object: Object::Semaphore,
                        key: self.key,
                        id: self.id,
                    });
                }
                errno => {
                    return Err(Error::from_errno(
                        "semop",
                        Object::Semaphore,
                        self.key,
                        errno,
                    ));
                }
            }
        }
    }

    /// Takes the lock, waiting as long as it takes. Prefer [`Semaphore::acquire_timeout`].
    pub fn acquire(&self) -> Result<SemGuard<'_>> {
        self.op(-1, self.flags, None)?;
        Ok(SemGuard { sem: self })
    }

    /// Takes the lock, or fails with [`Error::Timeout`] after `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemGuard<'_>> {
        if self.op(-1, self.flags, Some(timeout))? {
            return Ok(SemGuard { sem: self });
        }
        Err(Error::Timeout {
            key: self.key,
            id: self.id,
            waited: timeout,
            last_pid: self.last_pid().unwrap_or(0),
        })
    }

    /// Takes the lock if it is free right now.
    pub fn try_acquire(&self) -> Result<Option<SemGuard<'_>>> {
        // Not `then_some`: it would build (and drop, so release) a guard we never got.
        if self.op(-1, self.flags | libc::IPC_NOWAIT as i16, None)? {
            Ok(Some(SemGuard { sem: self }))
        } else {
            Ok(None)
        }
    }

    /// The current value (1: free lock, 0: held).
    pub fn value(&self) -> Result<i32> {
        // SAFETY: GETVAL takes no fourth argument and returns the value.
        let v = unsafe { libc::semctl(self.id, 0, libc::GETVAL) };
        if v < 0 {
            return Err(self.sys_error("semctl(GETVAL)"));
        }
        Ok(v)
    }

    /// The pid of the last process that performed an operation on the semaphore.
    pub fn last_pid(&self) -> Result<i32> {
        // SAFETY: GETPID takes no fourth argument and returns a pid.
        let v = unsafe { libc::semctl(self.id, 0, libc::GETPID) };
        if v < 0 {
            return Err(self.sys_error("semctl(GETPID)"));
        }
        Ok(v)
    }

    /// The key.
    pub fn key(&self) -> Key {
        self.key
    }

    /// The kernel's id for the set (what `ipcs -s` shows and `ipcrm -s` takes).
    pub fn id(&self) -> i32 {
        self.id
    }

    /// Removes the semaphore from the system. Processes blocked on it fail with
    /// [`Error::Removed`].
    pub fn remove(self) -> Result<()> {
        self.remove_ref()
    }

    /// Removes the semaphore at `key` if there is one; returns whether there was. Used for
    /// cleaning up after a crash, when nothing holds a handle.
    pub fn remove_key(key: Key) -> Result<bool> {
        // SAFETY: semget takes plain integers and touches no memory of ours.
        let id = unsafe { libc::semget(key.raw(), 0, 0) };
        if id < 0 {
            return match Errno::last() {
                Errno::ENOENT => Ok(false),
                errno => Err(Error::from_errno("semget", Object::Semaphore, key, errno)),
            };
        }
        let sem = Semaphore { id, key, flags: 0 };
        match sem.remove_ref() {
            Ok(()) => Ok(true),
            Err(Error::Removed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// [`Semaphore::remove`] through a shared reference (for a holder that removes it as it
    /// is dropped).
    pub(crate) fn remove_ref(&self) -> Result<()> {
        // SAFETY: IPC_RMID takes no fourth argument.
        if unsafe { libc::semctl(self.id, 0, libc::IPC_RMID) } < 0 {
            return Err(self.sys_error("semctl(IPC_RMID)"));
        }
        Ok(())
    }

    fn sys_error(&self, op: &'static str) -> Error {
        match Errno::last() {
            Errno::EIDRM | Errno::EINVAL => Error::Removed {
                object: Object::Semaphore,
                key: self.key,
                id: self.id,
            },
            errno => Error::from_errno(op, Object::Semaphore, self.key, errno),
        }
    }
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct SemGuard<'a> {
    sem: &'a Semaphore,
}

impl SemGuard<'_> {
    /// Releases the lock now, reporting a failure (the set was removed meanwhile).
    pub fn release(self) -> Result<()> {
        let sem = self.sem;
        std::mem::forget(self);
        sem.op(1, sem.flags, None).map(|_| ())
    }
}

impl Drop for SemGuard<'_> {
    fn drop(&mut self) {
        // The only possible failure is that the set was removed, and then there is nothing
        // left to release.
        let _ = self.sem.op(1, self.sem.flags, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestKey;

    fn raw_semget(key: Key, nsems: c_int) -> c_int {
        // SAFETY: semget takes plain integers.
        let id =
            unsafe { libc::semget(key.raw(), nsems, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
        assert!(id >= 0, "semget: {}", Errno::last());
        id
    }

    #[test]
    fn a_set_of_several_semaphores_is_foreign() {
        let key = TestKey::new();
        raw_semget(key.key(), 3);
        let err = Semaphore::open_or_create(key.key(), &SemOptions::default()).unwrap_err();
        assert!(
            matches!(err, Error::ForeignSemaphore { nsems: 3, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("ipcrm -s"));
    }

    #[test]
    fn a_semaphore_its_creator_never_initialised_is_an_error_after_the_wait() {
        let key = TestKey::new();
        raw_semget(key.key(), 1);
        let options = SemOptions {
            init_timeout: Duration::from_millis(50),
            ..SemOptions::default()
        };
        let start = Instant::now();
        let err = Semaphore::open_or_create(key.key(), &options).unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert!(matches!(err, Error::Uninitialised { .. }), "{err:?}");
        // The seed's CSEM initialises with SETVAL alone: open_unchecked accepts that.
        let id = Semaphore::open_unchecked(key.key(), &options).unwrap().id();
        // SAFETY: SETVAL reads its fourth argument as an int.
        assert_eq!(unsafe { libc::semctl(id, 0, libc::SETVAL, 1) }, 0);
        let sem = Semaphore::open_unchecked(key.key(), &options).unwrap();
        assert_eq!(sem.value().unwrap(), 1);
        drop(sem.acquire_timeout(Duration::from_secs(1)).unwrap());
    }

    #[test]
    fn an_initial_value_of_zero_is_initialised_and_held() {
        let key = TestKey::new();
        let options = SemOptions {
            initial: 0,
            ..SemOptions::default()
        };
        let sem = Semaphore::open_or_create(key.key(), &options).unwrap();
        assert_eq!(sem.value().unwrap(), 0);
        // Opening it again does not wait: sem_otime was stamped by the creator.
        let start = Instant::now();
        Semaphore::open(key.key(), &SemOptions::default()).unwrap();
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(sem.try_acquire().unwrap().is_none());
        assert_eq!(sem.value().unwrap(), 0);
    }
}
