//! Hang detection: the pipeline's heartbeat table, watched from the loop.
//!
//! The runner reserves a slot for each task with `heartbeat:` (its environment names it,
//! `NONSTOP_HEARTBEAT=KEY:SLOT`), arms it before each start and fills in the pid once the
//! instance runs; the program only beats. Processes nonstop did not start may register
//! themselves in the same table: they are watched and stopped the same way, never restarted.
//!
//! There is no sweep period. The loop sleeps until the earliest deadline over every slot
//! ([`Watch::next`]); then [`Supervisor::sweep`] reads every slot again (lock-free, about
//! 10 ns each), asks `nonstop_watchdog` what each overdue one means, acts, and computes the
//! next deadline. Services that beat faster than their timeouts cost one wake-up per shortest
//! timeout, not one per beat. Two more reasons to wake, both bounded: once a second to find
//! processes that registered themselves since ([`SCAN`]), and every [`READY_POLL`] while a
//! task that others wait for has not beaten yet (readiness).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use nonstop_core::Deadline;
use nonstop_ipc::{HeartbeatTable, PidFd, ProcessId, SlotInfo, TableOptions};
use nonstop_scheduler::schedule::Now;
use nonstop_scheduler::task::{HeartbeatSpec, Readiness, StopSpec};
use nonstop_watchdog::{Action, Beat, Check, Identity, Protected};
use tracing::{debug, error, info, warn};

use super::{Supervisor, human};
use crate::pipeline::HeartbeatConfig;

/// How often the table is read for processes that registered themselves, when no deadline
/// comes sooner.
const SCAN: Duration = Duration::from_secs(1);

/// How often a running task that others wait for is looked at for its first beat.
const READY_POLL: Duration = Duration::from_millis(10);

/// The pipeline's heartbeat table, claimed by this runner, and what the loop knows of it.
pub(super) struct Watch {
    table: HeartbeatTable,
    /// This runner, the table's owner.
    me: ProcessId,
    /// Whether this runner removes it at exit: it created it, or took it over from a runner
    /// that died. A table that belonged to nobody is left in place.
    remove: bool,
    /// Never signalled, whatever the table says.
    protected: Protected,
    /// Reserved slot → its task.
    owners: HashMap<u32, usize>,
    /// When to read the table next.
    pub(super) next: Deadline,
    /// Processes that registered themselves, found hung and being stopped.
    foreign: Vec<ForeignStop>,
    /// The table was removed under the runner (`ipcrm`): nothing is watched any more.
    lost: bool,
}

/// A hung process that nonstop did not start: its stop signal was sent through its pidfd;
/// SIGKILL follows at `kill_at` if it still runs.
struct ForeignStop {
    pidfd: PidFd,
    name: String,
    kill_at: Deadline,
}

/// The segment at the key has another size than `config` asks for: if it is a nonstop table
/// (left by a runner of this pipeline before its slots were changed, say), said so with its
/// slots and its owner, not as "another program".
fn other_size(
    config: HeartbeatConfig,
    options: &TableOptions,
    e: nonstop_ipc::Error,
) -> anyhow::Error {
    let Ok(table) = HeartbeatTable::open(config.key, options) else {
        return anyhow::Error::new(e)
            .context(format!("cannot create the heartbeat table {}", config.key));
    };
    let owner = match table.owner() {
        Some(owner) if owner.liveness() == nonstop_ipc::Liveness::Alive => {
            format!("the runner with pid {} uses it", owner.pid)
        }
        Some(owner) => format!(
            "its runner (pid {}) is gone; if nothing else uses it, remove it with `ipcrm -M {} \
             -S {}`",
            owner.pid, config.key, config.key
        ),
        None => format!(
            "it has no runner; if nothing uses it, remove it with `ipcrm -M {} -S {}`",
            config.key, config.key
        ),
    };
    anyhow::anyhow!(
        "the heartbeat table {} has {} slots, and this pipeline asks for {} (heartbeat.slots): \
         {owner}",
        config.key,
        table.capacity(),
        config.slots
    )
}

/// How a process that registered itself is stopped.
const FOREIGN_STOP: StopSpec = StopSpec {
    signal: Signal::SIGTERM,
    grace: Duration::from_secs(5),
};

impl Watch {
    /// Opens (or creates) the table and claims it for `me`.
    pub(super) fn open(config: HeartbeatConfig, me: ProcessId) -> anyhow::Result<Watch> {
        let options = TableOptions {
            slots: config.slots,
            ..TableOptions::default()
        };
        let table = match HeartbeatTable::open_or_create(config.key, &options) {
            Ok(table) => table,
            Err(e @ nonstop_ipc::Error::WrongSize { .. }) => {
                return Err(other_size(config, &options, e));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("cannot create the heartbeat table {}", config.key)));
            }
        };
        // A second runner on the same key is refused, naming the first.
        let previous = match table.claim(me) {
            Ok(previous) => previous,
            Err(e) => {
                // Not this runner's: another serves it. Made just now, it goes again.
                if table.created() {
                    let _ = table.remove();
                }
                return Err(e.into());
            }
        };
        if let Some(dead) = previous {
            info!(key = %config.key, "took over the heartbeat table of a runner that died (pid {})", dead.pid);
            // Its tasks' instances died with it (containment): their slots go now, not at
            // their deadlines, and are not in the way of this runner's reservations.
            match table.free_dead() {
                Ok(freed) if !freed.is_empty() => {
                    info!(key = %config.key, "freed {} slots of processes that are gone", freed.len());
                }
                Ok(_) => {}
                Err(e) => warn!(key = %config.key, "cannot free the slots of dead processes: {e}"),
            }
        }
        info!(key = %config.key, slots = config.slots, "heartbeat table ready");
        Ok(Watch {
            me,
            remove: table.created() || previous.is_some(),
            table,
            protected: Protected::new(me.pid, nonstop_ipc::ancestors(me.pid)),
            owners: HashMap::new(),
            next: Deadline::At(Instant::now()),
            foreign: Vec::new(),
            lost: false,
        })
    }

    /// The table's key.
    pub(super) fn key(&self) -> nonstop_ipc::Key {
        self.table.key()
    }

    /// Reserves a slot for task `i`; returns its `NONSTOP_HEARTBEAT` value.
    pub(super) fn reserve(
        &mut self,
        i: usize,
        name: &str,
        spec: HeartbeatSpec,
    ) -> anyhow::Result<(u32, String)> {
        let slot = self
            .table
            .reserve(slot_name(name), spec.timeout, spec.start)
            .with_context(|| format!("cannot reserve a heartbeat slot for task {name}"))?;
        self.owners.insert(slot, i);
        Ok((slot, nonstop_ipc::heartbeat::format(self.table.key(), slot)))
    }

    /// What `NONSTOP_HEARTBEAT` says for `slot`.
    pub(super) fn env(&self, slot: u32) -> String {
        nonstop_ipc::heartbeat::format(self.table.key(), slot)
    }

    /// A reload's new definition of a task took over its `slot` (no instance runs): the slot
    /// gets its name and timeouts.
    pub(super) fn update(&mut self, slot: u32, name: &str, spec: HeartbeatSpec) {
        if !self.lost
            && let Err(e) =
                self.table
                    .update_reserved(slot, slot_name(name), spec.timeout, spec.start)
        {
            self.failed(&format!("cannot update heartbeat slot {slot}"), e);
        }
    }

    /// A reload replaced the task of `slot` (and reserved another): the slot is freed.
    pub(super) fn release(&mut self, slot: u32) {
        self.owners.remove(&slot);
        if !self.lost
            && let Err(e) = self.table.free_reserved(slot)
        {
            self.failed(&format!("cannot free heartbeat slot {slot}"), e);
        }
    }

    /// Before an instance starts: its slot says "no beat yet"; returns the registration time.
    pub(super) fn arm(&self, slot: u32) -> u64 {
        self.table.arm(slot)
    }

    /// A call on the table failed: said once and for all if the table was removed (then
    /// nothing is watched any more: the runner's tasks can no longer find it), else logged.
    fn failed(&mut self, what: &str, e: nonstop_ipc::Error) {
        match e {
            nonstop_ipc::Error::Removed { .. } => {
                if !self.lost {
                    error!(
                        key = %self.table.key(),
                        "the heartbeat table was removed while in use (ipcrm?): hang detection \
                         by heartbeats stops, and tasks cannot find their slots, until the \
                         runner is started again"
                    );
                    self.lost = true;
                    self.next = Deadline::Never;
                }
            }
            e => warn!("{what}: {e}"),
        }
    }

    /// The instance started as `pid`: its slot is watched, from `registered_ns`. With
    /// `awaited` (other tasks wait for it to be ready), its first beat is looked for every
    /// [`READY_POLL`] from now on.
    pub(super) fn occupy(&mut self, slot: u32, pid: Pid, registered_ns: u64, awaited: bool) {
        if self.lost {
            return;
        }
        let process = match ProcessId::of(pid.as_raw()) {
            Ok(Some(process)) => process,
            Ok(None) => return, // Already gone: its exit is on its way.
            Err(e) => return self.failed(&format!("cannot watch the heartbeat of pid {pid}"), e),
        };
        match self.table.occupy(slot, process, registered_ns) {
            Ok(info) => self.wake_by(Beat::from(&info).deadline_ns),
            Err(e) => return self.failed(&format!("cannot watch the heartbeat of pid {pid}"), e),
        }
        if awaited {
            self.wake_by(mono_ns().saturating_add(READY_POLL.as_nanos() as u64));
        }
    }

    /// The instance in `slot` is gone (or stopped as hung): the slot waits for the next one.
    pub(super) fn vacate(&mut self, slot: u32) {
        if !self.lost
            && let Err(e) = self.table.vacate(slot)
        {
            self.failed(&format!("cannot free heartbeat slot {slot}"), e);
        }
    }

    /// Read the table again no later than at `deadline_ns` (`CLOCK_MONOTONIC`).
    fn wake_by(&mut self, deadline_ns: u64) {
        let at = instant_of(deadline_ns);
        self.next = self.next.min(at);
    }

    /// A reserved slot's state for `nonstop status`: `ok` or `late` (its deadline passed),
    /// and the time since its last beat. `None` when the table cannot be read.
    pub(super) fn beat_state(&self, slot: u32) -> Option<(&'static str, Duration)> {
        if self.lost {
            return None;
        }
        let info = self.table.slot(slot)?;
        let now_ns = mono_ns();
        let state = match nonstop_watchdog::check(&Beat::from(&info), now_ns) {
            Check::Due(_) => "ok",
            Check::Overdue => "late",
        };
        Some((state, info.age(now_ns)))
    }

    /// The earliest instant the loop must wake for: the table, or a foreign kill.
    pub(super) fn deadline(&self) -> Deadline {
        let kills = self.foreign.iter().map(|f| f.kill_at);
        kills.fold(self.next, Deadline::min)
    }

    /// Stops processes that registered themselves and are still running after their grace.
    fn kill_foreign(&mut self, now: Instant) {
        self.foreign.retain(|f| {
            if !f.kill_at.is_due(now) {
                return true;
            }
            let pid = f.pidfd.process().pid;
            match f.pidfd.signal(Signal::SIGKILL) {
                Ok(true) => {
                    warn!(pid, name = %f.name, "still running after the stop grace; sent SIGKILL")
                }
                Ok(false) => debug!(pid, name = %f.name, "exited within the stop grace"),
                Err(e) => warn!(pid, name = %f.name, "cannot send SIGKILL: {e}"),
            }
            false
        });
    }

    /// Stops a hung process that registered itself: the stop signal and SIGCONT through a
    /// pidfd (never to a recycled pid), also to its process group if it leads one; SIGKILL
    /// after the grace ([`Watch::kill_foreign`]).
    fn stop_foreign(&mut self, slot: &SlotInfo, age: Duration) {
        let pid = slot.process.pid;
        let pidfd = match slot.process.pidfd() {
            Ok(Some(pidfd)) => pidfd,
            Ok(None) => {
                debug!(pid, name = %slot.name, "gone before it could be stopped");
                return;
            }
            Err(e) => {
                warn!(pid, name = %slot.name, "cannot stop it: {e}");
                return;
            }
        };
        warn!(
            pid, name = %slot.name,
            "hung: no heartbeat for {} (timeout {}); it registered itself, so it is stopped \
             (SIGTERM, SIGKILL after {}) and not restarted",
            human(age), human(slot.timeout), human(FOREIGN_STOP.grace)
        );
        for signal in [FOREIGN_STOP.signal, Signal::SIGCONT] {
            if let Err(e) = pidfd.signal(signal) {
                warn!(pid, "cannot send {}: {e}", signal.as_str());
            }
            // Its process group too if it leads one (its own children), while the pidfd says
            // the leader is still this process.
            if nix::unistd::getpgid(Some(Pid::from_raw(pid))) == Ok(Pid::from_raw(pid)) {
                let _ = nix::sys::signal::kill(Pid::from_raw(-pid), signal);
            }
        }
        self.foreign.push(ForeignStop {
            pidfd,
            name: slot.name.clone(),
            kill_at: Deadline::after(Instant::now(), FOREIGN_STOP.grace),
        });
    }
}

impl Drop for Watch {
    /// However the runner ends (a normal exit, or an error at start or later): frees this
    /// runner's slots and removes the table if this runner is the one to, else leaves it
    /// without an owner. So a runner that could not start leaves nothing at the key, and the
    /// next one (with more slots, say) creates it afresh.
    fn drop(&mut self) {
        if self.lost {
            return;
        }
        let me = self.me;
        let key = self.table.key();
        if !self.remove {
            for &slot in self.owners.keys() {
                if let Err(e) = self.table.free_reserved(slot) {
                    warn!(key = %key, "cannot free heartbeat slot {slot}: {e}");
                }
            }
        }
        let result = if self.remove {
            self.table.remove()
        } else {
            self.table.release(me)
        };
        if let Err(e) = result {
            warn!(key = %key, "cannot remove the heartbeat table: {e}");
        }
    }
}

impl Supervisor {
    /// Reads the heartbeat table if it is due: every slot's deadline, the first beats that
    /// make tasks ready, and what to do with the overdue ones.
    pub(super) fn sweep(&mut self, now: Now) {
        let Some(watch) = &mut self.watch else {
            return;
        };
        watch.kill_foreign(now.mono);
        if watch.lost || !watch.next.is_due(now.mono) {
            return;
        }
        let now_ns = mono_ns();
        let mut next = now_ns.saturating_add(SCAN.as_nanos() as u64);
        let mut hung = Vec::new();
        let mut ready = Vec::new();
        for slot in watch.table.snapshot() {
            let beat = Beat::from(&slot);
            let owner = watch.owners.get(&slot.index).copied();
            if let Some(i) = owner
                && self.entries[i].task.awaits(Readiness::Heartbeat)
            {
                if beat.beaten {
                    ready.push(i);
                } else if !self.order.dependents(i).is_empty() {
                    next = next.min(now_ns.saturating_add(READY_POLL.as_nanos() as u64));
                }
            }
            match nonstop_watchdog::check(&beat, now_ns) {
                Check::Due(at) => next = next.min(at),
                Check::Overdue => hung.push((owner, slot, beat)),
            }
        }
        watch.next = instant_of(next);
        for i in ready {
            self.on_ready(i, Readiness::Heartbeat, "first heartbeat");
        }
        for (owner, slot, beat) in hung {
            self.on_overdue(owner, &slot, &beat, now, now_ns);
        }
    }

    /// A slot's deadline passed: stop its process if it is still the one that registered
    /// (and may be signalled), else free the slot and signal nobody.
    fn on_overdue(
        &mut self,
        owner: Option<usize>,
        slot: &SlotInfo,
        beat: &Beat,
        now: Now,
        now_ns: u64,
    ) {
        let Some(watch) = &mut self.watch else {
            return;
        };
        let identity = Identity::from(slot.process.liveness());
        let action = nonstop_watchdog::act(beat, now_ns, identity, &watch.protected);
        let age = match action {
            Action::Stop { age } => age,
            Action::Free(why) => {
                match owner {
                    Some(i) => {
                        debug!(task = %self.entries[i].name(), pid = slot.process.pid, "heartbeat slot {} freed: {why}", slot.index);
                        watch.vacate(slot.index);
                    }
                    None => {
                        info!(pid = slot.process.pid, name = %slot.name, "heartbeat slot {} freed: {why}", slot.index);
                        if let Err(e) = watch.table.free(slot) {
                            watch.failed(&format!("cannot free heartbeat slot {}", slot.index), e);
                        }
                    }
                }
                return;
            }
        };
        let Some(i) = owner else {
            watch.stop_foreign(slot, age);
            if let Err(e) = watch.table.free(slot) {
                watch.failed(&format!("cannot free heartbeat slot {}", slot.index), e);
            }
            return;
        };
        // One of ours: the slot waits for the next instance whatever happens now.
        watch.vacate(slot.index);
        let entry = &self.entries[i];
        if entry.task.phase().pid() != Some(Pid::from_raw(slot.process.pid)) {
            debug!(task = %entry.name(), pid = slot.process.pid, "heartbeat slot {} names an instance that is gone", slot.index);
            return;
        }
        let first = if beat.beaten { "" } else { " since it started" };
        let what = format!(
            "no heartbeat for {}{first} (timeout {})",
            human(beat.age(now_ns)),
            human(slot.timeout)
        );
        self.on_hung_task(i, &what, now);
    }
}

impl Supervisor {
    /// Task `i`'s instance is hung (`what` says how it was found): stopped like any stop,
    /// with SIGCONT so that a stopped process gets the signal; its exit counts as a failure.
    pub(super) fn on_hung_task(&mut self, i: usize, what: &str, now: Now) {
        let entry = &mut self.entries[i];
        match entry.task.on_hung(now) {
            Some((pid, signal)) => {
                entry.hung = true;
                entry.failure = Some(format!("hung: {what}"));
                warn!(
                    task = %entry.name(), pid = pid.as_raw(),
                    "hung: {what}; sending {} and SIGCONT, SIGKILL after {}",
                    signal.as_str(), human(entry.task.spec.stop.grace)
                );
                // SIGCONT follows (`signal_task`), so that a stopped process gets it.
                self.signal_task(i, pid, signal);
            }
            None => debug!(task = %entry.name(), "hung ({what}) while already stopping"),
        }
    }
}

/// `CLOCK_MONOTONIC` now, in ns: the clock of the table's timestamps (which are read from its
/// coarse variant, never ahead of this one) and of [`Instant`].
fn mono_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => (ts.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec() as u64),
        Err(e) => {
            // CLOCK_MONOTONIC always exists on Linux.
            error!("cannot read CLOCK_MONOTONIC: {e}");
            0
        }
    }
}

/// The instant of `ns` on `CLOCK_MONOTONIC`, as a [`Deadline`] (never, if beyond what
/// [`Instant`] counts).
fn instant_of(ns: u64) -> Deadline {
    let now = mono_ns();
    let now_instant = Instant::now();
    if ns >= now {
        Deadline::after(now_instant, Duration::from_nanos(ns - now))
    } else {
        Deadline::At(
            now_instant
                .checked_sub(Duration::from_nanos(now - ns))
                .unwrap_or(now_instant),
        )
    }
}

/// A task's name as it fits a slot (63 bytes, cut at a character boundary).
fn slot_name(name: &str) -> &str {
    let max = nonstop_ipc::table::layout::NAME_MAX;
    if name.len() <= max {
        return name;
    }
    let mut end = max;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_at_a_character_boundary() {
        assert_eq!(slot_name("web"), "web");
        let long = "é".repeat(40);
        let cut = slot_name(&long);
        assert!(cut.len() <= 63 && long.starts_with(cut));
        assert_eq!(cut.len(), 62);
    }
}
