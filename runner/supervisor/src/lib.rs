//! The long-lived half of `nonstop run`: the process that supervises a pipeline for months.
//!
//! `nonstop` (the `nonstop-runner` crate) parses and checks the YAML pipeline into a
//! [`pipeline::Pipeline`], then executes the `nonstop-supervisor` binary of this crate in its
//! own process and hands the pipeline over ([`handoff`]). This crate holds what that process
//! runs and nothing else: the supervision loop ([`supervise`]), task log files ([`logfile`])
//! and the runner's own log ([`log`]). It depends on no YAML parser, command-line parser or
//! compressor, which Cargo enforces: the boundary between checking and supervising is this
//! crate's manifest.

pub mod handoff;
pub mod lock;
pub mod log;
pub mod logfile;
pub mod pipeline;
pub mod supervise;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

/// Makes the first panic end the process at once (SIGABRT), as `panic = "abort"` would: the
/// release profile unwinds, for the plugins' sake (the plugin SDK catches their panics; Cargo
/// sets the panic strategy per profile, not per package), but a panic in the runner is a bug,
/// and unwinding through the supervision loop would run destructors on a broken state (or, in
/// a thread, leave the process running without it). Both binaries call this first thing in
/// `main`; the default hook prints the message (and a backtrace if asked) before the abort.
pub fn abort_on_panic() {
    let print = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        print(info);
        std::process::abort();
    }));
}

/// The supervising image's entry: takes the pipeline handed off at descriptor `fd` (checked
/// from `file`) and runs it.
pub fn resume(fd: std::os::fd::RawFd, file: &Path) -> anyhow::Result<ExitCode> {
    log::init();
    let received = handoff::receive(fd).context("cannot take the hand-off")?;
    supervise::supervise(
        &file.display().to_string(),
        received.pipeline,
        received.nonstop,
    )
}
