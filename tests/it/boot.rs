//! Boot: `nonstop run -d` (rc.local) detaches and holds the pipeline; the runner as PID 1 of
//! a pid namespace (a container's entrypoint) reaps orphans and stops on SIGTERM.

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::{
    KillOnDrop, PipelineDir, Runner, alive, ctl, nonstop, pid_of, wait_until, zombie_children,
};

const SECOND: Duration = Duration::from_secs(1);

/// Field `n` of /proc/PID/stat, numbered as proc(5) numbers them (3: state, 4: ppid).
fn stat_field(pid: i32, n: usize) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    after
        .split_whitespace()
        .nth(n - 3)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn run_d_detaches_and_holds_the_pipeline_against_a_second_runner() {
    let p = PipelineDir::new("tasks:\n  web:\n    command: [sleep, \"1000\"]\n");
    let out = ctl(&p, &["run", "-d", p.path().to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let runner: i32 = said
        .split("running in the background as pid ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no pid in {said:?} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let _cleanup = KillOnDrop(vec![runner]);
    assert!(out.status.success(), "{said}");
    // Detached: not our child, not a session leader, no terminal, in /.
    assert_ne!(
        stat_field(runner, 4),
        i64::from(std::process::id() as i32),
        "ppid"
    );
    assert_ne!(stat_field(runner, 6), i64::from(runner), "a session leader");
    assert_eq!(stat_field(runner, 7), 0, "a controlling terminal");
    assert_eq!(
        std::fs::read_link(format!("/proc/{runner}/cwd")).unwrap(),
        std::path::Path::new("/")
    );
    // Its log is in logs.dir.
    assert!(wait_until(5 * SECOND, || {
        std::fs::read_to_string(p.file("logs/nonstop.log"))
            .is_ok_and(|l| l.contains("started task=web"))
    }));
    let status = ctl(&p, &["status"]);
    assert!(status.status.success());
    assert!(String::from_utf8_lossy(&status.stdout).contains("running"));
    // A second runner, detached or not, is refused.
    for args in [vec!["run", "-d"], vec!["run"]] {
        let mut args = args;
        let path = p.path();
        args.push(path.to_str().unwrap());
        let out = ctl(&p, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("another runner (pid {runner})")),
            "{args:?}: {err}"
        );
    }
    // Its log moved away (logrotate without copytruncate), SIGUSR2 opens a new one.
    std::fs::rename(p.file("logs/nonstop.log"), p.file("logs/nonstop.log.1")).unwrap();
    kill(Pid::from_raw(runner), Signal::SIGUSR2).unwrap();
    assert!(wait_until(5 * SECOND, || {
        std::fs::read_to_string(p.file("logs/nonstop.log"))
            .is_ok_and(|l| l.contains("reopened 1 task logs and "))
    }));
    assert!(ctl(&p, &["shutdown"]).status.success());
    assert!(wait_until(10 * SECOND, || !alive(runner)));
    let log = std::fs::read_to_string(p.file("logs/nonstop.log")).unwrap();
    assert!(log.contains("all tasks stopped"), "{log}");
    let old = std::fs::read_to_string(p.file("logs/nonstop.log.1")).unwrap();
    assert!(
        old.contains("started task=web") && !old.contains("all tasks stopped"),
        "{old}"
    );
}

#[test]
fn run_d_of_an_invalid_pipeline_says_why_and_starts_nothing() {
    let p = PipelineDir::new(
        "tasks:\n  web:\n    command: [sleep, \"1000\"]\n    restart: sometimes\n",
    );
    let out = ctl(&p, &["run", "-d", p.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pipeline.yaml:4:14: tasks.web.restart"),
        "{err}"
    );
    assert!(!p.file("logs/nonstop.lock").exists());
}

/// A container's entrypoint: the runner is PID 1 of its pid namespace. Orphans of its tasks
/// are reaped, and SIGTERM from outside stops it.
#[test]
fn as_pid_1_of_a_pid_namespace_the_runner_reaps_orphans_and_stops_on_sigterm() {
    let p = PipelineDir::new(
        "tasks:\n  orphans:\n    command: [sh, -c, \"for i in 1 2 3 4 5; do (sleep 0.2 &); done; echo made; exec sleep 1000\"]\n",
    );
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(nonstop())
        .arg("run")
        .arg(p.path());
    let mut unshare = Runner::spawn(&mut command);
    drop(command);
    // The runner's pid outside: unshare's child.
    let mut runner = 0;
    assert!(wait_until(5 * SECOND, || {
        runner = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.pid()))
            .ok()
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(0);
        runner > 0
    }));
    let _cleanup = StopInNamespace::new(runner, &p);
    let line = unshare.wait_for(&["started", "task=orphans"], 10 * SECOND);
    assert!(pid_of(&line) <= 3, "pids of the namespace: {line}");
    let status: serde_json::Value =
        serde_json::from_slice(&ctl(&p, &["status", "--json"]).stdout).unwrap();
    assert_eq!(status["runner"]["pid"], 1, "{status}");
    assert!(wait_until(5 * SECOND, || p.log("orphans").contains("made")));
    // The five orphans exit after 200 ms; none stays a zombie.
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        wait_until(5 * SECOND, || zombie_children(runner).is_empty()),
        "zombies: {:?}",
        zombie_children(runner)
    );
    assert!(ctl(&p, &["health"]).status.success());
    kill(Pid::from_raw(runner), Signal::SIGTERM).unwrap();
    unshare.wait_for(&["all tasks stopped"], 10 * SECOND);
    assert!(unshare.wait(10 * SECOND).success());
}

/// Ends a runner that is PID 1 of a pid namespace when a test fails: SIGTERM first, as its
/// end takes every process of the namespace with it, its guard too, and only the runner
/// itself removes the pipeline's cgroup then; after a SIGKILL, what is left of the cgroup is
/// removed here.
struct StopInNamespace {
    runner: i32,
    /// The runner's cgroup directory, where the pipeline's cgroup is made.
    parent: Option<std::path::PathBuf>,
    /// A part of the pipeline cgroup's name (from the test's directory).
    marker: String,
}

impl StopInNamespace {
    fn new(runner: i32, p: &PipelineDir) -> StopInNamespace {
        let parent = std::fs::read_to_string(format!("/proc/{runner}/cgroup"))
            .ok()
            .and_then(|c| {
                c.lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
            })
            .and_then(|path| Some(cgroup2_mount()?.join(path.trim_start_matches('/'))));
        let marker = p
            .dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        StopInNamespace {
            runner,
            parent,
            marker,
        }
    }
}

impl Drop for StopInNamespace {
    fn drop(&mut self) {
        if alive(self.runner) {
            let _ = kill(Pid::from_raw(self.runner), Signal::SIGTERM);
            if !wait_until(10 * SECOND, || !alive(self.runner)) {
                let _ = kill(Pid::from_raw(self.runner), Signal::SIGKILL);
                wait_until(5 * SECOND, || !alive(self.runner));
            }
        }
        let Some(parent) = &self.parent else {
            return;
        };
        for dir in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            if dir.file_name().to_string_lossy().contains(&self.marker) {
                for child in std::fs::read_dir(dir.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    if child.path().is_dir() {
                        let _ = std::fs::remove_dir(child.path());
                    }
                }
                let _ = std::fs::remove_dir(dir.path());
            }
        }
    }
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified`
/// on a hybrid system), from /proc/self/mountinfo.
fn cgroup2_mount() -> Option<std::path::PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .ok()?
        .lines()
        .find(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|fs| fs.starts_with("cgroup2 "))
        })
        .and_then(|l| l.split_whitespace().nth(4).map(std::path::PathBuf::from))
}
