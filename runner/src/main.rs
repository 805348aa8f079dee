//! `nonstop`: the runner binary.
//!
//! Today it only answers `--help` and `--version`. `nonstop check` and `nonstop run` (the YAML
//! pipeline, the supervision loop) arrive with the runner issue; see `ARCHITECTURE.md`.

use std::process::ExitCode;

use clap::Parser;

/// Keeps Linux service programs running forever.
#[derive(Debug, Parser)]
#[command(name = "nonstop", version)]
struct Cli {}

fn main() -> ExitCode {
    let Cli {} = Cli::parse();
    eprintln!(
        "nonstop: no command is implemented yet (`check` and `run` arrive with the runner); \
         see README.md"
    );
    ExitCode::from(2)
}
