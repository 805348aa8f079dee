//! Control socket benchmarks, against the real runner with 1000 resident tasks:
//!
//! - **status round trip**: connect, `status`, read the whole answer (~300 KB of JSON for
//!   1000 tasks). Target ≤ 5 ms. Baseline: the transport alone, a thread of this process
//!   answering the same number of bytes, already built, over a Unix socket.
//! - **`nonstop status --json`**: the same through the command (a process start, the
//!   request, the JSON parsed and printed), against `nonstop --version` (the command's own
//!   start).
//! - **reload with one task changed**: from `reload` sent to its answer (the file read and
//!   checked in a child, the diff applied, the changed task's stop signal sent). Target ≤
//!   50 ms, and the other 999 tasks untouched (same pids). Baseline: `nonstop check` of the
//!   same file, which the reload's child does.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::runner::{build, ms, percentile, start_runner, stop_runner, wait_until};
use crate::root;

const TASKS: usize = 1000;
const ROUNDS: usize = 200;
const RELOADS: usize = 10;

fn pipeline(version: usize) -> String {
    let mut yaml = "logs: { dir: logs-control }\ntasks:\n".to_owned();
    for i in 0..TASKS {
        // Task 0 is the one a reload changes.
        let arg = if i == 0 { 100_000 + version } else { 100_000 };
        yaml += &format!("  t{i}:\n    command: [sleep, \"{arg}\"]\n");
    }
    yaml
}

/// One request on a fresh connection; the whole answer.
fn request(socket: &Path, line: &str) -> Result<Vec<u8>> {
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to {}", socket.display()))?;
    stream.write_all(format!("{line}\n").as_bytes())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(answer)
}

/// The pid of every task in a status answer, in order (`"pid":N` or `"pid":null`).
fn pids(status: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(status)
        .split("\"pid\":")
        .skip(2) // the text before the first, and the runner's own
        .map(|s| s.split(',').next().unwrap_or_default().to_owned())
        .collect()
}

pub fn run() -> Result<()> {
    let dir = build()?;
    let nonstop = root().join("target/release/nonstop");
    let file = dir.join("control.yaml");
    fs::write(&file, pipeline(0))?;
    let socket = file.with_extension("sock");
    let mut runner = start_runner(&nonstop, &file, &dir.join("control.log"))?;
    let running = || {
        request(&socket, "status")
            .map(|s| {
                String::from_utf8_lossy(&s)
                    .matches("\"state\":\"running\"")
                    .count()
            })
            .unwrap_or(0)
    };
    if !wait_until(Duration::from_secs(60), || running() == TASKS) {
        stop_runner(&mut runner)?;
        bail!("the {TASKS} tasks did not all start (see target/bench/control.log)");
    }
    let result = measure(&nonstop, &file, &socket);
    stop_runner(&mut runner)?;
    result
}

fn measure(nonstop: &Path, file: &Path, socket: &Path) -> Result<()> {
    // status, and the transport floor with the same number of bytes.
    let size = request(socket, "status")?.len();
    let mut status = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let answer = request(socket, "status")?;
        status.push(t.elapsed().as_nanos() as u64);
        if !answer.starts_with(b"{\"schema\":1,\"ok\":true") {
            bail!(
                "a bad status answer: {}",
                String::from_utf8_lossy(&answer[..80.min(answer.len())])
            );
        }
    }
    let floor = transport_floor(size)?;
    let (mut status, mut floor) = (status, floor);
    let (s50, s99, f50) = (
        percentile(&mut status, 50),
        percentile(&mut status, 99),
        percentile(&mut floor, 50),
    );
    println!(
        "status round trip, {TASKS} tasks ({} KB of JSON), {ROUNDS} requests",
        size / 1000
    );
    println!(
        "  runner     p50 {:6.2} ms   p99 {:6.2} ms   (target <= 5 ms)",
        ms(s50),
        ms(s99)
    );
    println!(
        "  transport  p50 {:6.2} ms   (the same bytes, already built)",
        ms(f50)
    );
    println!("  ratio p50: {:.2}", s50 as f64 / f50 as f64);

    // The command, against its own start.
    let time = |args: &[&str]| -> Result<u64> {
        let t = Instant::now();
        let ok = Command::new(nonstop)
            .args(args)
            .env("NONSTOP_SOCKET", socket)
            .stdout(Stdio::null())
            .status()?
            .success();
        if !ok {
            bail!("nonstop {args:?} failed");
        }
        Ok(t.elapsed().as_nanos() as u64)
    };
    let (mut table, mut json, mut version) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..30 {
        table.push(time(&["status"])?);
        json.push(time(&["status", "--json"])?);
        version.push(time(&["--version"])?);
    }
    let v50 = percentile(&mut version, 50);
    println!(
        "  nonstop --version       p50 {:6.2} ms   (the command's own start)",
        ms(v50)
    );
    for (name, times) in [("status", &mut table), ("status --json", &mut json)] {
        let c50 = percentile(times, 50);
        println!(
            "  nonstop {name:<15} p50 {:6.2} ms   ratio {:.2}",
            ms(c50),
            c50 as f64 / v50 as f64
        );
    }

    // Reload with one task changed, against `nonstop check` of the same file.
    let before = pids(&request(socket, "status")?);
    let mut reloads = Vec::new();
    let mut checks = Vec::new();
    for version in 1..=RELOADS {
        fs::write(file, pipeline(version))?;
        let t = Instant::now();
        let answer = request(socket, "reload")?;
        reloads.push(t.elapsed().as_nanos() as u64);
        let text = String::from_utf8_lossy(&answer);
        if !text.contains("\"changed\":[\"t0\"]")
            || !text.contains(&format!("\"unchanged\":{}", TASKS - 1))
        {
            bail!("unexpected reload answer: {text}");
        }
        let t = Instant::now();
        let ok = Command::new(nonstop)
            .arg("check")
            .arg(file)
            .stdout(Stdio::null())
            .status()?
            .success();
        checks.push(t.elapsed().as_nanos() as u64);
        if !ok {
            bail!("nonstop check failed");
        }
        // The changed task is back before the next round.
        if !wait_until(Duration::from_secs(10), || {
            request(socket, "status").is_ok_and(|s| {
                String::from_utf8_lossy(&s)
                    .matches("\"state\":\"running\"")
                    .count()
                    == TASKS
            })
        }) {
            bail!("t0 did not start again after reload {version}");
        }
    }
    let after = pids(&request(socket, "status")?);
    let untouched = before
        .iter()
        .zip(&after)
        .skip(1)
        .filter(|(a, b)| a == b)
        .count();
    let (r50, rmax, c50) = (
        percentile(&mut reloads, 50),
        reloads.iter().copied().max().unwrap_or(0),
        percentile(&mut checks, 50),
    );
    println!("reload of {TASKS} tasks with one changed, {RELOADS} reloads");
    println!(
        "  runner          p50 {:6.2} ms   max {:6.2} ms   (target <= 50 ms)",
        ms(r50),
        ms(rmax)
    );
    println!("  nonstop check   p50 {:6.2} ms   (the same file)", ms(c50));
    println!("  ratio p50: {:.2}", r50 as f64 / c50 as f64);
    println!(
        "  untouched: {untouched} of {} (same pid after {RELOADS} reloads)",
        TASKS - 1
    );
    if untouched != TASKS - 1 {
        bail!("a reload touched tasks it did not change");
    }
    Ok(())
}

/// The round trip of `size` bytes, already built, from a thread of this process over a Unix
/// socket: connect, a request line, read to the end.
fn transport_floor(size: usize) -> Result<Vec<u64>> {
    let dir = tempfile_dir()?;
    let path = dir.join("floor.sock");
    let _ = fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    let answer = vec![b'x'; size];
    let server = std::thread::spawn(move || {
        for _ in 0..ROUNDS {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let mut line = [0u8; 64];
            let _ = stream.read(&mut line);
            let _ = stream.write_all(&answer);
        }
    });
    let mut times = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let got = request(&path, "status")?;
        times.push(t.elapsed().as_nanos() as u64);
        if got.len() != size {
            bail!("the floor's server sent {} bytes", got.len());
        }
    }
    let _ = server.join();
    let _ = fs::remove_file(&path);
    Ok(times)
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = root().join("target/bench");
    fs::create_dir_all(&dir)?;
    Ok(dir)
}
