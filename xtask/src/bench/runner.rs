//! Runner benchmarks, each against a floor measured in the same run:
//!
//! - **restart latency**: a task crashes (exit 1) and is started again, 10 × 100 times, the
//!   rounds interleaved with the floor's; the time
//!   from just before its `_exit` to the first instruction of the next instance's `main`
//!   (`tests/c/bench_task.c`). Floor: `tests/c/bench_floor.c restart`, a loop of fork, execve
//!   and waitpid. nonstop runs with `backoff.initial: 0ms`.
//! - **start 100**: from starting the supervisor to the last of 100 tasks reaching `main`.
//! - **stop 100**: from SIGTERM to the supervisor having reaped all 100 and exited. Floor:
//!   `bench_floor hold`, which forks 100 children and kills and reaps them on SIGTERM.
//!   Both with cgroups (a cgroup per task) and with process groups only.
//! - **memory** (VmRSS) of the runner with 100 resident tasks, beside the floor's, and its
//!   **voluntary context switches** over 10 s idle (every thread), which must be 0.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::time::{ClockId, clock_gettime};
use nix::unistd::Pid;

use crate::{cargo, exec, root};

const RESTARTS: u64 = 100;
const ROUNDS: usize = 10;
const TASKS: usize = 100;
const START_STOP_ROUNDS: usize = 9;

pub fn run() -> Result<()> {
    let dir = build()?;
    let task = compile(&dir, "bench_task")?;
    let floor = compile(&dir, "bench_floor")?;
    let nonstop = root().join("target/release/nonstop");

    let (mut floor_lat, mut nonstop_lat) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        floor_lat.extend(restart_floor(&dir, &floor, &task, round)?);
        nonstop_lat.extend(restart_nonstop(&dir, &nonstop, &task, round)?);
    }
    let (f50, f99) = (
        percentile(&mut floor_lat, 50),
        percentile(&mut floor_lat, 99),
    );
    let (n50, n99) = (
        percentile(&mut nonstop_lat, 50),
        percentile(&mut nonstop_lat, 99),
    );
    println!(
        "crash -> new instance in main, {} restarts each",
        RESTARTS as usize * ROUNDS
    );
    println!(
        "  floor (fork+execve+waitpid)  p50 {:8.1} us   p99 {:8.1} us",
        us(f50),
        us(f99)
    );
    println!(
        "  nonstop (backoff 0ms)        p50 {:8.1} us   p99 {:8.1} us",
        us(n50),
        us(n99)
    );
    println!(
        "  ratio p50 {:.2}x (target <= 1.0x), p99 {:.2}x",
        n50 as f64 / f50 as f64,
        n99 as f64 / f99 as f64
    );

    // The floor, then the runner with cgroups (one per task) and with process groups only,
    // rounds interleaved.
    let mut starts: [Vec<u64>; 3] = Default::default();
    let mut stops: [Vec<u64>; 3] = Default::default();
    let (mut rss_kib, mut floor_rss_kib) = (0, 0);
    for round in 0..START_STOP_ROUNDS {
        let (start, stop, rss) = start_stop(&dir, Supervisor::Floor(&floor), &task, round)?;
        starts[0].push(start);
        stops[0].push(stop);
        floor_rss_kib = floor_rss_kib.max(rss);
        for (k, containment) in [(1, "cgroup"), (2, "process-group")] {
            let sup = Supervisor::Nonstop(&nonstop, containment);
            let (start, stop, rss) = start_stop(&dir, sup, &task, round)?;
            starts[k].push(start);
            stops[k].push(stop);
            if k == 1 {
                rss_kib = rss_kib.max(rss);
            }
        }
    }
    let start: Vec<u64> = starts.iter_mut().map(|v| percentile(v, 50)).collect();
    let stop: Vec<u64> = stops.iter_mut().map(|v| percentile(v, 50)).collect();
    println!("start and stop {TASKS} tasks, median of {START_STOP_ROUNDS}");
    for (k, who) in ["floor", "nonstop, cgroups", "nonstop, process groups"]
        .iter()
        .enumerate()
    {
        println!(
            "  {who:24} start {:8.2} ms   stop {:8.2} ms",
            ms(start[k]),
            ms(stop[k])
        );
    }
    for (k, how) in [(1, "with cgroups"), (2, "with process groups")] {
        println!(
            "  ratio {how}: start {:.2}x (target <= 1.5x), stop {:.2}x (target <= 2x)",
            start[k] as f64 / start[0] as f64,
            stop[k] as f64 / stop[0] as f64
        );
    }
    println!(
        "runner memory with {TASKS} resident tasks: VmRSS {:.2} MiB (target <= 3 MiB); \
         the C floor holding the same tasks: {:.2} MiB",
        rss_kib as f64 / 1024.0,
        floor_rss_kib as f64 / 1024.0
    );
    let switches = idle_switches(&dir, &nonstop, &task)?;
    println!(
        "runner wake-ups over 10 s idle with {TASKS} tasks: {switches} voluntary context switches (target 0)"
    );
    Ok(())
}

/// Builds the runner in release mode; returns the benchmarks' directory.
pub(super) fn build() -> Result<PathBuf> {
    build_with(&[])
}

/// Builds the runner and `plugins` (package names) in release mode; returns the benchmarks'
/// directory.
pub(super) fn build_with(plugins: &[&str]) -> Result<PathBuf> {
    let mut cargo = cargo();
    cargo.args([
        "build",
        "--release",
        "-p",
        "nonstop-runner",
        "-p",
        "nonstop-supervisor",
    ]);
    for plugin in plugins {
        cargo.args(["-p", plugin]);
    }
    exec(&mut cargo)?;
    let dir = root().join("target/bench");
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub(super) fn compile(dir: &Path, name: &str) -> Result<PathBuf> {
    let out = dir.join(name);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    exec(
        Command::new(cc)
            .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-I"])
            .arg(root().join("ipc/include"))
            .arg("-o")
            .arg(&out)
            .arg(root().join(format!("tests/c/{name}.c"))),
    )?;
    Ok(out)
}

fn mono_ns() -> u64 {
    // CLOCK_MONOTONIC always exists.
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// A file of `slots` zeroed u64 slots for bench_task.
fn slots_file(path: &Path, slots: usize) -> Result<()> {
    fs::write(path, vec![0u8; slots * 8])
        .with_context(|| format!("cannot write {}", path.display()))
}

fn read_slots(path: &Path) -> Result<Vec<u64>> {
    let bytes = fs::read(path)?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8])))
        .collect())
}

fn restart_floor(dir: &Path, floor: &Path, task: &Path, round: usize) -> Result<Vec<u64>> {
    let data = dir.join(format!("restart-floor-{round}"));
    slots_file(&data, 2 + RESTARTS as usize)?;
    let status = Command::new(floor)
        .arg("restart")
        .arg(task)
        .arg("crash")
        .arg(&data)
        .arg(RESTARTS.to_string())
        .status()?;
    if !status.success() {
        bail!("bench_floor restart failed: {status}");
    }
    Ok(read_slots(&data)?[2..].to_vec())
}

fn restart_nonstop(dir: &Path, nonstop: &Path, task: &Path, round: usize) -> Result<Vec<u64>> {
    let data = dir.join(format!("restart-nonstop-{round}"));
    slots_file(&data, 2 + RESTARTS as usize)?;
    let pipeline = dir.join("restart.yaml");
    fs::write(
        &pipeline,
        format!(
            "logs: {{ dir: logs-restart }}\n\
             tasks:\n  victim:\n    command: [{}, crash, {}, \"{RESTARTS}\"]\n    \
             restart: on-failure\n    backoff: {{ initial: 0ms, max: 0ms }}\n    \
             crash_loop: {{ max: 1000000, within: 1s }}\n",
            task.display(),
            data.display()
        ),
    )?;
    let mut runner = start_runner(nonstop, &pipeline, &dir.join("restart.log"))?;
    let done = wait_until(Duration::from_secs(120), || {
        read_slots(&data).is_ok_and(|d| d[1] >= RESTARTS)
    });
    stop_runner(&mut runner)?;
    if !done {
        bail!("nonstop did not restart the task {RESTARTS} times");
    }
    Ok(read_slots(&data)?[2..].to_vec())
}

enum Supervisor<'a> {
    Floor(&'a Path),
    /// The runner, and its pipeline's `containment:`.
    Nonstop(&'a Path, &'static str),
}

/// Start and stop durations (ns), and the supervisor's VmRSS (KiB) with every task running.
fn start_stop(
    dir: &Path,
    sup: Supervisor<'_>,
    task: &Path,
    round: usize,
) -> Result<(u64, u64, u64)> {
    let data = dir.join(format!("start-stop-{round}"));
    slots_file(&data, TASKS)?;
    let t0 = mono_ns();
    let mut child = match sup {
        Supervisor::Floor(floor) => Command::new(floor)
            .arg("hold")
            .arg(TASKS.to_string())
            .arg(task)
            .arg("hold")
            .arg(&data)
            .spawn()?,
        Supervisor::Nonstop(nonstop, containment) => {
            let pipeline = dir.join("hold.yaml");
            fs::write(&pipeline, hold_pipeline(task, &data, containment))?;
            start_runner(nonstop, &pipeline, &dir.join("hold.log"))?
        }
    };
    let all_running = wait_until(Duration::from_secs(60), || {
        read_slots(&data).is_ok_and(|d| d.iter().all(|&t| t != 0))
    });
    if !all_running {
        let _ = child.kill();
        bail!("not all {TASKS} tasks started");
    }
    let start = read_slots(&data)?.into_iter().max().unwrap_or(t0) - t0;
    let rss = vm_rss_kib(child.id()).unwrap_or(0);
    let t1 = Instant::now();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM)?;
    let status = child.wait()?;
    let stop = t1.elapsed().as_nanos() as u64;
    if !status.success() {
        bail!("the supervisor exited with {status} on SIGTERM");
    }
    Ok((start, stop, rss))
}

fn hold_pipeline(task: &Path, data: &Path, containment: &str) -> String {
    let mut yaml = format!("containment: {containment}\nlogs: {{ dir: logs-hold }}\ntasks:\n");
    for i in 0..TASKS {
        yaml += &format!(
            "  t{i}:\n    command: [{}, hold, {}, \"{i}\"]\n",
            task.display(),
            data.display()
        );
    }
    yaml
}

fn idle_switches(dir: &Path, nonstop: &Path, task: &Path) -> Result<u64> {
    let data = dir.join("idle");
    slots_file(&data, TASKS)?;
    let pipeline = dir.join("idle.yaml");
    fs::write(&pipeline, hold_pipeline(task, &data, "auto"))?;
    let mut runner = start_runner(nonstop, &pipeline, &dir.join("idle.log"))?;
    wait_until(Duration::from_secs(60), || {
        read_slots(&data).is_ok_and(|d| d.iter().all(|&t| t != 0))
    });
    std::thread::sleep(Duration::from_millis(500));
    let before = voluntary_switches(runner.id());
    std::thread::sleep(Duration::from_secs(10));
    let after = voluntary_switches(runner.id());
    stop_runner(&mut runner)?;
    Ok(after.saturating_sub(before))
}

pub(super) fn start_runner(nonstop: &Path, pipeline: &Path, log: &Path) -> Result<Child> {
    let log = fs::File::create(log)?;
    Command::new(nonstop)
        .arg("run")
        .arg(pipeline)
        // Its own control socket, beside its pipeline: not the machine's default.
        .env("NONSTOP_SOCKET", pipeline.with_extension("sock"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start nonstop")
}

pub(super) fn stop_runner(runner: &mut Child) -> Result<()> {
    kill(Pid::from_raw(runner.id() as i32), Signal::SIGTERM)?;
    runner.wait()?;
    Ok(())
}

/// Polls `done` every 20 ms. Slowly on purpose: every measurement is a timestamp the tasks
/// write themselves, so polling only decides when to stop, and a busy poller would take CPU
/// from the supervisor under test (the floor is waited for with a blocking waitpid).
pub(super) fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

pub(super) fn voluntary_switches(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .sum()
}

pub(super) fn percentile(v: &mut [u64], p: usize) -> u64 {
    v.sort_unstable();
    v[(v.len() * p / 100).min(v.len() - 1)]
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

pub(super) fn ms(ns: u64) -> f64 {
    ns as f64 / 1_000_000.0
}
