//! Containment: where the processes of tasks live, so that stopping a task reaches every one
//! of them and nothing of a pipeline outlives its runner.
//!
//! - **cgroups** (cgroup v2 writable: root, or a subtree delegated to the runner): the
//!   pipeline gets a cgroup below the runner's own, named after its log directory (so the next
//!   runner of the same pipeline finds what a dead one left), and each task a cgroup of its
//!   own in it, `TASK.task`. Tasks start inside theirs (`clone3(CLONE_INTO_CGROUP)`). A
//!   killed cgroup is never started into again (see `Cgroup::spent`): the pipeline's, killed
//!   here to end what a dead runner left, is made anew, and so is a task's (`make_cgroup`).
//! - **process groups** otherwise: each task is its own process group. A process that leaves
//!   it (`setsid`) escapes a stop and can outlive the runner if the runner is SIGKILLed.
//!
//! Either way the guard (`nonstop_scheduler::spawn::guard`) ends what is left if the runner
//! dies.

use std::path::Path;
use std::time::Duration;

use nonstop_scheduler::cgroup::{self, Cgroup};
use tracing::{info, warn};

use super::exits::pids;
use crate::pipeline::ContainmentMode;

/// How the tasks of this runner are contained.
#[derive(Debug)]
pub enum Containment {
    /// In cgroups below this one, the pipeline's.
    Cgroups(Cgroup),
    /// In process groups only.
    Groups,
}

impl Containment {
    /// `cgroup` or `process-group`, as the pipeline's `containment:` names them.
    pub fn word(&self) -> &'static str {
        match self {
            Containment::Cgroups(_) => "cgroup",
            Containment::Groups => "process-group",
        }
    }
}

impl Drop for Containment {
    /// The pipeline's cgroup goes with the runner, however it ends: after its tasks (`tear_down`
    /// at a normal end, when the supervisor is not dropped; the guard, or `Supervisor`'s drop,
    /// after an error). One that still holds processes cannot be removed, and is said so.
    fn drop(&mut self) {
        if let Containment::Cgroups(cgroup) = self
            && let Err(e) = cgroup.remove()
        {
            warn!("{e}");
        }
    }
}

/// The oldest kernel with `CLONE_INTO_CGROUP`.
const CLONE_INTO_CGROUP_SINCE: (u32, u32) = (5, 7);

/// How long a runner waits for the processes a dead runner left to die.
const LEFTOVERS_GRACE: Duration = Duration::from_secs(5);

/// Chooses and prepares the containment for the pipeline whose logs are in `logs_dir` (it
/// exists: the lock is in it), and logs which it is.
pub fn setup(mode: ContainmentMode, logs_dir: &Path) -> anyhow::Result<Containment> {
    if mode == ContainmentMode::ProcessGroup {
        info!("containment: process groups (containment: process-group in the pipeline)");
        return Ok(Containment::Groups);
    }
    match pipeline_cgroup(logs_dir) {
        Ok(cgroup) => {
            info!(
                "containment: cgroup v2, each task in a cgroup of its own in {}",
                cgroup.path().display()
            );
            Ok(Containment::Cgroups(cgroup))
        }
        Err(why) if mode == ContainmentMode::Cgroup => {
            anyhow::bail!("containment: cgroup is required by the pipeline, but {why}")
        }
        Err(why) => {
            warn!(
                "containment: process groups only ({why}); a process that leaves its task's \
                 process group is not stopped with it (docs/pipeline.md, \"Containment\")"
            );
            Ok(Containment::Groups)
        }
    }
}

/// The pipeline's cgroup, created, emptied of what a dead runner left, without task cgroups.
fn pipeline_cgroup(logs_dir: &Path) -> Result<Cgroup, String> {
    let (_, own) = cgroup::hierarchy()?;
    let kernel = kernel_version();
    if kernel.is_some_and(|k| k < CLONE_INTO_CGROUP_SINCE) {
        let (major, minor) = kernel.unwrap_or_default();
        return Err(format!(
            "Linux {major}.{minor} cannot start a process in a cgroup (CLONE_INTO_CGROUP needs \
             {}.{})",
            CLONE_INTO_CGROUP_SINCE.0, CLONE_INTO_CGROUP_SINCE.1
        ));
    }
    let path = own.join(name(logs_dir));
    let mut cgroup = Cgroup::create(&path).map_err(|e| e.to_string())?;
    let left = cgroup.pids().map_err(|e| e.to_string())?;
    let killed = !left.is_empty();
    if killed {
        warn!(
            "{} processes left by an earlier runner of this pipeline are still running in {} \
             (pids {}): killing them",
            left.len(),
            cgroup.path().display(),
            pids(&left)
        );
        cgroup.kill().map_err(|e| e.to_string())?;
        if !cgroup
            .wait_empty(LEFTOVERS_GRACE)
            .map_err(|e| e.to_string())?
        {
            return Err(format!(
                "the processes left in {} did not end within {:?} of SIGKILL",
                cgroup.path().display(),
                LEFTOVERS_GRACE
            ));
        }
    }
    // Task cgroups of an earlier run (empty now) go; each task gets a fresh one.
    for entry in std::fs::read_dir(&path)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            cgroup::remove_tree(&entry.path()).map_err(|e| e.to_string())?;
        }
    }
    // A killed cgroup is spent (see `Cgroup`): the pipeline gets a fresh one, so that no
    // kernel carries the kill over to the task cgroups made below it.
    if killed {
        drop(cgroup);
        cgroup::remove_tree(&path).map_err(|e| e.to_string())?;
        cgroup = Cgroup::create(&path).map_err(|e| e.to_string())?;
    }
    Ok(cgroup)
}

/// The pipeline cgroup's name: `nonstop-` and the log directory's path, `-` for `/`, other
/// characters outside `[A-Za-z0-9._]` as `_`, and a hash of the exact path (two paths that
/// read the same differ): `nonstop-var-log-nonstop-1c2e0d7a`.
pub fn name(logs_dir: &Path) -> String {
    let text = logs_dir.to_string_lossy();
    let mut readable: String = text
        .trim_matches('/')
        .chars()
        .map(|c| match c {
            '/' => '-',
            c if c.is_ascii_alphanumeric() || c == '.' || c == '_' => c,
            _ => '_',
        })
        .collect();
    if readable.len() > 180 {
        let cut = readable.len() - 180;
        readable.drain(..cut);
    }
    let hash = text.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("nonstop-{readable}-{hash:08x}")
}

/// The running kernel's major and minor version.
fn kernel_version() -> Option<(u32, u32)> {
    let uname = nix::sys::utsname::uname().ok()?;
    let release = uname.release().to_string_lossy().into_owned();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipeline_cgroup_is_named_after_its_log_directory() {
        let a = name(Path::new("/var/log/nonstop"));
        assert!(a.starts_with("nonstop-var-log-nonstop-"), "{a}");
        assert_eq!(a, name(Path::new("/var/log/nonstop")));
        // Same reading, different paths: different names.
        assert_ne!(name(Path::new("/a-b/c")), name(Path::new("/a/b-c")));
        let odd = name(Path::new("/srv/my logs/ü"));
        assert!(odd.starts_with("nonstop-srv-my_logs-_-"), "{odd}");
        let long = name(&Path::new("/").join("x".repeat(400)));
        assert!(long.len() < 255, "{}", long.len());
    }

    #[test]
    fn the_kernel_version_is_read() {
        let (major, _) = kernel_version().unwrap();
        assert!(major >= 3);
    }
}
