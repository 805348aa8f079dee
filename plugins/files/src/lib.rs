//! What the built-in plugins that work on files (`gzip`, `purge`) share: the names in a
//! directory open as a descriptor, with their types where the file system gives them, and
//! the `match` patterns of their arguments. A library, not a plugin: each of them links it.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

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
