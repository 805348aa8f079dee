//! After the test suite: fail if any System V object with a test key (top byte 0x7e, see
//! `nonstop_ipc::testing`) or any cgroup a test made is still there, since every test must
//! remove what it creates (and every runner its cgroups).

use std::path::PathBuf;

use anyhow::{Result, bail};

/// The top byte of every key tests use (`nonstop_ipc::testing::TEST_KEY_TOP_BYTE`).
const TEST_KEY_TOP_BYTE: u32 = 0x7e;

pub fn check() -> Result<()> {
    ipc()?;
    cgroups()
}

fn ipc() -> Result<()> {
    let mut left = Vec::new();
    for (file, kind) in [("/proc/sysvipc/shm", "-m"), ("/proc/sysvipc/sem", "-s")] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for (key, id) in test_objects(&text) {
            left.push(format!("ipcrm {kind} {id}   # key {key:#010x}"));
        }
    }
    if !left.is_empty() {
        bail!(
            "the test suite left {} System V objects behind (a test lacks cleanup):\n{}",
            left.len(),
            left.join("\n")
        );
    }
    eprintln!("ipc: no System V objects left by the tests");
    Ok(())
}

/// Cgroups left by tests in this process's cgroup2 cgroup: a runner's pipeline cgroup for a
/// pipeline in a temporary directory (`nonstop-tmp-.tmp...`), or a scheduler unit test's
/// (`nonstop-test-...`).
fn cgroups() -> Result<()> {
    let Some(own) = own_cgroup() else {
        eprintln!("cgroups: no cgroup2 hierarchy here; nothing to check");
        return Ok(());
    };
    let left: Vec<String> = std::fs::read_dir(&own)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("nonstop-tmp-.tmp") || n.starts_with("nonstop-test-"))
                .collect()
        })
        .unwrap_or_default();
    if !left.is_empty() {
        bail!(
            "the test suite left {} cgroups behind in {} (a runner or test lacks cleanup): {}",
            left.len(),
            own.display(),
            left.join(", ")
        );
    }
    eprintln!("cgroups: none left by the tests");
    Ok(())
}

/// This process's cgroup in the cgroup2 hierarchy.
fn own_cgroup() -> Option<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mountinfo.lines().find_map(|l| {
        let (before, after) = l.split_once(" - ")?;
        (after.split_whitespace().next()? == "cgroup2").then(|| before.split_whitespace().nth(4))?
    })?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(PathBuf::from(mount).join(path.trim_start_matches('/')))
}

/// (key, id) of every object in a `/proc/sysvipc/{shm,sem}` listing whose key is a test key.
fn test_objects(listing: &str) -> Vec<(u32, i64)> {
    listing
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let key = fields.next()?.parse::<i64>().ok()? as u32;
            let id = fields.next()?.parse::<i64>().ok()?;
            (key >> 24 == TEST_KEY_TOP_BYTE).then_some((key, id))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_test_keys_in_a_listing() {
        let listing = "       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime\n\
                       2113929472          5   600          1     0     0     0     0 0 0\n\
                       20629         6   666          1     0     0     0     0 0 0\n";
        assert_eq!(test_objects(listing), vec![(0x7e00_0100, 5)]);
    }
}
