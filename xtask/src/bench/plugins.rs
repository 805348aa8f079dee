//! Plugin benchmarks, each against a floor measured in the same run:
//!
//! - **a no-op plugin task**: `nonstop plugin-host run` of a plugin that does nothing (the test
//!   plugin `misbehave` with no args): spawn, load, check, run, exit; against a fork+exec of
//!   `/bin/true`. Targets ≤ 3 ms and ≤ 3× the floor. Rounds interleaved, medians.
//! - **purge**: the `purge` plugin on 100,000 files (half of them matching), against
//!   `find DIR -name PAT -mmin +N -delete`. Target ≥ 1× find's speed.
//! - **gzip**: the `gzip` plugin on 240 MB of log- and XML-like text in 480 files, against
//!   `gzip -6` run once per file (as the seed did) and `pigz -6` on all of them. Target ≥ 1.3×
//!   pigz's throughput, with output at most 1 % larger than gzip's. Skipped without pigz.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::runner::{build_with, ms, percentile};
use crate::root;

const NOOP_ROUNDS: usize = 200;
const FILES: usize = 100_000;

pub fn run() -> Result<()> {
    build_with(&["nonstop-test-misbehave", "nonstop-purge", "nonstop-gzip"])?;
    let release = root().join("target/release");
    let nonstop = release.join("nonstop");
    noop(&nonstop, &release.join("libmisbehave.so"))?;
    purge(&nonstop, &release.join("libnonstop_purge.so"))?;
    gzip(&nonstop, &release.join("libnonstop_gzip.so"))
}

const GZ_FILES: usize = 480;
const GZ_FILE_BYTES: usize = 500_000;

/// `GZ_FILES` files of log- and XML-like text, written once into `pristine`.
fn corpus(pristine: &Path) -> Result<()> {
    if pristine.join(format!("f{}.log", GZ_FILES - 1)).exists() {
        return Ok(());
    }
    fs::create_dir_all(pristine)?;
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for f in 0..GZ_FILES {
        let mut text = String::with_capacity(GZ_FILE_BYTES + 200);
        while text.len() < GZ_FILE_BYTES {
            let r = next();
            if f % 2 == 0 {
                text += &format!(
                    "2026-12-02T{:02}:{:02}:{:02}.{:06}Z INFO request id={} path=/api/v1/items/{} status={} ms={}\n",
                    r % 24,
                    r / 24 % 60,
                    r / 1440 % 60,
                    r % 1_000_000,
                    r % 100_000,
                    r % 5000,
                    [200, 200, 200, 404, 500][(r % 5) as usize],
                    r % 900
                );
            } else {
                text += &format!(
                    "<obs station=\"{}\" t=\"2026-12-02 {:02}:{:02}\"><temp>{}.{}</temp><rh>{}</rh></obs>\n",
                    54000 + r % 800,
                    r % 24,
                    r / 24 % 60,
                    r % 40,
                    r % 10,
                    r % 100
                );
            }
        }
        fs::write(pristine.join(format!("f{f}.log")), text)?;
    }
    Ok(())
}

/// A fresh copy of `pristine` at `dir`.
fn fresh(pristine: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    let mut files = Vec::new();
    for entry in fs::read_dir(pristine)? {
        let from = entry?.path();
        let to = dir.join(from.file_name().unwrap_or_default());
        fs::copy(&from, &to)?;
        files.push(to);
    }
    files.sort();
    Ok(files)
}

fn gz_bytes(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(".gz") {
            n += entry.metadata()?.len();
        }
    }
    Ok(n)
}

fn gzip(nonstop: &Path, plugin: &Path) -> Result<()> {
    if Command::new("pigz").arg("--version").output().is_err() {
        println!("gzip: skipped (no pigz; apt-get install pigz)");
        return Ok(());
    }
    let pristine = root().join("target/bench/gzip-corpus");
    let dir = root().join("target/bench/gzip-run");
    corpus(&pristine)?;
    let total = (GZ_FILES * GZ_FILE_BYTES) as f64 / 1e6;
    let files = fresh(&pristine, &dir)?;
    let t0 = Instant::now();
    for file in &files {
        let status = Command::new("gzip").arg("-6").arg(file).status()?;
        if !status.success() {
            bail!("gzip failed on {}", file.display());
        }
    }
    let gzip_s = t0.elapsed().as_secs_f64();
    let gzip_out = gz_bytes(&dir)?;
    let files = fresh(&pristine, &dir)?;
    let t0 = Instant::now();
    let status = Command::new("pigz").arg("-6").args(&files).status()?;
    if !status.success() {
        bail!("pigz failed");
    }
    let pigz_s = t0.elapsed().as_secs_f64();
    let pigz_out = gz_bytes(&dir)?;
    fresh(&pristine, &dir)?;
    let args = format!("{{\"dir\": \"{}\", \"match\": \"*.log\"}}", dir.display());
    let t0 = Instant::now();
    let status = Command::new(nonstop)
        .args(["plugin-host", "run"])
        .arg(plugin)
        .arg(&args)
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        bail!("the gzip plugin failed");
    }
    let ours_s = t0.elapsed().as_secs_f64();
    let ours_out = gz_bytes(&dir)?;
    let _ = fs::remove_dir_all(&dir);
    println!("gzip {total:.0} MB of log and XML text in {GZ_FILES} files, level 6, one run each");
    for (who, s, out) in [
        ("gzip -6, a process per file", gzip_s, gzip_out),
        ("pigz -6", pigz_s, pigz_out),
        ("gzip plugin", ours_s, ours_out),
    ] {
        println!(
            "  {who:28} {:7.1} MB/s   output {:6.2} MB ({:.3} of the input)",
            total / s,
            out as f64 / 1e6,
            out as f64 / 1e6 / total
        );
    }
    println!(
        "  throughput {:.2}x pigz's (target >= 1.3x), output {:+.2} % against gzip's (target <= +1 %)",
        pigz_s / ours_s,
        (ours_out as f64 / gzip_out as f64 - 1.0) * 100.0
    );
    Ok(())
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
