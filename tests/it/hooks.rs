//! Operator features against the real runner: `instances` (copies of a task), `on_failure`
//! (tasks started when another fails, told which and why) and `logs.timestamps`.

use std::time::Duration;

use crate::harness::{KillOnDrop, PipelineDir, Runner, TestKey, alive, ctl, pid_of, wait_until};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn instances_run_n_copies_each_with_its_number() {
    let p = PipelineDir::new(
        "tasks:\n  web:\n    instances: 3\n    command: [sh, -c, \"echo copy $NONSTOP_INSTANCE of {instance} as $NONSTOP_TASK; exec sleep 1000\"]\n  after-all:\n    command: [sh, -c, \"echo after; exec sleep 1000\"]\n    after: [web]\n",
    );
    let mut runner = Runner::start(&p);
    let mut pids = Vec::new();
    for _ in 0..3 {
        pids.push(pid_of(
            &runner.wait_for(&["started", "task=web."], 10 * SECOND),
        ));
    }
    let after = pid_of(&runner.wait_for(&["started", "task=after-all"], 10 * SECOND));
    let _cleanup = KillOnDrop([pids.clone(), vec![after]].concat());
    for i in 0..3 {
        let log = format!("web.{i}");
        assert!(
            wait_until(5 * SECOND, || p.log(&log)
                == format!("copy {i} of {i} as web.{i}\n")),
            "{log}: {:?}",
            p.log(&log)
        );
    }
    // One name for every copy; NAME.I for one.
    let out = ctl(&p, &["restart", "web"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "web.0: restarting\nweb.1: restarting\nweb.2: restarting\n"
    );
    let mut again = Vec::new();
    for _ in 0..3 {
        again.push(pid_of(
            &runner.wait_for(&["started", "task=web."], 10 * SECOND),
        ));
    }
    let _cleanup2 = KillOnDrop(again.clone());
    assert!(
        pids.iter()
            .all(|&pid| wait_until(5 * SECOND, || !alive(pid)))
    );
    let out = ctl(&p, &["stop", "web.1"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "web.1: stopping\n");
    runner.wait_for(&["stopped", "task=web.1"], 10 * SECOND);
    assert!(alive(after), "the task after them is not touched");
    assert!(runner.terminate(10 * SECOND).success());
}

/// Where the handler writes what it was told: one line per failure.
const HANDLER: &str = "  page:\n    command: [sh, -c, 'printf \"%s|%s|%s\\n\" \"$NONSTOP_FAILED_TASK\" \"$NONSTOP_FAILED_REASON\" \"$(printf %s \"$NONSTOP_FAILED_LOG\" | tail -n 1)\" >> pages']\n";

#[test]
fn on_failure_tasks_hear_of_crash_loops_hangs_and_timeouts() {
    let key = TestKey::new();
    let p = PipelineDir::new(&format!(
        "heartbeat: {{ key: {} }}\ntasks:\n  crashy:\n    command: [sh, -c, \"echo disk full >&2; exit 3\"]\n    backoff: {{ initial: 0ms }}\n    crash_loop: {{ max: 2, within: 1m }}\n    on_failure: [page]\n  stuck:\n    command: [sh, -c, \"echo stuck now; exec sleep 1000\"]\n    heartbeat: {{ timeout: 200ms, start: 200ms }}\n    restart: never\n    on_failure: [page]\n  slow:\n    command: [sh, -c, \"echo slow run; exec sleep 1000\"]\n    every: 1h\n    timeout: 200ms\n    on_failure: [page]\n{HANDLER}",
        key.key()
    ));
    let mut runner = Runner::start(&p);
    let lines = || {
        std::fs::read_to_string(p.file("pages"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<String>>()
    };
    assert!(
        wait_until(20 * SECOND, || lines().len() >= 3),
        "{:?}",
        lines()
    );
    let mut pages = lines();
    pages.sort();
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert_eq!(
        pages[0],
        "crashy|crash loop: exited with status 3, more than 2 exits within 1m0s|disk full"
    );
    assert!(
        pages[1].starts_with("slow|timeout: the run exceeded its timeout of 200ms|slow run"),
        "{}",
        pages[1]
    );
    assert!(
        pages[2].starts_with("stuck|hung: no heartbeat for "),
        "{}",
        pages[2]
    );
    assert!(pages[2].ends_with("|stuck now"), "{}", pages[2]);
    // The handler is not started with the pipeline, and does not make it unhealthy.
    let status: serde_json::Value =
        serde_json::from_slice(&ctl(&p, &["status", "--json"]).stdout).unwrap();
    let page = status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "page")
        .unwrap();
    assert_eq!(page["starts"], 3, "once per failure: {page}");
    assert_eq!(page["healthy"], true);
    assert!(runner.terminate(10 * SECOND).success());
}

/// A copy of a task with instances named in `on_failure` (`pager.1`) is a hook, as a whole
/// task named there is: it does not start with the pipeline, and runs once for the failure,
/// told which task failed. The other copy runs as the task says.
#[test]
fn a_copy_named_in_on_failure_runs_only_for_the_failure() {
    let p = PipelineDir::new(
        "tasks:\n  web:\n    command: [sh, -c, \"while [ ! -e go ]; do sleep 0.01; done; exit 3\"]\n    restart: never\n    on_failure: [pager.1]\n  pager:\n    instances: 2\n    restart: on-failure\n    command: [sh, -c, 'echo \"$NONSTOP_TASK:$NONSTOP_FAILED_TASK\" >> calls']\n",
    );
    let mut runner = Runner::start(&p);
    runner.wait_for(&["exited with status 0", "task=pager.0"], 10 * SECOND);
    std::fs::write(p.file("go"), "").unwrap();
    runner.wait_for(&["exited with status 0", "task=pager.1"], 10 * SECOND);
    let calls = std::fs::read_to_string(p.file("calls")).unwrap();
    let mut calls: Vec<&str> = calls.lines().collect();
    calls.sort_unstable();
    assert_eq!(calls, ["pager.0:", "pager.1:web"]);
    assert!(runner.terminate(10 * SECOND).success());
    let log = runner.drain().join("\n");
    assert_eq!(
        log.matches(" INFO started task=pager.1 ").count(),
        1,
        "{log}"
    );
}

#[test]
fn timestamps_prefix_each_line_with_its_arrival() {
    let p = PipelineDir::new(
        "logs: { timestamps: true }\ntasks:\n  talk:\n    command: [sh, -c, \"printf 'one\\\\ntw'; sleep 0.1; printf 'o\\\\n'; printf 'three'\"]\n    restart: never\n",
    );
    let mut runner = Runner::start(&p);
    runner.wait_for(&["exited with status 0", "task=talk"], 10 * SECOND);
    let log = p.log("talk");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    let stamp = |line: &str| {
        line.split_once(' ')
            .map(|(s, r)| (s.to_owned(), r.to_owned()))
            .unwrap()
    };
    let (s1, l1) = stamp(lines[0]);
    let (s2, l2) = stamp(lines[1]);
    let (_, l3) = stamp(lines[2]);
    assert_eq!(
        [l1.as_str(), l2.as_str(), l3.as_str()],
        ["one", "two", "three"]
    );
    assert_eq!(s1, s2, "two began with one: {log}");
    assert!(
        s1.ends_with('Z') && s1.len() == "2026-12-02T11:10:03.851960Z".len(),
        "{s1}"
    );
    assert!(runner.terminate(10 * SECOND).success());
}

/// A NUL byte cannot be in an environment variable: a failed task whose last lines held one
/// made its `on_failure` task fail to start ("a NUL byte in the environment"). It is given
/// U+FFFD in its place, as invalid UTF-8 is.
#[test]
fn a_nul_byte_in_the_failed_tasks_log_reaches_the_on_failure_task_as_u_fffd() {
    let p = PipelineDir::new(
        "tasks:\n  x:\n    command: [sh, -c, 'printf \"bad\\000byte\\n\"; exit 1']\n    restart: never\n    on_failure: [h]\n  h:\n    command: [sh, -c, 'printf \"%s\\n\" \"$NONSTOP_FAILED_LOG\" > told']\n",
    );
    let mut runner = Runner::start(&p);
    runner.wait_for(&["starting for the failure of x", "task=h"], 10 * SECOND);
    runner.wait_for(&["exited with status 0", "task=h"], 10 * SECOND);
    assert_eq!(
        std::fs::read_to_string(p.file("told")).unwrap(),
        "bad\u{FFFD}byte\n"
    );
    assert!(runner.terminate(10 * SECOND).success());
}
