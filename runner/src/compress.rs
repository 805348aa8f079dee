//! `nonstop compress-log FILE`: the supervisor runs it on each rotated log when `logs.compress`
//! is set, so that the long-lived process neither blocks on compression nor links the
//! compressor. Crash-safe: the compressed file is written beside the original, fsynced and
//! renamed into place (never over an existing file) before the original is removed.
//!
//! Its temporary, `FILE.gz.tmp`, never outlives it for long: whatever fails (a full disk), it
//! removes the temporary before it exits; while it writes, it holds an `flock` on it, and the
//! runner removes any `.gz.tmp` of a task's log that no process holds, which a compression
//! killed midway left (`nonstop_supervisor::logfile::remove_stale_partials`).

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
    let mut input = match File::open(file) {
        Ok(f) => f,
        // Pruned (more rotations than `keep`) before we got to it: nothing to do.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", file.display())),
    };
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
    // Held until this process ends: the runner removes only a temporary no process holds.
    let output = Flock::lock(output, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        anyhow::anyhow!(
            "cannot lock {} (is another compression of it running?): {}",
            tmp.display(),
            e.desc()
        )
    })?;
    let mut encoder = flate2::write::GzEncoder::new(&*output, flate2::Compression::default());
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
}
