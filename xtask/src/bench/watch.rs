//! Hang detection benchmarks, against the real runner:
//!
//! - **detection latency**: a task (`tests/c/bench_hang.c hang`) beats five times, stops, and
//!   records the last beat it stored and when SIGTERM reached it; the runner restarts it at
//!   once, 60 times. Latency = SIGTERM's arrival - (last beat + timeout): how long past its
//!   deadline a hang is acted on. Target p99 ≤ 20 ms. The seed's `procctl 10 checkproc`
//!   sweeps every 10 s, so its latency is up to 10 s (plus up to 5 s while it waits on
//!   another hung service).
//! - **watch cost**: the runner's wake-ups (voluntary context switches) and CPU time while
//!   1000 services (`bench_hang beat 100`) beat every 100 ms against 1 s timeouts. Targets:
//!   ≤ 2 wake-ups per second and ≤ 0.1 % of a core. Beside it, the 50 wake-ups per second
//!   of a periodic sweep fast enough for the same latency.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::runner::{
    build, compile, ms, percentile, start_runner, stop_runner, voluntary_switches, wait_until,
};
use crate::root;

const HANGS: usize = 60;
const TIMEOUT_MS: u64 = 100;
const SERVICES: usize = 1000;
const WATCH_SECONDS: u64 = 10;

pub fn run() -> Result<()> {
    let dir = build()?;
    let task = compile(&dir, "bench_hang")?;
    let nonstop = root().join("target/release/nonstop");
    latency(&dir, &nonstop, &task)?;
    watch_cost(&dir, &nonstop, &task)
}

fn latency(dir: &Path, nonstop: &Path, task: &Path) -> Result<()> {
    let data = dir.join("hang-latency");
    let _ = fs::remove_file(&data);
    let pipeline = dir.join("hang.yaml");
    fs::write(
        &pipeline,
        format!(
            "heartbeat: {{ key: 0x7e5e0001, slots: 16 }}\nlogs: {{ dir: logs-hang }}\ntasks:\n  \
             h:\n    command: [{}, hang, {}]\n    heartbeat: {TIMEOUT_MS}ms\n    \
             backoff: {{ initial: 0ms }}\n    crash_loop: {{ max: 100000, within: 1m }}\n",
            task.display(),
            data.display()
        ),
    )?;
    let mut runner = start_runner(nonstop, &pipeline, &dir.join("hang.log"))?;
    let lines = || {
        fs::read_to_string(&data)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let done = wait_until(Duration::from_secs(120), || lines() >= HANGS);
    stop_runner(&mut runner)?;
    if !done {
        bail!(
            "only {} hangs recorded in 120 s (see target/bench/hang.log)",
            lines()
        );
    }
    let mut late: Vec<u64> = Vec::new();
    let mut early = 0;
    for line in fs::read_to_string(&data)?.lines().take(HANGS) {
        let mut fields = line.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(last)), Some(Ok(term))) = (fields.next(), fields.next()) else {
            bail!("bad line in {}: {line:?}", data.display());
        };
        let deadline = last + TIMEOUT_MS * 1_000_000;
        match term.checked_sub(deadline) {
            Some(past) => late.push(past),
            None => early += 1,
        }
    }
    if early > 0 {
        bail!("{early} of {HANGS} hangs were acted on before their deadline");
    }
    let (p50, p99) = (percentile(&mut late, 50), percentile(&mut late, 99));
    let max = late.iter().copied().max().unwrap_or(0);
    println!(
        "detection latency, {HANGS} hangs, timeout {TIMEOUT_MS}ms (from the deadline to SIGTERM)"
    );
    println!(
        "  nonstop  p50 {:6.2} ms   p99 {:6.2} ms   max {:6.2} ms   (target p99 <= 20 ms)",
        ms(p50),
        ms(p99),
        ms(max)
    );
    println!(
        "  seed     up to 10000 ms (procctl 10 checkproc: the sweep period), plus 5 s per hung service before it"
    );
    println!("  ratio p99 / seed's worst: {:.5}", ms(p99) / 10_000.0);
    Ok(())
}

fn watch_cost(dir: &Path, nonstop: &Path, task: &Path) -> Result<()> {
    let pipeline = dir.join("watch.yaml");
    let mut yaml =
        "heartbeat: { key: 0x7e5e0002, slots: 2048 }\nlogs: { dir: logs-watch }\ntasks:\n"
            .to_owned();
    for i in 0..SERVICES {
        yaml += &format!(
            "  s{i}:\n    command: [{}, beat, \"100\"]\n    heartbeat: 1s\n",
            task.display()
        );
    }
    fs::write(&pipeline, yaml)?;
    let log = dir.join("watch.log");
    let mut runner = start_runner(nonstop, &pipeline, &log)?;
    let started = || {
        fs::read_to_string(&log)
            .map(|t| t.matches("ready: first heartbeat").count())
            .unwrap_or(0)
    };
    // Readiness is not polled without dependents: the first sweep after a task's start timeout
    // finds them all beaten. Wait for every start, then let the sweeps settle.
    let all = wait_until(Duration::from_secs(120), || {
        fs::read_to_string(&log)
            .map(|t| t.matches(" started ").count() >= SERVICES)
            .unwrap_or(false)
    });
    if !all {
        stop_runner(&mut runner)?;
        bail!(
            "not all {SERVICES} services started (see {})",
            log.display()
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    let pid = runner.id();
    let (switches0, cpu0, t0) = (voluntary_switches(pid), cpu_ns(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(WATCH_SECONDS));
    let (switches1, cpu1, elapsed) = (voluntary_switches(pid), cpu_ns(pid), t0.elapsed());
    let log_text = fs::read_to_string(&log).unwrap_or_default();
    let hung = log_text.matches("hung").count();
    stop_runner(&mut runner)?;
    let secs = elapsed.as_secs_f64();
    let wakeups = (switches1 - switches0) as f64 / secs;
    let cpu = (cpu1 - cpu0) as f64 / 1e9 / secs * 100.0;
    println!(
        "watch cost, {SERVICES} services beating every 100 ms, timeouts 1 s, over {secs:.1} s \
         ({} seen ready, {hung} taken for hung)",
        started()
    );
    println!(
        "  nonstop  {wakeups:5.2} wake-ups/s   CPU {cpu:.4} % of a core   (targets <= 2/s, <= 0.1 %)"
    );
    println!(
        "  a sweep period short enough for the same 20 ms latency: 50 wake-ups/s, {:.0}x these",
        50.0 / wakeups.max(0.01)
    );
    if hung > 0 {
        bail!("{hung} services were taken for hung");
    }
    Ok(())
}

/// CPU time of `pid`'s main thread so far, in ns (`/proc/PID/schedstat`: the runner has one
/// thread), finer than the clock ticks of `/proc/PID/stat`.
fn cpu_ns(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
