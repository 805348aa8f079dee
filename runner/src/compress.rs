//! `nonstop compress-log FILE`: the supervisor runs it on each rotated log when `logs.compress`
//! is set, so that the long-lived process neither blocks on compression nor links the
//! compressor. Crash-safe: the compressed file is written beside the original, fsynced and
//! renamed into place (never over an existing file) before the original is removed.
//!
//! Its temporary, `FILE.gz.tmp`, never outlives it for long: whatever fails (a full disk), it
//! removes the temporary before it exits. It holds an `flock` on FILE, taken before the
//! temporary exists and kept until it exits, and the runner removes a `FILE.gz.tmp` only when
//! no process holds FILE (or FILE is gone): what a compression killed midway left
//! (`nonstop_supervisor::logfile::remove_stale_partials`), never the temporary of one that
//! runs, however their steps interleave.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, Flock, FlockArg, RenameFlags, renameat2};

/// `nonstop compress-log FILE`: FILE → FILE.gz, crash-safe; the original is removed only once
/// the compressed file is complete, fsynced and in place.
pub fn compress(file: &Path) -> anyhow::Result<ExitCode> {
    let gz = PathBuf::from(format!("{}.gz", file.display()));
    let tmp = PathBuf::from(format!("{}.gz.tmp", file.display()));
    let input = match File::open(file) {
        Ok(f) => f,
        // Pruned (more rotations than `keep`) before we got to it: nothing to do.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", file.display())),
    };
    // Held until this process ends, from before the temporary exists: the runner removes a
    // temporary only while nobody holds its original (and holds it itself only for that
    // moment, so this waits at most that long).
    let mut input = Flock::lock(input, FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("cannot lock {}: {}", file.display(), e.desc()))?;
    let meta = input.metadata()?;
    let output = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_CLOEXEC)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut partial = Partial {
        path: &tmp,
        placed: false,
    };
    let mut encoder = flate2::write::GzEncoder::new(&output, flate2::Compression::default());
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = input
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", file.display()))?;
        if n == 0 {
            break;
        }
        encoder
            .write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", tmp.display()))?;
    }
    encoder
        .finish()
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    output.set_permissions(fs::Permissions::from_mode(meta.permissions().mode()))?;
    output
        .sync_all()
        .with_context(|| format!("cannot fsync {}", tmp.display()))?;
    rename_new(&tmp, &gz)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), gz.display()))?;
    partial.placed = true;
    if let Some(dir) = gz.parent() {
        File::open(dir)?.sync_all()?;
    }
    match fs::remove_file(file) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // Pruned meanwhile; the runner prunes the .gz too once we are done.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", file.display())),
    }
}

/// The temporary, removed when this is dropped unless it took its name: on every error path
/// (a full disk, ENOSPC), before the process exits.
struct Partial<'a> {
    path: &'a Path,
    placed: bool,
}

impl Drop for Partial<'_> {
    fn drop(&mut self) {
        if !self.placed {
            let _ = fs::remove_file(self.path);
        }
    }
}

/// Renames `from` to `to` unless `to` exists (`RENAME_NOREPLACE`; on a file system without
/// it, a hard link, which never replaces either, and the removal of `from`). The rotated
/// log's name is unique, so `to` never exists unless something else made it: it is kept.
fn rename_new(from: &Path, to: &Path) -> io::Result<()> {
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compress_replaces_a_file_with_a_complete_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.log.20260101-000000");
        let text = "hello\n".repeat(1000);
        fs::write(&file, &text).unwrap();
        compress(&file).unwrap();
        assert!(!file.exists());
        let gz = dir.path().join("t.log.20260101-000000.gz");
        let mut out = String::new();
        flate2::read::GzDecoder::new(File::open(&gz).unwrap())
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, text);
        assert!(!dir.path().join("t.log.20260101-000000.gz.tmp").exists());
    }

    /// The runner prunes stale temporaries while compressions run (after each rotation): it
    /// must never take the temporary of one that runs, at whatever step it is.
    #[test]
    fn a_prune_racing_compressions_never_removes_a_running_ones_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("t.log");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pruner = {
            let (live, stop) = (live.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    nonstop_supervisor::logfile::remove_stale_partials(&live).unwrap();
                }
            })
        };
        let text = "a line of a task's output\n".repeat(2000);
        for i in 0..200 {
            let file = dir.path().join(format!("t.log.20260101-000000.{i}"));
            fs::write(&file, &text).unwrap();
            compress(&file).unwrap_or_else(|e| panic!("round {i}: {e:#}"));
            assert!(!file.exists(), "round {i}");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        pruner.join().unwrap();
    }
}
