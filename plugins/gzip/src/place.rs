//! Putting a finished file in place without ever replacing one, and removing an original only
//! while its name still holds the file that was read.
//!
//! Another process may change the directory at any time: a logger rotates `app.log` to
//! `app.log.1` again while the previous `app.log.1` is being compressed, or renames another file
//! onto the name. So a finished `.gz` takes a name only if that name is free (the kernel checks,
//! in the rename itself), and the original is removed only if the name still holds the same
//! file, unchanged: same device, inode, size and modification time.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, RenameFlags, renameat2};
use nix::sys::stat::{FileStat, fstatat};
use nix::unistd::{UnlinkatFlags, linkat, unlinkat};

/// What identifies the file that was read. A name that holds anything else (another file renamed
/// onto it, or the same file grown or rewritten since) is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
    size: i64,
    mtime: (i64, i64),
}

impl Identity {
    pub(crate) fn of(st: &FileStat) -> Identity {
        Identity {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec),
        }
    }

    pub(crate) fn of_metadata(meta: &std::fs::Metadata) -> Identity {
        use std::os::unix::fs::MetadataExt;
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size().try_into().unwrap_or(i64::MAX),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }

    /// Its size in bytes.
    pub(crate) fn size(&self) -> i64 {
        self.size
    }
}

/// Renames `from` to `to` in `dir` unless `to` exists (as anything, a dangling link included):
/// `renameat2` with `RENAME_NOREPLACE`, or, on a file system without it, a hard link (which
/// never replaces either) and the removal of `from`. `Err(EEXIST)` when `to` is taken.
pub(crate) fn rename_new(dir: &OwnedFd, from: &OsStr, to: &OsStr) -> nix::Result<()> {
    match renameat2(dir, from, dir, to, RenameFlags::RENAME_NOREPLACE) {
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
            linkat(dir, from, dir, to, AtFlags::empty())?;
            // Left behind, it is a second name of the file just placed: the next run removes
            // it as an interrupted run's temporary.
            let _ = unlinkat(dir, from, UnlinkatFlags::NoRemoveDir);
            Ok(())
        }
        other => other,
    }
}

/// Gives the temporary `tmp` in `dir` the first of `names` that is free; returns that name.
/// An error once every name was taken (or the rename failed otherwise); `tmp` is then still
/// there, for the caller to remove.
pub(crate) fn place(
    dir: &OwnedFd,
    tmp: &OsStr,
    names: impl IntoIterator<Item = OsString>,
) -> Result<OsString, String> {
    let mut last = None;
    for name in names {
        match rename_new(dir, tmp, &name) {
            Ok(()) => return Ok(name),
            Err(Errno::EEXIST) => last = Some(name),
            Err(e) => {
                return Err(format!(
                    "cannot rename to {}: {}",
                    name.to_string_lossy(),
                    e.desc()
                ));
            }
        }
    }
    Err(match last {
        Some(name) => format!(
            "no free name: {} and every other tried exist (none is ever replaced)",
            name.to_string_lossy()
        ),
        None => "no name to give it".into(),
    })
}

/// The names a compressed `name` may take, in order: `NAME.gz`, then, when that exists (an
/// earlier file of the same name, compressed before: log rotation makes a new `app.log.1`),
/// `NAME.STAMP.gz`, `NAME.STAMP.1.gz`, ... up to `.999`, where `STAMP` is the UTC time of the
/// original's last modification (`20261202T103000Z`), so that the names of one file's
/// generations sort by age.
pub(crate) fn gz_names(name: &OsStr, stamp: &str) -> impl Iterator<Item = OsString> {
    let with = |suffix: String| {
        let mut n = name.to_os_string();
        n.push(suffix);
        n
    };
    std::iter::once(with(".gz".into()))
        .chain(std::iter::once(with(format!(".{stamp}.gz"))))
        .chain((1..1000).map(move |i| with(format!(".{stamp}.{i}.gz"))))
}

/// What [`remove_if_same`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Removal {
    /// The original is gone.
    Removed,
    /// Someone else removed it first.
    Gone,
    /// Left alone, and why.
    Left(String),
}

/// Removes `name` from `dir` if it still holds the file that was read, unchanged (`read`).
/// The kernel has no "unlink if still this inode": between the check and the `unlinkat` only a
/// few instructions pass, where before the whole compression did.
pub(crate) fn remove_if_same(dir: &OwnedFd, name: &OsStr, read: &Identity) -> Removal {
    match fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => return Removal::Gone,
        Err(e) => return Removal::Left(format!("cannot stat it again: {}", e.desc())),
        Ok(now) if Identity::of(&now) != *read => {
            let why = if (now.st_dev, now.st_ino) == (read.dev, read.ino) {
                "it changed after it was compressed (is it still written to?)"
            } else {
                "another file took its name while it was compressed"
            };
            return Removal::Left(why.into());
        }
        Ok(_) => {}
    }
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) => Removal::Removed,
        Err(Errno::ENOENT) => Removal::Gone,
        Err(e) => Removal::Left(format!("cannot remove it: {}", e.desc())),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    fn open_dir(path: &std::path::Path) -> OwnedFd {
        fs::File::open(path).unwrap().into()
    }

    fn stat(path: &std::path::Path) -> Identity {
        Identity::of(&nix::sys::stat::stat(path).unwrap())
    }

    #[test]
    fn a_new_name_never_replaces_anything() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let dir = open_dir(d);
        fs::write(d.join("tmp"), "new").unwrap();
        fs::write(d.join("file"), "old").unwrap();
        std::os::unix::fs::symlink("nowhere", d.join("dangling")).unwrap();
        fs::create_dir(d.join("dir")).unwrap();
        for taken in ["file", "dangling", "dir"] {
            assert_eq!(
                rename_new(&dir, OsStr::new("tmp"), OsStr::new(taken)),
                Err(Errno::EEXIST),
                "{taken}"
            );
        }
        assert_eq!(fs::read(d.join("file")).unwrap(), b"old");
        let names = [OsString::from("file"), "dangling".into(), "free".into()];
        assert_eq!(place(&dir, OsStr::new("tmp"), names).unwrap(), "free");
        assert_eq!(fs::read(d.join("free")).unwrap(), b"new");
        assert!(!d.join("tmp").exists());
        fs::write(d.join("tmp"), "new").unwrap();
        let err = place(&dir, OsStr::new("tmp"), [OsString::from("file")]).unwrap_err();
        assert!(err.starts_with("no free name: file"), "{err}");
        assert!(d.join("tmp").exists(), "left for the caller");
    }

    #[test]
    fn gz_names_are_the_plain_one_then_stamped_ones() {
        let names: Vec<OsString> = gz_names(OsStr::new("a.log.1"), "20261202T103000Z")
            .take(3)
            .collect();
        assert_eq!(
            names,
            [
                "a.log.1.gz",
                "a.log.1.20261202T103000Z.gz",
                "a.log.1.20261202T103000Z.1.gz"
            ]
        );
        let all: Vec<OsString> = gz_names(OsStr::new("x"), "S").collect();
        assert_eq!(all.len(), 1001);
        assert_eq!(all.last().unwrap().as_bytes(), b"x.S.999.gz");
    }

    #[test]
    fn only_the_file_that_was_read_is_removed_and_only_unchanged() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let dir = open_dir(d);
        let name = OsStr::new("app.log.1");
        fs::write(d.join("app.log.1"), "read\n").unwrap();
        let read = stat(&d.join("app.log.1"));
        // Another file renamed onto the name.
        fs::write(d.join("next"), "next\n").unwrap();
        fs::rename(d.join("next"), d.join("app.log.1")).unwrap();
        let left = remove_if_same(&dir, name, &read);
        assert_eq!(
            left,
            Removal::Left("another file took its name while it was compressed".into())
        );
        assert_eq!(fs::read(d.join("app.log.1")).unwrap(), b"next\n");
        // The same file, grown.
        let read = stat(&d.join("app.log.1"));
        fs::write(d.join("app.log.1"), "next\nmore\n").unwrap();
        assert!(matches!(
            remove_if_same(&dir, name, &read),
            Removal::Left(why) if why.starts_with("it changed after it was compressed")
        ));
        let read = stat(&d.join("app.log.1"));
        assert_eq!(remove_if_same(&dir, name, &read), Removal::Removed);
        assert!(!d.join("app.log.1").exists());
        assert_eq!(remove_if_same(&dir, name, &read), Removal::Gone);
    }
}
