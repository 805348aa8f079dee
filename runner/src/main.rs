//! `nonstop`: the runner binary. Parses the command line and dispatches; `main` decides the
//! exit code in one place.
//!
//! - `nonstop check FILE`: checks a pipeline, prints one line per task, or every error.
//! - `nonstop run FILE`: supervises the pipeline in the foreground until SIGTERM/SIGINT.

mod check;
mod logfile;
mod pipeline;
mod supervisor;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { file } => check::run(&file),
        Command::Run { file } => supervisor::run(&file),
        Command::CompressLog { file } => logfile::compress(&file),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nonstop: {e:#}");
            ExitCode::FAILURE
        }
    }
}
