//! `cargo xtask bench`: every benchmark, in release mode. Each prints its own ratios against
//! a baseline measured in the same run.
//!
//! - heartbeat beat (`ipc/benches/beat.rs`): against the seed's locked and unlocked beats; the
//!   same from C (`tests/c/bench_beat.c`) against the seed's store;
//! - spawn (`scheduler/benches/spawn.rs`): what starting a task in its cgroup costs, against
//!   the same start without one;
//! - runner (`runner.rs` here): crash-to-restart latency, starting and stopping 100 tasks,
//!   memory and idle wake-ups, against C programs that only fork and exec;
//! - watch (`watch.rs` here): hang detection latency and the cost of watching 1000 services;
//! - plugins (`plugins.rs` here): a no-op plugin task against fork+exec, purge against find;
//! - control (`control.rs` here): `status` with 1000 tasks against the socket transport, and a
//!   reload of 1000 tasks with one changed against `nonstop check` of the same file.

mod control;
mod plugins;
mod runner;
mod watch;

use anyhow::{Result, bail};

use crate::{cargo, exec};

/// Runs every benchmark, or only the one named (`beat`, `spawn`, `runner`, `watch`,
/// `plugins` or `control`).
pub fn run(only: Option<&str>) -> Result<()> {
    let (beat, spawn, runner, watch, plugins, control) = match only {
        None => (true, true, true, true, true, true),
        Some("beat") => (true, false, false, false, false, false),
        Some("spawn") => (false, true, false, false, false, false),
        Some("runner") => (false, false, true, false, false, false),
        Some("watch") => (false, false, false, true, false, false),
        Some("plugins") => (false, false, false, false, true, false),
        Some("control") => (false, false, false, false, false, true),
        Some(other) => bail!(
            "unknown benchmark {other:?}: expected beat, spawn, runner, watch, plugins or control"
        ),
    };
    if beat {
        exec(cargo().args([
            "bench",
            "-p",
            "nonstop-ipc",
            "--features",
            "testing",
            "--bench",
            "beat",
        ]))?;
        // The same beat from C (the header), against the seed's store.
        let dir = crate::root().join("target/bench");
        std::fs::create_dir_all(&dir)?;
        exec(&mut std::process::Command::new(runner::compile(
            &dir,
            "bench_beat",
        )?))?;
    }
    if spawn {
        exec(cargo().args(["bench", "-p", "nonstop-scheduler", "--bench", "spawn"]))?;
    }
    if runner {
        runner::run()?;
    }
    if watch {
        watch::run()?;
    }
    if plugins {
        plugins::run()?;
    }
    if control {
        control::run()?;
    }
    Ok(())
}
