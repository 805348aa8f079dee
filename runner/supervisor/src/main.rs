//! `nonstop-supervisor`: the long-lived half of `nonstop run`. Not run by hand: `nonstop run`
//! checks the pipeline and executes this binary in its own process (same pid) as
//! `nonstop run --handoff-fd N FILE`, the checked pipeline at descriptor `N` (see
//! `nonstop_supervisor::handoff`).
//!
//! Its arguments are matched by hand: no command-line parser reaches the long-lived process.

use std::ffi::OsString;
use std::process::ExitCode;

use nonstop_supervisor::handoff;

fn main() -> ExitCode {
    // A panic ends the runner at once (SIGABRT), not by unwinding: the release profile unwinds
    // only so that plugins can catch theirs (see `abort_on_panic`). Its tasks die with it
    // (PDEATHSIG, the guard).
    nonstop_supervisor::abort_on_panic();
    let args: Vec<OsString> = std::env::args_os().collect();
    let Some((fd, file)) = handoff::arguments(&args) else {
        eprintln!(
            "nonstop-supervisor is started by `nonstop run FILE`, not by hand \
             (usage: nonstop run FILE)"
        );
        return ExitCode::from(2);
    };
    match nonstop_supervisor::resume(fd, &file) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nonstop: {e:#}");
            ExitCode::FAILURE
        }
    }
}
