//! The walk on real files: ages set with `utimensat`, symbolic links out of the tree.

use std::fs;
use std::path::Path;

use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

use super::*;

#[derive(Default)]
struct Log(Vec<String>);

impl Report for Log {
    fn log(&mut self, line: &str) {
        self.0.push(line.to_owned());
    }
    fn beat(&mut self) {}
    fn stop_requested(&mut self) -> bool {
        false
    }
}

/// A file of `len` bytes last modified `days` ago.
fn aged(path: &Path, len: usize, days: u64) {
    fs::write(path, vec![b'x'; len]).unwrap();
    let when = SystemTime::now() - Duration::from_secs(days * 86_400);
    let secs = when
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t = TimeSpec::new(secs, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

fn args(dir: &Path, patterns: &str) -> Args {
    Args {
        dir: dir.to_path_buf(),
        patterns: nonstop_core::Patterns(patterns.split(',').map(str::to_owned).collect()),
        older_than: "1d".parse().unwrap(),
        recursive: true,
        remove_empty_dirs: false,
        dry_run: false,
    }
}

#[test]
fn old_matching_regular_files_go_and_nothing_else() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    aged(&d.join("old.log"), 10, 3);
    aged(&d.join("new.log"), 10, 0);
    aged(&d.join("old.txt"), 10, 3);
    fs::create_dir(d.join("sub")).unwrap();
    aged(&d.join("sub/deep.log"), 5, 3);
    let mut log = Log::default();
    let stats = purge(&args(d, "*.log"), &mut log).unwrap();
    assert_eq!((stats.files, stats.bytes), (2, 15));
    assert!(!d.join("old.log").exists() && !d.join("sub/deep.log").exists());
    assert!(d.join("new.log").exists() && d.join("old.txt").exists());
    assert!(
        d.join("sub").is_dir(),
        "not asked to remove empty directories"
    );
    assert!(log.0.iter().any(|l| l.ends_with("old.log")), "{:?}", log.0);
}

#[test]
fn links_are_never_followed_and_nothing_outside_goes() {
    let outside = tempfile::tempdir().unwrap();
    aged(&outside.path().join("precious.log"), 10, 30);
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::os::unix::fs::symlink(outside.path(), d.join("link-to-dir")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("precious.log"), d.join("link.log")).unwrap();
    let mut a = args(d, "*");
    a.older_than = "0s".parse().unwrap();
    a.remove_empty_dirs = true;
    let stats = purge(&a, &mut Log::default()).unwrap();
    assert_eq!(stats.files, 0);
    assert!(outside.path().join("precious.log").exists());
    assert!(
        d.join("link-to-dir").exists() && d.join("link.log").exists(),
        "links are kept"
    );
    // The directory itself, given as a link, is refused.
    let mut through = args(&d.join("link-to-dir"), "*");
    through.older_than = "0s".parse().unwrap();
    let err = purge(&through, &mut Log::default()).unwrap_err();
    assert!(err.contains("cannot open"), "{err}");
    assert!(outside.path().join("precious.log").exists());
}

#[test]
fn dry_runs_delete_nothing_and_emptied_directories_can_go() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    fs::create_dir_all(d.join("a/b")).unwrap();
    aged(&d.join("a/b/x.xml"), 3, 9);
    let mut dry = args(d, "*.log,*.xml");
    dry.dry_run = true;
    dry.remove_empty_dirs = true;
    let mut log = Log::default();
    let stats = purge(&dry, &mut log).unwrap();
    assert_eq!(stats.files, 1);
    assert!(d.join("a/b/x.xml").exists());
    assert!(log.0[0].starts_with("purge: would remove"), "{:?}", log.0);
    let mut real = args(d, "*.xml");
    real.remove_empty_dirs = true;
    let stats = purge(&real, &mut Log::default()).unwrap();
    assert_eq!((stats.files, stats.dirs), (1, 2));
    assert!(
        !d.join("a").exists() && d.exists(),
        "the emptied tree went, not dir itself"
    );
}

#[test]
fn patterns_are_checked_with_their_index() {
    assert!(compile(&[]).unwrap_err().starts_with("match: "));
    let err = compile(&["*.log".into(), "[".into()]).unwrap_err();
    assert!(err.starts_with("match[1]: \"[\" is not a pattern"), "{err}");
}
