//! Containment: nothing of a pipeline outlives its runner, whatever its tasks do to hide
//! (background children, `setsid`, a trapped TERM, a set-uid program, a program that puts
//! itself in the background) and however the runner dies; its guard cleans up, and the next
//! runner cleans up after a guard that died too; one runner per pipeline; a daemonizing
//! program is not started again into a pile of copies. Real cgroups (CI runs as root), real
//! signals.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::{
    KillOnDrop, PipelineDir, PublicBinaries, Runner, TestKey, alive, children_named, nonstop,
    pid_of, wait_until,
};

const SECOND: Duration = Duration::from_secs(1);

/// Tasks that each hide processes from a process-group kill: background children, a `setsid`
/// child (`escaper`, `daemon`), a trapped TERM, a set-uid program (owned by nobody), and a
/// program that exits 0 leaving a child behind. Hidden pids are written to `pids`, those that
/// left their process group to `escaped` and `daemon`.
fn hostile(p: &PipelineDir, containment: &str) {
    std::fs::copy("/bin/sleep", p.file("suid-sleep")).unwrap();
    std::os::unix::fs::chown(p.file("suid-sleep"), Some(65534), None).unwrap();
    std::fs::set_permissions(p.file("suid-sleep"), PermissionsExt::from_mode(0o4755)).unwrap();
    std::fs::write(
        p.path(),
        format!(
            "\
containment: {containment}
tasks:
  family:
    command: [sh, -c, \"sleep 1000 & echo $! >> pids; sleep 1000 & echo $! >> pids; wait\"]
  escaper:
    command: [sh, -c, \"setsid sh -c 'echo $$ >> escaped; exec sleep 1000' & exec sleep 1000\"]
  deaf:
    command: [sh, -c, \"trap '' TERM; sleep 1000 & echo $! >> pids; wait\"]
  suid:
    command: [./suid-sleep, \"1000\"]
  daemon:
    command: [sh, -c, \"setsid sh -c 'echo $$ >> daemon; exec sleep 1000' & while [ ! -s daemon ]; do sleep 0.01; done\"]
    restart: never
"
        ),
    )
    .unwrap();
}

/// Starts the hostile pipeline and returns the runner, the pids that stayed in their process
/// groups, and those that left them.
fn start_hostile(p: &PipelineDir) -> (Runner, Vec<i32>, Vec<i32>) {
    let mut runner = Runner::start(p);
    let mut grouped = Vec::new();
    for task in ["family", "escaper", "deaf", "suid"] {
        grouped.push(pid_of(&runner.wait_for(&["started", task], 10 * SECOND)));
    }
    let count = |file: &str| p.numbers::<i32>(file).len();
    assert!(wait_until(10 * SECOND, || count("pids") == 3
        && count("escaped") == 1
        && count("daemon") == 1));
    grouped.extend(p.numbers::<i32>("pids"));
    let mut escaped = p.numbers::<i32>("escaped");
    escaped.extend(p.numbers::<i32>("daemon"));
    assert!(grouped.iter().chain(&escaped).all(|&pid| alive(pid)));
    (runner, grouped, escaped)
}

fn living(pids: &[i32]) -> Vec<i32> {
    pids.iter().copied().filter(|&p| alive(p)).collect()
}

#[test]
fn a_sigkilled_runner_leaves_no_process_of_its_pipeline_within_a_second() {
    let p = PipelineDir::new("tasks: {}\n");
    hostile(&p, "cgroup");
    let (mut runner, grouped, escaped) = start_hostile(&p);
    let all: Vec<i32> = grouped.iter().chain(&escaped).copied().collect();
    let _cleanup = KillOnDrop(all.clone());
    let log = runner.wait_for(&["containment: cgroup v2"], 10 * SECOND);
    let cgroup = log.rsplit(' ').next().unwrap().to_owned();
    assert!(std::path::Path::new(&cgroup).is_dir(), "{log}");
    kill(Pid::from_raw(runner.pid()), Signal::SIGKILL).unwrap();
    assert!(
        wait_until(SECOND, || living(&all).is_empty()),
        "alive 1 s after the runner's SIGKILL: {:?}",
        living(&all)
    );
    runner.wait(10 * SECOND);
    let report = runner
        .seen
        .iter()
        .find(|l| l.contains("nonstop-guard: the runner") && l.contains("processes of its cgroup"))
        .unwrap_or_else(|| panic!("no report from the guard:\n{}", runner.seen.join("\n")));
    let killed: usize = report
        .split_whitespace()
        .skip_while(|w| *w != "killed")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    // The main processes die by themselves (parent-death signal) as the guard counts; the
    // others are only ended by the guard.
    assert!(killed >= 6, "{report}");
    assert!(
        wait_until(5 * SECOND, || !std::path::Path::new(&cgroup).exists()),
        "the guard left {cgroup}"
    );
}

#[test]
fn with_process_groups_only_the_guard_ends_every_group_and_only_escapees_survive() {
    let p = PipelineDir::new("tasks: {}\n");
    hostile(&p, "process-group");
    let (mut runner, grouped, escaped) = start_hostile(&p);
    let _cleanup = KillOnDrop(grouped.iter().chain(&escaped).copied().collect());
    runner.wait_for(&["containment: process groups"], 10 * SECOND);
    kill(Pid::from_raw(runner.pid()), Signal::SIGKILL).unwrap();
    assert!(
        wait_until(SECOND, || living(&grouped).is_empty()),
        "alive 1 s after the runner's SIGKILL: {:?}",
        living(&grouped)
    );
    // What docs/pipeline.md says can survive in this mode: processes that left their task's
    // process group.
    assert_eq!(living(&escaped), escaped);
}

#[test]
fn the_next_runner_kills_what_a_runner_and_its_guard_left() {
    let p = PipelineDir::new("tasks: {}\n");
    hostile(&p, "cgroup");
    let (mut runner, grouped, escaped) = start_hostile(&p);
    let all: Vec<i32> = grouped.iter().chain(&escaped).copied().collect();
    let _cleanup = KillOnDrop(all.clone());
    let guard = children_named(runner.pid(), "nonstop-guard");
    assert_eq!(guard.len(), 1);
    // Stopped, the runner cannot start a new guard; then both die.
    kill(Pid::from_raw(runner.pid()), Signal::SIGSTOP).unwrap();
    kill(Pid::from_raw(guard[0]), Signal::SIGKILL).unwrap();
    kill(Pid::from_raw(runner.pid()), Signal::SIGKILL).unwrap();
    runner.wait(10 * SECOND);
    // The main processes die with the runner (parent-death signal), but not the set-uid one
    // (the kernel clears that signal for it) and not their descendants.
    std::thread::sleep(Duration::from_millis(200));
    let left = living(&all);
    assert!(left.contains(&grouped[3]), "the set-uid task");
    assert!(escaped.iter().all(|e| left.contains(e)), "{left:?}");
    // The next runner of this pipeline finds them in the pipeline's cgroup and kills them
    // before it starts anything.
    let mut next = Runner::start(&p);
    let line = next.wait_for(
        &[
            "processes left by an earlier runner of this pipeline",
            "killing them",
        ],
        10 * SECOND,
    );
    assert!(
        line.contains(&format!("{} processes", left.len())),
        "{line} {left:?}"
    );
    next.wait_for(&["started", "family"], 10 * SECOND);
    assert!(living(&left).is_empty(), "{:?}", living(&left));
    // Its tasks run in the cgroup that was killed (a fresh one, since a killed cgroup may
    // SIGKILL what is cloned into it): `family` and `deaf` write their children's pids again.
    assert!(
        wait_until(30 * SECOND, || p.numbers::<i32>("pids").len() == 6),
        "{:?}\n{}",
        p.numbers::<i32>("pids"),
        next.drain().join("\n")
    );
    let _cleanup_next = KillOnDrop(p.numbers::<i32>("pids"));
    assert!(next.terminate(10 * SECOND).success());
}

#[test]
fn a_guard_that_dies_is_replaced() {
    let p = PipelineDir::new(
        "tasks:\n  family:\n    command: [sh, -c, \"sleep 1000 & echo $! >> pids; wait\"]\n",
    );
    let mut runner = Runner::start(&p);
    let main = pid_of(&runner.wait_for(&["started", "family"], 10 * SECOND));
    let child = crate::harness::pid_in(&p, "pids");
    let _cleanup = KillOnDrop(vec![main, child]);
    let first = children_named(runner.pid(), "nonstop-guard");
    assert_eq!(first.len(), 1);
    // `ps` and `pgrep -f` show it as what it is, not with the runner's command line.
    let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", first[0])).unwrap();
    assert!(
        cmdline.starts_with(&format!("nonstop-guard (runner {})\0", runner.pid())),
        "{cmdline:?}"
    );
    kill(Pid::from_raw(first[0]), Signal::SIGKILL).unwrap();
    runner.wait_for(&["the guard died", "starting another"], 10 * SECOND);
    assert!(wait_until(10 * SECOND, || {
        let now = children_named(runner.pid(), "nonstop-guard");
        now.len() == 1 && now != first
    }));
    // The new guard does its job.
    kill(Pid::from_raw(runner.pid()), Signal::SIGKILL).unwrap();
    assert!(wait_until(SECOND, || !alive(main) && !alive(child)));
}

/// What `nonstop run` says when it refuses to run `p` (it must exit 1).
fn refused(p: &PipelineDir) -> String {
    let out = Command::new(nonstop())
        .arg("run")
        .arg(p.path())
        .env("NONSTOP_SOCKET", p.file("refused.sock"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    err
}

#[test]
fn a_second_runner_of_a_pipeline_is_refused_and_the_first_goes_on() {
    let key = TestKey::new();
    let yaml = format!(
        "heartbeat: {{ key: {} }}\ntasks:\n  server:\n    command: [sleep, \"1000\"]\n",
        key.key()
    );
    let p = PipelineDir::new(&yaml);
    let mut first = Runner::start(&p);
    let server = pid_of(&first.wait_for(&["started", "server"], 10 * SECOND));
    // The same pipeline file.
    let err = refused(&p);
    assert!(
        err.contains(&format!(
            "another runner (pid {}) is running this pipeline: it holds {}",
            first.pid(),
            p.file("logs/nonstop.lock").display()
        )),
        "{err}"
    );
    // Another pipeline (its own log directory) on the same heartbeat table.
    let err = refused(&PipelineDir::new(&yaml));
    assert!(
        err.contains(&format!(
            "heartbeat table {} belongs to another runner (pid {}), which is running",
            key.key(),
            first.pid()
        )),
        "{err}"
    );
    // The first runner was not disturbed: its task runs, its table is there, it stops
    // cleanly and then removes the table it created.
    assert!(alive(server));
    assert!(nonstop_ipc::HeartbeatTable::open(key.key(), &Default::default()).is_ok());
    assert!(first.terminate(10 * SECOND).success());
    let log = first.seen.join("\n");
    assert!(!log.contains("ERROR"), "{log}");
    assert!(nonstop_ipc::HeartbeatTable::open(key.key(), &Default::default()).is_err());
}

#[test]
fn a_program_that_puts_itself_in_the_background_is_not_started_again_into_copies() {
    let p = PipelineDir::new(
        "\
tasks:
  forking:
    command: [sh, -c, \"setsid sh -c 'echo $$ >> daemon; exec sleep 1000' & exit 0\"]
    backoff: { initial: 0ms }
",
    );
    let mut runner = Runner::start(&p);
    let main = pid_of(&runner.wait_for(&["started", "forking"], 10 * SECOND));
    let daemon = crate::harness::pid_in(&p, "daemon");
    let _cleanup = KillOnDrop(vec![daemon]);
    let line = runner.wait_for(
        &["exited with status 0 and left 1 process running"],
        10 * SECOND,
    );
    assert!(line.contains(&format!("(pids {daemon})")), "{line}");
    assert!(line.contains(&format!("pid={main}")), "{line}");
    std::thread::sleep(SECOND);
    let starts = runner
        .drain()
        .iter()
        .filter(|l| l.contains("started task=forking"))
        .count();
    assert_eq!(starts, 1, "{}", runner.seen.join("\n"));
    assert_eq!(p.numbers::<i32>("daemon"), [daemon]);
    // When the daemon dies, the task is started again (restart: always).
    kill(Pid::from_raw(daemon), Signal::SIGKILL).unwrap();
    runner.wait_for(
        &["forking", "exited with status 0", "restarting in 0ms"],
        10 * SECOND,
    );
    runner.wait_for(&["started task=forking"], 10 * SECOND);
    let second = {
        assert!(wait_until(10 * SECOND, || p.numbers::<i32>("daemon").len() == 2));
        p.numbers::<i32>("daemon")[1]
    };
    let _cleanup2 = KillOnDrop(vec![second]);
    // Stopping the task stops its daemon.
    assert!(runner.terminate(10 * SECOND).success());
    assert!(!alive(second), "{}", runner.seen.join("\n"));
}

#[test]
fn without_a_writable_cgroup_the_runner_falls_back_to_process_groups_and_says_so() {
    use std::os::unix::process::CommandExt;
    if !nix::unistd::getuid().is_root() {
        // Not root already: the runner below falls back by itself; the other tests see it.
        return;
    }
    let p = PipelineDir::new(
        "tasks:\n  family:\n    command: [sh, -c, \"sleep 1000 & echo $! > kid; wait\"]\n",
    );
    // nobody may enter the pipeline's directory and write its logs there, and run a copy of
    // the binaries it can reach (this clone may be private).
    std::fs::set_permissions(p.dir.path(), PermissionsExt::from_mode(0o777)).unwrap();
    let public = PublicBinaries::new();
    let mut runner = Runner::spawn(
        Command::new(public.nonstop())
            .arg("run")
            .arg(p.path())
            .uid(65534)
            .gid(65534),
    );
    let line = runner.wait_for(&["containment: process groups only"], 10 * SECOND);
    assert!(line.contains("Permission denied"), "{line}");
    assert!(line.contains("docs/pipeline.md"), "{line}");
    let main = pid_of(&runner.wait_for(&["started", "task=family"], 10 * SECOND));
    let kid = crate::harness::pid_in(&p, "kid");
    let _cleanup = KillOnDrop(vec![main, kid]);
    // Its guard ends the task's process group when the runner is SIGKILLed.
    kill(Pid::from_raw(runner.pid()), Signal::SIGKILL).unwrap();
    assert!(
        wait_until(SECOND, || !alive(main) && !alive(kid)),
        "the task outlived its runner"
    );
}

/// Tasks started into their cgroups run where the runner may run: the runner pins itself to
/// its CPU for each clone only (`scheduler/src/spawn/affinity.rs`), the child undoes it before
/// `execve`, and the runner too after the clone.
#[test]
fn tasks_started_in_cgroups_keep_the_runners_cpus_and_so_does_the_runner() {
    let allowed = |pid: i32| -> String {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let p = PipelineDir::new(
        "containment: cgroup\ntasks:\n  a:\n    command: [sleep, \"1000\"]\n  \
         b:\n    command: [sleep, \"1000\"]\n  c:\n    command: [sleep, \"1000\"]\n",
    );
    let mut runner = Runner::start(&p);
    let pids: Vec<i32> = ["task=a", "task=b", "task=c"]
        .iter()
        .map(|t| pid_of(&runner.wait_for(&["started", t], 10 * SECOND)))
        .collect();
    let _cleanup = KillOnDrop(pids.clone());
    let mine = allowed(std::process::id() as i32);
    assert_eq!(allowed(runner.pid()), mine, "the runner stayed pinned");
    for pid in pids {
        assert_eq!(allowed(pid), mine, "task {pid} was left pinned");
    }
    assert!(runner.terminate(10 * SECOND).success());
}

/// A runner that fails at start after it made its heartbeat table (and reserved a slot in
/// it), its pipeline's cgroup and its control socket removes them all, so that nothing is left
/// at the key and the next run, given more slots, starts (it was refused: "another program
/// uses this key"). Here a task's log cannot be opened, which the runner finds after those
/// exist.
#[test]
fn a_runner_that_fails_at_start_leaves_no_table_cgroup_or_socket_behind() {
    use nonstop_ipc::{Error, SemOptions, Semaphore, SharedMemory};
    let key = TestKey::new();
    let pipeline = |slots: u32| {
        format!(
            "heartbeat: {{ key: {}, slots: {slots} }}\ntasks:\n  first:\n    heartbeat: 10s\n    \
             command: [sleep, \"1000\"]\n  web:\n    heartbeat: 10s\n    command: [sleep, \"1000\"]\n",
            key.arg()
        )
    };
    let p = PipelineDir::new(&pipeline(2));
    // Where web's log file goes, a directory.
    std::fs::create_dir_all(p.file("logs/web.log")).unwrap();
    let mut runner = Runner::start(&p);
    let status = runner.wait(30 * SECOND);
    let log = runner.seen.join("\n");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("heartbeat table ready"), "{log}");
    assert!(log.contains("cannot open the log of task web"), "{log}");
    assert!(
        matches!(
            SharedMemory::open_any_size(key.key()),
            Err(Error::NotFound { .. })
        ),
        "the table's segment is left: {log}"
    );
    let quick = SemOptions {
        init_timeout: Duration::ZERO,
        ..SemOptions::default()
    };
    assert!(
        matches!(
            Semaphore::open(key.key(), &quick),
            Err(Error::NotFound { .. })
        ),
        "the table's semaphore is left: {log}"
    );
    // (With cgroups, as root.)
    let cgroup = runner.seen.iter().find_map(|l| {
        l.split_once("each task in a cgroup of its own in ")
            .map(|(_, c)| c.trim().to_owned())
    });
    if let Some(cgroup) = &cgroup {
        assert!(!std::path::Path::new(cgroup).exists(), "{cgroup} is left");
    }
    assert!(
        !p.file("logs/nonstop.sock").exists(),
        "the control socket is left"
    );
    // Mended, with more slots: it starts.
    std::fs::remove_dir(p.file("logs/web.log")).unwrap();
    std::fs::write(p.path(), pipeline(4)).unwrap();
    let mut runner = Runner::start(&p);
    let first = pid_of(&runner.wait_for(&["started", "task=first"], 10 * SECOND));
    let web = pid_of(&runner.wait_for(&["started", "task=web"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![first, web]);
    assert!(runner.terminate(10 * SECOND).success());
}

/// A heartbeat table left at the key with another number of slots (by a runner that died
/// before its slots were changed) is named as what it is, with its slots and its runner, not
/// as "another program" using the key.
#[test]
fn a_table_left_with_other_slots_is_named_as_a_dead_runners_table() {
    use nonstop_ipc::{HeartbeatTable, ProcessId, TableOptions};
    let key = TestKey::new();
    let left = HeartbeatTable::open_or_create(
        key.key(),
        &TableOptions {
            slots: 2,
            ..TableOptions::default()
        },
    )
    .unwrap();
    // Its runner, gone.
    let mut gone = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    let dead = ProcessId::of(gone.id() as i32).unwrap().unwrap();
    gone.kill().unwrap();
    gone.wait().unwrap();
    left.claim(dead).unwrap();
    let p = PipelineDir::new(&format!(
        "heartbeat: {{ key: {}, slots: 4 }}\ntasks:\n  web:\n    heartbeat: 10s\n    \
         command: [sleep, \"1000\"]\n",
        key.arg()
    ));
    let mut runner = Runner::start(&p);
    let status = runner.wait(30 * SECOND);
    let log = runner.seen.join("\n");
    assert_eq!(status.code(), Some(1), "{log}");
    let expected = format!(
        "the heartbeat table {} has 2 slots, and this pipeline asks for 4 (heartbeat.slots): its \
         runner (pid {}) is gone; if nothing else uses it, remove it with `ipcrm -M {} -S {}`",
        key.arg(),
        dead.pid,
        key.arg(),
        key.arg()
    );
    assert!(log.contains(&expected), "{log}");
}
