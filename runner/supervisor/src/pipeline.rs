//! [`Pipeline`]: a checked pipeline, as the supervisor runs it. `nonstop` builds one from the
//! YAML file (the `nonstop-runner` crate's `pipeline` module) and hands it over
//! ([`crate::handoff`]); nothing here parses text.

use std::path::PathBuf;

use nonstop_ipc::Key;
use nonstop_scheduler::task::TaskSpec;
use serde::{Deserialize, Serialize};

/// `heartbeat:`: the table the runner creates for its tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatConfig {
    /// Key of the segment and the semaphore.
    #[serde(with = "key_number")]
    pub key: Key,
    /// Number of slots.
    pub slots: u32,
}

/// `logs:`: where task output goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// Directory of `TASK.log` files.
    pub dir: PathBuf,
    /// Rotate a log when it reaches this many bytes.
    pub max_size: u64,
    /// Rotated files kept per task.
    pub keep: u32,
    /// Gzip rotated files.
    pub compress: bool,
    /// Prefix each line with the time its first byte arrived.
    pub timestamps: bool,
}

/// `containment:`: how a task's processes are kept together (see `supervise::contain`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainmentMode {
    /// cgroups where they can be written, else process groups.
    #[default]
    Auto,
    /// cgroups, or refuse to start.
    Cgroup,
    /// Process groups only.
    ProcessGroup,
}

/// `control:`: the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlConfig {
    /// The socket's path (the pipeline's, else `NONSTOP_SOCKET`, else the default for the
    /// user: see `nonstop_runner::control::default_socket`).
    pub socket: PathBuf,
}

impl ControlConfig {
    /// The longest path a Unix socket can be bound at: `sockaddr_un.sun_path` holds 108
    /// bytes, the path and its final NUL.
    pub const MAX_PATH: usize = 107;
}

/// A checked pipeline.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pipeline {
    /// The heartbeat table, if any.
    pub heartbeat: Option<HeartbeatConfig>,
    /// Task output.
    pub logs: LogConfig,
    /// How tasks are contained.
    pub containment: ContainmentMode,
    /// The control socket, if one is served.
    pub control: Option<ControlConfig>,
    /// `metrics:`: a file rewritten with the Prometheus metrics (node_exporter's textfile
    /// collector reads it).
    pub metrics: Option<PathBuf>,
    /// The runner's own log file, when its stdout and stderr are one (`nonstop run -d`):
    /// SIGUSR2 opens it again by its name, as it does the task logs.
    pub own_log: Option<PathBuf>,
    /// The tasks, in file order.
    pub tasks: Vec<TaskSpec>,
    /// A digest of each task's definition, in the same order ([`Pipeline::with_fingerprints`]):
    /// a reload restarts a task whose digest changed. Computed by `nonstop` when it checks
    /// the file, so the supervisor never encodes a spec.
    pub fingerprints: Vec<u64>,
}

impl Pipeline {
    /// The pipeline with [`Pipeline::fingerprints`] filled in: each task's encoded form (which
    /// holds every field), hashed.
    pub fn with_fingerprints(mut self) -> Pipeline {
        use std::hash::{Hash, Hasher};
        self.fingerprints = self
            .tasks
            .iter()
            .map(|spec| {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                // Not encodable (impossible for a checked spec): 0, a digest that a reload
                // sees as changed unless the next is not encodable either.
                postcard::to_stdvec(spec)
                    .map(|bytes| {
                        bytes.hash(&mut hasher);
                        hasher.finish()
                    })
                    .unwrap_or(0)
            })
            .collect();
        self
    }
}

/// A [`Key`] as its number.
mod key_number {
    use nonstop_ipc::Key;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(key: &Key, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(key.raw())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        Key::new(i32::deserialize(d)?).map_err(D::Error::custom)
    }
}
