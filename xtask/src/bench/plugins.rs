//! Plugin benchmarks, each against a floor measured in the same run:
//!
//! - **a no-op plugin task**: `nonstop plugin-host run` of a plugin that does nothing (the test
//!   plugin `misbehave` with no args): spawn, load, check, run, exit; against a fork+exec of
//!   `/bin/true`. Targets ≤ 3 ms and ≤ 3× the floor. Rounds interleaved, medians.
//! - **purge**: the `purge` plugin on 100,000 files (half of them matching), against
//!   `find DIR -name PAT -mmin +N -delete`. Target ≥ 1× find's speed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::runner::{ms, percentile};
use crate::{cargo, exec, root};

const NOOP_ROUNDS: usize = 200;
const FILES: usize = 100_000;

pub fn run() -> Result<()> {
    exec(cargo().args([
        "build",
        "--release",
        "-p",
        "nonstop-runner",
        "-p",
        "nonstop-test-misbehave",
        "-p",
        "nonstop-purge",
    ]))?;
    let release = root().join("target/release");
    let nonstop = release.join("nonstop");
    noop(&nonstop, &release.join("libmisbehave.so"))?;
    purge(&nonstop, &release.join("libnonstop_purge.so"))
}

fn time(command: &mut Command) -> Result<u64> {
    let t0 = Instant::now();
    let status = command.status()?;
    let elapsed = t0.elapsed().as_nanos() as u64;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(elapsed)
}

fn noop(nonstop: &Path, plugin: &Path) -> Result<()> {
    let (mut floor, mut task) = (Vec::new(), Vec::new());
    for _ in 0..NOOP_ROUNDS {
        floor.push(time(&mut Command::new("/bin/true"))?);
        task.push(time(
            Command::new(nonstop)
                .args(["plugin-host", "run"])
                .arg(plugin)
                .arg("{}"),
        )?);
    }
    let (f, t) = (percentile(&mut floor, 50), percentile(&mut task, 50));
    println!("no-op plugin task (spawn, load, run, exit), median of {NOOP_ROUNDS}");
    println!("  fork+exec /bin/true          {:7.3} ms", ms(f));
    println!("  nonstop plugin-host run      {:7.3} ms", ms(t));
    println!(
        "  ratio {:.2}x (target <= 3x), {:.3} ms (target <= 3 ms)",
        t as f64 / f as f64,
        ms(t)
    );
    Ok(())
}

/// `FILES` files in `dir`, in 100 subdirectories; the `.log` half dated two days back.
fn tree(dir: &Path) -> Result<()> {
    let _ = fs::remove_dir_all(dir);
    let old = filetime_days_ago(2);
    for d in 0..100 {
        let sub = dir.join(format!("d{d}"));
        fs::create_dir_all(&sub)?;
        for f in 0..FILES / 100 {
            let (name, age) = if f % 2 == 0 {
                (format!("f{f}.log"), Some(old))
            } else {
                (format!("f{f}.xml"), None)
            };
            let path = sub.join(name);
            fs::write(&path, b"x")?;
            if let Some(when) = age {
                fs::File::options()
                    .write(true)
                    .open(&path)?
                    .set_modified(when)?;
            }
        }
    }
    Ok(())
}

fn filetime_days_ago(days: u64) -> std::time::SystemTime {
    std::time::SystemTime::now() - Duration::from_secs(days * 86_400)
}

fn purge(nonstop: &Path, plugin: &Path) -> Result<()> {
    let dir: PathBuf = root().join("target/bench/purge-tree");
    let (mut find, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        tree(&dir)?;
        find.push(time(
            Command::new("find")
                .arg(&dir)
                .args(["-name", "*.log", "-mmin", "+1440", "-delete"]),
        )?);
        tree(&dir)?;
        let args = format!(
            "{{\"dir\": \"{}\", \"match\": \"*.log\", \"older_than\": \"1d\"}}",
            dir.display()
        );
        ours.push(time(
            Command::new(nonstop)
                .args(["plugin-host", "run"])
                .arg(plugin)
                .arg(&args)
                .stdout(std::process::Stdio::null()),
        )?);
        let left = walkdir_count(&dir)?;
        if left != FILES / 2 {
            bail!("purge left {left} files, expected {}", FILES / 2);
        }
    }
    let _ = fs::remove_dir_all(&dir);
    let (f, o) = (percentile(&mut find, 50), percentile(&mut ours, 50));
    println!(
        "purge {} of {FILES} files in 100 directories, median of 3",
        FILES / 2
    );
    println!(
        "  find -name '*.log' -mmin +1440 -delete   {:8.1} ms",
        ms(f)
    );
    println!("  purge plugin (task host, load, walk)    {:8.1} ms", ms(o));
    println!("  speed {:.2}x find's (target >= 1x)", f as f64 / o as f64);
    Ok(())
}

fn walkdir_count(dir: &Path) -> Result<usize> {
    let mut n = 0;
    for sub in fs::read_dir(dir)? {
        n += fs::read_dir(sub?.path())?.count();
    }
    Ok(n)
}
