//! The walk on real files: ages set with `utimensat`, symbolic links out of the tree,
//! directories moved out of `dir` at chosen instants of the walk.

use std::fs;
use std::path::Path;
use std::time::Duration;

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

/// Regular files under `dir`, at any depth.
fn count(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                count(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// A report that, at the `at`-th entry the walk looks at, renames `from` to `to` (an
/// archiver's `mv`), and counts the files it moved.
struct Mover<'a> {
    calls: usize,
    at: usize,
    from: &'a Path,
    to: &'a Path,
    moved: Option<usize>,
    log: Vec<String>,
}

impl Mover<'_> {
    fn go(&mut self) {
        fs::rename(self.from, self.to).unwrap();
        self.moved = Some(count(self.to));
    }
}

impl Report for Mover<'_> {
    fn log(&mut self, line: &str) {
        self.log.push(line.to_owned());
    }
    fn beat(&mut self) {}
    fn stop_requested(&mut self) -> bool {
        self.calls += 1;
        if self.calls == self.at {
            self.go();
        }
        false
    }
}

/// `d/day` with 50 old `.log` files, and `d/day/deep` with 50 more.
fn day(d: &Path) {
    fs::create_dir_all(d.join("day/deep")).unwrap();
    for i in 0..50 {
        aged(&d.join(format!("day/{i}.log")), 1, 3);
        aged(&d.join(format!("day/deep/{i}.log")), 1, 3);
    }
}

/// Nothing but what `names` says is in `dir` (no quarantine left behind).
fn only(dir: &Path, names: &[&str]) {
    let mut got: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    got.sort();
    assert_eq!(got, names);
}

#[test]
fn a_directory_moved_out_while_it_is_purged_keeps_every_file_it_took_along() {
    let t = tempfile::tempdir().unwrap();
    let (data, outside) = (t.path().join("data"), t.path().join("outside"));
    fs::create_dir_all(&outside).unwrap();
    day(&data);
    // The 21st entry: `day` itself is the first, so 19 or 20 files went before the move.
    let mut mover = Mover {
        calls: 0,
        at: 21,
        from: &data.join("day"),
        to: &outside.join("day"),
        moved: None,
        log: Vec::new(),
    };
    let mut a = args(&data, "*.log");
    a.remove_empty_dirs = true;
    let stats = purge(&a, &mut mover).unwrap();
    let moved = mover.moved.expect("the walk got that far");
    assert!(
        moved > 50,
        "{moved}: the move came before the walk was done"
    );
    assert_eq!(
        count(&outside.join("day")),
        moved,
        "files were deleted at the new place"
    );
    assert_eq!(stats.files as usize, 100 - moved);
    assert!(
        mover
            .log
            .iter()
            .any(|l| l.contains("day was moved out of") && l.contains("nothing more")),
        "{:?}",
        mover.log
    );
    only(&data, &[]);
}

#[test]
fn a_directory_whose_parent_is_moved_out_keeps_its_files() {
    let t = tempfile::tempdir().unwrap();
    let (data, outside) = (t.path().join("data"), t.path().join("outside"));
    fs::create_dir_all(&outside).unwrap();
    day(&data);
    // Every entry of `day` first if `deep` is listed last; else `deep`'s first: either way,
    // the move lands in the walk of `day` or of `day/deep`, 75 entries in.
    let mut mover = Mover {
        calls: 0,
        at: 75,
        from: &data.join("day"),
        to: &outside.join("day"),
        moved: None,
        log: Vec::new(),
    };
    let stats = purge(&args(&data, "*.log"), &mut mover).unwrap();
    let moved = mover.moved.expect("the walk got that far");
    assert_eq!(count(&outside.join("day")), moved);
    assert_eq!(stats.files as usize, 100 - moved);
    only(&data, &[]);
}

#[test]
fn a_directory_moved_out_between_taking_a_file_and_deleting_it_gets_the_file_back() {
    struct Taker<'a>(Mover<'a>);
    impl Report for Taker<'_> {
        fn log(&mut self, line: &str) {
            self.0.log(line);
        }
        fn beat(&mut self) {}
        fn stop_requested(&mut self) -> bool {
            false
        }
        fn taken(&mut self, _: &Path) {
            self.0.calls += 1;
            if self.0.calls == self.0.at {
                self.0.go();
            }
        }
    }
    let t = tempfile::tempdir().unwrap();
    let (data, outside) = (t.path().join("data"), t.path().join("outside"));
    fs::create_dir_all(&outside).unwrap();
    day(&data);
    let mut taker = Taker(Mover {
        calls: 0,
        at: 10,
        from: &data.join("day"),
        to: &outside.join("day"),
        moved: None,
        log: Vec::new(),
    });
    let stats = purge(&args(&data, "*.log"), &mut taker).unwrap();
    // Taken out before the move, so not counted there; put back after it.
    let moved = taker.0.moved.unwrap();
    assert_eq!(moved, 100 - 10);
    assert_eq!(count(&outside.join("day")), moved + 1);
    assert_eq!(stats.files, 9);
    only(&data, &[]);
}

#[test]
fn when_dir_itself_is_moved_nothing_more_is_deleted() {
    let t = tempfile::tempdir().unwrap();
    let (data, outside) = (t.path().join("data"), t.path().join("outside"));
    day(&data);
    let mut mover = Mover {
        calls: 0,
        at: 30,
        from: &data,
        to: &outside,
        moved: None,
        log: Vec::new(),
    };
    let stats = purge(&args(&data, "*.log"), &mut mover).unwrap();
    let moved = mover.moved.unwrap();
    assert_eq!(count(&outside), moved);
    assert_eq!(stats.files as usize, 100 - moved);
    assert!(
        mover
            .log
            .iter()
            .any(|l| l.contains("no longer names the directory")),
        "{:?}",
        mover.log
    );
}

#[test]
fn a_file_replaced_after_it_was_judged_is_not_deleted() {
    // A logger re-creates the name between the look at the file and its taking: what is taken
    // is not the file judged old, so it goes back. (Done here in the quarantine, just after
    // the taking: the same as a replacement just before it, as far as the walk can tell.)
    struct Swapper<'a>(&'a Path, bool);
    impl Report for Swapper<'_> {
        fn log(&mut self, _: &str) {}
        fn beat(&mut self) {}
        fn stop_requested(&mut self) -> bool {
            false
        }
        fn taken(&mut self, _: &Path) {
            let quarantine = fs::read_dir(self.0)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.to_string_lossy().contains(".nonstop-purge."))
                .unwrap();
            let taken = fs::read_dir(&quarantine).unwrap().next().unwrap().unwrap();
            fs::write(self.0.join("fresh"), "new").unwrap();
            fs::rename(self.0.join("fresh"), taken.path()).unwrap();
            self.1 = true;
        }
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    aged(&d.join("old.log"), 10, 3);
    let mut s = Swapper(d, false);
    let stats = purge(&args(d, "*.log"), &mut s).unwrap();
    assert!(s.1, "taken");
    assert_eq!(stats.files, 0);
    assert_eq!(fs::read_to_string(d.join("old.log")).unwrap(), "new");
    only(d, &["old.log"]);
}

#[test]
fn a_quarantine_of_another_run_is_never_walked_and_a_left_one_is_reported() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    fs::create_dir(d.join(".nonstop-purge.1.0")).unwrap();
    aged(&d.join(".nonstop-purge.1.0/0"), 1, 3);
    aged(&d.join("old.log"), 1, 3);
    let mut log = Log::default();
    let stats = purge(&args(d, "*"), &mut log).unwrap();
    assert_eq!(stats.files, 1);
    assert!(d.join(".nonstop-purge.1.0/0").exists());
    assert!(
        log.0
            .iter()
            .any(|l| l.contains(".nonstop-purge.1.0 was left by a purge that was killed")),
        "{:?}",
        log.0
    );
}

#[test]
fn a_file_is_taken_into_its_own_directory_when_dir_cannot_hold_a_quarantine() {
    // `dir` may refuse a new directory where its subdirectories allow deleting (not writable
    // by the task's user, which root, running this test, cannot show): here every name a
    // quarantine of this process could take in `dir` is taken.
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    for n in 0..1000 {
        fs::write(
            d.join(format!(".nonstop-purge.{}.{n}", std::process::id())),
            "",
        )
        .unwrap();
    }
    fs::create_dir(d.join("sub")).unwrap();
    aged(&d.join("sub/old.log"), 1, 3);
    let stats = purge(&args(d, "*.log"), &mut Log::default()).unwrap();
    assert_eq!(stats.files, 1);
    only(&d.join("sub"), &[]);
}
