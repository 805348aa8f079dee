//! `cargo xtask bench`: every benchmark, in release mode. Each prints its own ratios against
//! a baseline measured in the same run.
//!
//! - heartbeat beat (`ipc/benches/beat.rs`): against the seed's locked and unlocked beats;
//! - runner (`runner.rs` here): crash-to-restart latency, starting and stopping 100 tasks,
//!   memory and idle wake-ups, against C programs that only fork and exec.

mod runner;

use anyhow::{Result, bail};

use crate::{cargo, exec};

/// Runs every benchmark, or only the one named (`beat` or `runner`).
pub fn run(only: Option<&str>) -> Result<()> {
    let (beat, runner) = match only {
        None => (true, true),
        Some("beat") => (true, false),
        Some("runner") => (false, true),
        Some(other) => bail!("unknown benchmark {other:?}: expected beat or runner"),
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
    if runner {
        runner::run()?;
    }
    Ok(())
}
