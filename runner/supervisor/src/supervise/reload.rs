//! Reload by diff (SIGHUP, `nonstop reload`). The file is read and checked again in a child,
//! `nonstop reload-check FILE` (the supervisor links no parser), which writes the checked
//! pipeline to a memfd, or its errors to another; the loop goes on meanwhile and takes the
//! result when the child is reaped. Then, task by task, by name:
//!
//! - a task that is new starts (after the tasks it comes `after`, as at start);
//! - a task that is gone is stopped, and forgotten;
//! - a task whose definition changed (any field: a digest of its encoded spec differs) is
//!   stopped and started again with the new definition; one with no process is replaced at
//!   once; one an operator stopped (or is stopping) takes it and stays stopped;
//! - a task that did not change is not touched: same process, same counts.
//!
//! An invalid file changes nothing: its errors are logged and answered, and the running
//! pipeline goes on. The other sections (`heartbeat`, `logs`, `containment`, `control`)
//! cannot change while the runner runs: a reload that changes them says so and keeps them;
//! `metrics` may change. They are no part of a task's fingerprint (what a task gets from them
//! is added by `make`, from what the runner uses), so changing them changes no task. A file
//! with more tasks with a heartbeat than the runner's table can take (it has none, or too
//! few slots) is refused.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Instant;

use anyhow::Context;
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::unistd::Pid;
use nonstop_core::Deadline;
use nonstop_scheduler::order::{Agenda, Order};
use nonstop_scheduler::schedule::Now;
use nonstop_scheduler::spawn;
use nonstop_scheduler::task::{Exit, Phase, StopReason, Task};
use tracing::{error, info, warn};

use super::control::error as error_answer;
use super::json::Object;
use super::{Entry, Made, Making, Supervisor, make};
use crate::pipeline::Pipeline;

/// How long the check of a reloaded file may take (it loads plugins to validate their
/// arguments, each in a child of its own): past it, the check is killed and the reload
/// refused.
pub(super) const CHECK_TIME: std::time::Duration = std::time::Duration::from_secs(60);

/// A reload under way: the checking child, its two memfds, and who waits for the result.
pub(super) struct Reloading {
    pid: Pid,
    out: File,
    err: File,
    /// Control connections to answer when it is over.
    clients: Vec<RawFd>,
    since: Instant,
    /// Whether it was killed for taking longer than [`CHECK_TIME`].
    killed: bool,
}

impl Reloading {
    /// When the check must be over.
    pub(super) fn deadline(&self) -> Deadline {
        if self.killed {
            Deadline::Never
        } else {
            Deadline::after(self.since, CHECK_TIME)
        }
    }
}

/// What a reload did, by task name.
#[derive(Debug, Default)]
struct Diff {
    added: Vec<String>,
    removed: Vec<String>,
    changed: Vec<String>,
    unchanged: usize,
    /// Tasks whose new definition could not be taken (`NAME: why`): they run on as they were
    /// (a changed one), or are not added.
    failed: Vec<String>,
}

impl Supervisor {
    /// Starts a reload (or joins the one under way); `client` is a control connection to
    /// answer when it is over.
    pub(super) fn begin_reload(&mut self, client: Option<RawFd>) {
        if self.shutdown.is_some() {
            if let (Some(fd), Some(control)) = (client, &mut self.control) {
                control.answer(
                    fd,
                    error_answer("the runner is shutting down"),
                    &self.events,
                );
            }
            return;
        }
        if let Some(reloading) = &mut self.reloading {
            info!("reload requested while one is under way: answered with its result");
            reloading.clients.extend(client);
            return;
        }
        self.notifier.reloading();
        match self.spawn_check() {
            Ok((pid, out, err)) => {
                info!(pid = pid.as_raw(), "reloading {}: checking it", self.shown);
                self.reloading = Some(Reloading {
                    pid,
                    out,
                    err,
                    clients: client.into_iter().collect(),
                    since: Instant::now(),
                    killed: false,
                });
            }
            Err(e) => {
                error!("cannot reload: {e:#}");
                self.notifier
                    .reloaded("reload failed; the pipeline runs on");
                if let (Some(fd), Some(control)) = (client, &mut self.control) {
                    control.answer(fd, error_answer(&format!("{e:#}")), &self.events);
                }
            }
        }
    }

    /// `nonstop reload-check FILE`, its stdout and stderr each a memfd.
    fn spawn_check(&mut self) -> anyhow::Result<(Pid, File, File)> {
        let memfd = |name: &std::ffi::CStr| -> anyhow::Result<File> {
            Ok(File::from(
                memfd_create(name, MFdFlags::MFD_CLOEXEC).context("cannot create a memfd")?,
            ))
        };
        let (out, err) = (memfd(c"nonstop-reload")?, memfd(c"nonstop-reload-errors")?);
        let spec = spawn::SpawnSpec {
            program: "nonstop".into(),
            args: vec!["reload-check".into(), self.shown.clone().into()],
            ..Default::default()
        };
        let prepared = spawn::Prepared::new_at(&spec, self.nonstop.as_raw_fd())?;
        let output = spawn::Output {
            stdout: out.as_fd(),
            stderr: err.as_fd(),
        };
        let pid = spawn::spawn_prepared(&prepared, output, self.runner, None)
            .context("cannot start nonstop reload-check")?;
        Ok((pid, out, err))
    }

    /// A check that takes longer than [`CHECK_TIME`] is killed (its exit then refuses the
    /// reload).
    pub(super) fn time_reload(&mut self, now: Instant) {
        if let Some(reloading) = &mut self.reloading
            && reloading.deadline().is_due(now)
        {
            error!(
                pid = reloading.pid.as_raw(),
                "the check of the reloaded file takes longer than {}: killing it",
                super::human(CHECK_TIME)
            );
            reloading.killed = true;
            let _ = nix::sys::signal::kill(reloading.pid, nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// The reload's checking child, while one runs.
    pub(super) fn reload_check_pid(&self) -> Option<Pid> {
        self.reloading.as_ref().map(|r| r.pid)
    }

    /// Whether `pid` is the reload's checking child.
    pub(super) fn is_reload_check(&self, pid: Pid) -> bool {
        self.reloading.as_ref().is_some_and(|r| r.pid == pid)
    }

    /// The checking child exited with `exit`: applies what it wrote, or reports its errors.
    pub(super) fn on_reload_checked(&mut self, exit: Exit) {
        let Some(mut reloading) = self.reloading.take() else {
            return;
        };
        let read = |file: &mut File| -> std::io::Result<Vec<u8>> {
            let mut bytes = Vec::new();
            file.rewind()?;
            file.read_to_end(&mut bytes)?;
            Ok(bytes)
        };
        let messages = read(&mut reloading.err).unwrap_or_default();
        let messages = String::from_utf8_lossy(&messages);
        let result = if exit.success() {
            read(&mut reloading.out)
                .context("cannot read the checked pipeline")
                .and_then(|bytes| crate::handoff::decode_pipeline(&bytes))
        } else {
            Err(anyhow::anyhow!("{}", messages.trim_end()))
        };
        let answer = match result {
            // The shutdown began meanwhile: nothing more is started or changed.
            _ if self.shutdown.is_some() => {
                info!(
                    "the reload of {} is dropped: the runner is shutting down",
                    self.shown
                );
                error_answer("the runner is shutting down")
            }
            Ok(pipeline) if let Some(why) = self.too_many(&pipeline) => {
                error!(
                    "reload refused: {why}; {}; the pipeline runs on unchanged",
                    super::descriptors::ADVICE
                );
                self.notifier
                    .reloaded("reload refused; the pipeline runs on");
                error_answer(&format!(
                    "{why}; {}; nothing changed",
                    super::descriptors::ADVICE
                ))
            }
            Ok(pipeline) if let Some(why) = self.unwatchable(&pipeline) => {
                error!("reload refused: {why}; the pipeline runs on unchanged");
                self.notifier
                    .reloaded("reload refused; the pipeline runs on");
                error_answer(&format!("{why}; nothing changed"))
            }
            Ok(pipeline) => {
                for line in messages.lines() {
                    warn!("{line}");
                }
                let diff = self.apply(pipeline);
                info!(
                    "reloaded {} in {:.1} ms: {} added, {} removed, {} changed, {} unchanged",
                    self.shown,
                    reloading.since.elapsed().as_secs_f64() * 1000.0,
                    diff.added.len(),
                    diff.removed.len(),
                    diff.changed.len(),
                    diff.unchanged
                );
                self.notifier
                    .reloaded(&format!("reloaded; {} tasks", self.live()));
                diff_answer(&diff)
            }
            Err(e) if exit.success() => {
                error!(
                    "reload of {} failed: {e:#}; the pipeline runs on unchanged",
                    self.shown
                );
                self.notifier
                    .reloaded("reload failed; the pipeline runs on");
                error_answer(&format!("{e:#}"))
            }
            // Killed (by the time limit, or by someone): the file was not found wrong.
            Err(_) if matches!(exit, Exit::Signal(_)) => {
                let why = if reloading.killed {
                    format!("its check took longer than {}", super::human(CHECK_TIME))
                } else {
                    format!("its check was ended by {exit}")
                };
                error!(
                    "reload of {} failed: {why}; the pipeline runs on unchanged",
                    self.shown
                );
                self.notifier
                    .reloaded("reload failed; the pipeline runs on");
                error_answer(&format!("reload failed: {why}; nothing changed"))
            }
            Err(e) => {
                error!(
                    "reload refused: {} is invalid ({exit}); the pipeline runs on unchanged",
                    self.shown
                );
                for line in messages.lines() {
                    error!("{line}");
                }
                self.notifier
                    .reloaded("reload refused; the pipeline runs on");
                error_answer(&format!("{} is invalid; nothing changed:\n{e}", self.shown))
            }
        };
        if let Some(control) = &mut self.control {
            for fd in reloading.clients {
                control.answer(fd, answer.clone(), &self.events);
            }
        }
    }

    /// Why the runner's hard `nofile` limit is too low for `pipeline` (its tasks, and the
    /// descriptors the tasks it removes keep until their place is taken), or `None`.
    fn too_many(&self, pipeline: &Pipeline) -> Option<String> {
        let cgroups = matches!(self.containment, super::Containment::Cgroups(_));
        let wanted: HashSet<&str> = pipeline.tasks.iter().map(|t| t.name.as_str()).collect();
        let kept: u64 = self
            .entries
            .iter()
            .filter(|e| e.removed || !wanted.contains(e.name()))
            .map(|e| super::descriptors::per_task(&e.task.spec, cgroups))
            .sum();
        super::descriptors::need(&pipeline.tasks, cgroups, kept)
            .over(super::descriptors::hard_limit())
    }

    /// Why this runner cannot watch the heartbeats of `pipeline`'s tasks, or `None`. Its table
    /// is made at start and kept for its life (a reload does not change `heartbeat:`): a
    /// runner without one cannot watch a task with a `heartbeat` (which would wait for its
    /// first beat for ever, and the tasks `after` it with it), and one whose table is smaller
    /// cannot reserve a slot for each.
    fn unwatchable(&self, pipeline: &Pipeline) -> Option<String> {
        let beating: Vec<&str> = pipeline
            .tasks
            .iter()
            .filter(|t| t.heartbeat.is_some())
            .map(|t| t.name.as_str())
            .collect();
        let slots = match (&self.watch, self.globals.heartbeat) {
            _ if beating.is_empty() => return None,
            (Some(_), Some(table)) => table.slots,
            _ => {
                let (tasks, have, them, their) = match beating.as_slice() {
                    [one] => (format!("task {one}"), "has", "it", "its"),
                    many => (format!("tasks {}", names(many)), "have", "them", "their"),
                };
                return Some(format!(
                    "{tasks} {have} a heartbeat, but this runner has no heartbeat table (it \
                     started without a task with a heartbeat or a `heartbeat:` section, and the \
                     table is made only at start): restart the runner to watch {them}, or \
                     remove {their} `heartbeat`"
                ));
            }
        };
        (beating.len() > slots as usize).then(|| {
            format!(
                "{} tasks have a heartbeat, but this runner's heartbeat table has {slots} slots \
                 (as `heartbeat.slots` was when it started): restart the runner to make a \
                 larger table",
                beating.len()
            )
        })
    }

    /// The tasks a reload did not remove.
    pub(super) fn live(&self) -> usize {
        self.entries.iter().filter(|e| !e.removed).count()
    }

    /// Task `name`, unless a reload removed it.
    pub(super) fn find(&self, name: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| !e.removed && e.name() == name)
    }

    /// The tasks `name` names: the task of that name, else every copy of a task with
    /// `instances` of that name.
    pub(super) fn resolve(&self, name: &str) -> Vec<usize> {
        if let Some(i) = self.find(name) {
            return vec![i];
        }
        (0..self.entries.len())
            .filter(|&i| {
                let e = &self.entries[i];
                !e.removed && e.task.spec.instance_of.as_deref() == Some(name)
            })
            .collect()
    }

    /// Applies a checked pipeline: the diff (see the module's documentation).
    fn apply(&mut self, pipeline: Pipeline) -> Diff {
        let now = Now::read();
        let mut diff = Diff::default();
        self.keep_globals(&pipeline);
        self.metrics = pipeline
            .metrics
            .clone()
            .map(super::metrics::MetricsFile::new);
        let wanted: HashSet<&str> = pipeline.tasks.iter().map(|t| t.name.as_str()).collect();
        for i in 0..self.entries.len() {
            let entry = &self.entries[i];
            if entry.removed || wanted.contains(entry.name()) {
                continue;
            }
            diff.removed.push(entry.name().to_owned());
            info!(task = %entry.name(), "removed by the reload: stopping it");
            self.entries[i].removed = true;
            self.drop_replacement(i);
            match self.entries[i].task.stop_by_operator(now) {
                Some((pid, signal)) => self.signal_task(i, pid, signal),
                // Stopping already: forgotten once gone.
                None if self.entries[i].task.phase().pid().is_some() => {}
                None => self.forget(i),
            }
        }
        let socket = self.control.as_ref().map(|c| c.path().to_owned());
        let mut grew = false;
        // The tasks still there, by name, looked up once each (a pipeline may have thousands).
        let live: HashMap<String, usize> = (0..self.entries.len())
            .filter(|&i| !self.entries[i].removed)
            .map(|i| (self.entries[i].name().to_owned(), i))
            .collect();
        for (spec, fingerprint) in pipeline.tasks.into_iter().zip(pipeline.fingerprints) {
            let mut found = live.get(&spec.name).copied();
            // Removed by an earlier reload and still stopping: it comes back in its own place
            // and starts again once its instance is gone (two instances of one name would
            // share its cgroup and its log).
            if found.is_none()
                && let Some(i) = self.still_stopping(&spec.name)
            {
                info!(task = %spec.name, "added back by the reload: it starts again once it has stopped");
                diff.added.push(spec.name.clone());
                self.entries[i].removed = false;
                grew = true;
                if self.entries[i].fingerprint == fingerprint {
                    self.entries[i].task.start();
                    continue;
                }
                found = Some(i);
            }
            if let Some(i) = found
                && self.entries[i].fingerprint == fingerprint
            {
                // Back to the definition it has: one that an earlier reload left to replace
                // it once stopped is dropped.
                self.drop_replacement(i);
                diff.unchanged += 1;
                continue;
            }
            let name = spec.name.clone();
            let i = found
                .or_else(|| self.free_index())
                .unwrap_or(self.entries.len());
            let with = Making {
                inherited_nofile: self.inherited_nofile,
                socket: socket.as_deref(),
                nonstop: self.nonstop.as_raw_fd(),
            };
            // A changed task keeps its heartbeat slot: its new definition takes it over once
            // the running instance is gone (a table sized to the pipeline has no other).
            let reuse = found.and_then(|i| self.entries[i].slot);
            let made = match make(i, spec, fingerprint, &with, &mut self.watch, reuse) {
                Ok(made) => made,
                Err(e) => {
                    error!(task = %name, "cannot take the reloaded definition: {e:#}");
                    diff.failed.push(format!("{name}: {e:#}"));
                    continue;
                }
            };
            let made_slot = made.slot;
            match found {
                Some(i) => {
                    if !diff.added.contains(&name) {
                        diff.changed.push(name);
                    }
                    self.change(i, made, now);
                }
                None => match Entry::open(made, &self.globals.logs, &self.events) {
                    Ok(entry) => {
                        info!(task = %name, "added by the reload");
                        diff.added.push(name);
                        self.pipes.insert(entry.output.0.as_raw_fd(), i);
                        if i < self.entries.len() {
                            // In the place of a task removed earlier, whose descriptors close.
                            let old = std::mem::replace(&mut self.entries[i], entry);
                            self.pipes.remove(&old.output.0.as_raw_fd());
                            let _ = self.events.unwatch(&old.output.0);
                        } else {
                            self.entries.push(entry);
                        }
                        grew = true;
                    }
                    Err(e) => {
                        error!(task = %name, "cannot add it: {e:#}");
                        diff.failed.push(format!("{name}: {e:#}"));
                        if let (Some(slot), Some(watch)) = (made_slot, &mut self.watch) {
                            watch.release(slot);
                        }
                    }
                },
            }
        }
        self.reorder(grew);
        diff
    }

    /// Task `i`'s definition changed: replaced now if no process runs, else once the running
    /// instance, stopped now, is gone.
    fn change(&mut self, i: usize, made: Made, now: Now) {
        // A newer definition than one an earlier reload left waiting.
        self.drop_replacement(i);
        let entry = &mut self.entries[i];
        match entry.task.phase() {
            // Being stopped by an operator (`nonstop stop`): it takes the new definition once
            // its instance is gone, and stays stopped (see `ended`).
            Phase::Stopping {
                reason: StopReason::Operator,
                ..
            } => {
                info!(task = %entry.name(), "changed by the reload: it takes the new definition once stopped, and stays stopped");
                entry.replacement = Some(Box::new(made));
            }
            phase if phase.pid().is_some() => {
                info!(task = %entry.name(), "changed by the reload: restarting it");
                entry.replacement = Some(Box::new(made));
                if let Some((pid, signal)) = entry.task.restart(now) {
                    self.signal_task(i, pid, signal);
                }
            }
            _ => {
                info!(task = %entry.name(), "changed by the reload");
                // Stopped by an operator: it takes the new definition and stays stopped.
                let stopped = entry.task.phase() == Phase::Stopped;
                self.replace(i, made);
                if stopped {
                    self.entries[i].task.stop_by_operator(now);
                }
            }
        }
    }

    /// Drops the definition that was to replace task `i` once stopped, if any, and frees the
    /// heartbeat slot reserved for it.
    fn drop_replacement(&mut self, i: usize) {
        if let Some(made) = self.entries[i].replacement.take()
            && let (Some(slot), Some(watch)) = (made.slot, &mut self.watch)
            // Its own slot, which it was to take over, stays.
            && made.slot != self.entries[i].slot
        {
            watch.release(slot);
        }
    }

    /// A task of that name that a reload removed and whose instance is still stopping.
    fn still_stopping(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|e| {
            e.removed
                && e.name() == name
                && (e.task.phase().pid().is_some() || e.task.lingering().is_some())
        })
    }

    /// A removed task's place that a new one may take: its process gone, its last output
    /// copied, no compression of its log under way. (So removing and adding tasks reload
    /// after reload does not grow the runner.)
    fn free_index(&self) -> Option<usize> {
        (0..self.entries.len()).find(|&i| {
            let e = &self.entries[i];
            e.removed
                && e.task.phase().is_final()
                && e.task.lingering().is_none()
                && !self.compressions.involves(i)
                && !self.probe_pids.values().any(|&task| task == i)
                && !self.watches.values().any(|&task| task == i)
        })
    }

    /// A removed task is over: its heartbeat slot and its cgroup go now (the cgroup here, not
    /// by the guard: a task of the same name may be added and make it again).
    pub(super) fn forget(&mut self, i: usize) {
        let entry = &mut self.entries[i];
        if let (Some(slot), Some(watch)) = (entry.slot.take(), &mut self.watch) {
            watch.release(slot);
        }
        if let Some(cgroup) = entry.cgroup.take()
            && let Err(e) = cgroup.remove()
        {
            warn!(task = %entry.name(), "{e}");
        }
    }

    /// Gives task `i` its new definition; it starts as a new task would.
    pub(super) fn replace(&mut self, i: usize, made: Made) {
        let entry = &mut self.entries[i];
        if let (Some(old), Some(watch)) = (entry.slot, &mut self.watch) {
            match (made.slot, made.spec.heartbeat) {
                // Taken over: its name and timeouts become the new definition's.
                (Some(slot), Some(heartbeat)) if slot == old => {
                    watch.update(slot, &made.spec.name, heartbeat);
                }
                _ => watch.release(old),
            }
        }
        entry.task = Task::new(made.spec);
        entry.prepared = made.prepared;
        entry.probe_prepared = made.probe_prepared;
        entry.slot = made.slot;
        entry.fingerprint = made.fingerprint;
        entry.spawn_spec = made.spawn_spec;
        entry.waiting_logged = false;
        entry.blocked_logged = false;
        entry.hung = false;
        self.agenda.changed(i, &self.order);
    }

    /// The `after` relation over the tasks as they are now (a removed task's is dropped); with
    /// new tasks, every task is looked at again.
    fn reorder(&mut self, grew: bool) {
        let specs: Vec<_> = self
            .entries
            .iter()
            .map(|e| {
                let mut spec = e.task.spec.clone();
                if e.removed {
                    spec.after.clear();
                    // A removed task's name may come back as a new task: not this one.
                    spec.name.clear();
                }
                spec
            })
            .collect();
        self.order = Order::new(&specs);
        if grew {
            self.agenda = Agenda::all(self.entries.len());
        } else {
            self.agenda.push_all();
        }
        if self.devnull.is_none() && self.entries.iter().any(|e| e.probe_prepared.is_some()) {
            match super::open_devnull() {
                Ok(devnull) => self.devnull = Some(devnull),
                Err(e) => error!("cannot open /dev/null for exec probes: {e}"),
            }
        }
    }

    /// Says which of the sections that cannot change live the reloaded file changed.
    fn keep_globals(&self, new: &Pipeline) {
        let old = &self.globals;
        let mut changed = Vec::new();
        if new.heartbeat != old.heartbeat {
            changed.push("heartbeat");
        }
        if new.logs != old.logs {
            changed.push("logs");
        }
        if new.containment != old.containment {
            changed.push("containment");
        }
        if new.control.is_some() && new.control != old.control {
            changed.push("control");
        }
        if !changed.is_empty() {
            warn!(
                "the reload changes {}, which cannot change while the runner runs: kept as they \
                 were; restart the runner to apply them",
                changed.join(", ")
            );
        }
    }
}

/// At most the first five of `names`, then how many more.
fn names(names: &[&str]) -> String {
    const SHOWN: usize = 5;
    let mut text = names[..names.len().min(SHOWN)].join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

/// `{"schema":1,"ok":true,"added":[...],"removed":[...],"changed":[...],"unchanged":N}`.
fn diff_answer(diff: &Diff) -> Vec<u8> {
    fn list(out: &mut String, names: &[String]) {
        out.push('[');
        for (n, name) in names.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            super::json::string(out, name);
        }
        out.push(']');
    }
    let mut out = String::new();
    Object::new(&mut out)
        .num("schema", super::requests::SCHEMA)
        .bool("ok", true)
        .with("added", |o| list(o, &diff.added))
        .with("removed", |o| list(o, &diff.removed))
        .with("changed", |o| list(o, &diff.changed))
        .num("unchanged", diff.unchanged)
        .with("failed", |o| list(o, &diff.failed))
        .end();
    out.push('\n');
    out.into_bytes()
}
