//! Hang detection against the real runner: tasks that beat through each client (C, Rust,
//! `nonstop beat`), stop beating, are SIGSTOPped or leave grandchildren; slots that lie about
//! their process; processes that registered themselves; readiness for `after`; `nonstop ps`
//! and `nonstop beat` on their own.

use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use nonstop_ipc::{HeartbeatTable, ProcessId, TableOptions};

use crate::harness::{
    KillOnDrop, PipelineDir, Proc, Runner, TestKey, alive, c_program, helper_path, nonstop, pid_in,
    pid_of, wait_until,
};

const SECOND: Duration = Duration::from_secs(1);

fn pipeline(key: &TestKey, tasks: &str) -> PipelineDir {
    PipelineDir::new(&format!(
        "heartbeat: {{ key: {}, slots: 16 }}\ntasks:\n{tasks}",
        key.arg()
    ))
}

#[test]
fn a_task_that_stops_beating_is_killed_with_its_grandchildren_and_restarted() {
    let key = TestKey::new();
    let beater = c_program("task_beater");
    let p = pipeline(&key, "");
    std::fs::write(
        p.path(),
        format!(
            "heartbeat: {{ key: {key} }}\ntasks:\n  stuck:\n    \
             command: [{beater}, \"20\", \"5\", {file}]\n    \
             heartbeat: {{ timeout: 300ms, start: 10s }}\n    \
             stop: {{ grace: 2s }}\n",
            key = key.arg(),
            beater = beater.display(),
            file = p.file("grandchild").display(),
        ),
    )
    .unwrap();
    let mut runner = Runner::start(&p);
    let first = pid_of(&runner.wait_for(&["started", "task=stuck"], 10 * SECOND));
    let grandchild = pid_in(&p, "grandchild");
    let _cleanup = KillOnDrop(vec![first, grandchild]);
    let started = Instant::now();
    let hung = runner.wait_for(&["hung: no heartbeat for", "task=stuck"], 10 * SECOND);
    assert_eq!(pid_of(&hung), first, "{hung}");
    // Five beats 20 ms apart, then the 300 ms timeout: well before 2 s.
    assert!(started.elapsed() < 2 * SECOND, "{:?}", started.elapsed());
    let again = pid_of(&runner.wait_for(&["started", "task=stuck"], 10 * SECOND));
    assert_ne!(again, first);
    assert!(!alive(first), "the hung instance lives on");
    assert!(
        wait_until(SECOND, || !alive(grandchild)),
        "its grandchild lives on"
    );
    // The new instance beats in the same slot: the C client found it again.
    assert!(
        wait_until(10 * SECOND, || p.log("stuck").matches("beating").count()
            >= 2),
        "{}",
        p.log("stuck")
    );
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn a_sigstopped_task_is_killed_and_restarted_and_a_beating_one_is_left_alone() {
    let key = TestKey::new();
    let p = pipeline(
        &key,
        &format!(
            // A first beat may come late on a loaded machine (start: 10s); after it, beats
            // every 20 ms against 1 s.
            "  frozen:\n    command: [{helper}, beat, \"20\", \"-1\"]\n    \
             heartbeat: {{ timeout: 1s, start: 10s }}\n\
             \x20 steady:\n    command: [{helper}, beat, \"20\", \"-1\"]\n    \
             heartbeat: {{ timeout: 1s, start: 10s }}\n",
            helper = helper_path()
        ),
    );
    let mut runner = Runner::start(&p);
    let frozen = pid_of(&runner.wait_for(&["started", "task=frozen"], 10 * SECOND));
    let steady = pid_of(&runner.wait_for(&["started", "task=steady"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![frozen, steady]);
    runner.wait_for(&["ready: first heartbeat", "task=frozen"], 10 * SECOND);
    kill(Pid::from_raw(frozen), Signal::SIGSTOP).unwrap();
    let hung = runner.wait_for(&["hung", "task=frozen"], 10 * SECOND);
    assert_eq!(pid_of(&hung), frozen);
    // SIGCONT came with the SIGTERM, so it dies of the SIGTERM without the grace's SIGKILL.
    runner.wait_for(&["signal SIGTERM", "task=frozen"], 10 * SECOND);
    runner.wait_for(&["started", "task=frozen"], 10 * SECOND);
    // A second of beating every 20 ms against a 1 s timeout (long enough for a loaded CI
    // machine, where the 500-services test runs beside this one): no hang.
    std::thread::sleep(SECOND);
    let lines = runner.drain().to_vec();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("task=steady") && l.contains("hung")),
        "{lines:#?}"
    );
    assert!(alive(steady));
    assert!(
        p.log("frozen").contains("beating 0x"),
        "{}",
        p.log("frozen")
    );
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn a_hang_counts_as_a_failure_for_on_failure_and_the_crash_loop() {
    let key = TestKey::new();
    let beater = c_program("task_beater");
    let p = pipeline(
        &key,
        &format!(
            "  stuck:\n    command: [{}, \"10\", \"1\"]\n    heartbeat: 50ms\n    \
             restart: on-failure\n    backoff: {{ initial: 0ms }}\n    \
             crash_loop: {{ max: 2, within: 1m }}\n",
            beater.display()
        ),
    );
    let mut runner = Runner::start(&p);
    for _ in 0..3 {
        runner.wait_for(&["hung", "task=stuck"], 10 * SECOND);
    }
    runner.wait_for(&["more than 2 exits within", "task=stuck"], 10 * SECOND);
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn a_slot_that_names_another_process_is_freed_and_that_process_left_alone() {
    let key = TestKey::new();
    let p = pipeline(&key, "  idle:\n    command: [sleep, \"1000\"]\n");
    let mut runner = Runner::start(&p);
    runner.wait_for(&["started", "task=idle"], 10 * SECOND);
    let table = HeartbeatTable::open(key.key(), &TableOptions::default()).unwrap();

    // A slot whose pid is a live process with another start time: a recycled pid.
    let mut innocent = Proc::spawn(Command::new("sleep").arg("1000"));
    let real = ProcessId::of(innocent.pid()).unwrap().unwrap();
    let liar = ProcessId {
        start_time: real.start_time + 1,
        ..real
    };
    let slot = table
        .register_process(liar, "impostor", Duration::from_millis(20))
        .unwrap();
    let freed = runner.wait_for(&["heartbeat slot", "freed", "another process"], 10 * SECOND);
    assert!(freed.contains("name=impostor"), "{freed}");
    assert!(table.slot(slot.index).is_none());
    assert!(alive(innocent.pid()), "a recycled pid was signalled");

    // pid 1 and the runner itself are never signalled, whatever the table says.
    for pid in [1, runner.pid()] {
        let process = ProcessId::of(pid).unwrap().unwrap();
        table
            .register_process(process, "protected", Duration::from_millis(20))
            .unwrap();
        runner.wait_for(&["freed", "never signalled"], 10 * SECOND);
    }
    assert!(alive(runner.pid()));

    // The same process under its true identity, registered by itself and silent: stopped
    // through its pidfd, and not restarted (nonstop does not own it).
    table
        .register_process(real, "foreign", Duration::from_millis(20))
        .unwrap();
    let hung = runner.wait_for(&["hung", "registered itself", "name=foreign"], 10 * SECOND);
    assert_eq!(pid_of(&hung), innocent.pid());
    let status = innocent.wait(10 * SECOND);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(Signal::SIGTERM as i32)
    );
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn after_waits_for_the_first_beat_of_a_dependency_with_a_heartbeat() {
    let key = TestKey::new();
    let p = pipeline(
        &key,
        &format!(
            "  db:\n    command: [sh, -c, 'sleep 0.5; while {nonstop} beat; do sleep 0.05; done']\n    \
             heartbeat: 2s\n\
             \x20 web:\n    command: [sleep, \"1000\"]\n    after: [db]\n",
            nonstop = nonstop().display()
        ),
    );
    let mut runner = Runner::start(&p);
    runner.wait_for(&["started", "task=db"], 10 * SECOND);
    let started = Instant::now();
    let waiting = runner.wait_for(&["waiting for db", "task=web"], 10 * SECOND);
    assert!(waiting.contains("no heartbeat yet"), "{waiting}");
    runner.wait_for(&["ready: first heartbeat", "task=db"], 10 * SECOND);
    runner.wait_for(&["started", "task=web"], 10 * SECOND);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400),
        "web started after {waited:?}"
    );
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn nonstop_beat_without_a_slot_says_why_and_fails() {
    let run = |env: Option<&str>| {
        let mut command = Command::new(nonstop());
        command.arg("beat").env_remove("NONSTOP_HEARTBEAT");
        if let Some(value) = env {
            command.env("NONSTOP_HEARTBEAT", value);
        }
        let out = command.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(None);
    assert_eq!(code, Some(1));
    assert!(err.contains("NONSTOP_HEARTBEAT is not set"), "{err}");
    let (code, err) = run(Some("banana"));
    assert_eq!(code, Some(1));
    assert!(err.contains("is not KEY:SLOT"), "{err}");
    let key = TestKey::new();
    let (code, err) = run(Some(&format!("{}:0", key.arg())));
    assert_eq!(code, Some(1));
    assert!(err.contains("there is no heartbeat table at key"), "{err}");
    // A table that exists, a slot that is free.
    let _table = HeartbeatTable::open_or_create(
        key.key(),
        &TableOptions {
            slots: 2,
            ..TableOptions::default()
        },
    )
    .unwrap();
    let (code, err) = run(Some(&format!("{}:1", key.arg())));
    assert_eq!(code, Some(1));
    assert!(err.contains("slot 1 is free"), "{err}");
    let (code, err) = run(Some(&format!("{}:7", key.arg())));
    assert_eq!(code, Some(1));
    assert!(err.contains("there is no slot 7"), "{err}");
}

/// A slot's name is what the process that registered it wrote: `nonstop ps` shows it escaped,
/// so that an escape sequence, a bell or a newline can neither drive the terminal nor split
/// its row; `--json` escapes them as JSON does.
#[test]
fn nonstop_ps_shows_a_self_registered_name_escaped_on_its_own_row() {
    let key = TestKey::new();
    let table = HeartbeatTable::open_or_create(
        key.key(),
        &TableOptions {
            slots: 4,
            ..TableOptions::default()
        },
    )
    .unwrap();
    let me = ProcessId::current().unwrap();
    table
        .register_process(me, "red\x1b[31m\x1b]0;title\x07", Duration::from_secs(60))
        .unwrap();
    table
        .register_process(me, "svc\nFAKE row", Duration::from_secs(60))
        .unwrap();
    let out = Command::new(nonstop())
        .args(["ps", "--key", &key.arg()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains(['\x1b', '\x07']),
        "raw control characters: {text:?}"
    );
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 3, "a header and one row per slot: {text}");
    assert!(
        rows[1].contains("  red\\u{1b}[31m\\u{1b}]0;title\\u{7}  "),
        "{text}"
    );
    assert!(rows[2].contains("  svc\\nFAKE row  "), "{text}");
    let json = Command::new(nonstop())
        .args(["ps", "--json", "--key", &key.arg()])
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&json.stdout);
    assert!(!json.contains(['\x1b', '\x07']), "{json:?}");
    assert!(json.contains(r#""name": "svc\nFAKE row""#), "{json}");
    assert!(json.contains(r#""name": "red\u001b[31m"#), "{json}");
}

#[test]
fn nonstop_ps_shows_ok_late_and_dead_without_a_runner() {
    let key = TestKey::new();
    let table = HeartbeatTable::open_or_create(
        key.key(),
        &TableOptions {
            slots: 8,
            ..TableOptions::default()
        },
    )
    .unwrap();
    let me = table.register("fresh", Duration::from_secs(60)).unwrap();
    let _late = table.register_process(
        ProcessId::current().unwrap(),
        "silent",
        Duration::from_millis(10),
    );
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_id = ProcessId::of(gone.id() as i32).unwrap().unwrap();
    gone.wait().unwrap();
    table
        .register_process(gone_id, "departed", Duration::from_secs(60))
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    me.beat();
    let ps = |args: &[&str]| {
        let out = Command::new(nonstop())
            .arg("ps")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = ps(&["--key", &key.arg()]);
    assert_eq!(code, Some(0), "{err}");
    let state_of = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().nth(2) == Some(name))
            .and_then(|l| l.split_whitespace().nth(5))
            .unwrap_or_else(|| panic!("no {name} in\n{out}"))
            .to_owned()
    };
    assert_eq!(state_of("fresh"), "ok", "{out}");
    assert_eq!(state_of("silent"), "late", "{out}");
    assert_eq!(state_of("departed"), "dead", "{out}");
    assert!(out.starts_with(" SLOT      PID  NAME"), "{out}");

    let (code, json, _) = ps(&["--key", &key.arg(), "--json"]);
    assert_eq!(code, Some(0));
    for expected in [
        "\"name\": \"fresh\"",
        "\"state\": \"late\"",
        "\"state\": \"dead\"",
        "\"timeout_ms\": 60000",
    ] {
        assert!(json.contains(expected), "{expected} not in {json}");
    }

    let other = TestKey::new();
    let (code, out, err) = ps(&["--key", &other.arg()]);
    assert_eq!(code, Some(1));
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no heartbeat table at key"), "{err}");
}

#[test]
fn a_python_task_beats_through_the_shipped_module_and_is_killed_when_it_stops() {
    let key = TestKey::new();
    let module_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ipc/python");
    let p = pipeline(
        &key,
        &format!(
            "  ingest:\n    command: [python3, -c, \"import nonstop_heartbeat, time\\n\
             hb = nonstop_heartbeat.from_env()\\nprint('beating', hb.slot, flush=True)\\n\
             for _ in range(10):\\n    hb.beat()\\n    time.sleep(0.02)\\ntime.sleep(1000)\"]\n    \
             env: {{ PYTHONPATH: {} }}\n    heartbeat: {{ timeout: 300ms, start: 10s }}\n\
             \x20 after_ingest:\n    command: [sleep, \"1000\"]\n    after: [ingest]\n",
            module_dir.display()
        ),
    );
    let mut runner = Runner::start(&p);
    let first = pid_of(&runner.wait_for(&["started", "task=ingest"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![first]);
    runner.wait_for(&["ready: first heartbeat", "task=ingest"], 10 * SECOND);
    runner.wait_for(&["started", "task=after_ingest"], 10 * SECOND);
    let hung = runner.wait_for(&["hung", "task=ingest"], 10 * SECOND);
    assert_eq!(pid_of(&hung), first);
    runner.wait_for(&["started", "task=ingest"], 10 * SECOND);
    assert!(p.log("ingest").contains("beating 0"), "{}", p.log("ingest"));
    assert!(runner.terminate(10 * SECOND).success());

    // Outside a task: a clear error, not a traceback of ctypes.
    let out = Command::new("python3")
        .args([
            "-c",
            "import nonstop_heartbeat; nonstop_heartbeat.from_env()",
        ])
        .env("PYTHONPATH", &module_dir)
        .env_remove("NONSTOP_HEARTBEAT")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HeartbeatError: NONSTOP_HEARTBEAT is not set"),
        "{err}"
    );
}

/// 500 services beating every 100 ms against a 1 s timeout, watched for 10 s: not one is taken
/// for hung.
#[test]
fn five_hundred_services_beating_in_time_see_no_false_kill() {
    const N: usize = 500;
    let key = TestKey::new();
    let beater = c_program("task_beater");
    let mut yaml = format!("heartbeat: {{ key: {}, slots: 1024 }}\ntasks:\n", key.arg());
    for i in 0..N {
        yaml += &format!(
            "  s{i}:\n    command: [{}, \"100\", \"-1\"]\n    heartbeat: 1s\n",
            beater.display()
        );
    }
    let p = PipelineDir::new(&yaml);
    let mut runner = Runner::start(&p);
    let mut pids = Vec::with_capacity(N);
    for _ in 0..N {
        pids.push(pid_of(
            &runner.wait_for(&["started", "task=s"], 30 * SECOND),
        ));
    }
    let _cleanup = KillOnDrop(pids);
    std::thread::sleep(10 * SECOND);
    let hung: Vec<String> = runner
        .drain()
        .iter()
        .filter(|l| l.contains("hung") || l.contains("exited"))
        .cloned()
        .collect();
    assert!(hung.is_empty(), "{} false kills: {hung:#?}", hung.len());
    assert!(runner.terminate(30 * SECOND).success());
}

/// `ipcrm` of the table under a running runner: said once, hang detection stops, the tasks run
/// on and the runner stops cleanly.
#[test]
fn a_table_removed_under_the_runner_is_said_once_and_the_tasks_run_on() {
    let key = TestKey::new();
    let beater = c_program("task_beater");
    let p = pipeline(
        &key,
        &format!(
            "  flaky:\n    command: [{}, \"10\", \"3\"]\n    heartbeat: 100ms\n    \
             backoff: {{ initial: 50ms, max: 50ms }}\n    crash_loop: {{ max: 1000, within: 1m }}\n",
            beater.display()
        ),
    );
    let mut runner = Runner::start(&p);
    runner.wait_for(&["hung", "task=flaky"], 10 * SECOND);
    HeartbeatTable::open(key.key(), &TableOptions::default())
        .unwrap()
        .remove()
        .unwrap();
    runner.wait_for(
        &["the heartbeat table was removed while in use"],
        10 * SECOND,
    );
    // The task cannot find its slot any more (exit 3) and is restarted; nothing more is said
    // of the table.
    runner.wait_for(&["exited with status 3", "task=flaky"], 10 * SECOND);
    std::thread::sleep(Duration::from_millis(500));
    let lines = runner.drain().to_vec();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("heartbeat table was removed"))
            .count(),
        1
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("cannot free") || l.contains("cannot watch")),
        "{lines:#?}"
    );
    assert!(runner.terminate(10 * SECOND).success());
}
