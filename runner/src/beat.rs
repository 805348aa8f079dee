//! `nonstop beat`: one heartbeat for the slot in `NONSTOP_HEARTBEAT`, for shell scripts.
//!
//! ```sh
//! while read -r line; do
//!     process "$line"
//!     nonstop beat
//! done
//! ```

use std::process::ExitCode;

use anyhow::Context;

/// Beats once; fails with a message saying why when there is no slot.
pub fn run() -> anyhow::Result<ExitCode> {
    let heartbeat = nonstop_ipc::Heartbeat::from_env().context("cannot beat")?;
    heartbeat.beat();
    Ok(ExitCode::SUCCESS)
}
