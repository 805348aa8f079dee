//! [`Error`]: every way the scheduler's calls fail, one typed enum (as in `ipc`), each message
//! saying what failed on what.

use std::io;
use std::path::PathBuf;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A task's process could not be started; `stage` says what failed (in the runner or in
    /// the child before `execve`).
    #[error("{stage}: {source}")]
    Spawn {
        /// What was being done: "executing the program", "switching to its user", ...
        stage: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// A resource limit of the task could not be set in its child (above the hard limit it
    /// inherited, without `CAP_SYS_RESOURCE`; `nofile` above `fs.nr_open`).
    #[error("setting its limit {resource} to {wanted}: {source}")]
    Limit {
        /// Its name as the pipeline spells it: `nofile`, ...
        resource: &'static str,
        /// The values asked for, and the runner's own.
        wanted: String,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// A program name without `/` is not in `PATH`.
    #[error("{} not found in PATH ({path})", program.display())]
    NotFound {
        /// The name.
        program: PathBuf,
        /// The `PATH` searched.
        path: String,
    },
    /// A string handed to the kernel holds a NUL byte (which would cut it short).
    #[error("a NUL byte in {what}")]
    Nul {
        /// Which string: "an argument", "the environment", ...
        what: &'static str,
    },
    /// A cron expression or time zone that cannot be used.
    #[error("{0}")]
    Schedule(String),
    /// A cgroup operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Cgroup {
        /// What was being done: "create", "read", "kill the processes of", ...
        action: &'static str,
        /// The cgroup directory or file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// Another system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn spawn(stage: &'static str, source: io::Error) -> Error {
        Error::Spawn { stage, source }
    }

    pub(crate) fn cgroup(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: io::Error,
    ) -> Error {
        Error::Cgroup {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn io(what: &'static str, source: io::Error) -> Error {
        Error::Io { what, source }
    }

    /// The system's error number underneath, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Spawn { source, .. }
            | Error::Cgroup { source, .. }
            | Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}
