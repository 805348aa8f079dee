//! One task as the loop holds it ([`Entry`]: its state machine, prepared command, log, output
//! pipe, cgroup, heartbeat slot, probe) and how a task's spec is made ready to start ([`make`]:
//! its command prepared once with the runner's variables, its heartbeat slot reserved).

use std::os::fd::{OwnedFd, RawFd};

use anyhow::Context;
use nix::sys::resource::Resource;
use nonstop_scheduler::cgroup::Cgroup;
use nonstop_scheduler::spawn;
use nonstop_scheduler::task::Task;

use super::events::EventLoop;
use super::watch::Watch;
use super::{failure, probe};
use crate::logfile::TaskLog;
use crate::pipeline::LogConfig;

/// One task and everything the loop holds for it.
#[derive(Debug)]
pub(super) struct Entry {
    /// Its state machine: every decision about it.
    pub(super) task: Task,
    /// Its argv and environment, built once for all its starts.
    pub(super) prepared: spawn::Prepared,
    /// Its log file.
    pub(super) log: TaskLog,
    /// While its log cannot be written: the bytes of output lost since the error was logged
    /// (logged once, not once per write, so a full disk does not flood stderr).
    pub(super) lost: Option<u64>,
    /// Its output pipe (read end, write end), for its whole life: every instance gets the
    /// write end as stdout and stderr, and the read end is watched once.
    pub(super) output: (OwnedFd, OwnedFd),
    /// Whether "waiting for ..." was logged (once).
    pub(super) waiting_logged: bool,
    /// Whether "will not start ..." was logged (once).
    pub(super) blocked_logged: bool,
    /// Its cgroup (cgroup containment), from its first start on; its instances start in it.
    pub(super) cgroup: Option<Cgroup>,
    /// Its slot in the heartbeat table (`heartbeat:`), reserved for the runner's life.
    pub(super) slot: Option<u32>,
    /// The running instance's probes (`probe:`).
    pub(super) probe: Option<probe::ProbeRun>,
    /// Whether the current instance was stopped as hung (said when its exit is logged).
    pub(super) hung: bool,
    /// An exec probe's command, prepared once (boxed: most tasks have none).
    pub(super) probe_prepared: Option<Box<spawn::Prepared>>,
    /// A digest of its spec as the pipeline gave it: a reload restarts it if this changed.
    pub(super) fingerprint: u64,
    /// A reload removed it: it is stopped, and kept only so that indices stay put.
    pub(super) removed: bool,
    /// A reload changed it while it ran: what replaces it once the running instance is gone.
    pub(super) replacement: Option<Box<Made>>,
    /// Why the running instance is being stopped as a failure (hung, timeout), for
    /// `on_failure`.
    pub(super) failure: Option<String>,
    /// An `on_failure` task's command before the failure's variables are added (it is
    /// prepared again for each failure); `None` for other tasks.
    pub(super) spawn_spec: Option<Box<spawn::SpawnSpec>>,
    /// For an `on_failure` task: the failures that wait for its running instance to end.
    pub(super) failures: failure::Failures,
}

impl Entry {
    pub(super) fn name(&self) -> &str {
        &self.task.spec.name
    }

    /// A task made ready ([`make`]) with its log and its output pipe (watched in `events`).
    pub(super) fn open(made: Made, logs: &LogConfig, events: &EventLoop) -> anyhow::Result<Entry> {
        let log = TaskLog::open(logs, &made.spec.name).with_context(|| {
            format!(
                "cannot open the log of task {} in {}",
                made.spec.name,
                logs.dir.display()
            )
        })?;
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .context("cannot create an output pipe")?;
        events.watch(&read).context("cannot watch an output pipe")?;
        Ok(Entry {
            task: Task::new(made.spec),
            prepared: made.prepared,
            log,
            lost: None,
            output: (read, write),
            waiting_logged: false,
            blocked_logged: false,
            cgroup: None,
            slot: made.slot,
            probe: None,
            hung: false,
            probe_prepared: made.probe_prepared,
            fingerprint: made.fingerprint,
            removed: false,
            replacement: None,
            failure: None,
            spawn_spec: made.spawn_spec,
            failures: Default::default(),
        })
    }
}

/// A task's spec made ready to start: its command prepared (with the runner's variables), its
/// probe's, its heartbeat slot reserved.
#[derive(Debug)]
pub(super) struct Made {
    pub(super) spec: nonstop_scheduler::task::TaskSpec,
    pub(super) prepared: spawn::Prepared,
    pub(super) probe_prepared: Option<Box<spawn::Prepared>>,
    pub(super) slot: Option<u32>,
    pub(super) fingerprint: u64,
    /// For an `on_failure` task: its command, kept to be prepared again for each failure.
    pub(super) spawn_spec: Option<Box<spawn::SpawnSpec>>,
}

/// The variable that gives every task the key of the runner's heartbeat table.
pub(super) const KEY_ENV: &str = "NONSTOP_HEARTBEAT_KEY";

/// What every task is made with: the runner's own values.
pub(super) struct Making<'a> {
    /// The `nofile` limit the runner was started with.
    pub(super) inherited_nofile: (u64, u64),
    /// The control socket, named to every task.
    pub(super) socket: Option<&'a std::path::Path>,
    /// The `nonstop` binary (plugin tasks are its task host).
    pub(super) nonstop: RawFd,
}

/// Makes task `i` of `spec` ready to start (see [`Made`]). With `heartbeat:`, it gets a slot
/// of its own, or `reuse`, the slot its earlier definition has (a reload's change: the table
/// may have no other free), whose timeouts are set when the new definition takes its place.
pub(super) fn make(
    i: usize,
    spec: nonstop_scheduler::task::TaskSpec,
    fingerprint: u64,
    with: &Making<'_>,
    watch: &mut Option<Watch>,
    reuse: Option<u32>,
) -> anyhow::Result<Made> {
    let Making {
        inherited_nofile,
        socket,
        nonstop,
    } = *with;
    // The prepared form is all a start needs: the spec's own copy goes (a hundred tasks kept
    // both), but for the program's name.
    let mut spec = spec;
    let mut spawn_spec = std::mem::take(&mut spec.spawn);
    spec.spawn.program = spawn_spec.program.clone();
    with_nofile(&mut spawn_spec, inherited_nofile);
    // A task may talk to its runner (`nonstop restart other`): its socket is named.
    if let Some(socket) = socket
        && !spawn_spec.env.iter().any(|(k, _)| k == "NONSTOP_SOCKET")
    {
        spawn_spec
            .env
            .push(("NONSTOP_SOCKET".into(), socket.into()));
    }
    // Every task learns the key of the runner's heartbeat table, if it has one: the table it
    // really uses (a reload that changes `heartbeat:` keeps it), not the file's. So the key
    // is no part of a task's fingerprint either.
    if let Some(watch) = watch.as_ref()
        && !spawn_spec.env.iter().any(|(k, _)| k == KEY_ENV)
    {
        spawn_spec
            .env
            .push((KEY_ENV.into(), watch.key().to_string().into()));
    }
    let slot = match (watch, spec.heartbeat) {
        (Some(watch), Some(heartbeat)) => {
            let (slot, env) = match reuse {
                Some(slot) => (slot, watch.env(slot)),
                None => watch.reserve(i, &spec.name, heartbeat)?,
            };
            spawn_spec
                .env
                .push((nonstop_ipc::heartbeat::ENV.into(), env.into()));
            Some(slot)
        }
        _ => None,
    };
    let probe_prepared = match spec.probe.as_mut().map(|p| &mut p.check) {
        Some(nonstop_scheduler::probe::ProbeCheck::Exec(probe_spawn)) => {
            with_nofile(probe_spawn, inherited_nofile);
            Some(Box::new(spawn::Prepared::new(probe_spawn).with_context(
                || format!("cannot prepare the probe of task {}", spec.name),
            )?))
        }
        _ => None,
    };
    // A plugin task's command is the task host: this runner's own `nonstop`, executed from the
    // descriptor opened at start, as `compress-log` is.
    let prepared = match spec.plugin {
        Some(_) => spawn::Prepared::new_at(&spawn_spec, nonstop),
        None => spawn::Prepared::new(&spawn_spec),
    }
    .with_context(|| format!("cannot prepare the command of task {}", spec.name))?;
    let spawn_spec = spec.on_demand.then(|| Box::new(spawn_spec));
    Ok(Made {
        spec,
        prepared,
        probe_prepared,
        slot,
        fingerprint,
        spawn_spec,
    })
}

/// Gives `spec` the `nofile` limit the runner was started with, unless it sets its own (the
/// runner raises its own soft limit). Handed down, so lowered in the child to what it may
/// set: a runner whose limit was lowered since (`prlimit`) still starts its tasks.
pub(super) fn with_nofile(spec: &mut spawn::SpawnSpec, inherited: (u64, u64)) {
    if !spec
        .limits
        .iter()
        .any(|l| l.resource == Resource::RLIMIT_NOFILE)
    {
        spec.limits.push(spawn::Limit {
            resource: Resource::RLIMIT_NOFILE,
            soft: inherited.0,
            hard: inherited.1,
            inherited: true,
        });
    }
}
