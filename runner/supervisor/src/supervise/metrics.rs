//! Metrics in Prometheus's text format: `nonstop status --format prometheus` asks for them
//! through the control socket, and `metrics: FILE` has the runner rewrite FILE with them
//! (node_exporter's textfile collector reads it). The file is rewritten when the loop turns,
//! at most once a second ([`EVERY`]); an idle runner does not wake up for it, so times are
//! given as instants (`*_start_time_seconds`), which stay true, rather than as ages.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nonstop_core::Deadline;
use nonstop_scheduler::schedule::Now;
use nonstop_scheduler::task::{Exit, Phase};
use tracing::warn;

use super::Supervisor;
use super::requests::{state_word, wall_of};

/// The shortest time between two rewrites of the metrics file.
pub(super) const EVERY: Duration = Duration::from_secs(1);

/// `metrics: FILE` and when it was last written.
pub(super) struct MetricsFile {
    path: PathBuf,
    written: Option<Instant>,
    /// A rewrite waits for this instant (one second after the last).
    due: Deadline,
    /// Whether a failure to write it was logged (once, until it works again).
    failing: bool,
}

impl MetricsFile {
    pub(super) fn new(path: PathBuf) -> MetricsFile {
        MetricsFile {
            path,
            written: None,
            due: Deadline::Never,
            failing: false,
        }
    }

    /// The next turn writes it, however recent the last write.
    pub(super) fn force(&mut self) {
        self.written = None;
    }

    /// When the loop must wake to write it.
    pub(super) fn deadline(&self) -> Deadline {
        self.due
    }
}

const STATES: [&str; 8] = [
    "waiting", "running", "stopping", "backoff", "idle", "exited", "failed", "stopped",
];

impl Supervisor {
    /// Every metric, in the text exposition format. (Written straight into one buffer: a
    /// thousand tasks make 11,000 lines.)
    pub(super) fn metrics_text(&self) -> String {
        let now = Now::read();
        let mut out = String::with_capacity(1024 + 600 * self.entries.len());
        let unix = |at: Instant| wall_of(now, at).as_millisecond() as f64 / 1000.0;
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        let live: Vec<&super::Entry> = self.entries.iter().filter(|e| !e.removed).collect();
        head(
            &mut out,
            "nonstop_runner_start_time_seconds",
            "gauge",
            "When the runner started, in seconds since the epoch.",
        );
        let _ = writeln!(
            out,
            "nonstop_runner_start_time_seconds {:.3}",
            unix(self.started)
        );
        head(&mut out, "nonstop_tasks", "gauge", "Tasks in the pipeline.");
        let _ = writeln!(out, "nonstop_tasks {}", live.len());
        head(
            &mut out,
            "nonstop_task_state",
            "gauge",
            "1 for the task's current state, 0 for the others.",
        );
        for e in &live {
            let current = state_word(e.task.phase());
            for s in STATES {
                let _ = writeln!(
                    out,
                    "nonstop_task_state{{task=\"{}\",state=\"{s}\"}} {}",
                    e.name(),
                    u8::from(s == current)
                );
            }
        }
        head(
            &mut out,
            "nonstop_task_starts_total",
            "counter",
            "Processes started for the task since the runner started.",
        );
        for e in &live {
            let _ = writeln!(
                out,
                "nonstop_task_starts_total{{task=\"{}\"}} {}",
                e.name(),
                e.task.starts()
            );
        }
        head(
            &mut out,
            "nonstop_task_healthy",
            "gauge",
            "1 if the task counts as healthy for `nonstop health`.",
        );
        for e in &live {
            let healthy = self.healthy(e, self.heartbeat_of(e));
            let _ = writeln!(
                out,
                "nonstop_task_healthy{{task=\"{}\"}} {}",
                e.name(),
                u8::from(healthy)
            );
        }
        head(
            &mut out,
            "nonstop_task_start_time_seconds",
            "gauge",
            "When the task's running process started, in seconds since the epoch.",
        );
        for e in &live {
            if let Phase::Running { since, .. } | Phase::Stopping { since, .. } = e.task.phase() {
                let _ = writeln!(
                    out,
                    "nonstop_task_start_time_seconds{{task=\"{}\"}} {:.3}",
                    e.name(),
                    unix(since)
                );
            }
        }
        head(
            &mut out,
            "nonstop_task_last_exit_code",
            "gauge",
            "The exit status of the task's last process (-N: killed by signal N).",
        );
        for e in &live {
            let code = match e.task.last_exit() {
                Some(Exit::Code(c)) => c,
                Some(Exit::Signal(s)) => -(s as i32),
                Some(Exit::SpawnFailed) | None => continue,
            };
            let _ = writeln!(
                out,
                "nonstop_task_last_exit_code{{task=\"{}\"}} {code}",
                e.name()
            );
        }
        out
    }

    /// The loop turned: rewrites the metrics file if it was not written within the last
    /// [`EVERY`], else makes sure it is, when that second is over.
    pub(super) fn metrics_turn(&mut self, now: Instant) {
        let Some(file) = &mut self.metrics else {
            return;
        };
        if let Some(at) = file.written {
            let next = Deadline::after(at, EVERY);
            if !next.is_due(now) {
                file.due = next;
                return;
            }
        }
        file.written = Some(now);
        file.due = Deadline::Never;
        let path = file.path.clone();
        let text = self.metrics_text();
        let result = write_atomically(&path, text.as_bytes());
        let Some(file) = &mut self.metrics else {
            return;
        };
        match result {
            Ok(()) => file.failing = false,
            Err(e) if !file.failing => {
                warn!("cannot write the metrics file {}: {e}", path.display());
                file.failing = true;
            }
            Err(_) => {}
        }
    }
}

/// Writes `data` to a temporary file beside `path` and renames it over `path`: a reader
/// sees the old file or the new one, never a part. (Not fsynced: the file is derived, and
/// written again within a second of the runner's next start.)
fn write_atomically(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(data))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
