//! The walk: every directory under `dir` opened with `O_NOFOLLOW` relative to its parent's
//! descriptor, and a file deleted only if its directory was still under `dir` after the file
//! was taken out of it.
//!
//! A descriptor keeps naming its directory after the directory is renamed, also to a place
//! outside `dir` (an archiver's `mv data/day archive/day`); an `unlinkat` through it then
//! deletes at the new place, and no check made before the `unlinkat` can close that gap. So a
//! file is deleted in three steps:
//!
//! 1. **taken**: `renameat2(RENAME_NOREPLACE)` moves it, atomically, from its directory into a
//!    quarantine directory of this run (`.nonstop-purge.PID.N`, made in `dir` on first use);
//! 2. **placed**: each directory of the walk, from the deepest up, is checked to be still in
//!    the one it was found in (its `..` against the parent's device and inode), and `dir`'s
//!    path to still name the root the walk opened ([`Walk::moved`]);
//! 3. only then **deleted** from the quarantine, if it is the very file that was judged (same
//!    device and inode as when its age was read). Otherwise it is put back where its directory
//!    is now, under its name, and nothing more is deleted in a directory that was moved out.
//!
//! A directory moved out of `dir` before step 2 is seen there, so what is deleted was taken
//! from a directory that was under `dir` after the taking: moved out later, it had the file no
//! longer. (A directory moved out and back in between steps 1 and 2 counts as under `dir`.)
//! A file on another file system than its quarantine (`EXDEV`: a mount inside `dir`) gets a
//! quarantine in its own directory; the rule is the same. Removing an emptied directory
//! (`remove_empty_dirs`) cannot be done this way without moving a directory that someone may
//! be writing into, so it is checked just before the `rmdir`: a directory moved out in the
//! instant between the two, if it is empty, is removed at its new place.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, Flock, FlockArg, OFlag, RenameFlags, openat, renameat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat, lstat, mkdirat};
use nix::unistd::UnlinkatFlags;
use nonstop_plugin_files::names;

use crate::{Args, NAMED, Report, Stats};

/// The start of a quarantine's name: `.nonstop-purge.PID.N`. Directories so named are never
/// walked.
pub(crate) const QUARANTINE: &str = ".nonstop-purge.";

/// A file or directory as the kernel names it.
type Id = (nix::libc::dev_t, nix::libc::ino_t);

fn id(st: &FileStat) -> Id {
    (st.st_dev, st.st_ino)
}

/// One open directory of the walk.
struct Frame {
    fd: OwnedFd,
    id: Id,
    shown: PathBuf,
    /// The frame whose quarantine takes this directory's files.
    holder: usize,
    /// The quarantine made in this directory, if any.
    quarantine: Option<Quarantine>,
}

/// A directory of this run that files are taken into before they are deleted; locked
/// (`flock`) while this run uses it, so that another run can tell one left by a killed run.
struct Quarantine {
    lock: Flock<OwnedFd>,
    name: OsString,
}

/// What became of a file the walk wanted to delete.
enum Taken {
    Deleted,
    /// Not there any more, or not the file judged: left.
    Left,
}

pub(crate) struct Walk<'a> {
    args: &'a Args,
    matchers: Vec<glob::Pattern>,
    cutoff: SystemTime,
    stats: Stats,
    report: &'a mut dyn Report,
    frames: Vec<Frame>,
    /// The shallowest level found moved out of its place; every deeper walk returns.
    moved: Option<usize>,
    /// Names of taken files in the quarantines.
    taken: u64,
}

impl<'a> Walk<'a> {
    /// A walk from `root`, the directory `args.dir` opened.
    pub(crate) fn new(
        args: &'a Args,
        matchers: Vec<glob::Pattern>,
        cutoff: SystemTime,
        report: &'a mut dyn Report,
        root: OwnedFd,
    ) -> Result<Walk<'a>, String> {
        let st = fstat(&root)
            .map_err(|e| format!("cannot look at {}: {}", args.dir.display(), e.desc()))?;
        Ok(Walk {
            args,
            matchers,
            cutoff,
            stats: Stats::default(),
            report,
            frames: vec![Frame {
                fd: root,
                id: id(&st),
                shown: args.dir.clone(),
                holder: 0,
                quarantine: None,
            }],
            moved: None,
            taken: 0,
        })
    }

    /// Walks it all; the quarantines are removed at the end.
    pub(crate) fn run(mut self) -> Result<Stats, String> {
        let result = self.dir(0);
        self.close_quarantine(0);
        if self.moved == Some(0) {
            self.report.log(&format!(
                "purge: {} no longer names the directory this run opened (moved or replaced): \
                 nothing more was deleted",
                self.args.dir.display()
            ));
        }
        result.map(|()| self.stats)
    }

    /// Whether the walk at `level` must return: that level or one above it was moved out.
    fn leaving(&self, level: usize) -> bool {
        self.moved.is_some_and(|m| m <= level)
    }

    /// Purges the directory of `level`, the deepest frame.
    fn dir(&mut self, level: usize) -> Result<(), String> {
        let listing = names(&self.frames[level].fd).map_err(|e| {
            format!(
                "cannot list {}: {}",
                self.frames[level].shown.display(),
                e.desc()
            )
        })?;
        for (name, hint) in listing {
            if self.leaving(level) || self.report.stop_requested() {
                return Ok(());
            }
            self.stats.seen += 1;
            if self.stats.seen.is_multiple_of(1000) {
                self.report.beat();
            }
            // What the directory entry already says spares a stat (as find does).
            let name_matches = || {
                let n = String::from_utf8_lossy(name.as_bytes());
                self.matchers.iter().any(|m| m.matches(&n))
            };
            match hint {
                Some(nix::dir::Type::File) if !name_matches() => continue,
                Some(nix::dir::Type::Directory) if !self.args.recursive => continue,
                Some(nix::dir::Type::File | nix::dir::Type::Directory) | None => {}
                Some(_) => continue,
            }
            let st = match fstatat(
                &self.frames[level].fd,
                name.as_os_str(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(st) => st,
                // Gone meanwhile: nothing to do.
                Err(Errno::ENOENT) => continue,
                Err(e) => {
                    let shown = self.frames[level].shown.join(&name);
                    self.report.log(&format!(
                        "purge: cannot look at {}: {}",
                        shown.display(),
                        e.desc()
                    ));
                    continue;
                }
            };
            let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            if kind == SFlag::S_IFDIR && self.args.recursive {
                if name.as_bytes().starts_with(QUARANTINE.as_bytes()) {
                    self.foreign_quarantine(level, &name);
                } else {
                    self.subdir(level, &name)?;
                }
            } else if kind == SFlag::S_IFREG && self.wanted(&name, &st) {
                self.file(level, &name, &st);
            }
        }
        Ok(())
    }

    fn subdir(&mut self, level: usize, name: &OsStr) -> Result<(), String> {
        let shown = self.frames[level].shown.join(name);
        // O_NOFOLLOW: a directory swapped for a symbolic link since fstatat is refused (ELOOP
        // or ENOTDIR), never followed.
        let child = match openat(
            &self.frames[level].fd,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(child) => child,
            Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => return Ok(()),
            Err(e) => {
                self.report.log(&format!(
                    "purge: cannot open {}: {}",
                    shown.display(),
                    e.desc()
                ));
                return Ok(());
            }
        };
        let st = match fstat(&child) {
            Ok(st) => st,
            Err(e) => {
                self.report.log(&format!(
                    "purge: cannot look at {}: {}",
                    shown.display(),
                    e.desc()
                ));
                return Ok(());
            }
        };
        let holder = self.frames[level].holder;
        self.frames.push(Frame {
            fd: child,
            id: id(&st),
            shown: shown.clone(),
            holder,
            quarantine: None,
        });
        let result = self.dir(level + 1);
        self.close_quarantine(level + 1);
        self.frames.pop();
        result?;
        if self.moved == Some(level + 1) {
            self.report.log(&format!(
                "purge: {} was moved out of {} while it was purged: nothing more is deleted \
                 in it",
                shown.display(),
                self.args.dir.display()
            ));
            self.moved = None;
            return Ok(());
        }
        if self.leaving(level) || !self.args.remove_empty_dirs || self.args.dry_run {
            return Ok(());
        }
        // Not taken first (that would move a directory someone may be writing into): checked
        // just before, see the module's manual.
        if let Some(m) = self.moved(level) {
            self.moved = Some(m);
            return Ok(());
        }
        match nix::unistd::unlinkat(&self.frames[level].fd, name, UnlinkatFlags::RemoveDir) {
            Ok(()) => {
                self.stats.dirs += 1;
                self.report.log(&format!(
                    "purge: removed the empty directory {}",
                    shown.display()
                ));
            }
            Err(Errno::ENOTEMPTY | Errno::EEXIST | Errno::ENOENT) => {}
            Err(e) => self.report.log(&format!(
                "purge: cannot remove {}: {}",
                shown.display(),
                e.desc()
            )),
        }
        Ok(())
    }

    /// A quarantine of another run: never walked. Said once if its run is gone.
    fn foreign_quarantine(&mut self, level: usize, name: &OsStr) {
        let Ok(fd) = openat(
            &self.frames[level].fd,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            return;
        };
        if Flock::lock(fd, FlockArg::LockExclusiveNonblock).is_ok() {
            self.report.log(&format!(
                "purge: {} was left by a purge that was killed: it holds files that were being \
                 deleted (or that could not be put back); look, and remove it",
                self.frames[level].shown.join(name).display()
            ));
        }
    }

    fn wanted(&self, name: &OsStr, st: &FileStat) -> bool {
        let modified = SystemTime::UNIX_EPOCH
            + Duration::new(
                st.st_mtime.max(0) as u64,
                st.st_mtime_nsec.clamp(0, 999_999_999) as u32,
            );
        let name = String::from_utf8_lossy(name.as_bytes());
        modified < self.cutoff && self.matchers.iter().any(|m| m.matches(&name))
    }

    fn file(&mut self, level: usize, name: &OsStr, st: &FileStat) {
        let path = self.frames[level].shown.join(name);
        if !self.args.dry_run {
            match self.take(level, name, st) {
                Ok(Taken::Deleted) => {}
                Ok(Taken::Left) => return,
                Err(e) => {
                    self.report.log(&format!(
                        "purge: cannot remove {}: {}",
                        path.display(),
                        e.desc()
                    ));
                    return;
                }
            }
        }
        self.stats.files += 1;
        self.stats.bytes += st.st_size.max(0) as u64;
        if self.stats.files <= NAMED {
            let verb = if self.args.dry_run {
                "would remove"
            } else {
                "removed"
            };
            self.report
                .log(&format!("purge: {verb} {}", path.display()));
        }
    }

    /// Takes `name` out of the directory of `level`, checks that this directory was still in
    /// place, and deletes it; see the module's manual.
    fn take(&mut self, level: usize, name: &OsStr, judged: &FileStat) -> nix::Result<Taken> {
        let mut holder = self.frames[level].holder;
        let taken = loop {
            match self.open_quarantine(holder) {
                Ok(()) => {}
                // `dir` itself may not be writable where its subdirectories are: a quarantine
                // in the file's own directory.
                Err(_) if holder != level => {
                    holder = level;
                    self.frames[level].holder = level;
                    continue;
                }
                Err(e) => return Err(e),
            }
            let q = quarantine_of(&self.frames[holder])?;
            let taken = OsString::from(self.taken.to_string());
            self.taken += 1;
            match renameat2(
                &self.frames[level].fd,
                name,
                q,
                taken.as_os_str(),
                RenameFlags::RENAME_NOREPLACE,
            ) {
                Ok(()) => break taken,
                Err(Errno::ENOENT) => return Ok(Taken::Left),
                // A name left by an earlier taking that could not be put back.
                Err(Errno::EEXIST) => {}
                // Another file system (a mount inside `dir`): a quarantine here.
                Err(Errno::EXDEV) if holder != level => {
                    holder = level;
                    self.frames[level].holder = level;
                }
                Err(e) => return Err(e),
            }
        };
        let q = quarantine_of(&self.frames[holder])?;
        let shown_taken = self.frames[holder].shown.join(
            self.frames[holder]
                .quarantine
                .as_ref()
                .map_or(OsStr::new(""), |q| q.name.as_os_str()),
        );
        self.report.taken(&self.frames[level].shown.join(name));
        let moved = self.moved(level);
        let same = fstatat(q, taken.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .is_ok_and(|st| id(&st) == id(judged));
        if moved.is_none() && same {
            nix::unistd::unlinkat(q, taken.as_os_str(), UnlinkatFlags::NoRemoveDir)?;
            return Ok(Taken::Deleted);
        }
        // Back where its directory is now, under its own name (or beside it, if the name was
        // taken meanwhile).
        let back = renameat2(
            q,
            taken.as_os_str(),
            &self.frames[level].fd,
            name,
            RenameFlags::RENAME_NOREPLACE,
        )
        .or_else(|e| {
            if e != Errno::EEXIST {
                return Err(e);
            }
            let mut beside = name.to_owned();
            beside.push(format!(".nonstop-purge-kept.{}", std::process::id()));
            renameat2(
                q,
                taken.as_os_str(),
                &self.frames[level].fd,
                beside.as_os_str(),
                RenameFlags::RENAME_NOREPLACE,
            )
        });
        if let Err(e) = back {
            self.report.log(&format!(
                "purge: cannot put {} back (it is {}/{}): {}",
                self.frames[level].shown.join(name).display(),
                shown_taken.display(),
                taken.to_string_lossy(),
                e.desc()
            ));
        }
        match moved {
            Some(m) => self.moved = Some(m),
            None => self.report.log(&format!(
                "purge: {} was replaced since it was looked at: left",
                self.frames[level].shown.join(name).display()
            )),
        }
        Ok(Taken::Left)
    }

    /// Makes the quarantine of frame `holder` if it has none.
    fn open_quarantine(&mut self, holder: usize) -> nix::Result<()> {
        if self.frames[holder].quarantine.is_some() {
            return Ok(());
        }
        let dir = &self.frames[holder].fd;
        for n in 0..1000 {
            let name = OsString::from(format!("{QUARANTINE}{}.{n}", std::process::id()));
            match mkdirat(dir, name.as_os_str(), Mode::S_IRWXU) {
                Ok(()) => {}
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(e),
            }
            let fd = openat(
                dir,
                name.as_os_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let lock = Flock::lock(fd, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e)?;
            self.frames[holder].quarantine = Some(Quarantine { lock, name });
            return Ok(());
        }
        Err(Errno::EEXIST)
    }

    /// Removes the quarantine of frame `level`, if it made one.
    fn close_quarantine(&mut self, level: usize) {
        let Some(q) = self.frames[level].quarantine.take() else {
            return;
        };
        drop(q.lock);
        match nix::unistd::unlinkat(
            &self.frames[level].fd,
            q.name.as_os_str(),
            UnlinkatFlags::RemoveDir,
        ) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => self.report.log(&format!(
                "purge: cannot remove its quarantine {}: {}",
                self.frames[level].shown.join(&q.name).display(),
                e.desc()
            )),
        }
    }

    /// The shallowest level of the walk, up to `level`, that is no longer where it was found:
    /// 0 if `dir` no longer names the root this run opened, `i` if the directory of level `i`
    /// is no longer in the one of level `i - 1`; `None` if all are in place.
    fn moved(&self, level: usize) -> Option<usize> {
        if !lstat(&self.args.dir).is_ok_and(|st| id(&st) == self.frames[0].id) {
            return Some(0);
        }
        (1..=level).find(|&i| {
            !fstatat(&self.frames[i].fd, "..", AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|st| id(&st) == self.frames[i - 1].id)
        })
    }
}

/// The quarantine's descriptor of a frame, once it has one.
fn quarantine_of(frame: &Frame) -> nix::Result<&OwnedFd> {
    // `take` opens it before asking: never an error in fact.
    frame
        .quarantine
        .as_ref()
        .map(|q| &*q.lock)
        .ok_or(Errno::EBADF)
}
