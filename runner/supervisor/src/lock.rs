//! One runner per pipeline: [`Lock`], an exclusive `flock` on `nonstop.lock` in the pipeline's
//! log directory, held for the runner's life (and by its guard until the guard has cleaned
//! up after a runner that died). The file holds the holder's pid and start time, so that a
//! second runner can say who holds it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};
use nonstop_core::Deadline;
use nonstop_ipc::{Liveness, ProcessId};
use tracing::info;

/// The lock file's name in `logs.dir`.
pub const FILE: &str = "nonstop.lock";

/// How long a runner waits for the guard of a runner that died to finish its cleanup.
const WAIT_FOR_GUARD: Duration = Duration::from_secs(10);

/// The pipeline lock, held while this value lives.
#[derive(Debug)]
pub struct Lock {
    file: Flock<File>,
    path: PathBuf,
}

impl Lock {
    /// Takes the lock of the pipeline whose logs are in `dir` (created if needed), recording
    /// `me` in it. Another runner that holds it is named in the error; a runner that died
    /// leaves its guard holding the lock while the guard ends that runner's tasks, and this
    /// waits for it (at most 10 s).
    pub fn acquire(dir: &Path, me: ProcessId) -> anyhow::Result<Lock> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the log directory {}", dir.display()))?;
        let path = dir.join(FILE);
        let deadline = Deadline::after(Instant::now(), WAIT_FOR_GUARD);
        let mut waited = false;
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .custom_flags(nix::libc::O_CLOEXEC)
                .open(&path)
                .with_context(|| format!("cannot open the pipeline lock {}", path.display()))?;
            let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(locked) => locked,
                Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                    let holder = holder(&mut file);
                    match holder {
                        Some(h) if h.liveness() == Liveness::Alive => bail!(
                            "another runner (pid {}) is running this pipeline: it holds {}; \
                             stop it first, or give this pipeline another logs.dir",
                            h.pid,
                            path.display()
                        ),
                        _ if !deadline.is_due(Instant::now()) => {
                            if !waited {
                                info!(
                                    "waiting for the guard of a runner that died (pid {}) to \
                                     stop its tasks and release {}",
                                    holder.map_or_else(|| "unknown".into(), |h| h.pid.to_string()),
                                    path.display()
                                );
                                waited = true;
                            }
                            // A bounded wait at start, for a cleanup of a few milliseconds.
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                        _ => bail!(
                            "{} is held by a process that is not a running nonstop runner \
                             (recorded: {}); find it with `fuser {}`",
                            path.display(),
                            holder.map_or_else(|| "nothing".into(), |h| format!("pid {}", h.pid)),
                            path.display()
                        ),
                    }
                }
                Err((_, e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()));
                }
            };
            let mut lock = Lock { file, path };
            lock.record(me)
                .with_context(|| format!("cannot write {}", lock.path.display()))?;
            return Ok(lock);
        }
    }

    /// The lock file's descriptor (the guard keeps a copy).
    pub fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `me` into the file. Not synced: the lock is the `flock`, which no crash
    /// outlives, and the content only names the holder in a second runner's message (a
    /// reboot that loses it loses nothing). A `fdatasync` here cost 0.3 to 0.7 ms of every
    /// start on this machine's overlay file system, and more on a busy disk.
    fn record(&mut self, me: ProcessId) -> std::io::Result<()> {
        let line = format!("{} {}\n", me.pid, me.start_time);
        self.file.write_all_at(line.as_bytes(), 0)?;
        self.file.set_len(line.len() as u64)
    }
}

/// The runner recorded in the lock file at `path`, if it names one (it may be gone).
pub fn recorded(path: &Path) -> Option<ProcessId> {
    holder(&mut File::open(path).ok()?)
}

/// The runner recorded in a lock file: `PID START_TIME`.
fn holder(file: &mut File) -> Option<ProcessId> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    let mut words = text.split_whitespace();
    Some(ProcessId {
        pid: words.next()?.parse().ok()?,
        start_time: words.next()?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_first_holder_and_is_free_once_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let me = ProcessId::current().unwrap();
        let first = Lock::acquire(&logs, me).unwrap();
        assert_eq!(
            std::fs::read_to_string(logs.join(FILE)).unwrap(),
            format!("{} {}\n", me.pid, me.start_time)
        );
        let e = Lock::acquire(&logs, me).unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains(&format!(
                "another runner (pid {}) is running this pipeline",
                me.pid
            )),
            "{e}"
        );
        assert!(e.contains("nonstop.lock"), "{e}");
        drop(first);
        Lock::acquire(&logs, me).unwrap();
    }
}
