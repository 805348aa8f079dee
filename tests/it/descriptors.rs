//! The runner against its descriptor limit (`RLIMIT_NOFILE`), set with util-linux's
//! `prlimit` around it or on its pid: a pipeline that needs more than the hard limit is
//! refused with the numbers (at `run` and at a reload; `check` warns), one that needs more
//! than the soft limit only runs whole, and a runner out of descriptors neither spins on its
//! control socket nor floods its log, and answers again once descriptors are free.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use crate::harness::{KillOnDrop, PipelineDir, Runner, ctl, ctl_ok, nonstop, pid_of, wait_until};

const SECOND: Duration = Duration::from_secs(1);

/// `nonstop run FILE` under `prlimit --nofile=SOFT:HARD`.
fn run_limited(p: &PipelineDir, soft: u64, hard: u64) -> Runner {
    Runner::spawn(
        Command::new("prlimit")
            .arg(format!("--nofile={soft}:{hard}"))
            .arg("--")
            .arg(nonstop())
            .arg("run")
            .arg(p.path()),
    )
}

/// Sets the `nofile` limit of process `pid`.
fn set_limit(pid: i32, soft: u64, hard: u64) {
    let status = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={soft}:{hard}"))
        .status()
        .unwrap();
    assert!(status.success(), "prlimit --pid={pid}");
}

/// The hard `nofile` limit of process `pid`, from `/proc/PID/limits`.
fn hard_limit(pid: i32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(4).unwrap().parse().unwrap()
}

/// The lowest descriptor number process `pid` does not hold: the one its next `open` or
/// `accept` would get.
fn lowest_free_descriptor(pid: i32) -> u64 {
    let held: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !held.contains(n)).unwrap()
}

/// The CPU time process `pid` used so far, in clock ticks (utime + stime).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // Fields 14 and 15 of stat(5), counted from the state (field 3) here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A pipeline of `n` sleeping tasks (`instances`).
fn sleepers(n: u32) -> String {
    format!("tasks:\n  s:\n    command: [sleep, \"1000\"]\n    instances: {n}\n")
}

#[test]
fn a_pipeline_needing_more_descriptors_than_the_hard_limit_is_refused_with_the_numbers() {
    // 400 tasks need at least 3 descriptors each (6 with their cgroups): over 1,000.
    let p = PipelineDir::new(&sleepers(400));
    let mut runner = run_limited(&p, 1000, 1000);
    let status = runner.wait(30 * SECOND);
    assert_eq!(status.code(), Some(1), "{}", runner.seen.join("\n"));
    let log = runner.seen.join("\n");
    assert!(log.contains("400 tasks need about"), "{log}");
    assert!(
        log.contains("open descriptors; the hard limit (RLIMIT_NOFILE) is 1,000"),
        "{log}"
    );
    assert!(log.contains("LimitNOFILE="), "{log}");
    assert!(!log.contains("started"), "a task started: {log}");
    assert!(!p.file("logs/nonstop.sock").exists());
    // `check` says so too, as a warning (the runner may run under another limit).
    let out = Command::new("prlimit")
        .arg("--nofile=1000:1000")
        .arg("--")
        .arg(nonstop())
        .arg("check")
        .arg(p.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning: 400 tasks need about"), "{err}");
    assert!(
        err.contains("the hard limit (RLIMIT_NOFILE) is 1,000 here"),
        "{err}"
    );
    // Under a limit that fits, no warning.
    let out = Command::new(nonstop())
        .arg("check")
        .arg(p.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("descriptors"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_reload_that_would_need_more_descriptors_than_the_hard_limit_changes_nothing() {
    let p = PipelineDir::new(&sleepers(20));
    let mut runner = run_limited(&p, 1000, 1000);
    let mut pids = KillOnDrop::default();
    for _ in 0..20 {
        pids.0.push(pid_of(
            &runner.wait_for(&["started", "task=s."], 20 * SECOND),
        ));
    }
    std::fs::write(p.path(), sleepers(400)).unwrap();
    let out = ctl(&p, &["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("400 tasks need about"), "{err}");
    assert!(err.contains("is 1,000"), "{err}");
    assert!(err.contains("nothing changed"), "{err}");
    runner.wait_for(&["reload refused", "400 tasks need about"], 10 * SECOND);
    let status: serde_json::Value =
        serde_json::from_str(&ctl_ok(&p, &["status", "--json"])).unwrap();
    let tasks = status["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 20);
    assert!(tasks.iter().all(|t| t["state"] == "running"), "{status}");
    assert!(runner.terminate(20 * SECOND).success());
}

/// The runner raises its soft limit to the hard one: a pipeline over the soft limit but
/// under the hard one runs every task (and the control socket answers).
#[test]
fn a_pipeline_over_the_soft_limit_but_under_the_hard_one_runs_every_task() {
    let p = PipelineDir::new(&sleepers(100));
    let mut runner = run_limited(&p, 128, 1000);
    let mut pids = KillOnDrop::default();
    for _ in 0..100 {
        pids.0.push(pid_of(
            &runner.wait_for(&["started", "task=s."], 20 * SECOND),
        ));
    }
    let status: serde_json::Value =
        serde_json::from_str(&ctl_ok(&p, &["status", "--json"])).unwrap();
    let tasks = status["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 100);
    assert!(tasks.iter().all(|t| t["state"] == "running"), "{status}");
    assert!(
        !runner.drain().iter().any(|l| l.contains("cannot start")),
        "{}",
        runner.seen.join("\n")
    );
    assert!(runner.terminate(20 * SECOND).success());
}

/// Out of descriptors, `accept` fails: the runner frees one (an idle connection's, or a spare
/// it keeps) so `status` is still answered; when nothing can be freed, it stops watching its
/// socket for a while instead of being woken for it again at once, for ever (100 % CPU and
/// 100,000 log lines a second, before), and answers again once descriptors are free.
#[test]
fn out_of_descriptors_the_control_socket_neither_spins_nor_floods_the_log_and_recovers() {
    let p = PipelineDir::new("tasks:\n  web:\n    command: [sleep, \"1000\"]\n");
    let mut runner = Runner::start(&p);
    let web = pid_of(&runner.wait_for(&["started", "task=web"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![web]);
    let pid = runner.pid();
    let socket = p.file("logs/nonstop.sock");
    let hard = hard_limit(pid);

    // At the limit: its next descriptor would be over it. Only what it frees can be used.
    set_limit(pid, lowest_free_descriptor(pid), hard);
    let idle: Vec<UnixStream> = (0..100)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    let out = ctl(&p, &["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    runner.wait_for(
        &["closed to make room (the runner is out of descriptors)"],
        10 * SECOND,
    );
    drop(idle);

    // Below every descriptor it holds: nothing can be freed for a connection.
    set_limit(pid, 8, hard);
    let waiting: Vec<UnixStream> = (0..20)
        .map(|_| {
            let s = UnixStream::connect(&socket).unwrap();
            (&s).write_all(b"status\n").unwrap();
            s
        })
        .collect();
    runner.wait_for(&["cannot accept a control connection"], 10 * SECOND);
    let lines_before = runner.drain().len();
    let ticks_before = cpu_ticks(pid);
    std::thread::sleep(3 * SECOND);
    let ticks = cpu_ticks(pid) - ticks_before;
    let lines = runner.drain().len() - lines_before;
    // Spinning, it used every tick it could get (300 in 3 s) and wrote ~100,000 lines a
    // second; resting, it wakes a few times.
    assert!(ticks < 50, "{ticks} clock ticks of CPU in 3 s");
    assert!(
        lines <= 3,
        "{lines} log lines in 3 s:\n{}",
        runner.seen.join("\n")
    );

    // Descriptors free again: the connections that waited are answered, and new ones too.
    set_limit(pid, hard, hard);
    for mut s in waiting {
        s.set_read_timeout(Some(20 * SECOND)).unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
        assert!(answer.contains("\"ok\":true"), "{answer}");
    }
    assert!(wait_until(20 * SECOND, || ctl(&p, &["status"])
        .status
        .success()));
    assert!(runner.terminate(10 * SECOND).success());
}

/// The runner hands its tasks the `nofile` limit it was started with. Once the runner's own
/// was lowered (`prlimit --pid`), a task without `CAP_SYS_RESOURCE` could not set that limit
/// again: every start failed ("setting its limits: Operation not permitted", naming no limit)
/// until a crash loop. The handed-down limit is now lowered to what the task may set; one the
/// pipeline sets is still set exactly, or the start fails naming the limit and the values.
#[test]
fn after_the_runners_nofile_limit_is_lowered_tasks_still_start_and_a_limit_that_cannot_be_set_is_named()
 {
    // A task of nobody's has no capability to raise a hard limit, whoever runs the test.
    let root = nix::unistd::getuid().is_root();
    let strict = if root {
        "  strict:\n    command: [sleep, \"1000\"]\n    user: nobody\n    cwd: /\n    limits: { nofile: 2000 }\n"
    } else {
        ""
    };
    let p = PipelineDir::new(&format!(
        "tasks:\n  plain:\n    command: [sh, -c, \"echo $(ulimit -Sn):$(ulimit -Hn); exec sleep 1000\"]\n{strict}"
    ));
    let mut runner = run_limited(&p, 1024, 4096);
    let mut cleanup = KillOnDrop(vec![pid_of(
        &runner.wait_for(&["started", "task=plain"], 10 * SECOND),
    )]);
    if root {
        cleanup.0.push(pid_of(
            &runner.wait_for(&["started", "task=strict"], 10 * SECOND),
        ));
    }
    assert!(
        wait_until(10 * SECOND, || p.log("plain") == "1024:4096\n"),
        "{:?}",
        p.log("plain")
    );
    set_limit(runner.pid(), 100, 100);
    ctl_ok(&p, &["restart", "plain"]);
    cleanup.0.push(pid_of(
        &runner.wait_for(&["started", "task=plain"], 10 * SECOND),
    ));
    assert!(
        wait_until(10 * SECOND, || p.log("plain") == "1024:4096\n100:100\n"),
        "{:?}\n{}",
        p.log("plain"),
        runner.seen.join("\n")
    );
    if root {
        ctl_ok(&p, &["restart", "strict"]);
        let line = runner.wait_for(&["cannot start", "task=strict"], 10 * SECOND);
        assert!(
            line.contains(
                "setting its limit nofile to soft 2000, hard 2000 (the runner's: soft 100, hard 100): Operation not permitted"
            ),
            "{line}"
        );
    }
    assert!(runner.terminate(10 * SECOND).success());
}
