//! After the test suite: fail if any System V object with a test key (top byte 0x7e, see
//! `nonstop_ipc::testing`) is still there, since every test must remove what it creates.

use anyhow::{Result, bail};

/// The top byte of every key tests use (`nonstop_ipc::testing::TEST_KEY_TOP_BYTE`).
const TEST_KEY_TOP_BYTE: u32 = 0x7e;

pub fn check() -> Result<()> {
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
