//! Durations at their bound against the real runner: every duration of a pipeline (and of a
//! plugin's arguments) is at most 100 years (`36500d`). At the maximum the runner runs and
//! stops cleanly; above it `run`, `reload` and the plugin refuse it with an error at the
//! field, where they once accepted it and the runner aborted (`Instant + Duration` overflow,
//! exit 134).

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{
    KillOnDrop, PipelineDir, Runner, TestKey, alive, ctl, ctl_ok, gzip_plugin, nonstop, pid_of,
    sweep_plugin,
};

const SECOND: Duration = Duration::from_secs(1);

/// The longest duration a pipeline takes.
const MAX: &str = "36500d";

/// The error for a duration above [`MAX`].
const TOO_LONG: &str = "too long: a duration is at most 100 years (36500d)";

/// A pipeline with every duration a task has set to `d`: a resident task with a heartbeat and a
/// probe, one that crashes (its backoff), an `every` task and a cron task that fires every
/// second, both still running when their next start comes (their timeouts).
fn every_duration(key: &TestKey, d: &str) -> String {
    format!(
        "heartbeat: {{ key: {key}, slots: 8 }}
tasks:
  server:
    command: [sleep, \"1000\"]
    backoff: {{ initial: {d}, max: {d}, stable: {d} }}
    crash_loop: {{ max: 3, within: {d} }}
    stop: {{ grace: {d} }}
    heartbeat: {{ timeout: {d}, start: {d} }}
    probe: {{ tcp: \"127.0.0.1:1\", every: {d}, timeout: {d}, start: {d} }}
  crasher:
    command: [sh, -c, \"exit 3\"]
    backoff: {{ initial: {d}, max: {d}, stable: {d} }}
    stop: {{ grace: {d} }}
  periodic:
    command: [sleep, \"1000\"]
    every: {d}
    timeout: {d}
    stop: {{ grace: {d} }}
  cron:
    command: [sleep, \"1000\"]
    cron: \"* * * * * *\"
    timeout: {d}
    stop: {{ grace: {d} }}
",
        key = key.arg()
    )
}

/// The state and `next_start` of task `name` in `nonstop status --json`.
fn state_of(p: &PipelineDir, name: &str) -> (String, Value) {
    let status: Value = serde_json::from_str(&ctl_ok(p, &["status", "--json"])).unwrap();
    let task = status["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name} in {status}"))
        .clone();
    (
        task["state"].as_str().unwrap().to_owned(),
        task["next_start"].clone(),
    )
}

#[test]
fn a_pipeline_with_every_duration_at_the_maximum_runs_and_stops_cleanly_and_above_it_is_refused() {
    let key = TestKey::new();
    // Above the maximum: `run` refuses it, each task's first such field named, exit 1 (this
    // once started and aborted at the first deadline, exit 134).
    let above = PipelineDir::new(&every_duration(&key, "1e19"));
    let mut runner = Runner::start(&above);
    let status = runner.wait(30 * SECOND);
    let log = runner.seen.join("\n");
    assert_eq!(status.code(), Some(1), "{status}: {log}");
    for field in [
        ":5:25: tasks.server.backoff.initial:",
        ":12:25: tasks.crasher.backoff.initial:",
        ":16:12: tasks.periodic.every:",
        ":22:14: tasks.cron.timeout:",
    ] {
        assert!(
            runner
                .seen
                .iter()
                .any(|l| l.contains(field) && l.ends_with(TOO_LONG)),
            "no {field} ... {TOO_LONG} in:\n{log}"
        );
    }

    // At the maximum: it runs.
    let p = PipelineDir::new(&every_duration(&key, MAX));
    let mut runner = Runner::start(&p);
    let mut pids = Vec::new();
    for task in ["server", "periodic", "cron"] {
        let line = runner.wait_for(&["started", &format!("task={task} ")], 20 * SECOND);
        pids.push(pid_of(&line));
    }
    let _cleanup = KillOnDrop(pids.clone());
    // The crasher waits a hundred years to start again; the cron task's next start comes
    // while its run goes on, and is skipped.
    runner.wait_for(
        &["task=crasher", "exited with status 3", "restarting in"],
        20 * SECOND,
    );
    runner.wait_for(
        &[
            "task=cron",
            "skipped a run: the previous run is still going",
        ],
        20 * SECOND,
    );
    let (state, next) = state_of(&p, "crasher");
    assert_eq!(state, "backoff");
    let year: i32 = next.as_str().unwrap()[..4].parse().unwrap();
    assert!(year >= 2100, "restarting in a hundred years, not {next}");
    assert_eq!(state_of(&p, "server").0, "running");
    // SIGUSR1's status lines, with the same deadlines.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(runner.pid()),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    runner.wait_for(
        &["task=crasher", "state=backoff", "restarting in"],
        20 * SECOND,
    );
    // SIGTERM: every task stops (a grace of a hundred years is not waited for by a process
    // that ends on SIGTERM) and the runner exits 0.
    let status = runner.terminate(60 * SECOND);
    assert_eq!(
        status.code(),
        Some(0),
        "{status}: {}",
        runner.seen.join("\n")
    );
    for pid in pids {
        assert!(!alive(pid), "{pid} outlived the runner");
    }
}

const BEFORE: &str = "\
tasks:
  first:
    command: [sleep, \"1000\"]
";

#[test]
fn a_reload_refuses_a_task_above_the_maximum_and_takes_one_at_it_while_the_runner_answers() {
    let p = PipelineDir::new(BEFORE);
    let mut runner = Runner::start(&p);
    let first = pid_of(&runner.wait_for(&["started", "task=first"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![first]);
    // Above the maximum, in each field that once aborted the live runner after `added`.
    for (field, at) in [
        ("every: 1e19", "tasks.added.every"),
        ("every: 1s\n    timeout: 1e19", "tasks.added.timeout"),
        (
            "cron: \"0 3 * * *\"\n    timeout: 9.3e18",
            "tasks.added.timeout",
        ),
        ("stop: { grace: 1e19 }", "tasks.added.stop.grace"),
        ("backoff: { initial: 1e19 }", "tasks.added.backoff.initial"),
        ("every: 213503982334601d", "tasks.added.every"),
        (
            "probe: { tcp: \"127.0.0.1:1\", every: 1e19 }",
            "tasks.added.probe.every",
        ),
        (
            "probe: { tcp: \"127.0.0.1:1\", start: 1e19 }",
            "tasks.added.probe.start",
        ),
    ] {
        std::fs::write(
            p.path(),
            format!("{BEFORE}  added:\n    command: [sleep, \"1000\"]\n    {field}\n"),
        )
        .unwrap();
        let out = ctl(&p, &["reload"]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{field}: {stdout}");
        assert!(
            stdout.contains("pipeline.yaml:") && stdout.contains(at),
            "{field}: {stdout}"
        );
        assert!(stdout.contains(TOO_LONG), "{field}: {stdout}");
        // The runner is alive and answers.
        assert!(alive(runner.pid()));
        assert!(ctl_ok(&p, &["status"]).contains("first"));
    }
    // At the maximum, every field at once: added, and the runner still answers.
    std::fs::write(
        p.path(),
        format!(
            "{BEFORE}  added:\n    command: [sleep, \"1000\"]\n    every: {MAX}\n    \
             timeout: {MAX}\n    stop: {{ grace: {MAX} }}\n    \
             probe: {{ tcp: \"127.0.0.1:1\", every: {MAX}, timeout: {MAX}, start: {MAX} }}\n  \
             resident:\n    command: [sh, -c, \"exit 3\"]\n    \
             backoff: {{ initial: {MAX}, max: {MAX}, stable: {MAX} }}\n"
        ),
    )
    .unwrap();
    assert_eq!(
        ctl_ok(&p, &["reload"]),
        "added: added resident\nunchanged: 1\n"
    );
    let added = pid_of(&runner.wait_for(&["started", "task=added"], 10 * SECOND));
    let _cleanup_added = KillOnDrop(vec![added]);
    runner.wait_for(
        &["task=resident", "exited with status 3", "restarting in"],
        10 * SECOND,
    );
    let status = ctl_ok(&p, &["status"]);
    for task in ["first", "added", "resident"] {
        assert!(status.contains(task), "{status}");
    }
    let status = runner.terminate(60 * SECOND);
    assert_eq!(
        status.code(),
        Some(0),
        "{status}: {}",
        runner.seen.join("\n")
    );
}

/// The sweep plugin's `grace`: at the maximum a pass stops a hung service and returns; above
/// it, `check` points at the argument and a run fails with the same words, instead of
/// aborting every run.
#[test]
fn sweep_grace_at_the_maximum_stops_a_hung_service_and_above_it_is_refused_at_the_argument() {
    let lib = sweep_plugin();
    let key = TestKey::new();
    let p = PipelineDir::new(&format!(
        "tasks:\n  above:\n    plugin: {lib}\n    every: 1m\n    \
         args: {{ key: \"{key}\", grace: 1e19 }}\n  \
         at:\n    plugin: {lib}\n    every: 1m\n    args: {{ key: \"{key}\", grace: {MAX} }}\n",
        lib = lib.display(),
        key = key.arg(),
    ));
    let out = Command::new(nonstop())
        .args(["check", "pipeline.yaml"])
        .current_dir(p.dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "pipeline.yaml:5:39: tasks.above.args.grace: invalid duration \
             \"1e19\": {TOO_LONG}\npipeline.yaml: 1 error\n"
        )
    );

    // A table with a registered process that never beats.
    let (_table, mut silent) = crate::harness::table_with_a_silent_service(&key);
    std::thread::sleep(Duration::from_millis(50));
    let run = |grace: &str| {
        Command::new(nonstop())
            .args(["plugin-host", "run"])
            .arg(&lib)
            .arg(format!(
                "{{\"key\": \"{}\", \"grace\": {grace}}}",
                key.arg()
            ))
            .output()
            .unwrap()
    };
    // Above: the run fails with the argument's error, not a panic or an abort; nobody is
    // signalled.
    let out = run("1e19");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("grace") && text.contains(TOO_LONG), "{text}");
    assert!(!text.contains("panic"), "{text}");
    assert!(alive(silent.pid()));
    // At the maximum: the hung process is stopped with SIGTERM and the pass ends.
    let out = run(&format!("\"{MAX}\""));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 hung stopped (0 killed)"), "{text}");
    let status = silent.wait(10 * SECOND);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(15),
        "{text}"
    );
}

/// YAML's `.inf`, `-.inf` and `.nan` in a plugin's duration argument are refused as what they
/// are, at the argument, as in a pipeline's own fields: JSON has no such numbers, and they
/// reached the plugin as `null` ("invalid type: null, expected a duration").
#[test]
fn infinite_and_nan_plugin_durations_are_refused_at_the_argument_as_what_they_are() {
    let sweep = sweep_plugin();
    let gzip = gzip_plugin();
    let key = TestKey::new();
    let p = PipelineDir::new(&format!(
        "tasks:\n  forever:\n    plugin: {sweep}\n    every: 1m\n    \
         args: {{ key: \"{key}\", grace: .inf }}\n  \
         nothing:\n    plugin: {sweep}\n    every: 1m\n    args: {{ key: \"{key}\", grace: .nan }}\n  \
         before:\n    plugin: {gzip}\n    every: 1m\n    args: {{ dir: ., older_than: -.inf }}\n",
        sweep = sweep.display(),
        gzip = gzip.display(),
        key = key.arg(),
    ));
    let out = Command::new(nonstop())
        .args(["check", "pipeline.yaml"])
        .current_dir(p.dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "pipeline.yaml:5:39: tasks.forever.args.grace: invalid duration \".inf\": must be a \
         finite number of seconds, 0 or more\n\
         pipeline.yaml:9:39: tasks.nothing.args.grace: invalid duration \".nan\": must be a \
         finite number of seconds, 0 or more\n\
         pipeline.yaml:13:33: tasks.before.args.older_than: invalid duration \"-.inf\": a \
         duration cannot be negative\n\
         pipeline.yaml: 3 errors\n"
    );
}
