//! `on_failure: [TASK...]`: when a task fails (its crash-loop limit, a hang, a run's timeout,
//! or an exit with failure after which it is not restarted), the tasks it names start, with
//! `NONSTOP_FAILED_TASK`, `NONSTOP_FAILED_REASON` and `NONSTOP_FAILED_LOG` (the last lines
//! of its log) in their environment: paging, notifications, like systemd's `OnFailure=`.
//!
//! Such a task is started by failures only (and by operators): it begins stopped. One that is
//! still running when another failure comes runs again for it once it ends (at most
//! [`QUEUE`] failures wait; the oldest is dropped, and said so).

use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use nonstop_scheduler::schedule::Now;
use nonstop_scheduler::spawn;
use nonstop_scheduler::task::{AfterExit, Exit, Started};
use tracing::{error, info, warn};

use super::{Supervisor, human};

/// The most failures waiting for one `on_failure` task.
const QUEUE: usize = 100;
/// The last lines of the failed task's log given in `NONSTOP_FAILED_LOG`...
const LOG_LINES: usize = 20;
/// ... within this many bytes.
const LOG_BYTES: u64 = 4096;

/// A failure, as an `on_failure` task hears of it.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    task: String,
    reason: String,
    log: String,
}

/// The failures waiting for one `on_failure` task.
pub(super) type Failures = VecDeque<Failure>;

impl Supervisor {
    /// Task `i`'s run is over (`exit`, then `after`): if that is a failure, its `on_failure`
    /// tasks start.
    pub(super) fn check_failure(&mut self, i: usize, exit: Exit, after: AfterExit) {
        let entry = &mut self.entries[i];
        // Why it was stopped as a failure (hung, timeout), if it was.
        let stopped_as = entry.failure.take();
        if self.shutdown.is_some() || entry.task.spec.on_failure.is_empty() {
            return;
        }
        // The hang or timeout first (what the exit came of), then the crash loop it completed.
        let mut reasons: Vec<String> = stopped_as.into_iter().collect();
        match after {
            AfterExit::CrashLoop { limit } => reasons.push(format!(
                "crash loop: exited with {exit}, more than {} exits within {}",
                limit.max,
                human(limit.within)
            )),
            AfterExit::Done if !exit.success() && reasons.is_empty() => {
                reasons.push(format!("exited with {exit} and is not restarted"));
            }
            _ => {}
        }
        if reasons.is_empty() {
            return;
        }
        let reason = reasons.join("; ");
        let failure = Failure {
            task: entry.name().to_owned(),
            reason,
            log: tail(entry.log.path()),
        };
        for name in entry.task.spec.on_failure.clone() {
            for h in self.resolve(&name) {
                self.fire(h, failure.clone());
            }
        }
    }

    /// Starts `on_failure` task `h` for `failure`, or queues it while `h` runs.
    fn fire(&mut self, h: usize, failure: Failure) {
        let entry = &mut self.entries[h];
        if entry.task.phase().pid().is_some() {
            if entry.failures.len() >= QUEUE
                && let Some(dropped) = entry.failures.pop_front()
            {
                warn!(
                    task = %entry.name(),
                    "{QUEUE} failures wait for it already: the oldest ({}: {}) is dropped",
                    dropped.task, dropped.reason
                );
            }
            info!(task = %entry.name(), failed = %failure.task, "still running: it runs again for this failure when it ends");
            entry.failures.push_back(failure);
            return;
        }
        self.launch(h, failure);
    }

    /// Starts `on_failure` task `h` now, for `failure`.
    fn launch(&mut self, h: usize, failure: Failure) {
        let nonstop = std::os::fd::AsRawFd::as_raw_fd(&self.nonstop);
        let entry = &mut self.entries[h];
        let Some(spec) = &entry.spawn_spec else {
            return;
        };
        let mut spec = (**spec).clone();
        spec.env.extend([
            (
                "NONSTOP_FAILED_TASK".into(),
                without_nul(&failure.task).into(),
            ),
            (
                "NONSTOP_FAILED_REASON".into(),
                without_nul(&failure.reason).into(),
            ),
            (
                "NONSTOP_FAILED_LOG".into(),
                without_nul(&failure.log).into(),
            ),
        ]);
        let prepared = match entry.task.spec.plugin {
            Some(_) => spawn::Prepared::new_at(&spec, nonstop),
            None => spawn::Prepared::new(&spec),
        };
        match prepared {
            Ok(prepared) => entry.prepared = prepared,
            Err(e) => {
                error!(task = %entry.name(), "cannot start it for the failure of {}: {e}", failure.task);
                return;
            }
        }
        info!(
            task = %entry.name(), failed = %failure.task,
            "starting for the failure of {}: {}", failure.task, failure.reason
        );
        if entry.task.start() == Started::Now {
            self.start(h, Now::read());
        }
    }

    /// Task `h`'s run is over: a failure that waited for it starts it again.
    pub(super) fn next_failure(&mut self, h: usize) {
        let entry = &mut self.entries[h];
        if self.shutdown.is_some() || entry.task.phase().pid().is_some() {
            return;
        }
        if let Some(failure) = entry.failures.pop_front() {
            self.launch(h, failure);
        }
    }
}

/// `text` with each NUL byte, which no environment variable can hold (it would end the
/// string), replaced by U+FFFD, as `String::from_utf8_lossy` replaces invalid UTF-8: a task
/// whose last lines held a NUL byte made its `on_failure` tasks fail to start.
fn without_nul(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// The last [`LOG_LINES`] whole lines of the log at `path`, within its last [`LOG_BYTES`].
fn tail(path: &Path) -> String {
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(LOG_BYTES);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(from)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    // A cut first line is dropped, unless it is all there is.
    let text = match text.split_once('\n') {
        Some((_, rest)) if from > 0 => rest,
        _ => &text,
    };
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_tail_with_nul_bytes_can_be_put_in_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        std::fs::write(&log, b"first\nbad\0byte\n\xffend\n").unwrap();
        let text = without_nul(&tail(&log));
        assert_eq!(text, "first\nbad\u{FFFD}byte\n\u{FFFD}end");
        assert!(std::ffi::CString::new(text).is_ok());
    }
}
