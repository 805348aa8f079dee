//! Task log files: `logs.dir/TASK.log`, rotated by the runner when it reaches `max_size`.
//!
//! A rotated file is renamed `TASK.log.YYYYMMDD-HHMMSS` (a `.N` suffix if that name is taken),
//! so no rename ever touches a file that is still being compressed; the newest `keep` rotated
//! files are kept, pruned once per write (a write of a flood may rotate many times). With
//! `compress`, the runner gzips rotated files in child processes (`nonstop compress-log`, in
//! the `nonstop` binary), so its event loop never blocks on it and it does not link the
//! compressor; the file one works on ([`TaskLog::set_compressing`]) is left by pruning until
//! it is done. A compression's temporary (`TASK.log.STAMP.gz.tmp`) whose
//! original no process holds any more (the compressor was killed, or the runner with it) is
//! removed when the log is opened and whenever it is pruned.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use tracing::info;

use crate::pipeline::LogConfig;

/// One task's log file.
#[derive(Debug)]
pub struct TaskLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    keep: u32,
    /// The stamp of the last rotation and how many rotations had it, so names only ever
    /// grow: a name freed by pruning is never given to a newer file.
    last: Option<(String, u32)>,
    /// The start of a line whose end has not come yet: kept back so that a rotation never
    /// falls inside a line (at most `max_size` bytes; a longer line is cut).
    partial: Vec<u8>,
    /// `logs.timestamps`: whether lines are prefixed with their arrival time.
    timestamps: bool,
    /// With timestamps: whether the next byte begins a line (and gets a stamp).
    at_line_start: bool,
    /// The rotated file a compression works on now: pruning leaves it (its compression would
    /// fail, its work lost) until the compression ends and prunes again.
    compressing: Option<PathBuf>,
}

impl TaskLog {
    /// Opens (appends to) `config.dir/TASK.log`. The directory exists: the runner made it
    /// for the pipeline lock ([`crate::lock::Lock::acquire`]) before any log is opened.
    pub fn open(config: &LogConfig, task: &str) -> io::Result<TaskLog> {
        let path = config.dir.join(format!("{task}.log"));
        // What the compressions of an earlier runner left.
        remove_stale_partials(&path)?;
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(TaskLog {
            path,
            file,
            size,
            max_size: config.max_size,
            keep: config.keep,
            last: None,
            partial: Vec::new(),
            timestamps: config.timestamps,
            at_line_start: true,
            compressing: None,
        })
    }

    /// `data` with the arrival time (`2026-12-02T11:10:03.851960Z `, UTC) before each line
    /// that begins in it; a line begun in an earlier piece keeps the stamp it got then.
    fn stamped(&mut self, data: &[u8]) -> Vec<u8> {
        let stamp = format!("{:.6} ", jiff::Timestamp::now());
        let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
        let mut out = Vec::with_capacity(data.len() + lines * stamp.len());
        for piece in data.split_inclusive(|&b| b == b'\n') {
            if self.at_line_start {
                out.extend_from_slice(stamp.as_bytes());
            }
            out.extend_from_slice(piece);
            self.at_line_start = piece.ends_with(b"\n");
        }
        out
    }

    /// Appends the whole lines of `data` (the start of a line that `data` does not finish
    /// waits for the next call, or for [`TaskLog::flush_partial`]), rotating whenever the file
    /// reaches `max_size`, only ever between two lines: no file grows past `max_size` and no
    /// line is split across two files, except a single line longer than `max_size`, which is
    /// cut every `max_size` bytes. Returns the rotated files, oldest first (pruned once, after
    /// the last rotation: some may be gone already).
    pub fn write(&mut self, data: &[u8]) -> io::Result<Vec<PathBuf>> {
        let rotated = if self.timestamps && !data.is_empty() {
            let stamped = self.stamped(data);
            self.write_whole_lines(&stamped)?
        } else {
            self.write_whole_lines(data)?
        };
        self.pruned(rotated)
    }

    /// `rotated`, after pruning if there are any.
    fn pruned(&self, rotated: Vec<PathBuf>) -> io::Result<Vec<PathBuf>> {
        if !rotated.is_empty() {
            self.prune()?;
        }
        Ok(rotated)
    }

    fn write_whole_lines(&mut self, data: &[u8]) -> io::Result<Vec<PathBuf>> {
        let mut rotated = Vec::new();
        match data.iter().rposition(|&b| b == b'\n') {
            None => self.partial.extend_from_slice(data),
            Some(last) => {
                if self.partial.is_empty() {
                    rotated.extend(self.write_lines(&data[..=last])?);
                } else {
                    let mut lines = std::mem::take(&mut self.partial);
                    lines.extend_from_slice(&data[..=last]);
                    rotated.extend(self.write_lines(&lines)?);
                }
                self.partial.extend_from_slice(&data[last + 1..]);
            }
        }
        // A line longer than a whole file: cut it, one file's worth at a time.
        let max = self.max_size as usize;
        while self.partial.len() >= max {
            let head: Vec<u8> = self.partial.drain(..max).collect();
            rotated.extend(self.write_lines(&head)?);
        }
        Ok(rotated)
    }

    /// Writes the start of a line still kept back (the task ended without finishing its last
    /// line), ended with a newline: the next instance's output begins a line of its own.
    pub fn flush_partial(&mut self) -> io::Result<Vec<PathBuf>> {
        // What comes next (another instance's output) begins a line of its own.
        self.at_line_start = true;
        let mut partial = std::mem::take(&mut self.partial);
        if partial.is_empty() {
            return Ok(Vec::new());
        }
        partial.push(b'\n');
        let rotated = self.write_lines(&partial)?;
        self.pruned(rotated)
    }

    /// Appends `data`, rotating whenever the file reaches `max_size`: it is split at line
    /// breaks so that no file grows past `max_size` (only a single line longer than that is
    /// cut).
    fn write_lines(&mut self, mut data: &[u8]) -> io::Result<Vec<PathBuf>> {
        let mut rotated = Vec::new();
        while !data.is_empty() {
            let room = self.max_size.saturating_sub(self.size) as usize;
            if room == 0 {
                rotated.push(self.rotate()?);
                continue;
            }
            let cut = if data.len() <= room {
                data.len()
            } else {
                match data[..room].iter().rposition(|&b| b == b'\n') {
                    Some(newline) => newline + 1,
                    // The next line does not fit: it starts the next file.
                    None if self.size > 0 => {
                        rotated.push(self.rotate()?);
                        continue;
                    }
                    // A line longer than max_size: cut it.
                    None => room,
                }
            };
            self.file.write_all(&data[..cut])?;
            self.size += cut as u64;
            data = &data[cut..];
            if self.size >= self.max_size || !data.is_empty() {
                rotated.push(self.rotate()?);
            }
        }
        Ok(rotated)
    }

    fn rotate(&mut self) -> io::Result<PathBuf> {
        let stamp = jiff::Zoned::now().strftime("%Y%m%d-%H%M%S").to_string();
        let mut n = match &self.last {
            Some((last, n)) if *last == stamp => n + 1,
            _ => 0,
        };
        let name = |n: u32| match n {
            0 => PathBuf::from(format!("{}.{stamp}", self.path.display())),
            n => PathBuf::from(format!("{}.{stamp}.{n}", self.path.display())),
        };
        // Files of an earlier runner may hold the same stamp: never overwrite one.
        while name(n).exists() || PathBuf::from(format!("{}.gz", name(n).display())).exists() {
            n += 1;
        }
        let rotated = name(n);
        fs::rename(&self.path, &rotated)?;
        self.last = Some((stamp, n));
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(rotated)
    }

    /// Removes the oldest rotated logs beyond `keep` (but the one being compressed, see
    /// [`TaskLog::set_compressing`]), and the temporaries of compressions that no process
    /// holds ([`remove_stale_partials`]). Called after each write that rotated, and again when
    /// a compression ends (its `.gz` may appear after a rotation pruned; a compression killed
    /// midway leaves its temporary).
    pub fn prune(&self) -> io::Result<()> {
        remove_stale_partials(&self.path)?;
        let mut rotated = rotated_logs(&self.path)?;
        rotated.sort_by_key(|p| rotation_key(p));
        let excess = rotated.len().saturating_sub(self.keep as usize);
        for old in &rotated[..excess] {
            if self.compressing.as_ref() == Some(old) {
                continue;
            }
            // The log in either form: mid-compression, both exist for a moment.
            for file in [old.clone(), PathBuf::from(format!("{}.gz", old.display()))] {
                match fs::remove_file(&file) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The rotated file a compression works on from now (`None`: none does): pruning leaves it
    /// until this is called again.
    pub fn set_compressing(&mut self, file: Option<PathBuf>) {
        self.compressing = file;
    }

    /// Opens the live log again by its name (appending, creating it if it was moved away).
    pub fn reopen(&mut self) -> io::Result<()> {
        let file = open_append(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = file;
        Ok(())
    }

    /// The live log file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// Rotated logs of the log at `live`, each named once without its `.gz` (a log being
/// compressed exists as both for a moment); temporary files of a compression are not listed.
pub fn rotated_logs(live: &Path) -> io::Result<Vec<PathBuf>> {
    let Some(dir) = live.parent() else {
        return Ok(Vec::new());
    };
    let prefix = format!(
        "{}.",
        live.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    let mut found = std::collections::BTreeSet::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let stem = rest.strip_suffix(".gz").unwrap_or(rest);
        // Only this log's rotations: `web.log.` is also how task `web.log`'s live log
        // (`web.log.log`) and its rotations begin.
        if is_rotation(stem) {
            found.insert(dir.join(&name[..prefix.len() + stem.len()]));
        }
    }
    Ok(found.into_iter().collect())
}

/// Rotated logs of the log at `live` that are plain files with no `.gz` beside them: left
/// uncompressed (by a runner that stopped before their turn), oldest first.
pub fn uncompressed_rotations(live: &Path) -> io::Result<Vec<PathBuf>> {
    let mut left: Vec<PathBuf> = rotated_logs(live)?
        .into_iter()
        .filter(|stem| {
            fs::symlink_metadata(stem).is_ok_and(|m| m.is_file())
                && fs::symlink_metadata(format!("{}.gz", stem.display())).is_err()
        })
        .collect();
    left.sort_by_key(|p| rotation_key(p));
    Ok(left)
}

/// Whether `suffix` is what a rotation adds to a live log's name after its `.`:
/// `YYYYMMDD-HHMMSS`, then `.N` if that name was taken.
fn is_rotation(suffix: &str) -> bool {
    let (stamp, n) = suffix.split_once('.').unwrap_or((suffix, "1"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    stamp.len() == 15
        && stamp.as_bytes()[8] == b'-'
        && digits(&stamp[..8])
        && digits(&stamp[9..])
        && digits(n)
}

/// Removes the temporaries of compressions of the log at `live` (`TASK.log.*.gz.tmp`) that no
/// process works on: `nonstop compress-log FILE` holds an `flock` on FILE from before it creates
/// `FILE.gz.tmp` until it exits, and removes the temporary itself when it fails, so a
/// temporary whose original nobody holds (or that has none left) was left by a compression
/// that was killed (at shutdown, by the OOM killer, with its runner). Returns how many it
/// removed.
pub fn remove_stale_partials(live: &Path) -> io::Result<usize> {
    let Some(dir) = live.parent() else {
        return Ok(0);
    };
    let prefix = format!(
        "{}.",
        live.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let rotation = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".gz.tmp"));
        if !rotation.is_some_and(is_rotation) {
            continue;
        }
        let path = dir.join(&name);
        if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        // Its original, which a running compression holds (see `nonstop compress-log`). Not
        // a link (O_NOFOLLOW), and no wait on anything but a regular file (O_NONBLOCK).
        let original = dir.join(name.trim_end_matches(".gz.tmp"));
        let _held = match OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
            .open(&original)
        {
            Ok(file) if file.metadata().is_ok_and(|m| m.is_file()) => {
                match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                    Ok(held) => Some(held),
                    // Held: a compression is writing the temporary.
                    Err(_) => continue,
                }
            }
            // Gone (compressed and removed, or pruned): nothing is left to make of it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            _ => continue,
        };
        match fs::remove_file(&path) {
            Ok(()) => {
                removed += 1;
                info!(
                    "removed {}, left by a log compression that did not finish",
                    path.display()
                );
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// Sort key of a rotated log (named without `.gz`): the stamp, then the counter as a number.
pub fn rotation_key(path: &Path) -> (String, u64) {
    let name = path.to_string_lossy();
    match name.rsplit_once('.') {
        Some((stem, n))
            if n.chars().all(|c| c.is_ascii_digit())
                && stem.ends_with(|c: char| c.is_ascii_digit())
                && stem.contains('-') =>
        {
            (stem.to_owned(), n.parse().unwrap_or(0))
        }
        _ => (name.into_owned(), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Task names may hold dots: `web`'s rotated logs begin as `web.log.log` (task `web.log`'s
    /// live log) does. Pruning `web` must not count, nor remove, what is `web.log`'s.
    #[test]
    fn a_task_named_like_another_tasks_log_keeps_its_logs_apart() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let theirs = [
            "web.log.log",
            "web.log.log.20260101-000000",
            "web.log.log.20260101-000001.gz",
            "web.log.log.20260101-000002.gz.tmp",
            "web.log.notes",
        ];
        let ours = [
            "web.log.20260101-000000.gz",
            "web.log.20260101-000000.1",
            "web.log.20260102-000000",
        ];
        for name in theirs.iter().chain(&ours) {
            fs::write(d.join(name), "").unwrap();
        }
        let config = LogConfig {
            dir: d.to_path_buf(),
            max_size: 1 << 20,
            keep: 1,
            compress: true,
            timestamps: false,
        };
        let log = TaskLog::open(&config, "web").unwrap();
        let mut listed = rotated_logs(log.path()).unwrap();
        listed.sort_by_key(|p| rotation_key(p));
        assert_eq!(
            listed,
            [
                d.join("web.log.20260101-000000"),
                d.join("web.log.20260101-000000.1"),
                d.join("web.log.20260102-000000")
            ]
        );
        log.prune().unwrap();
        for name in theirs {
            assert!(d.join(name).exists(), "{name} was removed");
        }
        assert!(d.join("web.log.20260102-000000").exists());
        assert!(!d.join("web.log.20260101-000000.gz").exists());
        assert!(!d.join("web.log.20260101-000000.1").exists());
    }

    #[test]
    fn rotation_keeps_the_newest_files_and_starts_a_fresh_log() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            dir: dir.path().join("logs"),
            max_size: 100,
            keep: 2,
            compress: false,
            timestamps: false,
        };
        // The runner's lock made it before any log is opened.
        fs::create_dir(&config.dir).unwrap();
        let mut log = TaskLog::open(&config, "t").unwrap();
        let mut rotated = Vec::new();
        for i in 0..5 {
            // 60 bytes: two never fit in 100, so each line after the first starts a new file.
            let line = format!("{i}{}\n", "x".repeat(58));
            rotated.extend(log.write(line.as_bytes()).unwrap());
        }
        assert_eq!(rotated.len(), 4);
        let left = rotated_logs(log.path()).unwrap();
        assert_eq!(left.len(), 2, "{left:?}");
        // The two newest survive: the ones holding lines 2 and 3; line 4 is in the live log.
        let mut contents: Vec<String> = left
            .iter()
            .map(|p| fs::read_to_string(p).unwrap())
            .collect();
        contents.sort();
        assert!(
            contents[0].starts_with('2') && contents[1].starts_with('3'),
            "{contents:?}"
        );
        assert!(fs::read_to_string(log.path()).unwrap().starts_with('4'));
    }

    /// A flood rotates many times in one write: pruned once, after it, down to `keep`; the
    /// file a compression works on stays until it is done, then goes at the next prune.
    #[test]
    fn one_write_rotating_many_times_prunes_once_and_spares_the_file_being_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            dir: dir.path().to_path_buf(),
            max_size: 1024,
            keep: 3,
            compress: true,
            timestamps: false,
        };
        let mut log = TaskLog::open(&config, "t").unwrap();
        let line = format!("{}\n", "x".repeat(99));
        let first = log.write(line.repeat(11).as_bytes()).unwrap();
        assert_eq!(first.len(), 1);
        log.set_compressing(Some(first[0].clone()));
        let rotated = log.write(line.repeat(200).as_bytes()).unwrap();
        assert_eq!(rotated.len(), 20);
        let mut left = rotated_logs(log.path()).unwrap();
        left.sort_by_key(|p| rotation_key(p));
        // The newest three, and the one being compressed.
        assert_eq!(left[0], first[0]);
        assert_eq!(left[1..], rotated[17..]);
        log.set_compressing(None);
        log.prune().unwrap();
        assert_eq!(rotated_logs(log.path()).unwrap().len(), 3);
    }

    /// A compression killed midway leaves `TASK.log.STAMP.gz.tmp`: opening the log (the next
    /// start) and pruning it (after a rotation or a compression) remove it, but never the
    /// temporary of a compression still running (it holds an `flock` on its original), nor a file that
    /// is not a temporary of this log.
    #[test]
    fn temporaries_no_compression_holds_are_removed_at_open_and_at_prune() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            dir: dir.path().to_path_buf(),
            max_size: 1 << 20,
            keep: 5,
            compress: true,
            timestamps: false,
        };
        let d = dir.path();
        for name in [
            "t.log.20260101-000000.gz.tmp",
            "t.log.20260101-000001.gz.tmp",
            "t.log.20260101-000002",
            "u.log.20260101-000000.gz.tmp",
        ] {
            fs::write(d.join(name), "").unwrap();
        }
        // A compression that runs: it holds its original.
        fs::write(d.join("t.log.20260101-000001"), "").unwrap();
        let running = File::open(d.join("t.log.20260101-000001")).unwrap();
        let running = Flock::lock(running, FlockArg::LockExclusive).unwrap();
        let log = TaskLog::open(&config, "t").unwrap();
        let mut names: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "t.log",
                "t.log.20260101-000001",
                "t.log.20260101-000001.gz.tmp",
                "t.log.20260101-000002",
                "u.log.20260101-000000.gz.tmp"
            ]
        );
        // It ended (killed): the next prune removes what it left.
        drop(running);
        log.prune().unwrap();
        assert!(!d.join("t.log.20260101-000001.gz.tmp").exists());
        assert!(d.join("t.log.20260101-000002").exists());
        assert!(d.join("u.log.20260101-000000.gz.tmp").exists());
    }

    #[test]
    fn a_large_write_is_split_at_line_breaks_so_no_file_exceeds_max_size() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            dir: dir.path().to_path_buf(),
            max_size: 100,
            keep: 100,
            compress: false,
            timestamps: false,
        };
        let mut log = TaskLog::open(&config, "t").unwrap();
        let burst: String = (0..50).map(|i| format!("line {i:02}\n")).collect();
        let rotated = log.write(burst.as_bytes()).unwrap();
        assert_eq!(rotated.len(), 4, "{rotated:?}");
        let mut all = String::new();
        for file in &rotated {
            let text = fs::read_to_string(file).unwrap();
            assert!(text.len() <= 100 && text.ends_with('\n'), "{text:?}");
            all += &text;
        }
        all += &fs::read_to_string(log.path()).unwrap();
        assert_eq!(all, burst, "nothing lost or reordered");
        // A line longer than max_size is cut at the limit.
        let rotated = log.write(&[b'y'; 250]).unwrap();
        assert!(rotated.len() >= 2);
    }

    /// Output arrives in reads that end anywhere, mid-line included: every file still holds
    /// whole lines, at most `max_size` bytes, and together they hold everything in order.
    #[test]
    fn lines_cut_by_reads_are_joined_and_never_split_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            dir: dir.path().to_path_buf(),
            max_size: 1024,
            keep: 10_000,
            compress: false,
            timestamps: false,
        };
        let mut log = TaskLog::open(&config, "t").unwrap();
        let text: String = (1..=20_000).map(|i| format!("{i}\n")).collect();
        let mut rotated = Vec::new();
        let mut rest = text.as_bytes();
        let mut n = 0usize;
        while !rest.is_empty() {
            // Reads of 1 to 97 bytes.
            n = (n * 31 + 7) % 97 + 1;
            let (read, more) = rest.split_at(n.min(rest.len()));
            rotated.extend(log.write(read).unwrap());
            rest = more;
        }
        rotated.extend(log.flush_partial().unwrap());
        assert!(rotated.len() > 50, "{}", rotated.len());
        let mut all = String::new();
        for file in &rotated {
            let part = fs::read_to_string(file).unwrap();
            assert!(
                part.len() <= 1024,
                "{}: {} bytes",
                file.display(),
                part.len()
            );
            assert!(part.ends_with('\n'), "{} ends mid-line", file.display());
            all += &part;
        }
        all += &fs::read_to_string(log.path()).unwrap();
        assert_eq!(all, text);
        // A last line without its end is written when asked.
        log.write(b"no end").unwrap();
        assert!(!fs::read_to_string(log.path()).unwrap().ends_with("no end"));
        log.flush_partial().unwrap();
        assert!(
            fs::read_to_string(log.path())
                .unwrap()
                .ends_with("\nno end\n")
        );
    }

    #[test]
    fn rotated_names_sort_by_stamp_then_counter() {
        let mut names = [
            PathBuf::from("/l/t.log.20260101-000001"),
            PathBuf::from("/l/t.log.20260101-000000.10"),
            PathBuf::from("/l/t.log.20260101-000000.2"),
            PathBuf::from("/l/t.log.20260101-000000"),
        ];
        names.sort_by_key(|p| rotation_key(p));
        let names: Vec<String> = names.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            names,
            [
                "/l/t.log.20260101-000000",
                "/l/t.log.20260101-000000.2",
                "/l/t.log.20260101-000000.10",
                "/l/t.log.20260101-000001"
            ]
        );
    }

    #[test]
    fn with_timestamps_a_line_that_arrives_in_pieces_keeps_one_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            dir: dir.path().to_path_buf(),
            max_size: 1 << 20,
            keep: 2,
            compress: false,
            timestamps: true,
        };
        let mut log = TaskLog::open(&config, "t").unwrap();
        log.write(b"one\ntw").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        log.write(b"o\nthr").unwrap();
        log.write(b"ee").unwrap();
        log.flush_partial().unwrap();
        log.write(b"four\n").unwrap();
        let text = fs::read_to_string(log.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        let parse = |line: &str| -> (jiff::Timestamp, String) {
            let (stamp, rest) = line.split_once(' ').unwrap();
            (stamp.parse().unwrap(), rest.to_owned())
        };
        let (t1, l1) = parse(lines[0]);
        let (t2, l2) = parse(lines[1]);
        let (_, l3) = parse(lines[2]);
        let (_, l4) = parse(lines[3]);
        assert_eq!([l1, l2, l3, l4], ["one", "two", "three", "four"]);
        // "two" began with "one": the same stamp, though it ended 5 ms later.
        assert_eq!(t1, t2);
        assert!(
            lines[0].ends_with("Z one")
                && lines[0].len() == "2026-12-02T11:10:03.851960Z one".len()
        );
    }
}
