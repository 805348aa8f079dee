//! cgroup v2, the containment of tasks: a [`Cgroup`] holds every process a task starts,
//! however it detaches (`setsid`, double fork, a set-uid program), so a task is stopped by
//! signalling every process in it and ended by `cgroup.kill`, and it is gone when
//! `cgroup.events` says `populated 0` (a file whose changes `poll` reports with `POLLPRI`, so
//! nobody polls in a loop).
//!
//! [`hierarchy`] finds the cgroup2 mount (`/sys/fs/cgroup` on pure v2 hosts,
//! `/sys/fs/cgroup/unified` on hybrid ones) and this process's own cgroup in it, below which
//! the runner creates its pipeline's cgroup and one per task. Children are placed with
//! `clone3(CLONE_INTO_CGROUP)` (see [`crate::spawn`]) on the cgroup's directory descriptor.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use nonstop_core::Deadline;

use crate::Error;

/// The cgroup2 hierarchy's mount point and this process's cgroup in it (an absolute path
/// under the mount point), or why there is none.
pub fn hierarchy() -> Result<(PathBuf, PathBuf), String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let mount = mountinfo
        .lines()
        .find_map(cgroup2_mount_point)
        .ok_or("no cgroup2 file system is mounted")?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("this process is in no cgroup2 cgroup (/proc/self/cgroup has no 0:: line)")?;
    let relative = path.trim_start_matches('/');
    Ok((mount.clone(), mount.join(relative)))
}

/// The mount point of a `/proc/self/mountinfo` line if its file system is cgroup2.
fn cgroup2_mount_point(line: &str) -> Option<PathBuf> {
    // "ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS"
    let (before, after) = line.split_once(" - ")?;
    if after.split_whitespace().next()? != "cgroup2" {
        return None;
    }
    let mount = before.split_whitespace().nth(4)?;
    Some(PathBuf::from(unescape_octal(mount)))
}

/// Undoes mountinfo's `\040`-style escapes (space, tab, newline, backslash).
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let n = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(n);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One cgroup v2 directory, open: its directory (for `CLONE_INTO_CGROUP`) and its
/// `cgroup.events` (read again to learn whether it is populated).
///
/// A cgroup that was [killed](Cgroup::kill) is [spent](Cgroup::spent): on some kernels (6.18
/// here) a child cloned into it with `CLONE_INTO_CGROUP` is SIGKILLed at once, however long
/// after the kill, while a process moved in through `cgroup.procs` survives. Nothing may
/// start in a spent cgroup again: its owner makes a fresh one (a new directory is a new
/// kernel object).
#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
    dir: OwnedFd,
    events: File,
    procs: File,
    /// Whether [`Cgroup::kill`] was called on it.
    killed: Cell<bool>,
}

impl Cgroup {
    /// Creates the cgroup at `path` (its parent must exist), or opens it if it exists.
    pub fn create(path: &Path) -> Result<Cgroup, Error> {
        match std::fs::create_dir(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::cgroup("create", path, e)),
        }
        Cgroup::open(path)
    }

    /// Opens the existing cgroup at `path`.
    pub fn open(path: &Path) -> Result<Cgroup, Error> {
        let dir = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::cgroup("open", path, e.into()))?;
        Cgroup::with_dir(path.to_path_buf(), dir)
    }

    /// Removes the empty cgroup `name` directly below this one (an `rmdir` through this
    /// cgroup's descriptor).
    pub fn remove_child(&self, name: &[u8]) -> Result<(), Error> {
        let name = std::ffi::OsStr::from_bytes(name);
        nix::unistd::unlinkat(&self.dir, name, nix::unistd::UnlinkatFlags::RemoveDir)
            .map_err(|e| Error::cgroup("remove", self.path.join(name), e.into()))
    }

    /// Creates (or opens, if it exists) the cgroup `name` below this one, by descriptor: no
    /// path is looked up again from `/` (a pipeline makes one per task).
    pub fn create_child(&self, name: &str) -> Result<Cgroup, Error> {
        let path = self.path.join(name);
        match nix::sys::stat::mkdirat(&self.dir, name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(Error::cgroup("create", path, e.into())),
        }
        let dir = nix::fcntl::openat(
            &self.dir,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::cgroup("open", &path, e.into()))?;
        Cgroup::with_dir(path, dir)
    }

    /// The cgroup at `path`, open at `dir`: its files opened through `dir`.
    fn with_dir(path: PathBuf, dir: OwnedFd) -> Result<Cgroup, Error> {
        let file = |name: &str| -> Result<File, Error> {
            nix::fcntl::openat(
                &dir,
                name,
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map(File::from)
            .map_err(|e| Error::cgroup("open", path.join(name), e.into()))
        };
        let events = file("cgroup.events")?;
        let procs = file("cgroup.procs")?;
        Ok(Cgroup {
            path,
            dir,
            events,
            procs,
            killed: Cell::new(false),
        })
    }

    /// Its directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `cgroup.events`, whose change (a poll for `POLLPRI` on [`Cgroup::events`], or an
    /// inotify `IN_MODIFY`) means that `populated` (or `frozen`) may have changed.
    pub fn events_path(&self) -> PathBuf {
        self.path.join("cgroup.events")
    }

    /// The open `cgroup.events`: cgroupfs wakes a `poll`/`epoll` for `POLLPRI` on it when its
    /// content changes, until it is read again ([`Cgroup::populated`] reads it).
    pub fn events(&self) -> BorrowedFd<'_> {
        self.events.as_fd()
    }

    /// Its directory descriptor, for `clone3(CLONE_INTO_CGROUP)`.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// Whether a live process is in it or in a cgroup below it (zombies do not count).
    pub fn populated(&self) -> Result<bool, Error> {
        let mut buf = [0u8; 128];
        let n = self
            .events
            .read_at(&mut buf, 0)
            .map_err(|e| Error::cgroup("read", self.events_path(), e))?;
        let text = String::from_utf8_lossy(&buf[..n]);
        Ok(text.lines().any(|l| l.trim() == "populated 1"))
    }

    /// The processes in it and in every cgroup below it.
    pub fn pids(&self) -> Result<Vec<Pid>, Error> {
        // Its own: one read of the open `cgroup.procs`.
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = self
                .procs
                .read_at(&mut buf, text.len() as u64)
                .map_err(|e| Error::cgroup("read", self.path.join("cgroup.procs"), e))?;
            text.extend_from_slice(&buf[..n]);
            // cgroupfs fills a read as far as the list goes: a short one is the end.
            if n < buf.len() {
                break;
            }
        }
        let mut pids: Vec<Pid> = String::from_utf8_lossy(&text)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .map(Pid::from_raw)
            .collect();
        // Those below, if there are cgroups below (a directory of cgroupfs has two links plus
        // one per subdirectory): usually none, so usually no directory listing.
        let links = nix::sys::stat::fstat(&self.dir)
            .map_err(|e| Error::cgroup("stat", &self.path, e.into()))?
            .st_nlink;
        if links <= 2 {
            return Ok(pids);
        }
        let mut dirs = children(&self.path);
        while let Some(dir) = dirs.pop() {
            let procs = dir.join("cgroup.procs");
            let mut text = String::new();
            match File::open(&procs).and_then(|mut f| f.read_to_string(&mut text)) {
                Ok(_) => {}
                // Removed meanwhile (a child cgroup): nothing in it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::cgroup("read", procs, e)),
            }
            pids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .map(Pid::from_raw),
            );
            dirs.extend(children(&dir));
        }
        Ok(pids)
    }

    /// Sends `signal` to every process in it (then SIGCONT, so that a stopped process sees
    /// it); returns the processes signalled. A process that forks meanwhile may leave a child
    /// unsignalled: a stop ends with [`Cgroup::kill`], which has no such gap.
    pub fn signal(&self, signal: Signal) -> Result<Vec<Pid>, Error> {
        let pids = self.pids()?;
        for &pid in &pids {
            let _ = kill(pid, signal);
        }
        if signal != Signal::SIGKILL && signal != Signal::SIGCONT {
            for &pid in &pids {
                let _ = kill(pid, Signal::SIGCONT);
            }
        }
        Ok(pids)
    }

    /// SIGKILLs every process in it and below, forks in flight included: `cgroup.kill`
    /// (Linux 5.14); on older kernels, SIGKILL to every listed process until none is left.
    /// Marks it [spent](Cgroup::spent), whether or not the kill succeeds.
    pub fn kill(&self) -> Result<(), Error> {
        self.killed.set(true);
        let file = self.path.join("cgroup.kill");
        match std::fs::write(&file, b"1") {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A process forked between a listing and the kills appears in the next
                // listing; a thousand rounds end any fork loop.
                for _ in 0..1000 {
                    if self.signal(Signal::SIGKILL)?.is_empty() {
                        break;
                    }
                }
                Ok(())
            }
            Err(e) => Err(Error::cgroup("write", file, e)),
        }
    }

    /// Whether it was killed ([`Cgroup::kill`]): no process may be started in it again (see
    /// [`Cgroup`]); make a fresh cgroup instead.
    pub fn spent(&self) -> bool {
        self.killed.get()
    }

    /// Its open descriptors (directory, `cgroup.events`, `cgroup.procs`), for a process that
    /// forks and must keep them.
    pub fn descriptors(&self) -> [RawFd; 3] {
        [
            self.dir.as_raw_fd(),
            self.events.as_raw_fd(),
            self.procs.as_raw_fd(),
        ]
    }

    /// Waits until it is empty (`populated 0`), at most `timeout`; returns whether it is. It
    /// sleeps in `poll` on `cgroup.events` for `POLLPRI`: no polling loop.
    pub fn wait_empty(&self, timeout: Duration) -> Result<bool, Error> {
        let deadline = Deadline::after(Instant::now(), timeout);
        loop {
            // Each read clears the change poll reports: one after it is not missed.
            if !self.populated()? {
                return Ok(true);
            }
            // Never (a timeout beyond the clock): wait in slices of the longest poll.
            let left = deadline.remaining(Instant::now()).unwrap_or(Duration::MAX);
            if left.is_zero() {
                return Ok(false);
            }
            let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.events.as_fd(), PollFlags::POLLPRI)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(Error::io("waiting for a cgroup to empty", e.into())),
            }
        }
    }

    /// Removes it and the cgroups below it (they must hold no process). One that is already
    /// gone is not an error.
    pub fn remove(&self) -> Result<(), Error> {
        remove_tree(&self.path)
    }
}

/// The cgroups directly below `dir`.
fn children(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the cgroup `dir` and those below it, deepest first.
pub fn remove_tree(dir: &Path) -> Result<(), Error> {
    // Usually there is nothing below: try at once, and list only if that fails.
    match std::fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    for child in children(dir) {
        remove_tree(&child)?;
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::cgroup("remove", dir, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
