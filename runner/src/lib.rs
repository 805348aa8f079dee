//! `nonstop`, the runner's command line, as a library for its binary and tests:
//!
//! - [`pipeline`]: loading and checking the YAML pipeline into the supervisor's typed
//!   `nonstop_supervisor::pipeline::Pipeline`, every error with `FILE:LINE:COL`;
//! - [`check`]: `nonstop check`;
//! - [`run`]: `nonstop run`, which checks, then hands the pipeline to `nonstop-supervisor` (the
//!   `nonstop-supervisor` crate, beside this one) in the same process;
//! - [`control`]: `nonstop status|start|stop|restart|shutdown|health|logs`, clients of a
//!   runner's control socket;
//! - [`detach`]: `nonstop run -d`, the runner in the background;
//! - [`compress`]: `nonstop compress-log`, which the supervisor runs on rotated logs;
//! - [`beat`]: `nonstop beat`, one heartbeat from a shell script;
//! - [`ps`]: `nonstop ps`, a heartbeat table's slots and their states;
//! - [`plugin_host`]: `nonstop plugin-host`, the child process that loads a plugin and runs it;
//! - [`host_child`]: one question to such a child (validate, info), bounded in time and size;
//! - [`plugins`]: `nonstop plugins`, the plugins found and what they say of themselves;
//! - [`itself`]: this executable started again, as the file that runs, not by its path.
//!
//! The parsers and the compressor live here and only here: the supervisor crate does not
//! depend on them, so the long-lived process never maps their code.

pub mod beat;
pub mod check;
pub mod compress;
pub mod control;
pub mod detach;
pub mod host_child;
pub mod itself;
pub mod pipeline;
pub mod plugin_host;
pub mod plugins;
pub mod ps;
pub mod run;
