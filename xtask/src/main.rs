//! `cargo xtask`: nonstop's automation, the only place it lives. This file only dispatches;
//! each task is a module.
//!
//! - `cargo xtask ci`: exactly what CI runs: format check, clippy with warnings as errors, the
//!   whole test suite, then a check that the suite left no System V objects behind.
//! - `cargo xtask bench [beat|spawn|runner|watch|plugins|control]`: the benchmarks, each printing ratios against a
//!   baseline measured in the same run.
//! - `cargo xtask demo`: builds the runner and the example server and runs
//!   `examples/demo.yaml` until Ctrl-C.
//! - `cargo xtask dist` / `install`: the release layout, as a tarball or into a prefix.

mod bench;
mod ci;
mod demo;
mod dist;
mod leftovers;
#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

const USAGE: &str =
    "usage: cargo xtask <ci|bench [NAME]|demo|dist [--out DIR]|install [--prefix P] [--systemd]>

  ci       cargo fmt --check, clippy -D warnings, the whole test suite, IPC leftover check
  bench    run the benchmarks (all, or only `beat`, `spawn`, `runner`, `watch`, `plugins` or
           `control`) and print their ratios (record them in BENCHMARKS.md)
  demo     build the runner and run examples/demo.yaml until Ctrl-C
  dist     build in release mode and pack target/dist/nonstop-VERSION-TARGET.tar.gz
  install  build in release mode and install into --prefix (default /usr/local); --systemd
           also installs the unit (PREFIX/lib/systemd/system/nonstop.service)
  (dist and install take --debug: the dev profile's builds, for tests)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(),
        Some("bench") => bench::run(args.get(1).map(String::as_str)),
        Some("demo") => demo::run(),
        Some("dist") => {
            let options = dist::Options {
                debug: args.iter().any(|a| a == "--debug"),
            };
            let out = value_of(&args, "--out").map(PathBuf::from);
            dist::dist(&options, out.as_deref()).map(|_| ())
        }
        Some("install") => {
            let options = dist::Options {
                debug: args.iter().any(|a| a == "--debug"),
            };
            let prefix = value_of(&args, "--prefix").unwrap_or("/usr/local");
            dist::install(
                &options,
                Path::new(prefix),
                args.iter().any(|a| a == "--systemd"),
            )
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The value after `flag` in `args`.
fn value_of<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// The workspace root.
fn root() -> PathBuf {
    // xtask/ is one level below the root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `cargo` as the one that runs us (`$CARGO`), in the workspace root.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Runs `cmd`, echoing it, and fails if it fails.
fn exec(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {}", describe(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", describe(cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(cmd));
    }
    Ok(())
}

fn describe(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}
