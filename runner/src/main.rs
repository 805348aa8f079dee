//! `nonstop`: the runner's command line. Parses it and dispatches; `main` decides the exit
//! code in one place.
//!
//! - `nonstop check FILE`: checks a pipeline, prints one line per task, or every error.
//! - `nonstop run FILE`: checks the pipeline, then executes `nonstop-supervisor` in this
//!   process (same pid), which supervises it in the foreground until SIGTERM/SIGINT (see
//!   `nonstop_supervisor::handoff`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nonstop_runner::{check, compress, run};

/// Keeps Linux service programs running forever.
#[derive(Debug, Parser)]
#[command(name = "nonstop", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a pipeline file: one line per task, or every error with file:line:column.
    Check {
        /// The pipeline (YAML).
        file: PathBuf,
    },
    /// Run a pipeline in the foreground until SIGTERM or SIGINT, then stop every task.
    Run {
        /// The pipeline (YAML).
        file: PathBuf,
    },
    /// Compress a rotated log file to FILE.gz (used by the runner itself).
    #[command(hide = true)]
    CompressLog {
        /// The rotated log file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Check { file } => check::run(&file),
        Command::Run { file } => run::run(&file),
        Command::CompressLog { file } => compress::compress(&file),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nonstop: {e:#}");
            ExitCode::FAILURE
        }
    }
}
