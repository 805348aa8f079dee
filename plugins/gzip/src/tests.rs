//! Compression on real files, checked with `gzip -t` and by decompressing.

use std::fs;
use std::process::Command;

use super::*;

fn args(dir: &Path, patterns: &str) -> Args {
    Args {
        dir: dir.to_path_buf(),
        patterns: nonstop_core::Patterns(patterns.split(',').map(str::to_owned).collect()),
        older_than: nonstop_core::Duration::default(),
        recursive: true,
        level: 6,
        jobs: Some(2),
        archive: None,
    }
}

fn text(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| format!("2026-12-02 line {i} <xml id=\"{}\"/>\n", i % 97))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn matching_files_become_complete_gz_with_their_mode_and_times() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    fs::create_dir(d.join("sub")).unwrap();
    let data = text(20_000);
    fs::write(d.join("a.log"), &data).unwrap();
    fs::write(d.join("sub/b.log"), &data).unwrap();
    fs::write(d.join("keep.txt"), "x").unwrap();
    fs::write(d.join("already.log.gz"), "not really gzip").unwrap();
    std::os::unix::fs::symlink(d.join("keep.txt"), d.join("link.log")).unwrap();
    fs::set_permissions(
        d.join("a.log"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    let mtime = fs::metadata(d.join("a.log")).unwrap().modified().unwrap();
    // A temporary an interrupted run left.
    fs::write(d.join(".c.log.gz.nonstop-partial"), "half").unwrap();
    let mut lines = Vec::new();
    let stats = gzip(
        &args(d, "*.log"),
        &mut |l| lines.push(l.to_owned()),
        &mut || false,
    )
    .unwrap();
    assert_eq!(stats.files, 2, "{lines:?}");
    assert_eq!(stats.leftovers, 1);
    assert!(stats.bytes_out < stats.bytes_in / 5);
    assert!(!d.join("a.log").exists() && d.join("a.log.gz").exists());
    assert!(d.join("sub/b.log.gz").exists());
    assert!(d.join("keep.txt").exists() && d.join("link.log").exists());
    assert!(!d.join(".c.log.gz.nonstop-partial").exists());
    let meta = fs::metadata(d.join("a.log.gz")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o640
    );
    assert_eq!(meta.modified().unwrap(), mtime);
    let test = Command::new("gzip")
        .arg("-t")
        .arg(d.join("a.log.gz"))
        .status()
        .unwrap();
    assert!(test.success(), "gzip -t refuses it");
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(d.join("sub/b.log.gz"))
        .output()
        .unwrap();
    assert_eq!(out.stdout, data, "it does not decompress to the original");
}

/// Sets `path`'s modification time to `secs` after the epoch.
fn set_mtime(path: &Path, secs: u64) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

fn names_in(d: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn gunzip(path: &Path) -> Vec<u8> {
    let out = Command::new("gzip").arg("-dc").arg(path).output().unwrap();
    assert!(out.status.success(), "{}", path.display());
    out.stdout
}

/// Log rotation makes a new `app.log.1` after the last one was compressed: its `.gz` takes a
/// new name (the modification time, then a counter), and the earlier `.gz` is never replaced.
#[test]
fn a_name_compressed_before_gets_a_new_gz_and_the_earlier_one_is_kept() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let mut lines = Vec::new();
    for (text, mtime) in [
        ("first\n", 1_796_200_000),
        ("second\n", 1_796_207_400),
        ("third\n", 1_796_207_400),
    ] {
        fs::write(d.join("app.log.1"), text).unwrap();
        set_mtime(&d.join("app.log.1"), mtime);
        let stats = gzip(
            &args(d, "app.log.1"),
            &mut |l| lines.push(l.to_owned()),
            &mut || false,
        )
        .unwrap();
        assert_eq!(stats.files, 1, "{lines:?}");
    }
    assert_eq!(
        names_in(d),
        [
            "app.log.1.20261202T103000Z.1.gz",
            "app.log.1.20261202T103000Z.gz",
            "app.log.1.gz"
        ]
    );
    assert_eq!(gunzip(&d.join("app.log.1.gz")), b"first\n");
    assert_eq!(
        gunzip(&d.join("app.log.1.20261202T103000Z.gz")),
        b"second\n"
    );
    assert_eq!(
        gunzip(&d.join("app.log.1.20261202T103000Z.1.gz")),
        b"third\n"
    );
    assert!(
        lines[1].ends_with(" into app.log.1.20261202T103000Z.gz: app.log.1.gz exists"),
        "{lines:?}"
    );
}

/// A run stopped after its `.gz` took its name and before the original was removed: the next
/// run finds that the `.gz` holds exactly the original, and removes the original instead of
/// making a second copy. A file of the same time and other bytes is compressed anew.
#[test]
fn a_gz_that_holds_the_original_already_is_not_made_twice() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let data = text(5_000);
    fs::write(d.join("a.log"), &data).unwrap();
    set_mtime(&d.join("a.log"), 1_796_207_400);
    gzip(&args(d, "*.log"), &mut |_| {}, &mut || false).unwrap();
    // The original again, as the stopped run left it.
    fs::write(d.join("a.log"), &data).unwrap();
    set_mtime(&d.join("a.log"), 1_796_207_400);
    let mut lines = Vec::new();
    let stats = gzip(
        &args(d, "*.log"),
        &mut |l| lines.push(l.to_owned()),
        &mut || false,
    )
    .unwrap();
    assert_eq!(stats.files, 1);
    assert_eq!(names_in(d), ["a.log.gz"], "{lines:?}");
    assert!(
        lines[0].contains("a.log: a.log.gz holds it already"),
        "{lines:?}"
    );
    // Same time, other bytes.
    fs::write(d.join("a.log"), "other\n").unwrap();
    set_mtime(&d.join("a.log"), 1_796_207_400);
    gzip(&args(d, "*.log"), &mut |_| {}, &mut || false).unwrap();
    assert_eq!(names_in(d), ["a.log.20261202T103000Z.gz", "a.log.gz"]);
    assert_eq!(gunzip(&d.join("a.log.gz")), data);
    assert_eq!(gunzip(&d.join("a.log.20261202T103000Z.gz")), b"other\n");
}

#[test]
fn arguments_are_checked() {
    let t = tempfile::tempdir().unwrap();
    let mut a = args(t.path(), "*.log");
    a.level = 10;
    assert!(check(&a).unwrap_err().starts_with("level: 10"));
    a.level = 6;
    a.jobs = Some(0);
    assert!(check(&a).unwrap_err().starts_with("jobs:"));
    assert!(
        check(&args(t.path(), "["))
            .unwrap_err()
            .starts_with("match[0]:")
    );
    let e = check(&args(&t.path().join("nosuch"), "*.log")).unwrap_err();
    assert!(e.starts_with("dir: directory \""), "{e}");
}

#[test]
fn archive_mode_packs_the_files_into_one_tar_gz_and_never_replaces_one() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    fs::create_dir(d.join("sub")).unwrap();
    let data = text(5_000);
    fs::write(d.join("a.log"), &data).unwrap();
    fs::write(d.join("sub/b.log"), &data).unwrap();
    fs::write(d.join("keep.txt"), "x").unwrap();
    let mut a = args(d, "*.log");
    a.archive = Some("logs-{time}.tar.gz".into());
    let mut lines = Vec::new();
    let stats = gzip(&a, &mut |l| lines.push(l.to_owned()), &mut || false).unwrap();
    assert_eq!(stats.files, 2, "{lines:?}");
    let archive: Vec<_> = fs::read_dir(d)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("logs-") && n.ends_with("Z.tar.gz"))
        .collect();
    assert_eq!(archive.len(), 1, "{archive:?}");
    assert!(!d.join("a.log").exists() && !d.join("sub/b.log").exists());
    assert!(d.join("keep.txt").exists());
    let list = Command::new("tar")
        .arg("-tzf")
        .arg(d.join(&archive[0]))
        .output()
        .unwrap();
    assert!(list.status.success());
    let mut names: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    names.sort();
    assert_eq!(names, ["a.log", "sub/b.log"]);
    // A fixed name that exists is refused, and nothing is removed.
    fs::write(d.join("c.log"), &data).unwrap();
    a.archive = Some(archive[0].clone());
    let err = gzip(&a, &mut |_| {}, &mut || false).unwrap_err();
    assert!(err.contains("exists already"), "{err}");
    assert!(d.join("c.log").exists());
    a.archive = Some("../x.tar.gz".into());
    assert!(check(&a).unwrap_err().starts_with("archive:"));
}

#[test]
fn utc_stamps_are_civil_dates() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_207_400);
    assert_eq!(utc_stamp(t), "20261202T103000Z");
    assert_eq!(utc_stamp(SystemTime::UNIX_EPOCH), "19700101T000000Z");
    let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
    assert_eq!(utc_stamp(leap), "20000229T000000Z");
}
