//! `nonstop-supervisor`: the long-lived half of `nonstop run`. Not run by hand: `nonstop run`
//! checks the pipeline and executes this binary in its own process (same pid) as
//! `nonstop run --handoff-fd N FILE`, the checked pipeline at descriptor `N` (see
//! `nonstop_runner::supervisor::handoff`). It also compresses rotated logs when the
//! supervisor runs it as `nonstop-supervisor compress-log FILE`.
//!
//! It holds no YAML or command-line parser: its arguments are matched by hand, so the process
//! that supervises for months maps only the code it runs.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use nonstop_runner::{logfile, supervisor};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let result = if let Some((fd, file)) = supervisor::handoff::arguments(&args) {
        supervisor::resume(fd, &file)
    } else {
        match args.as_slice() {
            [_, command, file] if command == "compress-log" => logfile::compress(Path::new(file)),
            _ => {
                eprintln!(
                    "nonstop-supervisor is started by `nonstop run FILE`, not by hand \
                     (usage: nonstop run FILE)"
                );
                return ExitCode::from(2);
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nonstop: {e:#}");
            ExitCode::FAILURE
        }
    }
}
