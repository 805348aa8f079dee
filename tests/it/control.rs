//! The control socket and its commands, against a real runner: `status`, `start`, `stop`,
//! `restart`, `shutdown`, `health` and `logs`; who is served (`SO_PEERCRED`, mode 0600); and
//! what a slow or hostile client cannot do.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{
    KillOnDrop, PipelineDir, Runner, alive, ctl, ctl_ok, nonstop, pid_of, wait_until,
};

const SECOND: Duration = Duration::from_secs(1);

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn status(p: &PipelineDir) -> Value {
    let out = ctl(p, &["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn task<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

const PIPELINE: &str = "\
metrics: metrics.prom
tasks:
  web:
    command: [sh, -c, \"echo one; echo two; echo three; exec sleep 1000\"]
  crashy:
    command: [sh, -c, \"exit 3\"]
    backoff: { initial: 0ms }
    crash_loop: { max: 2, within: 1m }
  hourly:
    command: [\"true\"]
    every: 1h
";

#[test]
fn status_start_stop_restart_logs_health_and_shutdown_through_the_socket() {
    let p = PipelineDir::new(PIPELINE);
    let mut runner = Runner::start(&p);
    let web = pid_of(&runner.wait_for(&["started", "task=web"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![web]);
    runner.wait_for(&["failed, not restarted", "task=crashy"], 10 * SECOND);
    runner.wait_for(&["next run in", "task=hourly"], 10 * SECOND);

    let s = status(&p);
    assert_eq!(s["schema"], 1);
    assert_eq!(s["runner"]["pid"], runner.pid());
    assert!(s["runner"]["containment"].as_str().is_some());
    let w = task(&s, "web");
    assert_eq!(w["state"], "running");
    assert_eq!(w["kind"], "resident");
    assert_eq!(w["pid"], web);
    assert_eq!(w["restarts"], 0);
    assert!(w["uptime"].as_f64().unwrap() >= 0.0);
    assert!(w["log"].as_str().unwrap().ends_with("logs/web.log"));
    let c = task(&s, "crashy");
    assert_eq!(c["state"], "failed");
    assert_eq!(c["last_exit"]["code"], 3);
    assert_eq!(c["starts"], 3);
    let h = task(&s, "hourly");
    assert_eq!(h["kind"], "periodic");
    assert_eq!(h["state"], "idle");
    assert!(h["next_start"].as_str().unwrap().ends_with('Z'), "{h}");
    // The crash loop makes the pipeline unhealthy.
    assert_eq!(s["healthy"], false);
    let out = ctl(&p, &["health"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("crashy: failed"), "{}", stdout(&out));

    // The columns name every task.
    let table = stdout(&ctl(&p, &["status"]));
    assert!(table.starts_with("TASK"), "{table}");
    for name in ["web", "crashy", "hourly"] {
        assert!(table.contains(name), "{table}");
    }

    // An unknown name: nothing is done, exit 1.
    let out = ctl(&p, &["stop", "web", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no task named \"nosuch\""),
        "{}",
        stderr(&out)
    );
    assert!(alive(web));

    // stop: stopped, and not restarted.
    let out = ctl(&p, &["stop", "web"]);
    assert_eq!(stdout(&out), "web: stopping\n", "{}", stderr(&out));
    runner.wait_for(&["stopped (signal SIGTERM)", "task=web"], 10 * SECOND);
    assert!(wait_until(5 * SECOND, || !alive(web)));
    assert_eq!(task(&status(&p), "web")["state"], "stopped");
    assert_eq!(ctl(&p, &["stop", "web"]).status.code(), Some(0));
    // start: a new process.
    assert_eq!(stdout(&ctl(&p, &["start", "web"])), "web: started\n");
    let web2 = pid_of(&runner.wait_for(&["started", "task=web"], 10 * SECOND));
    let _cleanup2 = KillOnDrop(vec![web2]);
    assert_ne!(web2, web);
    assert_eq!(
        stdout(&ctl(&p, &["start", "web"])),
        "web: already running\n"
    );
    // restart: stopped, then started at once.
    assert_eq!(stdout(&ctl(&p, &["restart", "web"])), "web: restarting\n");
    runner.wait_for(&["restart requested", "task=web"], 10 * SECOND);
    let web3 = pid_of(&runner.wait_for(&["started", "task=web"], 10 * SECOND));
    let _cleanup3 = KillOnDrop(vec![web3]);
    assert_ne!(web3, web2);
    let s = status(&p);
    let w = task(&s, "web");
    assert_eq!(
        (w["pid"].as_i64(), w["restarts"].as_i64()),
        (Some(web3 as i64), Some(2))
    );
    // start clears `failed`: crashy runs again (and fails again, after a fresh count).
    assert_eq!(stdout(&ctl(&p, &["start", "crashy"])), "crashy: started\n");
    runner.wait_for(&["failed, not restarted", "task=crashy"], 10 * SECOND);
    assert_eq!(task(&status(&p), "crashy")["starts"], 6);
    // A periodic task runs now.
    assert_eq!(stdout(&ctl(&p, &["start", "hourly"])), "hourly: started\n");
    runner.wait_for(&["run finished with status 0", "task=hourly"], 10 * SECOND);
    assert_eq!(task(&status(&p), "hourly")["state"], "idle");

    // logs: the last lines of the task's log.
    let out = ctl(&p, &["logs", "web", "-n", "2"]);
    assert_eq!(stdout(&out), "two\nthree\n", "{}", stderr(&out));
    assert_eq!(stdout(&ctl(&p, &["logs", "web"])).lines().count(), 9);

    // The metrics, asked for and in the file.
    let prom = stdout(&ctl(&p, &["status", "--format", "prometheus"]));
    assert!(
        prom.contains("nonstop_task_state{task=\"web\",state=\"running\"} 1\n"),
        "{prom}"
    );
    assert!(
        prom.contains("nonstop_task_starts_total{task=\"web\"} 3\n"),
        "{prom}"
    );
    assert!(
        prom.contains("nonstop_task_last_exit_code{task=\"crashy\"} 3\n"),
        "{prom}"
    );
    assert!(wait_until(5 * SECOND, || {
        std::fs::read_to_string(p.file("metrics.prom"))
            .is_ok_and(|m| m.contains("nonstop_task_state{task=\"hourly\",state=\"idle\"} 1"))
    }));

    // shutdown: everything stops and the socket is gone.
    assert_eq!(stdout(&ctl(&p, &["shutdown"])), "shutting down\n");
    assert!(runner.wait(20 * SECOND).success());
    assert!(!alive(web3));
    assert!(!p.file("logs/nonstop.sock").exists());
    let metrics = std::fs::read_to_string(p.file("metrics.prom")).unwrap();
    assert!(
        metrics.contains("nonstop_task_state{task=\"web\",state=\"stopped\"} 1"),
        "{metrics}"
    );
    // No runner: exit 3.
    let out = ctl(&p, &["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no runner serves it"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn health_is_0_when_every_resident_task_runs_and_is_healthy() {
    let p = PipelineDir::new(
        "tasks:\n  web:\n    command: [sleep, \"1000\"]\n    probe: { exec: [test, -e, up], every: 50ms, start: 1h }\n  setup:\n    command: [\"true\"]\n    restart: never\n",
    );
    let mut runner = Runner::start(&p);
    let web = pid_of(&runner.wait_for(&["started", "task=web"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![web]);
    runner.wait_for(&["not restarted", "task=setup"], 10 * SECOND);
    let out = ctl(&p, &["health"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("web: running, not ready yet"),
        "{}",
        stdout(&out)
    );
    assert_eq!(task(&status(&p), "web")["probe"]["state"], "starting");
    std::fs::write(p.file("up"), "").unwrap();
    runner.wait_for(&["ready", "task=web"], 10 * SECOND);
    let out = ctl(&p, &["health", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(stdout(&out), "");
    let web = task(&status(&p), "web").clone();
    assert_eq!(web["probe"]["state"], "healthy");
    assert_eq!(web["healthy"], true);
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn only_root_and_the_runners_uid_are_served() {
    let p = PipelineDir::new("tasks:\n  web:\n    command: [sleep, \"1000\"]\n");
    std::fs::set_permissions(p.dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let mut runner = Runner::start(&p);
    let web = pid_of(&runner.wait_for(&["started", "task=web"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![web]);
    let socket = p.file("logs/nonstop.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    // Another user, as an operator would be: setpriv (util-linux).
    let as_nobody = || {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(nonstop())
            .args(["status", "--socket"])
            .arg(&socket)
            .output()
            .unwrap()
    };
    // The file system refuses first.
    let out = as_nobody();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
    // And with the socket opened to all by mistake, the runner refuses (SO_PEERCRED).
    std::fs::set_permissions(&socket, PermissionsExt::from_mode(0o666)).unwrap();
    let out = as_nobody();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("uid 65534 is neither root nor the runner's uid 0"),
        "{}",
        stderr(&out)
    );
    runner.wait_for(&["control connection refused", "uid=65534"], 10 * SECOND);
    assert!(ctl(&p, &["status"]).status.success());
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn slow_and_hostile_clients_neither_block_the_loop_nor_grow_it() {
    let p = PipelineDir::new("tasks:\n  web:\n    command: [sleep, \"1000\"]\n");
    let mut runner = Runner::start(&p);
    let web = pid_of(&runner.wait_for(&["started", "task=web"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![web]);
    let socket = p.file("logs/nonstop.sock");
    // Clients that connect and say nothing, more than there are places: each newcomer takes
    // the place of the one that has said nothing longest, which is told so and closed.
    let mut silent: Vec<UnixStream> = (0..40)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    let out = ctl(&p, &["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    silent[0].set_read_timeout(Some(5 * SECOND)).unwrap();
    let mut told = String::new();
    silent[0].read_to_string(&mut told).unwrap();
    assert!(
        told.contains("closed to make room (every control connection was taken)"),
        "{told}"
    );
    drop(silent);
    // A request that never ends is cut at 64 KiB.
    let mut endless = UnixStream::connect(&socket).unwrap();
    endless.set_write_timeout(Some(5 * SECOND)).unwrap();
    endless.set_read_timeout(Some(5 * SECOND)).unwrap();
    let chunk = vec![b'x'; 4096];
    for _ in 0..20 {
        if endless.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut answer = String::new();
    let _ = endless.read_to_string(&mut answer);
    assert!(answer.contains("request over 65536 bytes"), "{answer}");
    // A client that asks and never reads: the loop still turns (tasks are still supervised).
    let mut deaf = UnixStream::connect(&socket).unwrap();
    deaf.write_all(b"status\n").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(web),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let web2 = pid_of(&runner.wait_for(&["started", "task=web"], 10 * SECOND));
    let _cleanup2 = KillOnDrop(vec![web2]);
    // Nonsense is answered with an error.
    let mut nonsense = UnixStream::connect(&socket).unwrap();
    nonsense.write_all(b"fly me to the moon\n").unwrap();
    let mut answer = String::new();
    nonsense.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("unknown request \\\"fly\\\""), "{answer}");
    drop(deaf);
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn a_second_runner_on_the_same_socket_is_refused() {
    let p = PipelineDir::new("tasks:\n  web:\n    command: [sleep, \"1000\"]\n");
    let q = PipelineDir::new("tasks:\n  other:\n    command: [sleep, \"1000\"]\n");
    let mut runner = Runner::start(&p);
    let web = pid_of(&runner.wait_for(&["started", "task=web"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![web]);
    let out = Command::new(nonstop())
        .arg("run")
        .arg(q.path())
        .env("NONSTOP_SOCKET", p.file("logs/nonstop.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("another runner serves the control socket"),
        "{}",
        stderr(&out)
    );
    assert!(ctl(&p, &["status"]).status.success(), "the first goes on");
    // A socket left by a runner that was SIGKILLed is replaced by the next.
    runner.proc.sigkill();
    runner.wait(10 * SECOND);
    assert!(p.file("logs/nonstop.sock").exists());
    let mut next = Runner::start(&p);
    let web2 = pid_of(&next.wait_for(&["started", "task=web"], 10 * SECOND));
    let _cleanup2 = KillOnDrop(vec![web2]);
    assert_eq!(task(&status(&p), "web")["pid"], web2);
    assert!(next.terminate(10 * SECOND).success());
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line_definition() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef nonstop"),
        ("fish", "complete -c nonstop"),
    ] {
        let out = Command::new(nonstop())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}: {script}");
        for command in ["status", "restart", "reload", "health", "logs"] {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
    }
    let out = Command::new(nonstop()).arg("manpage").output().unwrap();
    assert!(out.status.success());
    let page = stdout(&out);
    assert!(page.starts_with(".ie"), "{}", &page[..200.min(page.len())]);
    assert!(page.contains(".TH nonstop 1"), "{page}");
    for command in ["nonstop status", "nonstop reload", "nonstop health"] {
        assert!(page.contains(command), "{command} not in the man page");
    }
    assert!(page.contains("NONSTOP_SOCKET"));
    // A shell that does not exist is a usage error (2).
    let out = Command::new(nonstop())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `nonstop logs -f` follows a log through its rotations without losing or repeating a line,
/// and `-n` reads back through the rotated files, gzipped ones too.
#[test]
fn logs_follow_the_log_across_rotations() {
    let p = PipelineDir::new(
        "logs: { max_size: 1K, keep: 50, compress: true }\ntasks:\n  chatty:\n    command: [sh, -c, \"i=0; while true; do i=$((i+1)); echo line $i; sleep 0.002; done\"]\n",
    );
    let mut runner = Runner::start(&p);
    let chatty = pid_of(&runner.wait_for(&["started", "task=chatty"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![chatty]);
    // Until a few rotations have happened (some compressed by now, some not yet).
    assert!(wait_until(20 * SECOND, || {
        std::fs::read_dir(p.file("logs"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("chatty.log.")
            })
            .count()
            >= 3
    }));
    let mut follow = Command::new(nonstop())
        .args(["logs", "chatty", "-f", "-n", "1"])
        .env("NONSTOP_SOCKET", p.file("logs/nonstop.sock"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _follow_cleanup = KillOnDrop(vec![follow.id() as i32]);
    std::thread::sleep(Duration::from_millis(1500));
    kill_pid(follow.id() as i32);
    let mut out = String::new();
    std::io::Read::read_to_string(follow.stdout.as_mut().unwrap(), &mut out).unwrap();
    let _ = follow.wait();
    let numbers: Vec<u64> = out
        .lines()
        .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    assert!(numbers.len() > 50, "{} lines followed", numbers.len());
    for pair in numbers.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "a line lost or repeated: {pair:?}");
    }
    // Followed across at least one rotation (each file holds about 100 lines).
    assert!(numbers.len() > 150, "{} lines", numbers.len());
    // -n reads back through the rotated files, in order.
    let back = ctl_ok(&p, &["logs", "chatty", "-n", "300"]);
    let numbers: Vec<u64> = back
        .lines()
        .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    assert_eq!(numbers.len(), 300);
    for pair in numbers.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "{pair:?}");
    }
    assert!(runner.terminate(10 * SECOND).success());
}

fn kill_pid(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
}

/// `test-helper connect SOCKET N` as `uid`: N connections that send nothing, held until the
/// helper is dropped.
fn idle_crowd(
    helper: &std::path::Path,
    socket: &std::path::Path,
    n: usize,
    uid: u32,
) -> crate::harness::Proc {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(helper);
    command
        .arg("connect")
        .arg(socket)
        .arg(n.to_string())
        .uid(uid)
        .gid(uid);
    let crowd = crate::harness::Proc::spawn(&mut command);
    assert_eq!(crowd.line(60 * SECOND), format!("connected {n}"));
    crowd
}

/// A task running as root (or as the runner's user) that opens a thousand connections and
/// sends nothing cannot keep root out: `status`, `health` and `shutdown` are answered, each
/// newcomer taking the place of the connection that has said nothing longest, and the log
/// says so in a few lines, not a thousand.
#[test]
fn a_thousand_idle_connections_do_not_keep_root_from_status_health_or_shutdown() {
    let p = PipelineDir::new("tasks:\n  web:\n    command: [sleep, \"1000\"]\n");
    let mut runner = Runner::start(&p);
    let web = pid_of(&runner.wait_for(&["started", "task=web"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![web]);
    let socket = p.file("logs/nonstop.sock");
    let _crowd = idle_crowd(
        std::path::Path::new(crate::harness::helper_path()),
        &socket,
        1000,
        0,
    );
    let table = ctl_ok(&p, &["status"]);
    assert!(table.contains("web"), "{table}");
    assert!(ctl_ok(&p, &["status", "--json"]).contains("\"ok\":true"));
    let out = ctl(&p, &["health"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    // The crowd again, while the commands run: they are still answered.
    let _more = idle_crowd(
        std::path::Path::new(crate::harness::helper_path()),
        &socket,
        1000,
        0,
    );
    assert_eq!(ctl_ok(&p, &["health"]), "healthy\n");
    runner.wait_for(&["control connection closed to make room"], 10 * SECOND);
    let evictions = runner
        .drain()
        .iter()
        .filter(|l| l.contains("closed to make room"))
        .count();
    assert!(evictions <= 4, "{evictions} lines for the evictions");
    assert_eq!(ctl_ok(&p, &["shutdown"]), "shutting down\n");
    assert!(runner.wait(20 * SECOND).success());
}

/// With the runner under a user of its own, that user's idle connections hold at most part of
/// the places: root is answered without waiting for them, and so is that user's own command.
#[test]
fn idle_connections_of_the_runners_user_keep_neither_root_nor_that_user_out() {
    use std::os::unix::process::CommandExt;
    if !nix::unistd::getuid().is_root() {
        // Needs another uid to run the runner as.
        return;
    }
    let p = PipelineDir::new(
        "containment: process-group\ntasks:\n  web:\n    command: [sleep, \"1000\"]\n",
    );
    // nobody may enter the pipeline's directory and write its logs and socket there, and
    // run the binaries from where they are (a clone may be in a private directory).
    std::fs::set_permissions(p.dir.path(), PermissionsExt::from_mode(0o777)).unwrap();
    let public = crate::harness::PublicBinaries::new();
    let mut runner = Runner::spawn(
        Command::new(public.nonstop())
            .arg("run")
            .arg(p.path())
            .uid(65534)
            .gid(65534),
    );
    let web = pid_of(&runner.wait_for(&["started", "task=web"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![web]);
    let socket = p.file("logs/nonstop.sock");
    // Root's idle connections first, every place taken; then the user's crowd.
    let root_idle: Vec<UnixStream> = (0..32)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    let _crowd = idle_crowd(&public.helper(), &socket, 1000, 65534);
    // The runner's own user (answered after every connection before it was accepted).
    let as_nobody = Command::new(public.nonstop())
        .args(["status", "--socket"])
        .arg(&socket)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(as_nobody.status.success(), "{}", stderr(&as_nobody));
    assert!(stdout(&as_nobody).contains("web"));
    // The user took 24 places, root's oldest; then it made room among its own.
    let still_open = root_idle
        .iter()
        .filter(|s| {
            s.set_nonblocking(true).unwrap();
            let mut s: &UnixStream = s;
            let read = s.read(&mut [0u8; 256]);
            matches!(read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    assert_eq!(still_open, 8);
    // Root.
    assert!(ctl_ok(&p, &["status"]).contains("web"));
    assert_eq!(ctl_ok(&p, &["health"]), "healthy\n");
    assert!(runner.terminate(10 * SECOND).success());
}

/// A task that failed has no process, so no heartbeat state: not `starting`, which it kept
/// from its last instance's start.
#[test]
fn a_failed_task_with_a_heartbeat_shows_no_heartbeat_state() {
    let key = crate::harness::TestKey::new();
    let p = PipelineDir::new(&format!(
        "heartbeat: {{ key: {} }}\ntasks:\n  crashy:\n    command: [sh, -c, \"exit 3\"]\n    \
         heartbeat: 30s\n    backoff: {{ initial: 0ms }}\n    \
         crash_loop: {{ max: 2, within: 1m }}\n",
        key.arg()
    ));
    let mut runner = Runner::start(&p);
    runner.wait_for(&["failed, not restarted", "task=crashy"], 10 * SECOND);
    let s = status(&p);
    let c = task(&s, "crashy");
    assert_eq!(c["state"], "failed");
    assert_eq!(c["heartbeat"], Value::Null, "{c}");
    let table = ctl_ok(&p, &["status"]);
    let row = table.lines().find(|l| l.starts_with("crashy")).unwrap();
    assert!(!row.contains("heartbeat"), "{table}");
    assert!(row.trim_end().ends_with('-'), "{table}");
    assert!(runner.terminate(10 * SECOND).success());
}

/// A client may close its sending side once its request is sent (`echo reload | socat -
/// UNIX-CONNECT:...` does): a reload's answer, which comes when the reload is over, still
/// reaches it.
#[test]
fn a_client_that_closes_its_sending_side_still_gets_the_reloads_answer() {
    let p = PipelineDir::new("tasks:\n  web:\n    command: [sleep, \"1000\"]\n");
    let mut runner = Runner::start(&p);
    let web = pid_of(&runner.wait_for(&["started", "task=web"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![web]);
    let mut client = UnixStream::connect(p.file("logs/nonstop.sock")).unwrap();
    client.write_all(b"reload\n").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    client.set_read_timeout(Some(30 * SECOND)).unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert!(answer.contains("\"unchanged\":1"), "{answer}");
    assert!(runner.terminate(10 * SECOND).success());
}

/// A client that sent part of a request and no newline is told, when its 10 s are up, that no
/// whole request line came (not that it sent nothing), and closed; the runner goes on serving.
#[test]
fn a_request_without_its_newline_is_told_so_when_its_time_is_up() {
    let p = PipelineDir::new("tasks:\n  web:\n    command: [sleep, \"1000\"]\n");
    let mut runner = Runner::start(&p);
    let web = pid_of(&runner.wait_for(&["started", "task=web"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![web]);
    let mut partial = UnixStream::connect(p.file("logs/nonstop.sock")).unwrap();
    partial.write_all(b"stat").unwrap();
    partial.set_read_timeout(Some(60 * SECOND)).unwrap();
    let mut told = String::new();
    partial.read_to_string(&mut told).unwrap();
    assert_eq!(
        told,
        "{\"schema\":1,\"ok\":false,\"error\":\"you sent no whole request line (ending in a \
         newline) within 10 s: closed\"}\n"
    );
    assert!(ctl(&p, &["status"]).status.success());
    assert!(runner.terminate(10 * SECOND).success());
}

/// A socket path longer than a Unix socket's (107 bytes) is said to be that, with its length,
/// by every client command (exit 3: no runner can answer there).
#[test]
fn a_client_socket_path_too_long_for_a_unix_socket_is_said_to_be() {
    let socket = format!("/tmp/{}/nonstop.sock", "s".repeat(120));
    let out = Command::new(nonstop())
        .args(["status", "--socket", &socket])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "nonstop: cannot connect to {socket}: the path is {} bytes long, but a Unix \
             socket's path is at most 107 bytes (sockaddr_un.sun_path): name a shorter one with \
             --socket or NONSTOP_SOCKET\n",
            socket.len()
        )
    );
}
