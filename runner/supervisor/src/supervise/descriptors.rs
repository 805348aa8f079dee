//! How many descriptors a pipeline needs, against the `nofile` limit (`RLIMIT_NOFILE`).
//!
//! The runner holds a few descriptors per task for its whole life, opened before the task's
//! first start or at it: its log and the two ends of its output pipe (3), and with cgroup
//! containment its cgroup's directory, `cgroup.events` and `cgroup.procs` (3 more); a tcp or
//! http probe holds a socket while it runs (1). Exec probes, compressions and the reload's
//! check are children and hold their own. On top of that come the runner's own ([`RUNNER`])
//! and the control connections. Opening them lazily would not help: a running task needs them
//! all, and a pipeline of resident tasks runs every one.
//!
//! So the need is counted, and compared with the hard limit where it is decided: at start
//! (the runner raises its soft limit to the hard one, as systemd does, and refuses to start
//! a pipeline that needs more than the hard limit, naming the numbers), at a reload that adds
//! tasks (refused the same way; nothing changes), and by `nonstop check` (a warning: the
//! limit where the pipeline will run, a unit's `LimitNOFILE=`, may not be this shell's).
//! Without this, the first tasks took every descriptor and the rest failed to start in a
//! loop, while the control socket could not accept anyone.

use nonstop_scheduler::probe::ProbeCheck;
use nonstop_scheduler::task::TaskSpec;

use super::control::MAX_CLIENTS;

/// The runner's own descriptors, whatever its tasks: standard streams (3), the descriptor
/// slots children are started through (4), the `nonstop` binary, the pipeline lock, epoll,
/// the signalfd, the wall-clock timerfd, the control socket, its lock and its spare, the
/// pipeline's cgroup (3), the guard's pipe, `/dev/null` for probes: about 20; and a margin for
/// the short-lived ones (a reload's two memfds, the metrics file's temporary, a directory of
/// `/proc` being read, a log opened again).
pub const RUNNER: u64 = 32;

/// What a pipeline needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// Its tasks (every instance).
    pub tasks: usize,
    /// The descriptors the runner needs for them and for itself.
    pub descriptors: u64,
}

/// The descriptors task `spec` holds in the runner (see the module's documentation), with
/// its cgroup or not.
pub fn per_task(spec: &TaskSpec, cgroups: bool) -> u64 {
    let cgroup = if cgroups { 3 } else { 0 };
    let probe = match spec.probe.as_deref().map(|p| &p.check) {
        Some(ProbeCheck::Tcp(_) | ProbeCheck::Http { .. }) => 1,
        _ => 0,
    };
    3 + cgroup + probe
}

/// What `tasks` need, with `extra` descriptors held besides (a reload's removed tasks, which
/// keep theirs until their place is taken), the runner's own and its control connections
/// included.
pub fn need<'a>(tasks: impl IntoIterator<Item = &'a TaskSpec>, cgroups: bool, extra: u64) -> Need {
    let mut need = Need {
        tasks: 0,
        descriptors: RUNNER
            .saturating_add(MAX_CLIENTS as u64)
            .saturating_add(extra),
    };
    for spec in tasks {
        need.tasks += 1;
        need.descriptors = need.descriptors.saturating_add(per_task(spec, cgroups));
    }
    need
}

impl Need {
    /// Why a hard `nofile` limit of `hard` is too low for this need, or `None` if it is
    /// enough: `300 tasks need about 1,864 open descriptors; the hard limit (RLIMIT_NOFILE) is
    /// 1,000`.
    pub fn over(&self, hard: u64) -> Option<String> {
        (self.descriptors > hard).then(|| {
            format!(
                "{} task{} need{} about {} open descriptors; the hard limit (RLIMIT_NOFILE) is {}",
                self.tasks,
                if self.tasks == 1 { "" } else { "s" },
                if self.tasks == 1 { "s" } else { "" },
                grouped(self.descriptors),
                grouped(hard)
            )
        })
    }
}

/// What to do about it, for the messages.
pub const ADVICE: &str = "raise it (`ulimit -n` in the shell that starts the runner, \
                          `LimitNOFILE=` in its systemd unit, `--ulimit nofile=` for a \
                          container) or split the pipeline";

/// This process's hard `nofile` limit (unlimited if it cannot be read).
pub fn hard_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(u64::MAX, |(_, hard)| hard)
}

/// `30064` as `30,064`; `unlimited` for the infinite limit.
pub fn grouped(n: u64) -> String {
    if n == nix::libc::RLIM_INFINITY {
        return "unlimited".into();
    }
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(name: &str) -> TaskSpec {
        use nonstop_scheduler::policy::{Backoff, CrashLoop, Restart};
        use nonstop_scheduler::task::{Kind, StopSpec};
        TaskSpec {
            name: name.into(),
            spawn: Default::default(),
            kind: Kind::Resident(Restart::Always),
            backoff: Backoff::default(),
            crash_loop: CrashLoop::default(),
            stop: StopSpec::default(),
            after: Vec::new(),
            heartbeat: None,
            probe: None,
            plugin: None,
            instance_of: None,
            on_failure: Vec::new(),
            on_demand: false,
        }
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(30_064), "30,064");
        assert_eq!(grouped(1_048_576), "1,048,576");
        assert_eq!(grouped(u64::MAX), "unlimited");
    }

    #[test]
    fn five_thousand_tasks_do_not_fit_under_twenty_thousand() {
        let tasks: Vec<TaskSpec> = (0..5000).map(|i| task(&format!("t{i}"))).collect();
        let need = need(&tasks, true, 0);
        assert_eq!(need.tasks, 5000);
        assert_eq!(need.descriptors, 5000 * 6 + RUNNER + MAX_CLIENTS as u64);
        assert_eq!(
            need.over(20_000).as_deref(),
            Some(
                "5000 tasks need about 30,064 open descriptors; the hard limit \
                 (RLIMIT_NOFILE) is 20,000"
            )
        );
        // Process groups only: half as many per task.
        assert_eq!(super::need(&tasks, false, 0).over(20_000), None);
        assert_eq!(need.over(30_064), None);
        assert!(need.over(30_063).is_some());
    }
}
