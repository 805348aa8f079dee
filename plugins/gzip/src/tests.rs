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
