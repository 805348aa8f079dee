//! `cargo xtask bench`: every benchmark, in release mode. Each prints its own ratios against
//! a baseline measured in the same run.
//!
//! - heartbeat beat (`ipc/benches/beat.rs`): against the seed's locked and unlocked beats;
//! - runner (`runner.rs` here): crash-to-restart latency, starting and stopping 100 tasks,
//!   memory and idle wake-ups, against C programs that only fork and exec.

mod runner;

use anyhow::Result;

use crate::{cargo, exec};

pub fn run() -> Result<()> {
    exec(cargo().args([
        "bench",
        "-p",
        "nonstop-ipc",
        "--features",
        "testing",
        "--bench",
        "beat",
    ]))?;
    runner::run()
}
