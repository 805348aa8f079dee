//! Task logs on a full disk: a small tmpfs mounted for the test (the tests run as root, as the
//! cgroup tests do), so the kernel's own ENOSPC, not a simulation. Unmounted on drop, even when
//! the test fails.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::harness::{Runner, nonstop, wait_until};

const SECOND: Duration = Duration::from_secs(1);

/// A tmpfs of a given size on a temporary directory; unmounted (lazily, so even while
/// something still uses it) and removed on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(kib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(format!("size={kib}k,mode=0700").as_str()),
        )
        .unwrap_or_else(|e| panic!("cannot mount a tmpfs (the tests run as root): {e}"));
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes still free.
    fn free(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(self.path()).unwrap();
        st.blocks_available() * st.fragment_size()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = umount2(self.path(), MntFlags::MNT_DETACH);
    }
}

/// The names in `dir` that end with `suffix`.
fn ending(dir: &Path, suffix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect()
}

/// The disk fills while a rotated log is compressed (ENOSPC): the compression fails, its
/// `.gz.tmp` is removed and the rotated log is kept whole. A `.gz.tmp` that a killed
/// compression of an earlier runner left is removed when the runner starts. (Before, each
/// failed or killed compression left its temporary forever: `keep` never pruned it.)
#[test]
fn a_log_compression_that_fills_the_disk_leaves_no_temporary_behind() {
    let disk = Tmpfs::mount(1024);
    let logs = disk.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(logs.join("w.log.20250101-000000.gz.tmp"), "half a gzip").unwrap();
    let pipeline = disk.path().join("pipeline.yaml");
    // 70 KB of base64 (it compresses to about 3/4) in one go, then quiet: one rotation.
    std::fs::write(
        &pipeline,
        "logs: { max_size: 64K, keep: 5, compress: true }\ntasks:\n  w:\n    command: [sh, -c, \
         \"head -c 52000 /dev/urandom | base64; exec sleep 1000\"]\n",
    )
    .unwrap();
    // Room for all of the output (76 KB in pages, with the lock) and 8 KB more: every line
    // is written, and the rotated file's 48 KB .gz cannot fit beside it.
    let filler = disk.free().saturating_sub(84 * 1024);
    std::fs::write(disk.path().join("filler"), vec![0u8; filler as usize]).unwrap();
    let mut runner = Runner::spawn(Command::new(nonstop()).arg("run").arg(&pipeline));
    runner.wait_for(
        &["removed", "w.log.20250101-000000.gz.tmp", "did not finish"],
        10 * SECOND,
    );
    let failed = runner.wait_for(&["compressing", "w.log.", "failed"], 20 * SECOND);
    runner.wait_for(&["No space left on device"], 10 * SECOND);
    assert!(
        wait_until(10 * SECOND, || ending(&logs, ".tmp").is_empty()),
        "left behind: {:?}",
        ending(&logs, ".tmp")
    );
    assert!(
        ending(&logs, ".gz").is_empty(),
        "{:?}",
        ending(&logs, ".gz")
    );
    // The rotated log is whole: 64K of base64 lines (77 bytes each, the last one too).
    let rotated = failed
        .split_whitespace()
        .find(|w| w.contains("/w.log."))
        .unwrap();
    let text = std::fs::read_to_string(rotated).unwrap();
    assert!(
        text.len() > 60_000 && text.len() <= 65_536,
        "{}",
        text.len()
    );
    assert!(
        text.lines().all(|l| l.len() == 76) && text.ends_with('\n'),
        "not whole lines"
    );
    assert!(runner.terminate(10 * SECOND).success());
}
