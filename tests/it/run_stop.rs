//! Stopping: SIGTERM stops every task and its descendants and exits 0; a SIGKILLed runner
//! takes its tasks with it; nothing is left a zombie; logs rotate.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::{
    KillOnDrop, PipelineDir, Runner, alive, ctl_ok, pid_in, pid_of, wait_until, zombie_children,
};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn sigterm_stops_every_task_child_and_grandchild_then_exits_0() {
    let p = PipelineDir::new(
        "\
tasks:
  family:
    command: [sh, -c, \"sleep 1000 & echo $! >> kids; sleep 1000 & echo $! >> kids; wait\"]
  stubborn:
    command: [sh, -c, \"trap '' TERM; sleep 1000 & echo $! >> stubborn-kids; wait\"]
    stop: { grace: 500ms }
  waiting:
    every: 1h
    command: [sh, -c, \"exec sleep 1000\"]
",
    );
    let mut runner = Runner::start(&p);
    let mut pids = Vec::new();
    for task in ["family", "stubborn", "waiting"] {
        pids.push(pid_of(&runner.wait_for(&["started", task], 10 * SECOND)));
    }
    assert!(wait_until(5 * SECOND, || p.numbers::<i32>("kids").len()
        == 2
        && p.numbers::<i32>("stubborn-kids").len() == 1));
    pids.extend(p.numbers::<i32>("kids"));
    pids.extend(p.numbers::<i32>("stubborn-kids"));
    assert!(pids.iter().all(|&pid| alive(pid)));

    let status = runner.terminate(20 * SECOND);
    assert_eq!(status.code(), Some(0));
    let log = runner.seen.join("\n");
    assert!(
        log.contains("still running after the stop grace; sending SIGKILL task=stubborn"),
        "{log}"
    );
    let left: Vec<i32> = pids.iter().copied().filter(|&pid| alive(pid)).collect();
    assert!(
        left.is_empty(),
        "still running after shutdown: {left:?}\n{log}"
    );
}

#[test]
fn a_sigkilled_runner_leaves_no_task_running() {
    let p = PipelineDir::new(
        "\
tasks:
  one:
    command: [sleep, \"1000\"]
  two:
    command: [sh, -c, \"exec sleep 1000\"]
  periodic:
    every: 1h
    command: [sleep, \"1000\"]
",
    );
    let mut runner = Runner::start(&p);
    let pids: Vec<i32> = ["one", "two", "periodic"]
        .iter()
        .map(|t| pid_of(&runner.wait_for(&["started", t], 10 * SECOND)))
        .collect();
    assert!(pids.iter().all(|&pid| alive(pid)));
    kill(Pid::from_raw(runner.pid()), Signal::SIGKILL).unwrap();
    runner.proc.wait(10 * SECOND);
    assert!(
        wait_until(10 * SECOND, || pids.iter().all(|&pid| !alive(pid))),
        "tasks outlived the runner: {:?}",
        pids.iter().filter(|&&pid| alive(pid)).collect::<Vec<_>>()
    );
}

#[test]
fn many_short_lived_tasks_and_orphans_leave_no_zombies() {
    let mut yaml = String::from("tasks:\n");
    for i in 0..8 {
        yaml += &format!("  quick{i}:\n    every: 50ms\n    command: [\"true\"]\n");
    }
    // Its background child outlives it and is adopted by the runner (a subreaper).
    yaml += "  orphaner:\n    every: 100ms\n    command: [sh, -c, \"sleep 0.05 & exit 0\"]\n";
    let p = PipelineDir::new(&yaml);
    let mut runner = Runner::start(&p);
    for _ in 0..60 {
        runner.wait_for(&["run finished"], 10 * SECOND);
    }
    // A zombie may exist for an instant between an exit and its reaping; a lasting one is a bug.
    let first = zombie_children(runner.pid());
    std::thread::sleep(Duration::from_millis(300));
    let lasting: Vec<i32> = zombie_children(runner.pid())
        .into_iter()
        .filter(|z| first.contains(z))
        .collect();
    assert!(lasting.is_empty(), "zombies: {lasting:?}");
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn logs_rotate_by_size_and_keep_the_newest_files() {
    for compress in [false, true] {
        let p = PipelineDir::new(&format!(
            "\
logs: {{ max_size: 2K, keep: 3, compress: {compress} }}
tasks:
  chatty:
    command: [sh, -c, \"i=0; while [ $i -lt 400 ]; do echo line $i of chatty output; i=$((i+1)); done\"]
    restart: never
"
        ));
        let mut runner = Runner::start(&p);
        runner.wait_for(&["chatty", "not restarted"], 10 * SECOND);
        let logs = p.file("logs");
        let rotated = || -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&logs)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("chatty.log."))
                .collect();
            names.sort();
            names
        };
        let settled = wait_until(10 * SECOND, || {
            let names = rotated();
            names.len() == 3
                && names
                    .iter()
                    .all(|n| n.ends_with(".gz") == compress && !n.ends_with(".tmp"))
        });
        assert!(settled, "compress={compress}: {:?}", rotated());
        assert!(logs.join("chatty.log").exists());
        assert!(p.log("chatty").len() < 2048 + 4096);
        assert!(runner.terminate(10 * SECOND).success());
    }
}

/// Voluntary context switches of every thread of `pid`: each is a wake-up.
fn voluntary_switches(pid: i32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| {
            std::fs::read_to_string(t.path().join("status"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

#[test]
fn an_idle_runner_makes_no_wake_ups_at_all() {
    let p = PipelineDir::new(
        "\
tasks:
  server:
    command: [sleep, \"1000\"]
  hourly:
    every: 1h
    command: [\"true\"]
",
    );
    let mut runner = Runner::start(&p);
    runner.wait_for(&["started", "server"], 10 * SECOND);
    runner.wait_for(&["hourly", "run finished"], 10 * SECOND);
    // Let the last exit's output and SIGCHLD be handled.
    std::thread::sleep(Duration::from_millis(200));
    let threads = std::fs::read_dir(format!("/proc/{}/task", runner.pid()))
        .unwrap()
        .count();
    assert_eq!(threads, 1, "the runner is single-threaded");
    let before = voluntary_switches(runner.pid());
    std::thread::sleep(Duration::from_millis(1500));
    let after = voluntary_switches(runner.pid());
    assert_eq!(
        after,
        before,
        "the runner woke up {} times while idle",
        after - before
    );
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn the_stop_signal_of_a_task_is_the_one_it_receives() {
    let p = PipelineDir::new(
        "\
tasks:
  graceful:
    command: [sh, -c, \"trap 'echo got INT > got; exit 0' INT; while :; do sleep 0.05; done\"]
    stop: { signal: INT, grace: 10s }
",
    );
    let mut runner = Runner::start(&p);
    let pid = pid_of(&runner.wait_for(&["started", "graceful"], 10 * SECOND));
    // Let the shell install its trap before the signal comes.
    assert!(wait_until(5 * SECOND, || {
        std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
            s.lines()
                .any(|l| l.starts_with("SigCgt:") && !l.ends_with("0000000000000000"))
        })
    }));
    let status = runner.terminate(20 * SECOND);
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(p.file("got")).unwrap().trim(),
        "got INT"
    );
    let log = runner.seen.join("\n");
    assert!(log.contains("stopping with SIGINT task=graceful"), "{log}");
    assert!(!log.contains("SIGKILL"), "{log}");
}

#[test]
fn the_runner_creates_the_heartbeat_table_for_its_tasks_and_removes_it() {
    use nonstop_ipc::{HeartbeatTable, TableOptions};
    let key = crate::harness::TestKey::new();
    let probe = crate::harness::helper_path();
    let p = PipelineDir::new(&format!(
        "\
heartbeat: {{ key: \"{}\", slots: 16 }}
tasks:
  probe:
    command: [{probe}, probe]
    restart: never
  server:
    command: [sleep, \"1000\"]
",
        key.arg()
    ));
    let mut runner = Runner::start(&p);
    runner.wait_for(&["heartbeat table ready"], 10 * SECOND);
    runner.wait_for(&["probe", "not restarted"], 10 * SECOND);
    let table = HeartbeatTable::open(key.key(), &TableOptions::default()).unwrap();
    assert_eq!(table.capacity(), 16);
    assert!(wait_until(5 * SECOND, || p
        .log("probe")
        .contains("env NONSTOP_HEARTBEAT_KEY=")));
    assert!(
        p.log("probe")
            .contains(&format!("env NONSTOP_HEARTBEAT_KEY={}", key.key())),
        "{}",
        p.log("probe")
    );
    drop(table);
    assert!(runner.terminate(10 * SECOND).success());
    assert!(matches!(
        nonstop_ipc::SharedMemory::open_any_size(key.key()),
        Err(nonstop_ipc::Error::NotFound { .. })
    ));
}

#[test]
fn a_second_sigterm_kills_every_task_without_waiting_for_the_grace() {
    let p = PipelineDir::new(
        "\
tasks:
  stubborn:
    command: [sh, -c, \"setsid sh -c 'trap \\\"\\\" TERM; echo $$ > deaf; while :; do sleep 1; done' & trap '' TERM; exec sleep 1000\"]
    stop: { grace: 1h }
  dependent:
    command: [sh, -c, \"trap '' TERM; exec sleep 1000\"]
    stop: { grace: 1h }
    after: [stubborn]
",
    );
    let mut runner = Runner::start(&p);
    let pids: Vec<i32> = ["stubborn", "dependent"]
        .iter()
        .map(|t| pid_of(&runner.wait_for(&["started", t], 10 * SECOND)))
        .collect();
    // A daemon that left its task's group: the runner adopts it once `stubborn` dies.
    let deaf = pid_in(&p, "deaf");
    let _cleanup = KillOnDrop(vec![deaf]);
    let pid = Pid::from_raw(runner.pid());
    kill(pid, Signal::SIGTERM).unwrap();
    runner.wait_for(&["stopping with SIGTERM", "dependent"], 10 * SECOND);
    // It ignores TERM and has an hour of grace: only a second signal ends this soon. One
    // within a second of the first would be the same request sent twice.
    std::thread::sleep(Duration::from_millis(1100));
    kill(pid, Signal::SIGTERM).unwrap();
    runner.wait_for(&["received again: killing every task now"], 10 * SECOND);
    assert!(runner.wait(10 * SECOND).success());
    assert!(pids.iter().all(|&pid| !alive(pid)));
    assert!(!alive(deaf), "the adopted daemon outlived the runner");
}

#[test]
fn sigterm_also_stops_descendants_that_left_their_process_group() {
    // `setsid` takes each helper out of its task's process group. With cgroups they are still
    // in their task's cgroup and stopped with it; with process groups only, the group kill
    // misses them, and when the task's main process dies the runner (a child subreaper)
    // adopts them and stops them after the tasks.
    for containment in ["cgroup", "process-group"] {
        let p = PipelineDir::new(&format!(
            "\
containment: {containment}
tasks:
  polite:
    command: [sh, -c, \"setsid sh -c 'echo $$ > polite; exec sleep 1000' & exec sleep 1000\"]
    stop: {{ grace: 500ms }}
  deaf:
    command: [sh, -c, \"setsid sh -c 'trap \\\"\\\" TERM; echo $$ > deaf; while :; do sleep 1; done' & exec sleep 1000\"]
    stop: {{ grace: 500ms }}
"
        ));
        let mut runner = Runner::start(&p);
        runner.wait_for(&["started", "task=polite"], 10 * SECOND);
        runner.wait_for(&["started", "task=deaf"], 10 * SECOND);
        let polite = pid_in(&p, "polite");
        let deaf = pid_in(&p, "deaf");
        // If the runner leaves them behind, the test fails, and they go anyway.
        let _cleanup = KillOnDrop(vec![polite, deaf]);
        assert!(alive(polite) && alive(deaf));

        let status = runner.terminate(30 * SECOND);
        let log = runner.seen.join("\n");
        assert_eq!(status.code(), Some(0), "{containment}: {log}");
        assert!(
            !alive(polite),
            "{containment}: the polite daemon outlived the runner\n{log}"
        );
        assert!(
            !alive(deaf),
            "{containment}: the deaf daemon outlived the runner\n{log}"
        );
        if containment == "cgroup" {
            assert!(
                log.contains("still running after the stop grace; sending SIGKILL task=deaf"),
                "{log}"
            );
            assert!(!log.contains("adopted process"), "{log}");
        } else {
            assert!(
                log.contains("stopping an adopted process with SIGTERM"),
                "{log}"
            );
            assert!(
                log.contains(
                    "adopted processes still running after the stop grace; sending SIGKILL"
                ),
                "{log}"
            );
        }
    }
}

#[test]
fn a_log_that_cannot_be_written_is_reported_once_not_per_write() {
    let p = PipelineDir::new(
        "\
tasks:
  chatty:
    command: [sh, -c, \"for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; sleep 0.02; done; exec sleep 1000\"]
",
    );
    // Every write to /dev/full fails with ENOSPC, like a full disk.
    std::fs::create_dir_all(p.file("logs")).unwrap();
    std::os::unix::fs::symlink("/dev/full", p.file("logs/chatty.log")).unwrap();
    let mut runner = Runner::start(&p);
    let error = runner.wait_for(&["cannot write", "task=chatty"], 10 * SECOND);
    assert!(error.contains("No space left on device"), "{error}");
    // Ten lines, ten writes at least: still one error.
    std::thread::sleep(Duration::from_millis(500));
    assert!(runner.terminate(10 * SECOND).success());
    let log = runner.seen.join("\n");
    assert_eq!(log.matches("cannot write").count(), 1, "{log}");
}

#[test]
fn rotation_never_splits_a_line_across_two_files() {
    let p = PipelineDir::new(
        "\
logs: { max_size: 1M, keep: 100 }
tasks:
  counter:
    command: [seq, \"1\", \"2000000\"]
    restart: never
",
    );
    let mut runner = Runner::start(&p);
    runner.wait_for(&["counter", "not restarted"], 60 * SECOND);
    assert!(runner.terminate(10 * SECOND).success());
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(p.file("logs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|f| f.to_string_lossy().contains("counter.log."))
        .collect();
    // Rotated files sort by their stamp and counter; the live log comes last.
    files.sort_by_key(|f| {
        let name = f.to_string_lossy().into_owned();
        let (stem, n) = match name.rsplit_once('.') {
            Some((stem, n)) if n.len() < 6 && n.chars().all(|c| c.is_ascii_digit()) => {
                (stem.to_owned(), n.parse::<u32>().unwrap())
            }
            _ => (name.clone(), 0),
        };
        (stem, n)
    });
    files.push(p.file("logs/counter.log"));
    assert!(files.len() >= 14, "{files:?}");
    let mut expected = 1u64;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            text.len() <= 1 << 20,
            "{}: {} bytes",
            file.display(),
            text.len()
        );
        assert!(text.ends_with('\n'), "{} ends mid-line", file.display());
        for line in text.lines() {
            assert_eq!(line, expected.to_string(), "in {}", file.display());
            expected += 1;
        }
    }
    assert_eq!(expected, 2_000_001);
}

/// A task that ends during the shutdown before its turn to stop (tasks stop in the reverse
/// order of `after`) is stopped, not started again, and the log says so: it said `run failed
/// ...; next run in 1.7s` and `starting again (restart requested)`, and the runner did start
/// them again while it was stopping the others.
#[test]
fn a_task_that_ends_during_the_shutdown_is_stopped_and_logged_so() {
    let p = PipelineDir::new(
        "\
tasks:
  p:
    every: 200ms
    command: [sh, -c, \"test -e first || { touch first; exit 0; }; while [ ! -e go ]; do sleep 0.05; done; exit 1\"]
  r:
    command: [sh, -c, \"trap 'while [ ! -e go ]; do sleep 0.05; done; exit 0' TERM; while true; do sleep 0.05; done\"]
  b:
    after: [p, r]
    command: [sh, -c, \"trap 'while [ ! -e release ]; do sleep 0.05; done; exit 0' TERM; while true; do sleep 0.05; done\"]
    stop: { grace: 60s }
",
    );
    let mut runner = Runner::start(&p);
    let b = pid_of(&runner.wait_for(&["started", "task=b"], 10 * SECOND));
    let r = pid_of(&runner.wait_for(&["started", "task=r"], 10 * SECOND));
    runner.wait_for(&["started", "task=p"], 10 * SECOND);
    // Its second run: it waits for `go`.
    let p_run = pid_of(&runner.wait_for(&["started", "task=p"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![b, r, p_run]);
    assert_eq!(ctl_ok(&p, &["restart", "r"]), "r: restarting\n");
    kill(Pid::from_raw(runner.pid()), Signal::SIGTERM).unwrap();
    runner.wait_for(&["SIGTERM received"], 10 * SECOND);
    // b stops first and waits for `release`; meanwhile p's run fails and r's restart ends.
    std::fs::write(p.file("go"), "").unwrap();
    for task in ["task=p", "task=r"] {
        runner.wait_for(
            &[
                task,
                "stopped, not started again: the runner is shutting down",
            ],
            10 * SECOND,
        );
    }
    std::fs::write(p.file("release"), "").unwrap();
    assert!(runner.wait(30 * SECOND).success());
    let shutdown = runner
        .seen
        .iter()
        .position(|l| l.contains("SIGTERM received"))
        .unwrap();
    let after = &runner.seen[shutdown..];
    for word in [
        " started task=",
        "next run",
        "restarting in",
        "starting again",
    ] {
        assert!(
            !after.iter().any(|l| l.contains(word)),
            "{word:?} during the shutdown:\n{}",
            after.join("\n")
        );
    }
    assert!(
        after
            .iter()
            .any(|l| l.contains("stopped (status 0) task=b"))
    );
}

#[test]
fn rotated_logs_an_earlier_runner_left_uncompressed_are_compressed_at_start() {
    let p = PipelineDir::new(
        "logs: { compress: true, keep: 5 }\ntasks:\n  quiet:\n    command: [sleep, \"1000\"]\n",
    );
    let logs = p.file("logs");
    std::fs::create_dir(&logs).unwrap();
    // Left by a runner that stopped before their turn: two plain rotations; and one whose
    // compression was complete when that runner died (both forms): left as it is.
    std::fs::write(logs.join("quiet.log.20260101-000000"), "first\n").unwrap();
    std::fs::write(logs.join("quiet.log.20260101-000001"), "second\n").unwrap();
    std::fs::write(logs.join("quiet.log.20260101-000002"), "third\n").unwrap();
    let gz = std::process::Command::new("gzip")
        .args(["-k", "quiet.log.20260101-000002"])
        .current_dir(&logs)
        .status()
        .unwrap();
    assert!(gz.success());
    let mut runner = Runner::start(&p);
    let quiet = pid_of(&runner.wait_for(&["started", "task=quiet"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![quiet]);
    let compressed =
        |name: &str| !logs.join(name).exists() && logs.join(format!("{name}.gz")).exists();
    assert!(
        wait_until(30 * SECOND, || compressed("quiet.log.20260101-000000")
            && compressed("quiet.log.20260101-000001")),
        "{:?}",
        std::fs::read_dir(&logs)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
    let out = std::process::Command::new("gzip")
        .args([
            "-dc",
            "quiet.log.20260101-000000.gz",
            "quiet.log.20260101-000001.gz",
        ])
        .current_dir(&logs)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first\nsecond\n");
    assert!(logs.join("quiet.log.20260101-000002").exists());
    assert!(runner.terminate(10 * SECOND).success());
}
