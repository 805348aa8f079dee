//! Reload by diff (`nonstop reload`, SIGHUP) against a real runner: added tasks start,
//! removed ones stop, changed ones restart, untouched ones keep their process; an invalid file
//! changes nothing.

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::harness::{
    KillOnDrop, PipelineDir, Runner, TestKey, alive, ctl, ctl_ok, nonstop, pid_of, purge_plugin,
    wait_until,
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

/// An upgrade renames new files over the runner's binaries, as `cargo xtask install` does: the
/// runner goes on with the binary it started from, and so does its reload's check, which
/// validates plugin tasks with that binary, never with what its path names now (here a script
/// that says so). A plugin task the edit did not touch is unchanged: the path of the binary is
/// no part of its definition.
#[test]
fn a_reload_after_an_upgrade_on_disk_checks_plugin_tasks_with_the_running_binary() {
    use std::os::unix::fs::PermissionsExt;
    let bin = tempfile::tempdir().unwrap();
    let built = nonstop();
    for name in ["nonstop", "nonstop-supervisor"] {
        std::fs::copy(built.with_file_name(name), bin.path().join(name)).unwrap();
    }
    std::fs::copy(purge_plugin(), bin.path().join("libnonstop_purge.so")).unwrap();
    let p = PipelineDir::new("");
    std::fs::create_dir(p.file("data")).unwrap();
    let write = |older_than: &str, sleep: &str| {
        std::fs::write(
            p.path(),
            format!(
                "tasks:\n  keep:\n    command: [sleep, \"{sleep}\"]\n  pu:\n    plugin: purge\n    \
                 args: {{ dir: {}, match: \"*.x\", older_than: {older_than} }}\n    every: 1h\n",
                p.file("data").display()
            ),
        )
        .unwrap()
    };
    write("1d", "1000");
    let mut runner = Runner::spawn(
        Command::new(bin.path().join("nonstop"))
            .arg("run")
            .arg(p.path()),
    );
    let keep = pid_of(&runner.wait_for(&["started", "task=keep"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![keep]);
    runner.wait_for(&["run finished with status 0", "task=pu"], 10 * SECOND);
    // A reload before the upgrade.
    write("2d", "1000");
    assert_eq!(ctl_ok(&p, &["reload"]), "changed: pu\nunchanged: 1\n");
    runner.wait_for(&["run finished with status 0", "task=pu"], 10 * SECOND);
    // The upgrade: another file renamed over `nonstop`.
    let ran = p.file("the-new-file-ran");
    let new = bin.path().join("nonstop.tmp");
    std::fs::write(
        &new,
        format!("#!/bin/sh\necho \"$@\" >> {}\nexit 99\n", ran.display()),
    )
    .unwrap();
    std::fs::set_permissions(&new, PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&new, bin.path().join("nonstop")).unwrap();
    write("2d", "2000");
    assert_eq!(ctl_ok(&p, &["reload"]), "changed: keep\nunchanged: 1\n");
    let keep2 = pid_of(&runner.wait_for(&["started", "task=keep"], 10 * SECOND));
    let _cleanup2 = KillOnDrop(vec![keep2]);
    write("3d", "2000");
    assert_eq!(ctl_ok(&p, &["reload"]), "changed: pu\nunchanged: 1\n");
    runner.wait_for(&["run finished with status 0", "task=pu"], 10 * SECOND);
    assert!(
        !ran.exists(),
        "the file renamed over nonstop ran: {}",
        std::fs::read_to_string(&ran).unwrap_or_default()
    );
    assert!(runner.terminate(10 * SECOND).success());
}

/// `heartbeat:` cannot change while the runner runs. A reload that changes its key keeps the
/// runner's table and restarts no task for it; a task restarted for a change of its own learns
/// the key of the table the runner uses, where its own slot is.
#[test]
fn a_reload_that_changes_the_heartbeat_key_restarts_nothing_and_tasks_keep_the_runners_key() {
    let (old, new) = (TestKey::new(), TestKey::new());
    let task = |version: u32| {
        format!(
            "[sh, -c, \"echo v{version} key=$NONSTOP_HEARTBEAT_KEY slot=$NONSTOP_HEARTBEAT; exec \
             sleep 1000\"]"
        )
    };
    let yaml = |key: &TestKey, version: u32| {
        format!(
            "heartbeat: {{ key: {}, slots: 4 }}\ntasks:\n  a:\n    command: {}\n  h1:\n    \
             command: {}\n    heartbeat: {{ timeout: 1h, start: 1d }}\n",
            key.key(),
            task(version),
            task(version)
        )
    };
    let p = PipelineDir::new(&yaml(&old, 1));
    let mut runner = Runner::start(&p);
    let a = pid_of(&runner.wait_for(&["started", "task=a"], 10 * SECOND));
    let h1 = pid_of(&runner.wait_for(&["started", "task=h1"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![a, h1]);
    std::fs::write(p.path(), yaml(&new, 1)).unwrap();
    assert_eq!(ctl_ok(&p, &["reload"]), "unchanged: 2\n");
    runner.wait_for(
        &["the reload changes heartbeat", "kept as they were"],
        10 * SECOND,
    );
    assert!(alive(a) && alive(h1));
    // Each task changed for itself: restarted with the key of the runner's table.
    std::fs::write(p.path(), yaml(&new, 2)).unwrap();
    assert_eq!(ctl_ok(&p, &["reload"]), "changed: a h1\nunchanged: 0\n");
    let a2 = pid_of(&runner.wait_for(&["started", "task=a"], 10 * SECOND));
    let h2 = pid_of(&runner.wait_for(&["started", "task=h1"], 10 * SECOND));
    let _cleanup2 = KillOnDrop(vec![a2, h2]);
    let key = old.key().to_string();
    assert!(
        wait_until(10 * SECOND, || p.log("a").contains("v2")
            && p.log("h1").contains("v2")),
        "{}{}",
        p.log("a"),
        p.log("h1")
    );
    assert!(
        p.log("a").ends_with(&format!("v2 key={key} slot=\n")),
        "{}",
        p.log("a")
    );
    let h1_line = p.log("h1").lines().last().unwrap().to_owned();
    assert!(
        h1_line.starts_with(&format!("v2 key={key} slot={key}:")),
        "{h1_line}"
    );
    assert!(runner.terminate(10 * SECOND).success());
}

/// A runner started without a heartbeat table cannot make one later: a reload that adds a task
/// with a heartbeat (which would wait for a first beat that no table can record, and the tasks
/// `after` it with it) is refused with the reason, naming the task, and changes nothing.
#[test]
fn a_reload_that_adds_a_heartbeat_to_a_runner_without_a_table_is_refused() {
    let before = "tasks:\n  a:\n    command: [sleep, \"1000\"]\n";
    let p = PipelineDir::new(before);
    let mut runner = Runner::start(&p);
    let a = pid_of(&runner.wait_for(&["started", "task=a"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![a]);
    let pids_before = pids(&p);
    std::fs::write(
        p.path(),
        format!(
            "{before}  hb:\n    command: [sleep, \"1000\"]\n    heartbeat: 5s\n  dep:\n    \
             command: [sleep, \"1000\"]\n    after: [hb]\n"
        ),
    )
    .unwrap();
    let out = ctl(&p, &["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "task hb has a heartbeat, but this runner has no heartbeat table (it started \
             without a task with a heartbeat or a `heartbeat:` section, and the table is made \
             only at start): restart the runner to watch it, or remove its `heartbeat`; \
             nothing changed"
        ),
        "{err}"
    );
    runner.wait_for(&["reload refused: task hb has a heartbeat"], 10 * SECOND);
    assert_eq!(pids(&p), pids_before);
    assert!(alive(a));
    assert!(runner.terminate(10 * SECOND).success());
}

/// `nonstop stop` keeps a task stopped, also when a reload changes it while its process is
/// still within its stop grace: it takes the new definition once gone, and stays stopped
/// until started, then with the new definition.
#[test]
fn a_task_changed_by_a_reload_while_an_operator_stops_it_stays_stopped() {
    let yaml = |v: u32| {
        format!(
            "tasks:\n  x:\n    command: [sh, -c, \"echo V=$V; trap 'echo TERM' TERM; while \
             true; do sleep 0.05; done\"]\n    stop: {{ grace: 2s }}\n    env: {{ V: \"{v}\" }}\n"
        )
    };
    let p = PipelineDir::new(&yaml(1));
    let mut runner = Runner::start(&p);
    let x = pid_of(&runner.wait_for(&["started", "task=x"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![x]);
    assert!(wait_until(10 * SECOND, || p.log("x").contains("V=1")));
    assert_eq!(ctl_ok(&p, &["stop", "x"]), "x: stopping\n");
    std::fs::write(p.path(), yaml(2)).unwrap();
    assert_eq!(ctl_ok(&p, &["reload"]), "changed: x\nunchanged: 0\n");
    assert!(alive(x), "still within its grace");
    let stopped = runner.wait_for(&["signal SIGKILL", "task=x"], 10 * SECOND);
    assert!(!stopped.contains("starting again"), "{stopped}");
    assert!(stopped.contains("stopped"), "{stopped}");
    let status: Value = serde_json::from_slice(&ctl(&p, &["status", "--json"]).stdout).unwrap();
    assert_eq!(status["tasks"][0]["state"], "stopped", "{status}");
    assert_eq!(status["tasks"][0]["pid"], Value::Null, "{status}");
    // Started by an operator: the new definition.
    assert_eq!(ctl_ok(&p, &["start", "x"]), "x: started\n");
    let x2 = pid_of(&runner.wait_for(&["started", "task=x"], 10 * SECOND));
    let _cleanup2 = KillOnDrop(vec![x2]);
    assert!(
        wait_until(10 * SECOND, || p.log("x").contains("V=2")),
        "{}",
        p.log("x")
    );
    assert!(runner.terminate(20 * SECOND).success());
}

/// A table sized to the pipeline (`slots` = its tasks with a heartbeat) has no free slot when
/// a reload changes such a task: the new definition takes over the slot of the old once its
/// instance is gone, with its own timeouts, and the reload is not a silent no-op.
#[test]
fn a_reload_that_changes_a_heartbeat_task_on_a_full_table_takes_over_its_slot() {
    let key = TestKey::new();
    let yaml = |version: u32, timeout: &str| {
        format!(
            "heartbeat: {{ key: {}, slots: 2 }}\ntasks:\n  h1:\n    command: [sh, -c, \"echo \
             v{version} slot=$NONSTOP_HEARTBEAT; exec sleep 1000\"]\n    heartbeat: {{ timeout: \
             {timeout}, start: 1d }}\n  h2:\n    command: [sleep, \"1000\"]\n    heartbeat: {{ \
             timeout: 1h, start: 1d }}\n",
            key.key()
        )
    };
    let p = PipelineDir::new(&yaml(1, "1h"));
    let mut runner = Runner::start(&p);
    let h1 = pid_of(&runner.wait_for(&["started", "task=h1"], 10 * SECOND));
    let h2 = pid_of(&runner.wait_for(&["started", "task=h2"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![h1, h2]);
    assert!(wait_until(10 * SECOND, || p.log("h1").contains("v1")));
    let slot_before = p.log("h1").lines().last().unwrap().replace("v1 ", "");
    std::fs::write(p.path(), yaml(2, "2h")).unwrap();
    assert_eq!(ctl_ok(&p, &["reload"]), "changed: h1\nunchanged: 1\n");
    let again = pid_of(&runner.wait_for(&["started", "task=h1"], 10 * SECOND));
    let _cleanup2 = KillOnDrop(vec![again]);
    assert!(
        wait_until(10 * SECOND, || p.log("h1").contains("v2")),
        "{}",
        p.log("h1")
    );
    assert_eq!(
        p.log("h1").lines().last().unwrap(),
        format!("v2 {slot_before}")
    );
    assert!(alive(h2));
    assert!(
        !runner
            .drain()
            .iter()
            .any(|l| l.contains("cannot take the reloaded definition")),
        "{}",
        runner.seen.join("\n")
    );
    // The slot holds the new definition's timeout.
    let out = Command::new(nonstop())
        .args(["ps", "--json", "--key"])
        .arg(key.arg())
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&out.stdout);
    assert!(ps.contains("\"h1\"") && ps.contains("7200"), "{ps}");
    assert!(runner.terminate(10 * SECOND).success());
}

/// What a reload could not apply is said, and `nonstop reload` fails: a task added while the
/// only slot of the table is still held by a removed task that is stopping.
#[test]
fn a_reload_that_cannot_take_a_definition_says_so_and_fails() {
    let key = TestKey::new();
    let p = PipelineDir::new(&format!(
        "heartbeat: {{ key: {}, slots: 1 }}\ntasks:\n  old:\n    command: [sh, -c, \"trap '' \
         TERM; sleep 1000 & wait\"]\n    heartbeat: {{ timeout: 1h, start: 1d }}\n    stop: {{ \
         grace: 3s }}\n",
        key.key()
    ));
    let mut runner = Runner::start(&p);
    let old = pid_of(&runner.wait_for(&["started", "task=old"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![old]);
    std::fs::write(
        p.path(),
        format!(
            "heartbeat: {{ key: {}, slots: 1 }}\ntasks:\n  new:\n    command: [sleep, \
             \"1000\"]\n    heartbeat: {{ timeout: 1h, start: 1d }}\n",
            key.key()
        ),
    )
    .unwrap();
    let out = ctl(&p, &["reload"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "removed: old\nunchanged: 0\n"
    );
    assert!(
        stderr.contains("not applied: new: cannot reserve a heartbeat slot for task new"),
        "{stderr}"
    );
    assert!(runner.terminate(30 * SECOND).success());
}

/// A removed heartbeat task whose process died at its SIGTERM (a zombie until reaped) still
/// holds its slot: a task added by the same reload does not take it as a dead process's (and
/// then lose it when the removed task's slot is freed), it is not applied, and the task that
/// stays is watched on.
#[test]
fn a_task_added_in_place_of_a_dying_heartbeat_task_does_not_take_its_slot() {
    let key = TestKey::new();
    let beat = nonstop().display().to_string();
    let yaml = |second: &str| {
        format!(
            "heartbeat: {{ key: {}, slots: 2 }}\ntasks:\n  hb1:\n    command: [sh, -c, \"while \
             :; do {beat} beat; sleep 0.2; done\"]\n    heartbeat: 5s\n  {second}:\n    \
             command: [sh, -c, \"while :; do {beat} beat || echo BEATFAIL; sleep 0.2; done\"]\n    \
             heartbeat: 5s\n",
            key.key()
        )
    };
    let p = PipelineDir::new(&yaml("hb2"));
    let mut runner = Runner::start(&p);
    let hb1 = pid_of(&runner.wait_for(&["started", "task=hb1"], 10 * SECOND));
    let hb2 = pid_of(&runner.wait_for(&["started", "task=hb2"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![hb1, hb2]);
    runner.wait_for(&["ready: first heartbeat", "task=hb2"], 30 * SECOND);
    std::fs::write(p.path(), yaml("hb3")).unwrap();
    let out = ctl(&p, &["reload"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not applied: hb3"), "{stderr}");
    runner.wait_for(&["stopped", "task=hb2"], 30 * SECOND);
    // hb1 keeps its slot and beats in it; no "slot ... was freed" warning.
    let ps = Command::new(nonstop())
        .args(["ps", "--key"])
        .arg(key.arg())
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(ps.contains("hb1"), "{ps}");
    assert!(
        !runner
            .drain()
            .iter()
            .any(|l| l.contains("cannot free heartbeat slot")),
        "{}",
        runner.seen.join("\n")
    );
    assert!(runner.terminate(10 * SECOND).success());
}
