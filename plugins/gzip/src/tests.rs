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
