//! Probes against the real runner: an http probe on python's `http.server`, a tcp probe that
//! gates `after`, exec probes that fail, time out, or never succeed.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::{KillOnDrop, PipelineDir, Runner, alive, pid_of};
use crate::servers::free_port;

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn a_sigstopped_http_server_is_killed_after_its_failed_probes_and_restarted() {
    let port = free_port();
    let p = PipelineDir::new(&format!(
        "tasks:\n  web:\n    command: [python3, -m, http.server, \"{port}\", --bind, 127.0.0.1]\n    \
         probe: {{ http: \"http://127.0.0.1:{port}/\", every: 200ms, timeout: 150ms, failures: 3 }}\n    \
         stop: {{ grace: 2s }}\n"
    ));
    let mut runner = Runner::start(&p);
    let first = pid_of(&runner.wait_for(&["started", "task=web"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![first]);
    runner.wait_for(&["ready: first healthy probe", "task=web"], 20 * SECOND);
    kill(Pid::from_raw(first), Signal::SIGSTOP).unwrap();
    for n in 1..=2 {
        let line = runner.wait_for(&["probe failed", "task=web"], 10 * SECOND);
        assert!(line.contains(&format!("({n} of 3 in a row)")), "{line}");
        assert!(line.contains("no answer within 150ms"), "{line}");
    }
    let hung = runner.wait_for(&["hung", "task=web"], 10 * SECOND);
    assert!(hung.contains("3 probes failed in a row"), "{hung}");
    assert_eq!(pid_of(&hung), first);
    // SIGCONT came with SIGTERM: python dies of it, without waiting for the grace.
    runner.wait_for(&["signal SIGTERM", "task=web"], 10 * SECOND);
    let second = pid_of(&runner.wait_for(&["started", "task=web"], 10 * SECOND));
    assert_ne!(second, first);
    assert!(!alive(first));
    runner.wait_for(&["ready: first healthy probe", "task=web"], 20 * SECOND);
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn after_waits_for_the_first_healthy_probe_of_a_dependency() {
    let port = free_port();
    // The database listens only after 0.6 s, as a slow server would.
    let p = PipelineDir::new(&format!(
        "tasks:\n  db:\n    command: [python3, -c, \"import socket, time\\ntime.sleep(0.6)\\n\
         s = socket.socket()\\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\\n\
         s.bind(('127.0.0.1', {port}))\\ns.listen()\\ntime.sleep(1000)\"]\n    \
         probe: {{ tcp: \"127.0.0.1:{port}\", every: 100ms }}\n\
         \x20 web:\n    command: [sleep, \"1000\"]\n    after: [db]\n"
    ));
    let mut runner = Runner::start(&p);
    runner.wait_for(&["started", "task=db"], 10 * SECOND);
    let t0 = Instant::now();
    let waiting = runner.wait_for(&["waiting for db", "task=web"], 10 * SECOND);
    assert!(waiting.contains("no healthy probe yet"), "{waiting}");
    runner.wait_for(&["ready: first healthy probe", "task=db"], 10 * SECOND);
    runner.wait_for(&["started", "task=web"], 10 * SECOND);
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    // Failures while starting are not counted (nor logged as warnings).
    let lines = runner.drain().to_vec();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("probe failed") || l.contains("hung")),
        "{lines:#?}"
    );
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn exec_probes_fail_time_out_and_give_up_on_a_task_that_never_becomes_healthy() {
    let p = PipelineDir::new("");
    std::fs::write(p.file("healthy"), "").unwrap();
    std::fs::write(
        p.path(),
        format!(
            "tasks:\n  file:\n    command: [sleep, \"1000\"]\n    \
             probe: {{ exec: [test, -e, {healthy}], every: 100ms, failures: 2 }}\n\
             \x20 slow:\n    command: [sleep, \"1000\"]\n    \
             probe: {{ exec: [sleep, \"10\"], every: 200ms, timeout: 100ms, start: 500ms }}\n",
            healthy = p.file("healthy").display()
        ),
    )
    .unwrap();
    let mut runner = Runner::start(&p);
    let first = pid_of(&runner.wait_for(&["started", "task=file"], 10 * SECOND));
    let slow = pid_of(&runner.wait_for(&["started", "task=slow"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![first, slow]);
    runner.wait_for(&["ready: first healthy probe", "task=file"], 10 * SECOND);
    std::fs::remove_file(p.file("healthy")).unwrap();
    let failed = runner.wait_for(&["probe failed", "task=file"], 10 * SECOND);
    assert!(
        failed.contains("the probe exited with status 1"),
        "{failed}"
    );
    let hung = runner.wait_for(&["hung", "task=file"], 10 * SECOND);
    assert!(hung.contains("2 probes failed in a row"), "{hung}");
    assert_eq!(pid_of(&hung), first);

    // `sleep 10` never answers within 100 ms: never healthy within `start`.
    let hung = runner.wait_for(&["hung", "task=slow"], 10 * SECOND);
    assert!(
        hung.contains("no healthy probe within 500ms of its start (last: no answer within 100ms)"),
        "{hung}"
    );
    assert_eq!(pid_of(&hung), slow);
    assert!(runner.terminate(10 * SECOND).success());
    // The probes' own processes were killed at their timeout, not left behind.
    let leftovers: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("cmdline")).ok())
        .filter(|c| c == "sleep\x0010\x00")
        .collect();
    assert!(
        leftovers.is_empty(),
        "probe processes left: {}",
        leftovers.len()
    );
}
