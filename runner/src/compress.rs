//! `nonstop compress-log FILE`: the supervisor runs it on each rotated log when `logs.compress`
//! is set, so that the long-lived process neither blocks on compression nor links the
//! compressor. Crash-safe: the compressed file is written beside the original, fsynced and
//! renamed into place before the original is removed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

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
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::default());
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        encoder.write_all(&buf[..n])?;
    }
    let output = encoder.finish()?;
    output.set_permissions(fs::Permissions::from_mode(meta.permissions().mode()))?;
    output.sync_all()?;
    drop(output);
    fs::rename(&tmp, &gz)?;
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
