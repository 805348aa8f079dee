//! `nonstop run -d FILE`: the runner in the background, for rc.local-style boot.
//!
//! The classic double fork, with safe calls only (no `fork` in a Rust program): the command
//! starts `nonstop run --daemon-stage 1 FILE`, which leaves the session (`setsid`) and starts
//! `nonstop run --daemon-stage 2 FILE` (not a session leader, so it can never acquire a
//! controlling terminal), prints its pid and exits. Stage 2, reparented to init (or the
//! nearest subreaper), is the runner: stdin from `/dev/null`, stdout and stderr appended to
//! `logs.dir/nonstop.log`, working directory `/` (the file's path was made absolute first, so
//! every path in it resolves as it did).
//!
//! The command returns once the runner holds the pipeline's lock (exit 0: "running in the
//! background as pid N"), or once it is gone (exit 1, with the end of its log): a second
//! `run -d` of a running pipeline is refused, as a second `run` is.

use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use nonstop_core::Deadline;
use nonstop_ipc::{Liveness, ProcessId};
use nonstop_supervisor::lock::recorded;

use crate::pipeline;

/// The runner's own log in `logs.dir`, when it runs in the background.
pub const LOG: &str = "nonstop.log";

/// How long the command waits for the runner to take the pipeline's lock.
const WAIT: Duration = Duration::from_secs(30);

/// `nonstop run -d FILE`: checks the pipeline here (its errors are this command's), then
/// starts stage 1 and waits for the runner.
pub fn detach(file: &Path, socket: Option<&Path>) -> anyhow::Result<ExitCode> {
    let file = std::fs::canonicalize(file)
        .with_context(|| format!("cannot find the pipeline {}", file.display()))?;
    let Ok(checked) = pipeline::load_or_report(&file) else {
        return Ok(ExitCode::FAILURE);
    };
    let logs = checked.pipeline.logs.dir.clone();
    std::fs::create_dir_all(&logs)
        .with_context(|| format!("cannot create the log directory {}", logs.display()))?;
    // The runner's log: stage 1's stderr, which it hands on to stage 2 as its stdout and
    // stderr (so stage 1 need not read the pipeline again to find it).
    let log = logs.join(LOG);
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let lock = logs.join(nonstop_supervisor::lock::FILE);
    if let Some(h) = recorded(&lock).filter(|h| h.liveness() == Liveness::Alive) {
        bail!(
            "another runner (pid {}) is running this pipeline: it holds {}; stop it first",
            h.pid,
            lock.display()
        );
    }
    let mut stage1 = crate::itself::command();
    stage1
        .args(["run", "--daemon-stage", "1"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file);
    if let Some(socket) = socket {
        stage1.env(crate::control::ENV, socket);
    }
    let mut child = stage1.spawn().context("cannot start the runner")?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let status = child.wait()?;
    let pid: i32 = match line.trim().parse() {
        Ok(pid) if status.success() => pid,
        _ => bail!(
            "the runner could not be started in the background ({status}); why is in {}",
            log.display()
        ),
    };
    let deadline = Deadline::after(Instant::now(), WAIT);
    loop {
        if recorded(&lock).is_some_and(|h| h.pid == pid) {
            println!(
                "nonstop: running in the background as pid {pid}; its log: {}",
                log.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let gone = ProcessId::of(pid)
            .ok()
            .flatten()
            .is_none_or(|p| p.liveness() != Liveness::Alive);
        if gone || deadline.is_due(Instant::now()) {
            eprintln!(
                "nonstop: the runner (pid {pid}) did not start; the end of {}:",
                log.display()
            );
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            for l in &lines[lines.len().saturating_sub(10)..] {
                eprintln!("{l}");
            }
            return Ok(ExitCode::FAILURE);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Stage 1: a session of its own, then stage 2, whose pid it prints. Its stderr is the
/// runner's log, which stage 2 gets as stdout and stderr.
pub fn stage1(file: &Path) -> anyhow::Result<ExitCode> {
    nix::unistd::setsid().context("cannot start a session")?;
    let log = std::fs::File::from(
        std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .context("cannot take the log")?,
    );
    let stage2 = crate::itself::command()
        .args(["run", "--daemon-stage", "2"])
        .arg(file)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start the runner")?;
    println!("{}", stage2.id());
    Ok(ExitCode::SUCCESS)
}
