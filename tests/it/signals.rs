//! Every signal has a meaning: each catchable one leaves the runner and its tasks running
//! (HUP, USR1 and USR2 with their own log lines, the rest logged as ignored); a SIGTERM sent
//! twice within a second is one request, so graces hold (`timeout` signals the runner and its
//! process group); SIGTERM is taken between the starts of a thousand tasks.

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::{PipelineDir, Runner, alive, nonstop, pid_of, wait_until};

const SECOND: Duration = Duration::from_secs(1);

/// Sends signal number `n` with kill(1): real-time signals have no `nix` name.
fn send(pid: i32, n: i32) {
    let status = Command::new("kill")
        .arg(format!("-{n}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{n} {pid}");
}

#[test]
fn every_catchable_signal_leaves_the_runner_and_its_tasks_running() {
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
    let server = pid_of(&runner.wait_for(&["started", "task=server"], 10 * SECOND));
    runner.wait_for(&["hourly", "run finished"], 10 * SECOND);
    // Ones the runner does not take: their default action is to do nothing (CONT, WINCH,
    // URG), or they stay ignored (PIPE).
    let untaken = [13, 18, 23, 28];
    for n in (1..=64).filter(|&n| ![2, 9, 15, 19].contains(&n)) {
        send(runner.pid(), n);
        let name = match n {
            // A reload of the unchanged file touches nothing.
            1 => Some("0 added, 0 removed, 0 changed, 2 unchanged".to_owned()),
            10 => Some("status task=server state=running".to_owned()),
            12 => Some("SIGUSR2 received: reopened 2 task logs".to_owned()),
            17 => None,
            n if untaken.contains(&n) => None,
            _ => Some("received: ignored (nonstop gives it no meaning) sender=".to_owned()),
        };
        if let Some(line) = name {
            let got = runner.wait_for(&[&line], 10 * SECOND);
            if n > 13 && n != 17 && !untaken.contains(&n) && n < 32 {
                let signal = Signal::try_from(n).unwrap();
                assert!(got.contains(signal.as_str()), "{n}: {got}");
            }
        }
        assert!(alive(runner.pid()), "signal {n} ended the runner");
        assert!(alive(server), "signal {n} reached the task");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(alive(runner.pid()) && alive(server));
    let log = runner.drain().join("\n");
    assert_eq!(log.matches("started task=server").count(), 1, "{log}");
    assert!(log.contains("SIGRTMIN+3 received: ignored"), "{log}");
    assert!(log.contains("SIGTSTP received: ignored"), "{log}");
    assert!(log.contains("status task=hourly state=idle"), "{log}");
    assert!(runner.terminate(10 * SECOND).success());
    assert!(!alive(server));
}

/// A task that takes a second to end after SIGTERM, with five seconds of grace.
const SLOW_TO_STOP: &str = "\
tasks:
  careful:
    command: [sh, -c, \"trap 'sleep 1; exit 0' TERM; echo $$ > ready; while :; do sleep 0.1; done\"]
    stop: { grace: 5s }
";

#[test]
fn a_sigterm_sent_twice_within_a_second_is_one_request_and_the_grace_holds() {
    let p = PipelineDir::new(SLOW_TO_STOP);
    let mut runner = Runner::start(&p);
    runner.wait_for(&["started", "task=careful"], 10 * SECOND);
    crate::harness::pid_in(&p, "ready");
    let pid = Pid::from_raw(runner.pid());
    kill(pid, Signal::SIGTERM).unwrap();
    // The second once the first was taken (two pending SIGTERMs are one signal).
    runner.wait_for(&["SIGTERM received: stopping every task"], 10 * SECOND);
    kill(pid, Signal::SIGTERM).unwrap();
    runner.wait_for(
        &["SIGTERM received again within 1.0s: the same request"],
        10 * SECOND,
    );
    assert!(runner.wait(20 * SECOND).success());
    let log = runner.seen.join("\n");
    assert!(log.contains("stopped (status 0) task=careful"), "{log}");
    assert!(!log.contains("SIGKILL"), "{log}");
    assert!(!log.contains("killing every task now"), "{log}");
}

#[test]
fn timeout_stopping_the_runner_does_not_cut_the_grace() {
    // `timeout` sends SIGTERM to the runner and then to its process group: two signals to
    // the runner within microseconds.
    for _ in 0..3 {
        let p = PipelineDir::new(SLOW_TO_STOP);
        let mut runner = Runner::spawn(
            Command::new("timeout")
                .arg("1")
                .arg(nonstop())
                .arg("run")
                .arg(p.path()),
        );
        let status = runner.wait(20 * SECOND);
        let log = runner.seen.join("\n");
        // timeout exits 124 when it had to signal its command, which then exited 0.
        assert_eq!(status.code(), Some(124), "{log}");
        assert!(log.contains("stopped (status 0) task=careful"), "{log}");
        assert!(!log.contains("SIGKILL"), "{log}");
    }
}

#[test]
fn sigterm_is_taken_between_the_starts_of_a_thousand_tasks() {
    let mut yaml = String::from("tasks:\n");
    for i in 0..1000 {
        yaml += &format!("  t{i}:\n    command: [sleep, \"1000\"]\n");
    }
    let p = PipelineDir::new(&yaml);
    let mut runner = Runner::start(&p);
    let first = pid_of(&runner.wait_for(&["started task=t0 "], 30 * SECOND));
    kill(Pid::from_raw(runner.pid()), Signal::SIGTERM).unwrap();
    assert!(runner.wait(60 * SECOND).success());
    let log = runner.seen.join("\n");
    let started = log.matches("started task=").count();
    assert!(
        started < 500,
        "{started} of 1000 tasks started after SIGTERM was sent"
    );
    let stopped = log.matches("stopped (").count();
    assert_eq!(started, stopped, "every started task was stopped");
    assert!(wait_until(SECOND, || !alive(first)));
}

#[test]
fn sigusr2_reopens_a_log_moved_away() {
    let p = PipelineDir::new(
        "\
tasks:
  ticker:
    command: [sh, -c, \"while :; do echo tick; sleep 0.05; done\"]
",
    );
    let mut runner = Runner::start(&p);
    runner.wait_for(&["started", "task=ticker"], 10 * SECOND);
    let log = p.file("logs/ticker.log");
    assert!(wait_until(10 * SECOND, || p.log("ticker").contains("tick")));
    // What logrotate does without copytruncate: move the file, then signal.
    std::fs::rename(&log, p.file("logs/ticker.log.1")).unwrap();
    kill(Pid::from_raw(runner.pid()), Signal::SIGUSR2).unwrap();
    runner.wait_for(&["SIGUSR2 received: reopened 1 task logs"], 10 * SECOND);
    assert!(wait_until(10 * SECOND, || p.log("ticker").contains("tick")));
    let moved = std::fs::read_to_string(p.file("logs/ticker.log.1")).unwrap();
    assert!(moved.starts_with("tick\n"), "{moved:?}");
    assert!(runner.terminate(10 * SECOND).success());
}

/// Under systemd (`Type=notify`, `WatchdogSec=`): `READY=1` once the tasks are started and
/// ready, `WATCHDOG=1` from the turning loop every half `WATCHDOG_USEC`, `STOPPING=1` at
/// shutdown; a fake systemd listens on the datagram socket.
#[test]
fn systemd_hears_ready_watchdog_pings_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let p = PipelineDir::new(
        "tasks:\n  db:\n    command: [sh, -c, 'sleep 0.3; touch up; exec sleep 1000']\n    \
         probe: { exec: [test, -e, up], every: 100ms }\n  web:\n    command: [sleep, \"1000\"]\n    after: [db]\n",
    );
    let socket_path = p.file("notify.sock");
    let systemd = UnixDatagram::bind(&socket_path).unwrap();
    systemd
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut command = std::process::Command::new(crate::harness::nonstop());
    command
        .arg("run")
        .arg(p.path())
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID");
    let mut runner = Runner::spawn(&mut command);
    // The command keeps the write end of the runner's log pipe until it is dropped.
    drop(command);
    let started = std::time::Instant::now();
    let mut messages = Vec::new();
    let mut buf = [0u8; 512];
    // READY=1 only once web started, after db's first healthy probe; pings meanwhile.
    while !messages.iter().any(|m: &String| m.contains("READY=1")) {
        let n = systemd.recv(&mut buf).expect("no READY=1 from the runner");
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let ready = messages.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(ready.contains("STATUS=2 of 2 tasks running"), "{ready}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "READY=1 came before db was ready"
    );
    runner.wait_for(&["started", "task=web"], SECOND);
    let pings_before = messages.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    for _ in 0..3 {
        let n = systemd.recv(&mut buf).unwrap();
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(m.contains("WATCHDOG=1"), "{m}");
    }
    assert!(pings_before >= 1, "{messages:?}");
    // A reload: RELOADING=1 with the monotonic time systemd requires, then READY=1.
    kill(Pid::from_raw(runner.pid()), Signal::SIGHUP).unwrap();
    let mut reload = Vec::new();
    while !reload.iter().any(|m: &String| m.contains("READY=1")) {
        let n = systemd.recv(&mut buf).expect("no READY=1 after the reload");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !m.contains("WATCHDOG=1") {
            reload.push(m);
        }
    }
    assert!(reload[0].contains("RELOADING=1"), "{reload:?}");
    assert!(reload[0].contains("MONOTONIC_USEC="), "{reload:?}");
    assert!(reload[1].contains("STATUS=reloaded; 2 tasks"), "{reload:?}");
    runner.wait_for(&["0 added, 0 removed, 0 changed, 2 unchanged"], 10 * SECOND);
    kill(Pid::from_raw(runner.pid()), Signal::SIGTERM).unwrap();
    loop {
        let n = systemd.recv(&mut buf).expect("no STOPPING=1");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m.contains("STOPPING=1") {
            assert!(m.contains("STATUS=stopping 2 tasks"), "{m}");
            break;
        }
    }
    assert!(runner.wait(10 * SECOND).success());
}
