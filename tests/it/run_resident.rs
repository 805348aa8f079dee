//! `nonstop run`, resident tasks: restarts, backoff, crash loops, restart policies, the
//! environment a task starts in, and `after`.

use std::time::Duration;

use crate::harness::{PipelineDir, Runner, helper_path, pid_of, wait_until, zombie_children};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn a_crashing_task_is_restarted_with_growing_then_capped_delays() {
    let p = PipelineDir::new(
        "\
tasks:
  crasher:
    command: [sh, -c, \"date +%s%N >> starts; exit 7\"]
    backoff: { initial: 200ms, max: 400ms, stable: 10s }
    crash_loop: { max: 100, within: 1m }
",
    );
    let mut runner = Runner::start(&p);
    let mut delays = Vec::new();
    let mut pids = Vec::new();
    for _ in 0..5 {
        let line = runner.wait_for(
            &["crasher", "exited with status 7", "restarting in"],
            10 * SECOND,
        );
        delays.push(
            line.split("restarting in ")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned(),
        );
        pids.push(pid_of(&line));
    }
    assert_eq!(delays, ["200ms", "400ms", "400ms", "400ms", "400ms"]);
    pids.dedup();
    assert_eq!(pids.len(), 5, "each run is a new process");
    // Never restarted before its delay was over.
    let starts = p.numbers::<u128>("starts");
    assert!(starts.len() >= 5, "{starts:?}");
    for (i, pair) in starts.windows(2).take(4).enumerate() {
        let gap_ms = (pair[1] - pair[0]) / 1_000_000;
        let delay: u128 = delays[i].trim_end_matches("ms").parse().unwrap();
        assert!(
            gap_ms >= delay,
            "restart {i} came after {gap_ms} ms, delay {delay} ms"
        );
    }
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn a_crash_loop_fails_the_task_and_it_is_not_restarted() {
    let p = PipelineDir::new(
        "\
tasks:
  looping:
    command: [sh, -c, \"date +%s%N >> starts; exit 1\"]
    backoff: { initial: 0ms }
    crash_loop: { max: 3, within: 1m }
  steady:
    command: [sleep, \"1000\"]
",
    );
    let mut runner = Runner::start(&p);
    let line = runner.wait_for(&["looping", "failed, not restarted"], 10 * SECOND);
    assert!(line.contains("more than 3 exits within 1m0s"), "{line}");
    assert_eq!(p.numbers::<u128>("starts").len(), 4);
    assert!(
        !wait_until(SECOND / 2, || p.numbers::<u128>("starts").len() > 4),
        "restarted after failing"
    );
    // The other task is unaffected, and shutdown still works.
    assert!(
        runner
            .drain()
            .iter()
            .any(|l| l.contains("started") && l.contains("steady"))
    );
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn restart_policies_never_and_on_failure_leave_finished_tasks_alone() {
    let p = PipelineDir::new(
        "\
tasks:
  once:
    command: [sh, -c, \"echo ran >> once.txt; exit 3\"]
    restart: never
  clean:
    command: [sh, -c, \"echo ran >> clean.txt; exit 0\"]
    restart: on-failure
  dirty:
    command: [sh, -c, \"echo ran >> dirty.txt; exit 2\"]
    restart: on-failure
    backoff: { initial: 0ms }
    crash_loop: { max: 2, within: 1m }
",
    );
    let mut runner = Runner::start(&p);
    runner.wait_for(
        &["once", "exited with status 3", "not restarted"],
        10 * SECOND,
    );
    runner.wait_for(
        &["clean", "exited with status 0", "not restarted"],
        10 * SECOND,
    );
    runner.wait_for(&["dirty", "failed"], 10 * SECOND);
    let runs = |f: &str| {
        std::fs::read_to_string(p.file(f))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(
        (runs("once.txt"), runs("clean.txt"), runs("dirty.txt")),
        (1, 1, 3)
    );
    // With nothing left running, SIGTERM ends the runner at once.
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn a_task_starts_in_its_own_group_with_its_env_cwd_umask_limits_and_no_runner_fds() {
    let probe = helper_path();
    let p = PipelineDir::new(&format!(
        "\
tasks:
  probe:
    command: [{probe}, probe]
    restart: never
    umask: \"027\"
    cwd: work
    env: {{ GREETING: hello, PORT: 5005 }}
    limits: {{ nofile: 123 }}
  bare:
    command: [{probe}, probe]
    clear_env: true
    env: {{ ONLY: this }}
    restart: never
"
    ));
    std::fs::create_dir(p.file("work")).unwrap();
    let mut runner = Runner::start(&p);
    let pid = pid_of(&runner.wait_for(&["started", "probe"], 10 * SECOND));
    runner.wait_for(&["probe", "not restarted"], 10 * SECOND);
    runner.wait_for(&["bare", "not restarted"], 10 * SECOND);
    assert!(wait_until(5 * SECOND, || p.log("probe").contains("env ")
        && p.log("bare").contains("env ")));
    let log = p.log("probe");
    let lines: Vec<&str> = log.lines().collect();
    let work = p.file("work");
    for expected in [
        "sigblk=0000000000000000".to_owned(),
        // Only SIGPIPE, which the probe's own Rust runtime ignores when it starts.
        "sigign=0000000000001000".to_owned(),
        "umask=0027".to_owned(),
        "fds=0 1 2".to_owned(),
        format!("pgid={pid} pid={pid}"),
        "nofile=123".to_owned(),
        format!("cwd={}", work.display()),
        "env GREETING=hello".to_owned(),
        "env PORT=5005".to_owned(),
        "env NONSTOP_TASK=probe".to_owned(),
    ] {
        assert!(
            lines.contains(&expected.as_str()),
            "{expected:?} not in:\n{log}"
        );
    }
    // The runner's environment is passed on, unless cleared.
    assert!(lines.iter().any(|l| l.starts_with("env PATH=")), "{log}");
    let bare: Vec<String> = p
        .log("bare")
        .lines()
        .filter_map(|l| l.strip_prefix("env ").map(str::to_owned))
        .collect();
    // nonstop's own variables are set even so: its control socket and its name.
    assert_eq!(bare.len(), 3, "{bare:?}");
    assert!(bare[0].starts_with("NONSTOP_SOCKET=/"), "{bare:?}");
    assert_eq!(bare[1..], ["NONSTOP_TASK=bare", "ONLY=this"]);
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn systemd_variables_meant_for_the_runner_do_not_reach_tasks() {
    let probe = helper_path();
    let p = PipelineDir::new(&format!(
        "\
tasks:
  probe:
    command: [{probe}, probe]
    restart: never
  own:
    command: [{probe}, probe]
    env: {{ LISTEN_FDS: 3 }}
    restart: never
"
    ));
    let runner_only = [
        ("NOTIFY_SOCKET", "/run/systemd/notify"),
        ("WATCHDOG_PID", "1"),
        ("WATCHDOG_USEC", "30000000"),
        ("LISTEN_PID", "1"),
        ("LISTEN_FDS", "2"),
        ("LISTEN_FDNAMES", "http:https"),
        ("JOURNAL_STREAM", "8:12345"),
    ];
    let mut command = std::process::Command::new(crate::harness::nonstop());
    command.arg("run").arg(p.path()).env("KEPT", "yes");
    for (k, v) in runner_only {
        command.env(k, v);
    }
    let mut runner = Runner::spawn(&mut command);
    // The command holds the write end of the runner's log until it is dropped.
    drop(command);
    runner.wait_for(&["probe", "not restarted"], 10 * SECOND);
    runner.wait_for(&["own", "not restarted"], 10 * SECOND);
    assert!(wait_until(5 * SECOND, || p.log("probe").contains("env ")
        && p.log("own").contains("env ")));
    let log = p.log("probe");
    assert!(log.contains("env KEPT=yes"), "{log}");
    for (k, _) in runner_only {
        assert!(
            !log.contains(&format!("env {k}=")),
            "{k} reached the task:\n{log}"
        );
    }
    // Unless the task sets one itself.
    let own = p.log("own");
    assert!(own.contains("env LISTEN_FDS=3"), "{own}");
    assert!(!own.contains("env NOTIFY_SOCKET="), "{own}");
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn a_task_runs_as_its_user() {
    let p = PipelineDir::new(
        "\
tasks:
  who:
    command: [sh, -c, \"id; echo HOME=$HOME USER=$USER LOGNAME=$LOGNAME SHELL=$SHELL\"]
    user: nobody
    restart: never
  chosen:
    command: [sh, -c, \"echo HOME=$HOME USER=$USER\"]
    user: nobody
    env: { HOME: /srv/chosen }
    restart: never
",
    );
    let mut runner = Runner::start(&p);
    if nix::unistd::getuid().is_root() {
        runner.wait_for(&["who", "not restarted"], 10 * SECOND);
        runner.wait_for(&["chosen", "not restarted"], 10 * SECOND);
        assert!(wait_until(5 * SECOND, || p.log("who").contains("HOME=")));
        let log = p.log("who");
        assert!(log.starts_with("uid=65534(nobody)"), "{log}");
        assert!(!log.contains("groups=0(root)"), "kept root's groups: {log}");
        // What the password database says, as `su -` gives it, not root's HOME.
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        assert!(
            log.contains(&format!(
                "HOME={} USER=nobody LOGNAME=nobody SHELL={}",
                nobody.dir.display(),
                nobody.shell.display()
            )),
            "{log}"
        );
        assert!(wait_until(5 * SECOND, || p.log("chosen").contains("HOME=")));
        assert_eq!(p.log("chosen"), "HOME=/srv/chosen USER=nobody\n");
    } else {
        // Switching users needs root: the start fails, visibly.
        runner.wait_for(&["who", "cannot start"], 10 * SECOND);
        runner.wait_for(&["chosen", "cannot start"], 10 * SECOND);
    }
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn dependents_start_after_their_dependencies_and_stop_before_them() {
    let p = PipelineDir::new(
        "\
tasks:
  app:
    command: [sleep, \"1000\"]
    after: [db, migrate]
  db:
    command: [sleep, \"1000\"]
  migrate:
    every: 1h
    command: [sh, -c, \"sleep 0.2\"]
    after: [db]
",
    );
    let mut runner = Runner::start(&p);
    runner.wait_for(&["started", "app"], 10 * SECOND);
    assert!(runner.terminate(10 * SECOND).success());
    let log = runner.seen.clone();
    let at = |words: &[&str]| {
        log.iter()
            .position(|l| words.iter().all(|w| l.contains(w)))
            .unwrap_or_else(|| panic!("no line with {words:?} in:\n{}", log.join("\n")))
    };
    assert!(at(&["waiting for db, migrate", "task=app"]) < at(&["started", "task=app"]));
    assert!(at(&["started", "task=db"]) < at(&["started", "task=migrate"]));
    assert!(at(&["run finished", "task=migrate"]) < at(&["started", "task=app"]));
    assert!(at(&["stopped", "task=app"]) < at(&["stopping", "task=db"]));
}

#[test]
fn a_one_shot_that_succeeded_lets_its_dependents_start_and_one_that_failed_is_reported() {
    // `slow` holds `app` and `never` back until both one-shots have exited.
    let p = PipelineDir::new(
        "\
tasks:
  slow:
    every: 1h
    command: [sleep, \"0.5\"]
  setup:
    command: [sh, -c, \"exit 0\"]
    restart: never
  broken-setup:
    command: [sh, -c, \"exit 3\"]
    restart: never
  app:
    command: [sleep, \"1000\"]
    after: [setup, slow]
  never:
    command: [sleep, \"1000\"]
    after: [broken-setup, slow]
",
    );
    let mut runner = Runner::start(&p);
    runner.wait_for(&["exited with status 0", "task=setup"], 10 * SECOND);
    runner.wait_for(&["exited with status 3", "task=broken-setup"], 10 * SECOND);
    // Exited 0 and not restarted: done, like a one-shot; `app` starts once `slow` is done.
    runner.wait_for(&["started", "task=app"], 10 * SECOND);
    // Failed and not restarted: `never` says why it will not start, once.
    runner.wait_for(
        &[
            "will not start: broken-setup ended without success and is not restarted",
            "task=never",
        ],
        10 * SECOND,
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(runner.terminate(10 * SECOND).success());
    let log = runner.seen.join("\n");
    assert!(!log.contains("INFO started task=never"), "{log}");
    assert_eq!(log.matches("will not start").count(), 1, "{log}");
}

/// Starts the runner on `p` while `./not-a-program` is a script (the check passes), then makes
/// it executable text that is neither ELF nor a script, as a botched deployment would, and
/// lets `broken` start: execve fails in the child (ENOEXEC).
fn broken_after_check(p: &PipelineDir) -> Runner {
    p.executable("not-a-program", "#!/bin/sh\n");
    let mut runner = Runner::start(p);
    runner.wait_for(&["waiting for gate", "task=broken"], 10 * SECOND);
    p.executable("not-a-program", "just text\n");
    std::fs::write(p.file("go"), "").unwrap();
    runner
}

#[test]
fn a_program_that_cannot_be_executed_is_reported_retried_and_left_no_zombie() {
    let p = PipelineDir::new(
        "\
tasks:
  gate:
    command: [sh, -c, \"while [ ! -e go ]; do sleep 0.01; done\"]
    every: 1h
  broken:
    command: [./not-a-program]
    backoff: { initial: 0ms }
    crash_loop: { max: 2, within: 1m }
    after: [gate]
",
    );
    let mut runner = broken_after_check(&p);
    let line = runner.wait_for(&["broken", "cannot start"], 10 * SECOND);
    assert!(
        line.contains("executing the program: Exec format error"),
        "{line}"
    );
    runner.wait_for(&["broken", "failed, not restarted"], 10 * SECOND);
    let log = runner.drain().join("\n");
    assert_eq!(log.matches("cannot start").count(), 3, "{log}");
    assert!(!log.contains("started task=broken"), "{log}");
    assert_eq!(zombie_children(runner.pid()), Vec::<i32>::new());
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn a_task_that_fails_to_start_in_a_hot_loop_does_not_starve_the_runner() {
    let p = PipelineDir::new(
        "\
tasks:
  gate:
    command: [sh, -c, \"while [ ! -e go ]; do sleep 0.01; done\"]
    every: 1h
  broken:
    command: [./not-a-program]
    backoff: { initial: 0ms, max: 0ms }
    crash_loop: { max: 10000, within: 1ms }
    after: [gate]
  steady:
    command: [sleep, \"1000\"]
",
    );
    let mut runner = broken_after_check(&p);
    runner.wait_for(&["broken", "cannot start"], 10 * SECOND);
    runner.wait_for(&["started", "steady"], 10 * SECOND);
    // Restarting at once forever, but signals are still handled between starts.
    assert!(runner.terminate(10 * SECOND).success());
    assert!(
        runner
            .seen
            .iter()
            .any(|l| l.contains("stopped") && l.contains("steady"))
    );
}

#[test]
fn the_runner_raises_its_own_file_limit_but_tasks_get_the_one_it_was_given() {
    let probe = helper_path();
    let p = PipelineDir::new(&format!(
        "\
tasks:
  plain:
    command: [{probe}, probe]
    restart: never
  own:
    command: [{probe}, probe]
    restart: never
    limits: {{ nofile: 100 }}
"
    ));
    // Start the runner under a low soft limit, as many systems do (1024).
    let mut runner = Runner::spawn(
        std::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -Sn 256 && exec \"$0\" run \"$1\"")
            .arg(crate::harness::nonstop())
            .arg(p.path()),
    );
    runner.wait_for(&["plain", "not restarted"], 10 * SECOND);
    runner.wait_for(&["own", "not restarted"], 10 * SECOND);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", runner.pid())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(
        numbers[0], numbers[1],
        "soft limit not raised: {open_files}"
    );
    assert!(wait_until(5 * SECOND, || p
        .log("plain")
        .contains("nofile=")
        && p.log("own").contains("nofile=")));
    assert!(
        p.log("plain").lines().any(|l| l == "nofile=256"),
        "{}",
        p.log("plain")
    );
    assert!(
        p.log("own").lines().any(|l| l == "nofile=100"),
        "{}",
        p.log("own")
    );
    assert!(runner.terminate(10 * SECOND).success());
}

/// The runner's log names programs as the pipeline has them: a path holding an escape
/// sequence is shown escaped (`\u{1b}`), never written raw into the log and the terminal that
/// shows it.
#[test]
fn a_program_path_with_control_characters_is_logged_escaped() {
    let p = PipelineDir::new(
        "\
tasks:
  odd:
    command: [\"./pr\\e[31mog\"]
    restart: on-failure
    backoff: { initial: 0ms }
    crash_loop: { max: 2, within: 1m }
",
    );
    // It runs once, removes itself and fails: the next start cannot find it.
    p.executable("pr\x1b[31mog", "#!/bin/sh\nrm -- \"$0\"\nexit 1\n");
    let mut runner = Runner::start(&p);
    let line = runner.wait_for(&["odd", "cannot start"], 10 * SECOND);
    assert!(
        line.contains("/pr\\u{1b}[31mog: ") && line.contains("No such file or directory"),
        "{line}"
    );
    assert!(runner.terminate(10 * SECOND).success());
    let log = runner.drain().join("\n");
    assert!(!log.contains('\x1b'), "a raw escape in the log: {log:?}");
}
