//! A plugin that misbehaves while it is only being looked at: its `validate` (run by `check`,
//! by `run` before it starts and by `reload`) starts a child that keeps the task host's output
//! open, hangs, or writes far more than a pipe holds; a library whose constructor never
//! returns (`nonstop plugins`). Each time the command returns, says what happened naming the
//! plugin, and leaves no process behind (the host's pid and its child's are written by the
//! plugin to a file).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    KillOnDrop, PipelineDir, Runner, alive, c_library, ctl, misbehave_plugin, nonstop, wait_until,
};

const SECOND: Duration = Duration::from_secs(1);

/// A command started with its stdout and stderr in files, killed and reaped on drop.
struct Started {
    child: Child,
    out: tempfile::NamedTempFile,
}

impl Started {
    fn new(command: &mut Command) -> Started {
        let out = tempfile::NamedTempFile::new().unwrap();
        let file = out.reopen().unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Started { child, out }
    }

    /// Waits for it to exit: its success and what it wrote; panics after `timeout`.
    fn finish(&mut self, timeout: Duration) -> (bool, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{:?} still runs after {timeout:?}; it wrote:\n{}",
                self.child,
                std::fs::read_to_string(self.out.path()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        (
            status.success(),
            std::fs::read_to_string(self.out.path()).unwrap(),
        )
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nonstop check pipeline.yaml` in `p`'s directory, which must return within a minute.
fn check(p: &PipelineDir) -> (bool, String) {
    Started::new(
        Command::new(nonstop())
            .args(["check", "pipeline.yaml"])
            .current_dir(p.dir.path()),
    )
    .finish(60 * SECOND)
}

/// A task of the misbehave plugin that does `act` in validate, writing pids to `pids`.
fn task(name: &str, act: &str, pids: &Path) -> String {
    format!(
        "  {name}:\n    plugin: {}\n    args: {{ act: {act}, pid_file: {} }}\n    restart: never\n",
        misbehave_plugin().display(),
        pids.display()
    )
}

/// The pids of the first task host that validated and of the child it started, as the plugin
/// wrote them, once they are there; these and any later ones (a run validates again, in its
/// own task host) are killed on drop if still alive.
fn host_and_child(file: &Path) -> (i32, i32, KillOnDrop) {
    assert!(
        wait_until(30 * SECOND, || std::fs::read_to_string(file)
            .is_ok_and(|s| s.ends_with('\n'))),
        "the plugin wrote no pids to {}",
        file.display()
    );
    let text = std::fs::read_to_string(file).unwrap();
    let pids: Vec<i32> = text
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    (pids[0], pids[1], KillOnDrop(pids))
}

/// A pipeline of one task of the misbehave plugin that does `act` in validate; the file its
/// pids go to.
fn one_task(name: &str, act: &str) -> (PipelineDir, std::path::PathBuf) {
    let p = PipelineDir::new("");
    let pids = p.file("pids");
    std::fs::write(p.path(), format!("tasks:\n{}", task(name, act, &pids))).unwrap();
    (p, pids)
}

/// A task of the misbehave plugin whose validate never returns, with arguments of its own
/// (`lines: n`), writing pids to `pids`.
fn hanging(name: &str, n: u32, pids: &Path) -> String {
    format!(
        "  {name}:\n    plugin: {}\n    args: {{ act: hang_in_validate, lines: {n}, pid_file: {} \
         }}\n    restart: never\n",
        misbehave_plugin().display(),
        pids.display()
    )
}

/// The pids in `file`, a line per validation: its task host and the child it started.
fn pids_in(file: &Path) -> Vec<Vec<i32>> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .collect()
}

fn assert_gone(host: i32, child: i32) {
    assert!(
        wait_until(10 * SECOND, || !alive(host) && !alive(child)),
        "left running: the plugin host {host} ({}) or the child its validate started {child} \
         ({})",
        alive(host),
        alive(child)
    );
}

#[test]
fn check_returns_when_validate_leaves_a_child_holding_its_output_and_kills_that_child() {
    let (p, pids) = one_task("forks", "fork_in_validate");
    let (ok, out) = check(&p);
    let (host, child, _cleanup) = host_and_child(&pids);
    assert!(ok, "{out}");
    assert!(out.starts_with("forks "), "{out}");
    assert_gone(host, child);
}

#[test]
fn run_starts_when_validate_leaves_a_child_holding_its_output() {
    let (p, pids) = one_task("forks", "fork_in_validate");
    let mut runner = Runner::start(&p);
    runner.wait_for(&["exited with status 0", "task=forks"], 60 * SECOND);
    let (host, child, _cleanup) = host_and_child(&pids);
    assert_gone(host, child);
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn reload_answers_when_validate_leaves_a_child_holding_its_output() {
    let p = PipelineDir::new("tasks:\n  idle:\n    command: [sleep, \"1000\"]\n");
    let mut runner = Runner::start(&p);
    let idle = crate::harness::pid_of(&runner.wait_for(&["started", "task=idle"], 10 * SECOND));
    let _idle = KillOnDrop(vec![idle]);
    let pids = p.file("pids");
    std::fs::write(
        p.path(),
        format!(
            "tasks:\n  idle:\n    command: [sleep, \"1000\"]\n{}",
            task("forks", "fork_in_validate", &pids)
        ),
    )
    .unwrap();
    let out = ctl(&p, &["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "added: forks\nunchanged: 1\n"
    );
    runner.wait_for(&["exited with status 0", "task=forks"], 30 * SECOND);
    let (host, child, _cleanup) = host_and_child(&pids);
    assert_gone(host, child);
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn check_gives_up_on_a_validate_that_never_returns_and_kills_its_process_group() {
    let (p, pids) = one_task("hangs", "hang_in_validate");
    let (ok, out) = check(&p);
    let (host, child, _cleanup) = host_and_child(&pids);
    assert!(!ok);
    let lib = misbehave_plugin().display().to_string();
    assert!(
        out.starts_with(&format!(
            "pipeline.yaml:3:13: tasks.hangs.plugin: {lib}: loading it or its validate did not \
             finish within 10 s"
        )),
        "{out}"
    );
    assert_gone(host, child);
}

#[test]
fn validate_writing_200_kib_gets_its_verdict_reported_and_a_long_reason_cut() {
    let lib = misbehave_plugin();
    let p = PipelineDir::new(&format!(
        "tasks:\n  floods:\n    plugin: {lib}\n    args: {{ act: flood_in_validate }}\n  \
         refuses:\n    plugin: {lib}\n    args: {{ act: long_refusal, lines: 1 }}\n",
        lib = lib.display()
    ));
    let (ok, out) = check(&p);
    assert!(!ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "one error, for `refuses` only:\n{out}");
    let error = lines[0];
    assert!(
        error.starts_with(
            "pipeline.yaml:7:39: tasks.refuses.args.lines: refused at length xxxxxxxxxx"
        ),
        "{}",
        &error[..error.len().min(200)]
    );
    // The first 64 KiB of the answer's line, and a note of the rest.
    assert!(
        error.ends_with(&format!(
            "xxx [cut: the first 65536 of {} bytes]",
            "error\tlines\trefused at length ".len() + 200 * 1024
        )),
        "{}",
        &error[error.len().saturating_sub(200)..]
    );
    assert!(error.len() < 66 * 1024, "{} bytes", error.len());
    assert_eq!(lines[1], "pipeline.yaml: 1 error");

    // Alone, the flood is valid.
    std::fs::write(
        p.path(),
        format!(
            "tasks:\n  floods:\n    plugin: {}\n    args: {{ act: flood_in_validate }}\n",
            lib.display()
        ),
    )
    .unwrap();
    let (ok, out) = check(&p);
    assert!(ok, "{out}");
}

#[test]
fn nonstop_plugins_gives_up_on_a_library_whose_constructor_blocks_and_lists_the_rest() {
    let p = PipelineDir::new("");
    std::fs::create_dir(p.file("plugins")).unwrap();
    std::fs::copy(
        c_library("plugin_c", "_block", &["-DBLOCK_IN_CONSTRUCTOR"]),
        p.file("plugins/libblocks.so"),
    )
    .unwrap();
    std::fs::copy(misbehave_plugin(), p.file("plugins/libmisbehave.so")).unwrap();
    std::fs::write(
        p.path(),
        "plugin_dirs: [plugins]\ntasks:\n  t:\n    command: [true]\n",
    )
    .unwrap();
    let pid_file = p.file("pid");
    let (ok, out) = Started::new(
        Command::new(nonstop())
            .args(["plugins", "--pipeline"])
            .arg(p.path())
            .env("PLUGIN_C_PID_FILE", &pid_file),
    )
    .finish(60 * SECOND);
    let host: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _cleanup = KillOnDrop(vec![host]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "{}: not usable: loading it did not finish within 10 s",
            p.file("plugins/libblocks.so").display()
        )),
        "{out}"
    );
    assert!(out.contains("libmisbehave.so\tmisbehave\t0.1.0\t"), "{out}");
    assert!(
        wait_until(10 * SECOND, || !alive(host)),
        "the plugin host {host} still runs"
    );
}

#[test]
fn a_check_killed_while_validate_hangs_takes_the_host_and_its_child_along() {
    let (p, pids) = one_task("hangs", "hang_in_validate");
    let mut check = Started::new(
        Command::new(nonstop())
            .args(["check", "pipeline.yaml"])
            .current_dir(p.dir.path()),
    );
    let (host, child, _cleanup) = host_and_child(&pids);
    // As a reload's check is killed when it takes too long (a Ctrl-C does not reach the
    // host's own process group either).
    check.child.kill().unwrap();
    check.child.wait().unwrap();
    assert_gone(host, child);
}

#[test]
fn a_reload_whose_check_outlasts_the_client_time_still_gets_its_answer() {
    // Seventeen distinct validations that never return, one more than run at once: the check
    // takes 2 × 10 s, longer than the 10 s a control client is given for a request, but
    // within the minute a reload's check may take.
    let p = PipelineDir::new("tasks:\n  idle:\n    command: [sleep, \"1000\"]\n");
    let mut runner = Runner::start(&p);
    let idle = crate::harness::pid_of(&runner.wait_for(&["started", "task=idle"], 10 * SECOND));
    let _idle = KillOnDrop(vec![idle]);
    let pids = p.file("pids");
    let mut yaml = "tasks:\n  idle:\n    command: [sleep, \"1000\"]\n".to_owned();
    for n in 0..17 {
        yaml += &hanging(&format!("hangs{n}"), n, &pids);
    }
    std::fs::write(p.path(), yaml).unwrap();
    let out = ctl(&p, &["reload"]);
    let _hosts = KillOnDrop(
        std::fs::read_to_string(&pids)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The file's errors, not a lost connection.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("tasks.hangs0.plugin") && stderr.contains("tasks.hangs16.plugin"),
        "{stderr}"
    );
    assert!(stderr.contains("did not finish within 10 s"), "{stderr}");
    // Nothing changed: the runner still runs `idle` only.
    assert!(alive(idle));
    assert!(runner.terminate(10 * SECOND).success());
}

/// Validations run at once, each distinct one once: a task with three identical copies
/// (`instances`) and two others, each hanging in validate, take three task hosts, all alive
/// together (one after another, the first would be killed before the second starts); every
/// task's error is reported, in file order.
#[test]
fn check_validates_identical_plugin_tasks_once_and_distinct_ones_at_the_same_time() {
    let p = PipelineDir::new("");
    let pids = p.file("pids");
    let copies = format!(
        "  copies:\n    plugin: {}\n    args: {{ act: hang_in_validate, pid_file: {} }}\n    \
         every: 1h\n    instances: 3\n",
        misbehave_plugin().display(),
        pids.display()
    );
    std::fs::write(
        p.path(),
        format!(
            "tasks:\n{copies}{}{}",
            hanging("one", 1, &pids),
            hanging("two", 2, &pids)
        ),
    )
    .unwrap();
    let mut check = Started::new(
        Command::new(nonstop())
            .args(["check", "pipeline.yaml"])
            .current_dir(p.dir.path()),
    );
    let mut cleanup = KillOnDrop::default();
    let together = wait_until(30 * SECOND, || {
        let hosts = pids_in(&pids);
        cleanup.0 = hosts.iter().flatten().copied().collect();
        hosts.len() >= 3 && hosts.iter().all(|h| h.len() == 2 && alive(h[0]))
    });
    let (ok, out) = check.finish(60 * SECOND);
    assert!(!ok);
    let hosts = pids_in(&pids);
    cleanup.0 = hosts.iter().flatten().copied().collect();
    assert!(
        together,
        "three task hosts never ran at the same time: {hosts:?}\n{out}"
    );
    assert_eq!(
        hosts.len(),
        3,
        "one validation per distinct task: {hosts:?}"
    );
    let lib = misbehave_plugin().display().to_string();
    let lines: Vec<&str> = out.lines().collect();
    let expect = [
        "pipeline.yaml:3:13: tasks.copies.plugin: ",
        "pipeline.yaml:8:13: tasks.one.plugin: ",
        "pipeline.yaml:12:13: tasks.two.plugin: ",
    ];
    assert_eq!(lines.len(), expect.len() + 1, "{out}");
    for (line, start) in lines.iter().zip(expect) {
        assert_eq!(
            *line,
            format!(
                "{start}{lib}: loading it or its validate did not finish within 10 s (the plugin host and what it started were killed)"
            ),
            "{out}"
        );
    }
    assert_eq!(lines[3], "pipeline.yaml: 3 errors");
    for host in hosts {
        assert_gone(host[0], host[1]);
    }
}
