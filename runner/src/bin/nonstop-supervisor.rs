//! `nonstop-supervisor`: the long-lived half of `nonstop run`. Not run by hand: `nonstop run`
//! checks the pipeline and executes this binary in its own process (same pid) as
//! `nonstop run --handoff-fd N FILE`, the checked pipeline at descriptor `N` (see
//! `nonstop_runner::supervisor::handoff`).
//!
//! It holds no YAML or command-line parser (its arguments are matched by hand) and no
//! compressor (it runs `nonstop compress-log FILE` for that), so the process that supervises
//! for months maps only the code it runs.

use std::ffi::OsString;
use std::process::ExitCode;

use nonstop_runner::supervisor;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let Some((fd, file)) = supervisor::handoff::arguments(&args) else {
        eprintln!(
            "nonstop-supervisor is started by `nonstop run FILE`, not by hand \
             (usage: nonstop run FILE)"
        );
        return ExitCode::from(2);
    };
    let result = supervisor::resume(fd, &file);
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nonstop: {e:#}");
            ExitCode::FAILURE
        }
    }
}
