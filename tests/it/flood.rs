//! A task that writes without pause (`yes`): its pipe is never empty, its log rotates
//! thousands of times a second. The runner must stay what it is meanwhile: its children few
//! (compressions queued, every exit reaped), its signals, its control socket and its other
//! tasks served, its logs whole lines and complete gzip files.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::{KillOnDrop, PipelineDir, Runner, ctl, pid_of, wait_until, zombie_children};

const SECOND: Duration = Duration::from_secs(1);

/// What the flooding task writes, line after line.
const LINE: &str = "0123456789012345678901234567890123456789012345678901234567890123456789";

/// A pipeline with task `flood` (`yes LINE`), its logs `logs`, and `more` (further tasks).
fn flooding(logs: &str, more: &str) -> PipelineDir {
    PipelineDir::new(&format!(
        "logs: {logs}\ntasks:\n  flood:\n    command: [sh, -c, \"exec yes {LINE}\"]\n{more}"
    ))
}

/// Every child of `pid` (zombies included), from `/proc/PID/task/*/children`.
fn children_of(pid: i32) -> Vec<i32> {
    let mut children = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let listed = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        children.extend(
            listed
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok()),
        );
    }
    children
}

/// The names in `dir` that begin with `prefix`, sorted.
fn names(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// A rotated log's text: gunzipped (which fails on an incomplete file) if it is a `.gz`.
fn rotated_text(file: &Path) -> String {
    if file.extension().is_some_and(|e| e == "gz") {
        let out = Command::new("gzip").arg("-dc").arg(file).output().unwrap();
        assert!(
            out.status.success(),
            "{} is not a complete gzip file: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    } else {
        std::fs::read_to_string(file).unwrap()
    }
}

/// At 1K and 8K with compression, a flooding task used to leave a zombie per rotation
/// (thousands a second: the loop read its pipe for ever and never its signalfd), then ran the
/// machine out of pids with a compression per rotation; SIGTERM and `status` went unanswered.
/// Now: a few children at any time, `status` answers, SIGTERM ends the runner with 0, and what
/// is left on disk is whole lines in complete gzip files or plain rotations, no temporary.
#[test]
fn a_task_flooding_its_compressed_log_leaves_the_runner_few_children_and_answering() {
    for max_size in ["1K", "8K"] {
        let p = flooding(
            &format!("{{ max_size: {max_size}, keep: 5, compress: true }}"),
            "",
        );
        let logs = p.file("logs");
        let mut runner = Runner::start(&p);
        let flood = pid_of(&runner.wait_for(&["started", "task=flood"], 10 * SECOND));
        let _cleanup = KillOnDrop(vec![flood]);
        // Compressions are under way.
        assert!(
            wait_until(30 * SECOND, || names(&logs, "flood.log.")
                .iter()
                .any(|n| n.ends_with(".gz"))),
            "{max_size}: no compressed log: {:?}",
            names(&logs, "flood.log.")
        );
        for sample in 0..8 {
            std::thread::sleep(Duration::from_millis(400));
            let children = children_of(runner.pid());
            let zombies = zombie_children(runner.pid());
            assert!(
                children.len() <= 20,
                "{max_size}, sample {sample}: the runner has {} children ({} zombies)",
                children.len(),
                zombies.len()
            );
        }
        let status = ctl(&p, &["status"]);
        assert!(
            status.status.success(),
            "{max_size}: status: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        assert!(String::from_utf8_lossy(&status.stdout).contains("flood"));
        assert!(
            runner.terminate(60 * SECOND).success(),
            "{max_size}: {:?}",
            runner.seen
        );
        let rotated = names(&logs, "flood.log.");
        assert!(!rotated.is_empty());
        // Whole lines; only the flood's very last one may be cut (SIGTERM ended `yes` within
        // a write), and then it ends the file it is in.
        let mut cut = Vec::new();
        for name in &rotated {
            assert!(!name.ends_with(".tmp"), "{max_size}: left {name}");
            let text = rotated_text(&logs.join(name));
            assert!(
                !text.is_empty() && text.ends_with('\n'),
                "{max_size}: {name}"
            );
            let lines: Vec<&str> = text.lines().collect();
            for (n, line) in lines.iter().enumerate() {
                if *line != LINE {
                    assert!(
                        n + 1 == lines.len() && LINE.starts_with(line),
                        "{max_size}: {name} line {n} is not the flood's: {line:?}"
                    );
                    cut.push(name.clone());
                }
            }
        }
        assert!(cut.len() <= 1, "{max_size}: lines cut short in {cut:?}");
    }
}

/// While one task floods its log (rotating it every kilobyte: the runner reads more slowly
/// than `yes` writes, so the pipe never empties), another that keeps failing is still reaped
/// and restarted: the loop takes a bounded share of the flood per turn, then serves
/// everything else. (It read the pipe until it was empty: never, and the other task was never
/// restarted, nor SIGTERM taken.)
#[test]
fn another_tasks_exits_are_handled_while_a_task_floods_its_log() {
    let p = flooding(
        "{ max_size: 1K, keep: 2 }",
        "  failing:\n    command: [sh, -c, \"exit 3\"]\n    backoff: { initial: 100ms, max: 100ms }\n    crash_loop: { max: 10000, within: 1m }\n",
    );
    let mut runner = Runner::start(&p);
    let flood = pid_of(&runner.wait_for(&["started", "task=flood"], 10 * SECOND));
    let _cleanup = KillOnDrop(vec![flood]);
    // The flood is on (the log rotated), and the other task goes on exiting and restarting.
    assert!(wait_until(30 * SECOND, || !names(
        &p.file("logs"),
        "flood.log."
    )
    .is_empty()));
    for _ in 0..5 {
        runner.wait_for(
            &["task=failing", "exited with status 3", "restarting in"],
            30 * SECOND,
        );
    }
    assert!(runner.terminate(60 * SECOND).success());
    assert!(
        runner
            .seen
            .iter()
            .any(|l| l.contains("task=flood") && l.contains("stopped"))
    );
}
