//! What the built-in plugins that work on files (`gzip`, `purge`) share: the names in a
//! directory open as a descriptor, with their types where the file system gives them, and
//! the checks of their `dir` and `match` arguments. A library, not a plugin: each of them
//! links it.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

/// The names in the directory open at `dir` (without `.` and `..`), with their types when
/// the file system gives them (`d_type`), so that a walk need not `stat` what it can rule
/// out by type.
pub fn names(dir: &OwnedFd) -> nix::Result<Vec<(OsString, Option<nix::dir::Type>)>> {
    // Dir takes a descriptor of its own, which it closes.
    let own = dir
        .as_fd()
        .try_clone_to_owned()
        .map_err(|_| Errno::EMFILE)?;
    let mut d = nix::dir::Dir::from_fd(own)?;
    let mut out = Vec::new();
    for entry in d.iter() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push((OsStr::from_bytes(name).to_owned(), entry.file_type()));
        }
    }
    Ok(out)
}

/// The `match` argument's patterns; an error names the one at fault (`match[1]: ...`).
pub fn compile(patterns: &[String]) -> Result<Vec<glob::Pattern>, String> {
    if patterns.is_empty() {
        return Err("match: give at least one pattern (\"*.log\" matches every .log file)".into());
    }
    patterns
        .iter()
        .enumerate()
        .map(|(i, p)| {
            glob::Pattern::new(p).map_err(|e| format!("match[{i}]: {p:?} is not a pattern: {e}"))
        })
        .collect()
}

/// The `dir` argument's check (at `nonstop check`, in the task's `cwd`): it must be a directory,
/// and not through a symbolic link at its end, which the plugins never follow (`O_NOFOLLOW`).
/// The error starts with `dir: `, the argument's path, for the runner to place.
pub fn check_dir(dir: &Path) -> Result<(), String> {
    let shown = || {
        let from = if dir.is_relative() {
            std::env::current_dir()
                .map(|cwd| format!(" (from {})", cwd.display()))
                .unwrap_or_default()
        } else {
            String::new()
        };
        format!("\"{}\"{from}", dir.display())
    };
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(meta) if meta.is_symlink() => Err(format!(
            "dir: {} is a symbolic link, which is never followed: name the directory itself",
            shown()
        )),
        Ok(_) => Err(format!("dir: {} is not a directory", shown())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("dir: directory {} does not exist", shown()))
        }
        Err(e) => Err(format!("dir: cannot reach {}: {e}", shown())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names_come_with_their_types_and_without_dot_entries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.log"), "").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let fd: OwnedFd = std::fs::File::open(dir.path()).unwrap().into();
        let mut got = names(&fd).unwrap();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "a.log");
        assert_eq!(got[1].0, "sub");
        // tmpfs and ext4 give types; where one is given, it is right.
        if let Some(t) = got[1].1 {
            assert_eq!(t, nix::dir::Type::Directory);
        }
        // The descriptor is still usable: names() read a copy of it.
        assert_eq!(names(&fd).unwrap().len(), 2);
    }

    #[test]
    fn dir_must_be_a_directory_named_without_a_link() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("file"), "").unwrap();
        std::os::unix::fs::symlink(d, d.join("link")).unwrap();
        assert_eq!(check_dir(d), Ok(()));
        let e = check_dir(&d.join("nosuch")).unwrap_err();
        assert_eq!(
            e,
            format!(
                "dir: directory \"{}\" does not exist",
                d.join("nosuch").display()
            )
        );
        let e = check_dir(&d.join("file")).unwrap_err();
        assert!(
            e.starts_with("dir: \"") && e.ends_with("file\" is not a directory"),
            "{e}"
        );
        let e = check_dir(&d.join("link")).unwrap_err();
        assert!(
            e.contains("is a symbolic link, which is never followed"),
            "{e}"
        );
        let e = check_dir(Path::new("surely/not/here")).unwrap_err();
        assert!(
            e.starts_with("dir: directory \"surely/not/here\" (from /"),
            "{e}"
        );
    }

    #[test]
    fn patterns_are_required_and_a_bad_one_is_named() {
        assert!(
            compile(&[])
                .unwrap_err()
                .starts_with("match: give at least one")
        );
        let e = compile(&["*.log".into(), "[".into()]).unwrap_err();
        assert!(e.starts_with("match[1]: \"[\" is not a pattern"), "{e}");
        assert_eq!(compile(&["*.log".into()]).unwrap().len(), 1);
    }
}
