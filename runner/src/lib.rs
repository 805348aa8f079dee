//! The nonstop runner, shared by its two binaries:
//!
//! - `nonstop` (`main.rs`): the command line. `check` and `run` parse and check the YAML
//!   pipeline ([`pipeline`], [`check`]); `run` then hands the checked pipeline to
//!   `nonstop-supervisor` ([`supervisor::handoff`]).
//! - `nonstop-supervisor` (`bin/nonstop-supervisor.rs`): the long-lived process. It takes the
//!   hand-off and runs the supervision loop ([`supervisor`]), writing task output to logs
//!   ([`logfile`]). It contains no YAML or command-line parser: the linker leaves out what it
//!   never calls, so the process that lives for months maps only the code it runs.

pub mod check;
pub mod log;
pub mod logfile;
pub mod pipeline;
pub mod supervisor;
