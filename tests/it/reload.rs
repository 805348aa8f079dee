//! Reload by diff (`nonstop reload`, SIGHUP) against a real runner: added tasks start,
//! removed ones stop, changed ones restart, untouched ones keep their process; an invalid file
//! changes nothing.

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::harness::{
    KillOnDrop, PipelineDir, Runner, TestKey, alive, ctl, ctl_ok, nonstop, pid_of, wait_until,
};

const SECOND: Duration = Duration::from_secs(1);

/// Every task's pid (or null), by name.
fn pids(p: &PipelineDir) -> Vec<(String, Value)> {
    let out = ctl(p, &["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_owned(), t["pid"].clone()))
        .collect()
}

const BEFORE: &str = "\
tasks:
  untouched:
    command: [sleep, \"1000\"]
  changed:
    command: [sh, -c, \"echo version 1; exec sleep 1000\"]
  removed:
    command: [sleep, \"1000\"]
";

const AFTER: &str = "\
tasks:
  untouched:
    command: [sleep, \"1000\"]
  changed:
    command: [sh, -c, \"echo version 2; exec sleep 1000\"]
  added:
    command: [sleep, \"1000\"]
    after: [changed]
";

#[test]
fn a_reload_starts_added_stops_removed_restarts_changed_and_leaves_the_rest() {
    let p = PipelineDir::new(BEFORE);
    let mut runner = Runner::start(&p);
    let mut started = std::collections::HashMap::new();
    for _ in 0..3 {
        let line = runner.wait_for(&["started"], 10 * SECOND);
        let name = line
            .split("task=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_owned();
        started.insert(name, pid_of(&line));
    }
    let _cleanup = KillOnDrop(started.values().copied().collect());
    std::fs::write(p.path(), AFTER).unwrap();
    assert_eq!(
        ctl_ok(&p, &["reload"]),
        "added: added\nremoved: removed\nchanged: changed\nunchanged: 1\n"
    );
    runner.wait_for(&["stopped (signal SIGTERM)", "task=removed"], 10 * SECOND);
    let changed = pid_of(&runner.wait_for(&["started", "task=changed"], 10 * SECOND));
    let added = pid_of(&runner.wait_for(&["started", "task=added"], 10 * SECOND));
    let _cleanup2 = KillOnDrop(vec![changed, added]);
    assert!(!alive(started["removed"]));
    assert!(!alive(started["changed"]));
    assert_ne!(changed, started["changed"]);
    assert!(alive(started["untouched"]));
    let now = pids(&p);
    let names: Vec<&str> = now.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["untouched", "changed", "added"],
        "the removed task is gone"
    );
    assert_eq!(now[0].1, started["untouched"], "same process");
    assert!(
        p.log("changed").ends_with("version 1\nversion 2\n"),
        "{}",
        p.log("changed")
    );
    // Back again, by SIGHUP: the removed task returns (in the place the removed one left),
    // the added one goes.
    std::fs::write(p.path(), BEFORE).unwrap();
    kill(Pid::from_raw(runner.pid()), Signal::SIGHUP).unwrap();
    runner.wait_for(&["1 added, 1 removed, 1 changed, 1 unchanged"], 10 * SECOND);
    let removed = pid_of(&runner.wait_for(&["started", "task=removed"], 10 * SECOND));
    let changed2 = pid_of(&runner.wait_for(&["started", "task=changed"], 10 * SECOND));
    let _cleanup3 = KillOnDrop(vec![removed, changed2]);
    assert!(wait_until(5 * SECOND, || !alive(added)));
    let names: Vec<String> = pids(&p).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["untouched", "changed", "removed"]);
    assert!(alive(started["untouched"]));
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn an_invalid_reload_keeps_the_running_pipeline() {
    let p = PipelineDir::new(BEFORE);
    let mut runner = Runner::start(&p);
    let mut before = Vec::new();
    for _ in 0..3 {
        before.push(pid_of(&runner.wait_for(&["started"], 10 * SECOND)));
    }
    let _cleanup = KillOnDrop(before.clone());
    let pids_before = pids(&p);
    std::fs::write(
        p.path(),
        "tasks:\n  untouched:\n    command: [sleep, \"1000\"]\n    restart: sometimes\n",
    )
    .unwrap();
    let out = ctl(&p, &["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is invalid; nothing changed"), "{err}");
    assert!(
        err.contains("pipeline.yaml:4:14: tasks.untouched.restart: unknown variant"),
        "{err}"
    );
    runner.wait_for(&["reload refused"], 10 * SECOND);
    runner.wait_for(
        &["pipeline.yaml:4:14: tasks.untouched.restart"],
        10 * SECOND,
    );
    // Nothing moved.
    assert_eq!(pids(&p), pids_before);
    assert!(before.iter().all(|&pid| alive(pid)));
    // A file that is gone is refused the same way.
    std::fs::remove_file(p.path()).unwrap();
    let out = ctl(&p, &["reload"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(pids(&p), pids_before);
    // And a FIFO in its place at once, as what it is (its check waited for a writer until its
    // minute was up).
    nix::unistd::mkfifo(&p.path(), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let out = ctl(&p, &["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "pipeline.yaml:1:1: the pipeline is a FIFO (named pipe): it must be a regular file"
        ),
        "{err}"
    );
    assert_eq!(pids(&p), pids_before);
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn a_reload_keeps_what_cannot_change_live_and_moves_heartbeat_slots() {
    let key = TestKey::new();
    let yaml = |timeout: &str, keep: u32| {
        format!(
            "heartbeat: {{ key: {} }}\nlogs: {{ keep: {keep} }}\ntasks:\n  beating:\n    command: [sleep, \"1000\"]\n    heartbeat: {{ timeout: {timeout}, start: 1d }}\n  stopped:\n    command: [sleep, \"1000\"]\n",
            key.key()
        )
    };
    let p = PipelineDir::new(&yaml("1h", 5));
    let mut runner = Runner::start(&p);
    let first = pid_of(&runner.wait_for(&["started", "task=beating"], 10 * SECOND));
    let stopped = pid_of(&runner.wait_for(&["started", "task=stopped"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![first, stopped]);
    // A task an operator stopped stays stopped when a reload changes it.
    assert!(ctl(&p, &["stop", "stopped"]).status.success());
    runner.wait_for(&["stopped (signal SIGTERM)", "task=stopped"], 10 * SECOND);
    let slots = |p: &PipelineDir| {
        let out = Command::new(nonstop())
            .args(["ps", "--json", "--key", &key.key().to_string()])
            .output()
            .unwrap();
        let _ = p;
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let before = slots(&p);
    std::fs::write(
        p.path(),
        yaml("2h", 3).replace(
            "stopped:\n    command: [sleep, \"1000\"]",
            "stopped:\n    command: [sleep, \"2000\"]",
        ),
    )
    .unwrap();
    assert_eq!(
        ctl_ok(&p, &["reload"]),
        "changed: beating stopped\nunchanged: 0\n"
    );
    runner.wait_for(
        &["the reload changes logs, which cannot change while the runner runs"],
        10 * SECOND,
    );
    let second = pid_of(&runner.wait_for(&["started", "task=beating"], 10 * SECOND));
    let _cleanup2 = KillOnDrop(vec![second]);
    let status: Value = serde_json::from_slice(&ctl(&p, &["status", "--json"]).stdout).unwrap();
    assert_eq!(status["tasks"][1]["state"], "stopped");
    // One slot for the task, as before: the old one was freed when the new one was taken.
    let after = slots(&p);
    let count = |v: &Value| v.as_array().map_or(0, Vec::len);
    assert_eq!(count(&after), count(&before), "{before}\n{after}");
    assert!(after.to_string().contains(&second.to_string()), "{after}");
    assert!(runner.terminate(10 * SECOND).success());
}

/// A task removed by one reload and added back by the next while it is still stopping comes
/// back in its own place: one instance at a time, the new one once the old is gone.
#[test]
fn a_task_added_back_while_still_stopping_waits_for_its_old_instance() {
    let slow = "tasks:\n  keep:\n    command: [sleep, \"1000\"]\n  slow:\n    command: [sh, -c, \"trap '' TERM; echo up; while true; do sleep 0.05; done\"]\n    stop: { grace: 1s }\n";
    let without = "tasks:\n  keep:\n    command: [sleep, \"1000\"]\n";
    let p = PipelineDir::new(slow);
    let mut runner = Runner::start(&p);
    let keep = pid_of(&runner.wait_for(&["started", "task=keep"], 10 * SECOND));
    let old = pid_of(&runner.wait_for(&["started", "task=slow"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![keep, old]);
    assert!(wait_until(5 * SECOND, || p.log("slow").contains("up")));
    std::fs::write(p.path(), without).unwrap();
    assert_eq!(ctl_ok(&p, &["reload"]), "removed: slow\nunchanged: 1\n");
    std::fs::write(p.path(), slow).unwrap();
    assert_eq!(ctl_ok(&p, &["reload"]), "added: slow\nunchanged: 1\n");
    // The old instance ignores SIGTERM: it goes at SIGKILL, after its grace; only then the
    // new one starts.
    assert!(alive(old));
    let line = runner.wait_for(&["started", "task=slow"], 10 * SECOND);
    let new = pid_of(&line);
    let _cleanup2 = KillOnDrop(vec![new]);
    assert!(!alive(old), "two instances of slow at once");
    let log = runner.seen.join("\n");
    let killed = log.find("sending SIGKILL task=slow").expect(&log);
    let started = log.rfind("started task=slow").unwrap();
    assert!(killed < started, "{log}");
    let status: serde_json::Value =
        serde_json::from_slice(&ctl(&p, &["status", "--json"]).stdout).unwrap();
    let names: Vec<&str> = status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["keep", "slow"]);
    assert!(runner.terminate(10 * SECOND).success());
}
