//! `cargo xtask bench`: every benchmark, in release mode. Each prints its own ratios against
//! a baseline measured in the same run.
//!
//! - heartbeat beat (`ipc/benches/beat.rs`): against the seed's locked and unlocked beats;
//! - spawn (`scheduler/benches/spawn.rs`): what starting a task in its cgroup costs, against
//!   the same start without one;
//! - runner (`runner.rs` here): crash-to-restart latency, starting and stopping 100 tasks,
//!   memory and idle wake-ups, against C programs that only fork and exec.

mod runner;

use anyhow::{Result, bail};

use crate::{cargo, exec};

/// Runs every benchmark, or only the one named (`beat`, `spawn` or `runner`).
pub fn run(only: Option<&str>) -> Result<()> {
    let (beat, spawn, runner) = match only {
        None => (true, true, true),
        Some("beat") => (true, false, false),
        Some("spawn") => (false, true, false),
        Some("runner") => (false, false, true),
        Some(other) => bail!("unknown benchmark {other:?}: expected beat, spawn or runner"),
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
    }
    if spawn {
        exec(cargo().args(["bench", "-p", "nonstop-scheduler", "--bench", "spawn"]))?;
    }
    if runner {
        runner::run()?;
    }
    Ok(())
}
