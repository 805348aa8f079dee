//! The gzip plugin against a directory that others change while it works: a logger that
//! rotates `app.log` to `app.log.1` again and again, a file renamed onto the name being
//! compressed, a file still written to; and the `dir` check of the file plugins. Real task
//! hosts (`nonstop plugin-host run`), real files, `gzip -dc` to read what was made.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{PipelineDir, Proc, gzip_plugin, nonstop, purge_plugin, wait_until};

const SECOND: Duration = Duration::from_secs(1);

/// `nonstop plugin-host run` of the gzip plugin on `dir` with `more` arguments (JSON members).
fn gzip_run(dir: &Path, more: &str) -> Command {
    let mut command = Command::new(nonstop());
    command
        .args(["plugin-host", "run"])
        .arg(gzip_plugin())
        .arg(format!("{{\"dir\": \"{}\"{more}}}", dir.display()));
    command
}

/// What `gzip -dc` makes of `file` (which must be complete).
fn gunzip(file: &Path) -> Vec<u8> {
    let out = Command::new("gzip").arg("-dc").arg(file).output().unwrap();
    assert!(
        out.status.success(),
        "{} is not a complete gzip file",
        file.display()
    );
    out.stdout
}

/// `lines` lines of a log that does not compress too well (so that compressing takes a while).
fn log_text(lines: u64) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut text = String::new();
    for i in 0..lines {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        text += &format!(
            "{i} 2026-12-02T10:00:00 <record id=\"{}\" v=\"{x:016x}\"/>\n",
            x % 1000
        );
    }
    text.into_bytes()
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A logger rotates `app.log` to `app.log.1` whenever that name is free (never replacing it),
/// while gzip runs on `app.log.1` again and again, a third of the runs SIGKILLed at some
/// instant: each rotated file is compressed once, the `.gz` of an earlier one is never
/// replaced, and every line the logger wrote is found exactly once, in `app.log` or a `.gz`.
/// (Before, each new `app.log.1` was compressed over the last `app.log.1.gz`.)
#[test]
fn gzip_racing_a_rotating_logger_loses_no_line_and_writes_none_twice() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let rotations = 30;
    let logger = Proc::helper(&[
        "rotate",
        dir.to_str().unwrap(),
        &rotations.to_string(),
        "2000",
    ]);
    let deadline = Instant::now() + 180 * SECOND;
    let (mut runs, mut killed) = (0u64, 0);
    let wrote = loop {
        if let Some(line) = logger.try_line() {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "the logger did not finish; {runs} runs"
        );
        let mut child = gzip_run(dir, ", \"match\": \"app.log.1\"")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        if runs % 3 == 2 {
            std::thread::sleep(Duration::from_millis(runs % 17));
            let _ = child.kill();
        }
        let status = child.wait().unwrap();
        if status.signal() == Some(9) {
            killed += 1;
        } else {
            assert!(status.success(), "{status}");
        }
        runs += 1;
    };
    let written: usize = wrote
        .strip_prefix("wrote ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the logger said {wrote:?}"));
    let status = gzip_run(dir, ", \"match\": \"app.log.1\"")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let names = listing(dir);
    let mut seen = vec![0u32; written];
    let mut gz = 0;
    for name in &names {
        assert!(
            name == "app.log" || name.starts_with("app.log.1") && name.ends_with(".gz"),
            "{name} left in {names:?}"
        );
        let text = if name.ends_with(".gz") {
            gz += 1;
            gunzip(&dir.join(name))
        } else {
            std::fs::read(dir.join(name)).unwrap()
        };
        for line in String::from_utf8(text).unwrap().lines() {
            let n: usize = line.split(' ').next().unwrap().parse().unwrap();
            seen[n] += 1;
        }
    }
    let lost = seen.iter().filter(|&&c| c == 0).count();
    let twice = seen.iter().filter(|&&c| c > 1).count();
    assert_eq!(
        (lost, twice),
        (0, 0),
        "of {written} lines, {lost} lost and {twice} found twice; {runs} runs, {killed} \
         killed; {names:?}"
    );
    assert_eq!(gz, rotations, "one .gz per rotated file: {names:?}");
    assert!(killed > 0, "no run was killed in {runs}");
}

/// Starts gzip (level 9, slow) on a large `app.log.1` in `dir`, and returns once it writes its
/// temporary, with the temporary's path.
fn compressing(dir: &Path, text: &[u8]) -> (std::process::Child, PathBuf) {
    std::fs::write(dir.join("app.log.1"), text).unwrap();
    let child = gzip_run(dir, ", \"match\": \"app.log.1\", \"level\": 9")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let tmp = dir.join(".app.log.1.gz.nonstop-partial");
    assert!(
        wait_until(30 * SECOND, || tmp.exists()),
        "gzip never began: {:?}",
        listing(dir)
    );
    (child, tmp)
}

/// While a large `app.log.1` is being compressed, another file is renamed onto that name (a
/// logger's rotation): gzip finishes the `.gz` of what it read, and leaves the new file.
/// (Before, it removed whatever had the name at the end: the new file was lost.)
#[test]
fn gzip_leaves_a_file_renamed_onto_the_name_while_it_compressed() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let first = log_text(100_000);
    let second = b"the next app.log.1\n".repeat(1000);
    std::fs::write(dir.join("next"), &second).unwrap();
    let (child, tmp) = compressing(dir, &first);
    std::fs::rename(dir.join("next"), dir.join("app.log.1")).unwrap();
    assert!(
        tmp.exists(),
        "the compression ended before the rename: the test needs a larger file"
    );
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(
        std::fs::read(dir.join("app.log.1")).expect("the file renamed onto the name was removed"),
        second,
        "the file renamed onto the name is not intact"
    );
    assert_eq!(gunzip(&dir.join("app.log.1.gz")), first);
    assert!(
        stdout.contains("another file took its name while it was compressed"),
        "{stdout}"
    );
    assert_eq!(listing(dir), ["app.log.1", "app.log.1.gz"]);
}

/// A file appended to while it is compressed is left whole for a later run, and its partial
/// `.gz` is not kept. (Before, it was removed: the lines written meanwhile were lost.)
#[test]
fn gzip_leaves_a_file_written_to_while_it_compressed() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let text = log_text(100_000);
    let (child, tmp) = compressing(dir, &text);
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join("app.log.1"))
            .unwrap();
        file.write_all(b"a line written late\n").unwrap();
    }
    assert!(
        tmp.exists(),
        "the compression ended before the write: the test needs a larger file"
    );
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let mut expected = text;
    expected.extend_from_slice(b"a line written late\n");
    assert_eq!(
        std::fs::read(dir.join("app.log.1")).expect("the file written to was removed"),
        expected
    );
    assert!(
        stdout.contains("it changed while it was compressed"),
        "{stdout}"
    );
    assert_eq!(listing(dir), ["app.log.1"]);
    // Once no longer written to, the next run compresses it.
    let status = gzip_run(dir, ", \"match\": \"app.log.1\"")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(listing(dir), ["app.log.1.gz"]);
    assert_eq!(gunzip(&dir.join("app.log.1.gz")), expected);
}

/// Archive mode under the same rule: an archive that appears under its name while it packs is
/// not replaced (the run fails, nothing is removed), and a file renamed onto an original's name
/// meanwhile is left when the others go.
#[test]
fn gzip_archive_mode_never_replaces_an_archive_nor_removes_a_file_it_did_not_read() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let text = log_text(100_000);
    std::fs::write(dir.join("a.log"), &text).unwrap();
    std::fs::write(dir.join("b.log"), b"b\n").unwrap();
    let start = || {
        let child = gzip_run(
            dir,
            ", \"match\": \"*.log\", \"level\": 9, \"archive\": \"logs.tar.gz\"",
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
        let tmp = dir.join(".logs.tar.gz.nonstop-partial");
        assert!(
            wait_until(30 * SECOND, || tmp.exists()),
            "gzip never began: {:?}",
            listing(dir)
        );
        (child, tmp)
    };
    let (child, tmp) = start();
    std::fs::write(dir.join("logs.tar.gz"), "someone else's\n").unwrap();
    assert!(tmp.exists(), "the test needs a larger file");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(
        std::fs::read(dir.join("logs.tar.gz")).unwrap(),
        b"someone else's\n",
        "the archive that appeared was replaced"
    );
    assert_eq!(listing(dir), ["a.log", "b.log", "logs.tar.gz"]);

    std::fs::remove_file(dir.join("logs.tar.gz")).unwrap();
    std::fs::write(dir.join("next"), b"the next a.log\n").unwrap();
    let (child, tmp) = start();
    // Bytes in the archive: a.log is being read (b.log is too small to make any).
    assert!(
        wait_until(30 * SECOND, || std::fs::metadata(&tmp)
            .is_ok_and(|m| m.len() > 0)),
        "nothing written"
    );
    std::fs::rename(dir.join("next"), dir.join("a.log")).unwrap();
    assert!(tmp.exists(), "the test needs a larger file");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(listing(dir), ["a.log", "logs.tar.gz"], "{stdout}");
    assert_eq!(
        std::fs::read(dir.join("a.log")).unwrap(),
        b"the next a.log\n"
    );
    assert!(
        stdout.contains("another file took its name while it was compressed"),
        "{stdout}"
    );
    let unpacked = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(dir.join("logs.tar.gz"))
        .arg("-C")
        .arg(unpacked.path())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read(unpacked.path().join("a.log")).unwrap(), text);
    assert_eq!(
        std::fs::read(unpacked.path().join("b.log")).unwrap(),
        b"b\n"
    );
}

/// `nonstop check` refuses a gzip or purge `dir` that is missing, not a directory or a link,
/// pointing at the argument; a relative `dir` is taken from the task's `cwd`, as when it runs.
#[test]
fn check_refuses_a_gzip_or_purge_dir_that_is_not_a_directory() {
    let plugins = gzip_plugin().parent().unwrap().to_path_buf();
    assert_eq!(purge_plugin().parent(), Some(plugins.as_path()));
    let p = PipelineDir::new("");
    std::fs::create_dir_all(p.file("work/data")).unwrap();
    std::fs::write(p.file("file"), "").unwrap();
    std::os::unix::fs::symlink(p.file("work/data"), p.file("link")).unwrap();
    let yaml = format!(
        "plugin_dirs: [{plugins}]\ntasks:\n  \
         missing:\n    plugin: gzip\n    args: {{ dir: nosuch, match: \"*.log\" }}\n    every: 1h\n  \
         file:\n    plugin: purge\n    args:\n      dir: file\n      match: \"*.gz\"\n      older_than: 1d\n    every: 1h\n  \
         link:\n    plugin: gzip\n    args: {{ dir: link, match: \"*.log\" }}\n    every: 1h\n  \
         purged:\n    plugin: purge\n    args: {{ dir: /nonstop-no-such-dir, match: \"*\", older_than: 1d }}\n    every: 1h\n  \
         relative:\n    plugin: gzip\n    cwd: work\n    args: {{ dir: data, match: \"*.log\" }}\n    every: 1h\n",
        plugins = plugins.display()
    );
    std::fs::write(p.path(), yaml).unwrap();
    let out = Command::new(nonstop())
        .args(["check", "pipeline.yaml"])
        .current_dir(p.dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let root = p.dir.path().display();
    let expected = [
        format!(
            "pipeline.yaml:5:18: tasks.missing.args.dir: directory \"nosuch\" (from {root}) \
             does not exist"
        ),
        format!(
            "pipeline.yaml:10:12: tasks.file.args.dir: \"file\" (from {root}) is not a directory"
        ),
        format!(
            "pipeline.yaml:16:18: tasks.link.args.dir: \"link\" (from {root}) is a symbolic \
             link, which is never followed: name the directory itself"
        ),
        "pipeline.yaml:20:18: tasks.purged.args.dir: directory \"/nonstop-no-such-dir\" does \
         not exist"
            .to_owned(),
        "pipeline.yaml: 4 errors".to_owned(),
    ];
    assert_eq!(stderr.lines().collect::<Vec<_>>(), expected, "{stderr}");
    assert_eq!(out.status.code(), Some(1));
}
