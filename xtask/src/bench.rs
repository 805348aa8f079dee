//! `cargo xtask bench`: every benchmark, in release mode. Each prints its own ratios against
//! a baseline measured in the same run.

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
    ]))
}
