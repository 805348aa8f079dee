//! cgroups for real: created below this process's own cgroup, children placed in them with
//! `clone3(CLONE_INTO_CGROUP)`, signalled, killed and removed. They need a writable cgroup2
//! hierarchy (root, as in CI); elsewhere they say so and pass.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::*;
use crate::spawn::{self, Output, SpawnSpec};

/// A cgroup of this test's own, killed and removed on drop.
struct Scratch(Cgroup);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.0.populated().unwrap_or(false) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = self.0.remove();
    }
}

/// A new cgroup below ours, or `None` (and a note) where cgroups cannot be written.
fn scratch() -> Option<Scratch> {
    static N: AtomicU32 = AtomicU32::new(0);
    let (_, own) = hierarchy().ok()?;
    let name = format!(
        "nonstop-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    match Cgroup::create(&own.join(name)) {
        Ok(c) => Some(Scratch(c)),
        Err(e) => {
            eprintln!("cgroup tests skipped: {e}");
            None
        }
    }
}

fn wait_until(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// Output to `file` (both streams).
fn to(file: &std::fs::File) -> Output<'_> {
    Output {
        stdout: file.as_fd(),
        stderr: file.as_fd(),
    }
}

fn sh(script: &str) -> SpawnSpec {
    SpawnSpec {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        ..SpawnSpec::default()
    }
}

/// Reaps `pid` (a child of this test process) within 10 s.
fn reap(pid: Pid) -> WaitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)).unwrap() {
            WaitStatus::StillAlive => {
                assert!(Instant::now() < deadline, "{pid} did not exit");
                std::thread::sleep(Duration::from_millis(2));
            }
            status => return status,
        }
    }
}

#[test]
fn mountinfo_lines_name_the_cgroup2_mount() {
    let hybrid = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw";
    assert_eq!(
        cgroup2_mount_point(hybrid),
        Some(PathBuf::from("/sys/fs/cgroup/unified"))
    );
    let v1 = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu";
    assert_eq!(cgroup2_mount_point(v1), None);
    let spaced = "41 31 0:38 / /mnt/my\\040cgroups rw - cgroup2 none rw";
    assert_eq!(
        cgroup2_mount_point(spaced),
        Some(PathBuf::from("/mnt/my cgroups"))
    );
}

#[test]
fn a_child_starts_inside_its_cgroup_with_everything_it_starts() {
    let Some(cg) = scratch() else { return };
    let cg = &cg.0;
    assert!(!cg.populated().unwrap());
    let devnull = std::fs::File::open("/dev/null").unwrap();
    let out = to(&devnull);
    // A child, a background grandchild, and one that leaves the session.
    let spec = sh("sleep 1000 & setsid sleep 1000 & wait");
    let pid = spawn::spawn(&spec, out, nix::unistd::getpid(), Some(cg.as_fd())).unwrap();
    assert!(wait_until(|| cg.pids().unwrap().len() == 3));
    assert!(cg.pids().unwrap().contains(&pid));
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        own.trim_end()
            .ends_with(cg.path().file_name().unwrap().to_str().unwrap()),
        "{own}"
    );
    assert!(cg.populated().unwrap());
    // SIGTERM reaches all three; the shell waits, so it ends after its children.
    let signalled = cg.signal(Signal::SIGTERM).unwrap();
    assert_eq!(signalled.len(), 3);
    assert!(wait_until(|| !cg.populated().unwrap()));
    assert!(matches!(
        reap(pid),
        WaitStatus::Exited(..) | WaitStatus::Signaled(..)
    ));
}

#[test]
fn kill_ends_what_ignores_sigterm_and_the_cgroup_empties() {
    let Some(cg) = scratch() else { return };
    let cg = &cg.0;
    let devnull = std::fs::File::open("/dev/null").unwrap();
    let out = to(&devnull);
    let spec = sh("trap '' TERM; setsid sh -c \"trap '' TERM; sleep 1000\" & sleep 1000");
    let pid = spawn::spawn(&spec, out, nix::unistd::getpid(), Some(cg.as_fd())).unwrap();
    assert!(wait_until(|| cg.pids().unwrap().len() >= 4));
    cg.signal(Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(cg.populated().unwrap(), "TERM is ignored");
    assert!(!cg.spent(), "a signal does not spend a cgroup");
    cg.kill().unwrap();
    assert!(cg.spent(), "a killed cgroup is never started into again");
    assert!(wait_until(|| !cg.populated().unwrap()));
    assert!(cg.pids().unwrap().is_empty());
    assert_eq!(reap(pid), WaitStatus::Signaled(pid, Signal::SIGKILL, false));
}

#[test]
fn remove_takes_cgroups_created_below_too() {
    let Some(cg) = scratch() else { return };
    let below = Cgroup::create(&cg.0.path().join("a.task")).unwrap();
    Cgroup::create(&below.path().join("deeper")).unwrap();
    cg.0.remove().unwrap();
    assert!(!cg.0.path().exists());
    // Removing again is not an error.
    cg.0.remove().unwrap();
}
