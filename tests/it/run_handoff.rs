//! The hand-off: `nonstop run` checks the pipeline, then `nonstop-supervisor` supervises it in
//! the same process; without `nonstop-supervisor` the runner supervises in its own image; a
//! signal sent during the hand-off is not lost; the supervisor refuses anything else; and
//! descriptors inherited from whoever started the runner are made close-on-exec.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::{PipelineDir, Runner, alive, nonstop, pid_of, wait_until};

const SECOND: Duration = Duration::from_secs(1);

/// Whether `pid` has a descriptor open on a memfd named `name`.
fn has_memfd(pid: i32, name: &str) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .any(|l| l.to_string_lossy().contains(&format!("memfd:{name}")))
}

#[test]
fn run_hands_the_pipeline_to_the_supervisor_in_the_same_process() {
    let p = PipelineDir::new("tasks:\n  sleeper:\n    command: [sleep, \"1000\"]\n");
    let mut runner = Runner::start(&p);
    let task = pid_of(&runner.wait_for(&["started", "task=sleeper"], 10 * SECOND));
    let pid = runner.pid();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(
        exe.file_name().unwrap(),
        "nonstop-supervisor",
        "{}",
        exe.display()
    );
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim_end(), "nonstop");
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.contains("\0run\0--handoff-fd\0"), "{cmdline:?}");
    assert!(
        !has_memfd(pid, "nonstop-handoff"),
        "the hand-off is still open"
    );
    // The task is the supervisor's child (the same process the test started).
    let stat = std::fs::read_to_string(format!("/proc/{task}/stat")).unwrap();
    let ppid: i32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ppid, pid);

    assert_eq!(runner.terminate(10 * SECOND).code(), Some(0));
    let log = runner.seen.join("\n");
    assert!(!log.contains("supervising in this process"), "{log}");
    assert!(!alive(task));
}

#[test]
fn without_the_supervisor_binary_run_supervises_in_its_own_process() {
    let p = PipelineDir::new("tasks:\n  sleeper:\n    command: [sleep, \"1000\"]\n");
    // `nonstop` alone in a directory of its own.
    let lonely = p.file("bin/nonstop");
    std::fs::create_dir_all(lonely.parent().unwrap()).unwrap();
    std::fs::copy(nonstop(), &lonely).unwrap();
    let mut runner = Runner::spawn(Command::new(&lonely).arg("run").arg(p.path()));
    let warning = runner.wait_for(&["supervising in this process"], 10 * SECOND);
    assert!(warning.contains("nonstop-supervisor"), "{warning}");
    let task = pid_of(&runner.wait_for(&["started", "task=sleeper"], 10 * SECOND));
    let exe = std::fs::read_link(format!("/proc/{}/exe", runner.pid())).unwrap();
    assert_eq!(exe, lonely);
    assert_eq!(runner.terminate(10 * SECOND).code(), Some(0));
    assert!(!alive(task));
}

/// Whether SIGTERM is in the blocked mask of `pid` (`SigBlk` in /proc/PID/status).
fn blocks_sigterm(pid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1 << (Signal::SIGTERM as i32 - 1)) != 0)
}

#[test]
fn a_sigterm_during_the_handoff_waits_for_the_supervisor_and_stops_everything() {
    // Many tasks, so that the supervisor's start is long enough to be hit.
    let mut yaml = String::from("tasks:\n");
    for i in 0..50 {
        yaml += &format!("  t{i}:\n    command: [sh, -c, \"echo $$ >> pids; exec sleep 1000\"]\n");
    }
    let p = PipelineDir::new(&yaml);
    for round in 0..5 {
        let mut runner = Runner::start(&p);
        // From the moment `nonstop run` blocks the signals (before the hand-off), a SIGTERM
        // must end in a clean stop, never in death by the signal or a lost signal.
        assert!(
            wait_until(10 * SECOND, || blocks_sigterm(runner.pid())),
            "round {round}: the runner never blocked SIGTERM"
        );
        kill(Pid::from_raw(runner.pid()), Signal::SIGTERM).unwrap();
        let status = runner.wait(20 * SECOND);
        assert_eq!(
            status.code(),
            Some(0),
            "round {round}: {status}\n{}",
            runner.seen.join("\n")
        );
        let pids = p.numbers::<i32>("pids");
        assert!(
            wait_until(5 * SECOND, || pids.iter().all(|&pid| !alive(pid))),
            "round {round}: tasks outlived the runner"
        );
        std::fs::remove_file(p.file("pids")).ok();
    }
}

fn supervisor() -> std::path::PathBuf {
    nonstop().with_file_name("nonstop-supervisor")
}

#[test]
fn the_supervisor_refuses_to_be_run_by_hand() {
    let p = PipelineDir::new("tasks: {}\n");
    std::fs::write(p.file("garbage"), "not a hand-off").unwrap();
    // Each exits at once, by itself.
    let run = |shell: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(shell)
            .arg("sh")
            .arg(supervisor())
            .arg(p.path())
            .current_dir(p.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run("exec \"$1\" 2>&1");
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("started by `nonstop run FILE`"), "{out}");
    let (code, out) = run("exec \"$1\" run --handoff-fd 0 \"$2\" 2>&1");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not a hand-off descriptor"), "{out}");
    let (code, out) = run("exec \"$1\" run --handoff-fd 3 \"$2\" 3<garbage 2>&1");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("not a hand-off from this build of nonstop"),
        "{out}"
    );
}

#[test]
fn the_supervisor_is_built_beside_nonstop() {
    assert!(Path::new(&supervisor()).is_file());
}

#[test]
fn descriptors_the_runner_inherits_are_made_close_on_exec() {
    let p = PipelineDir::new("tasks:\n  sleeper:\n    command: [sleep, \"1000\"]\n");
    // fd 7, open without close-on-exec, as a careless parent might leave it.
    let mut runner = Runner::spawn(
        Command::new("sh")
            .arg("-c")
            .arg("exec \"$0\" run \"$1\" 7</dev/null")
            .arg(nonstop())
            .arg(p.path()),
    );
    runner.wait_for(&["started", "task=sleeper"], 10 * SECOND);
    let info = std::fs::read_to_string(format!("/proc/{}/fdinfo/7", runner.pid())).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        .unwrap();
    assert_ne!(flags & nix::libc::O_CLOEXEC as u32, 0, "{info}");
    assert_eq!(runner.terminate(10 * SECOND).code(), Some(0));
}

/// Demangled symbol names of `binary` (binutils' `nm`, installed with the C compiler).
fn symbols(binary: &Path) -> String {
    let out = Command::new("nm")
        .arg("--demangle")
        .arg(binary)
        .output()
        .expect("cannot run nm (binutils)");
    assert!(out.status.success(), "nm {}: {out:?}", binary.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_supervisor_links_no_parser_and_no_compressor() {
    // What the long-lived process must not contain (ARCHITECTURE.md, runner invariants);
    // `nonstop` shows that the check sees them where they are.
    let heavy = ["serde_yaml::", "yaml_rust2::", "clap_builder::", "flate2::"];
    let nonstop_symbols = symbols(&nonstop());
    for krate in heavy {
        assert!(
            nonstop_symbols.contains(krate),
            "nonstop has no {krate} symbol"
        );
    }
    let supervisor_symbols = symbols(&supervisor());
    let linked: Vec<&str> = heavy
        .into_iter()
        .filter(|k| supervisor_symbols.contains(k))
        .collect();
    assert!(linked.is_empty(), "nonstop-supervisor links {linked:?}");
}

#[test]
fn a_new_nonstop_installed_mid_run_is_not_mixed_in() {
    // Both binaries in a directory of their own, as an installation.
    let p = PipelineDir::new(
        "\
logs: { max_size: 1K, keep: 100, compress: true }
tasks:
  chatty:
    command: [sh, -c, \"while [ ! -e go ]; do sleep 0.01; done; i=0; while [ $i -lt 200 ]; do echo line $i of chatty output; i=$((i+1)); done\"]
    restart: never
",
    );
    let bin = p.file("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(nonstop(), bin.join("nonstop")).unwrap();
    std::fs::copy(supervisor(), bin.join("nonstop-supervisor")).unwrap();
    let mut runner = Runner::spawn(Command::new(bin.join("nonstop")).arg("run").arg(p.path()));
    runner.wait_for(&["started", "task=chatty"], 10 * SECOND);
    // An upgrade replaces `nonstop` on disk (rename over it, as package managers do) with
    // something else entirely.
    let replaced = p.file("replaced");
    p.executable(
        "bin/nonstop.new",
        &format!("#!/bin/sh\necho \"$@\" >> {}\n", replaced.display()),
    );
    std::fs::rename(p.file("bin/nonstop.new"), bin.join("nonstop")).unwrap();
    // Output that rotates the log and has it compressed, by the `nonstop` the runner started
    // with.
    std::fs::write(p.file("go"), "").unwrap();
    runner.wait_for(&["chatty", "not restarted"], 10 * SECOND);
    assert!(
        wait_until(10 * SECOND, || std::fs::read_dir(p.file("logs"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".gz"))),
        "no rotated log was compressed"
    );
    assert!(
        !replaced.exists(),
        "the file installed mid-run was executed"
    );
    assert_eq!(runner.terminate(10 * SECOND).code(), Some(0));
}
