//! The watchdog's decisions: pure functions over slots read from a heartbeat table, in
//! nonstop's layout ([`nonstop_ipc::SlotInfo`]) or the seed framework's
//! ([`nonstop_ipc::SeedSlot`]). The runner (or the sweep plugin, or `nonstop ps`) reads the
//! table and `/proc`, asks here, and does what the answer says; nothing here reads a clock,
//! a file or a table, and nothing here signals.
//!
//! A slot is looked at only when its deadline has passed ([`check`]): the caller sleeps until
//! the earliest deadline ([`next_deadline`]), so there is no sweep period and no wake-up per
//! beat. An overdue slot is hung only if its process is still the one that registered
//! ([`Identity`]); otherwise the slot is freed and nobody is signalled ([`act`]). Whatever a
//! table says, pid 1 and below, the runner itself and its ancestors are never signalled
//! ([`Protected`]).

use std::fmt;
use std::time::Duration;

use nonstop_ipc::{Liveness, SeedSlot, SlotInfo};

/// One slot as read, in either layout, on the table's own clock: nanoseconds of
/// `CLOCK_MONOTONIC` for nonstop's table, of the wall clock for the seed's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    /// The slot's index.
    pub index: u32,
    /// The registered pid.
    pub pid: i32,
    /// The registered name.
    pub name: String,
    /// Hung after this long without a beat.
    pub timeout: Duration,
    /// The last beat (ns on the table's clock).
    pub last_beat_ns: u64,
    /// When it is hung without another beat (ns on the table's clock).
    pub deadline_ns: u64,
    /// Whether the program has beaten since it registered (readiness). Always true in the
    /// seed's layout, where registering stamps a beat.
    pub beaten: bool,
}

impl From<&SlotInfo> for Beat {
    fn from(slot: &SlotInfo) -> Beat {
        Beat {
            index: slot.index,
            pid: slot.process.pid,
            name: slot.name.clone(),
            timeout: slot.timeout,
            last_beat_ns: slot.last_beat_ns,
            deadline_ns: slot.deadline_ns(),
            beaten: slot.beaten(),
        }
    }
}

const NS: u64 = 1_000_000_000;

impl From<&SeedSlot> for Beat {
    /// The seed's `checkproc` calls a service hung when `time(0) - atime >= timeout`, in whole
    /// seconds: the deadline is the last nanosecond before `atime + timeout`.
    fn from(slot: &SeedSlot) -> Beat {
        let atime = u64::try_from(slot.atime).unwrap_or(0);
        let timeout = u64::try_from(slot.timeout_secs).unwrap_or(0);
        Beat {
            index: slot.index,
            pid: slot.pid,
            name: slot.name.clone(),
            timeout: Duration::from_secs(timeout),
            last_beat_ns: atime.saturating_mul(NS),
            deadline_ns: atime
                .saturating_add(timeout)
                .saturating_mul(NS)
                .saturating_sub(1),
            beaten: true,
        }
    }
}

impl Beat {
    /// Time since the last beat at `now_ns`.
    pub fn age(&self, now_ns: u64) -> Duration {
        Duration::from_nanos(now_ns.saturating_sub(self.last_beat_ns))
    }
}

/// Whether a slot needs looking at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Not yet: look again at this instant (ns on the table's clock), unless it beats.
    Due(u64),
    /// Its deadline has passed: find out whether its process is the one that registered,
    /// then [`act`].
    Overdue,
}

/// Whether `beat` is overdue at `now_ns`.
pub fn check(beat: &Beat, now_ns: u64) -> Check {
    if now_ns > beat.deadline_ns {
        Check::Overdue
    } else {
        Check::Due(beat.deadline_ns)
    }
}

/// The earliest deadline among `beats`: when the watcher next needs to wake. Re-reading every
/// slot then (they are read without a lock, about 10 ns each) and sleeping until the new
/// earliest deadline makes a table of services that beat faster than their timeouts cost
/// about one wake-up per shortest timeout, not one per beat.
pub fn next_deadline<'b>(beats: impl IntoIterator<Item = &'b Beat>) -> Option<u64> {
    beats.into_iter().map(|b| b.deadline_ns).min()
}

/// Whether the process in a slot is the one that registered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// It is: same pid, same start.
    Same,
    /// No process has the pid, or it is a zombie.
    Gone,
    /// The pid belongs to another process now.
    Recycled,
}

impl From<Liveness> for Identity {
    fn from(liveness: Liveness) -> Identity {
        match liveness {
            Liveness::Alive => Identity::Same,
            Liveness::Gone => Identity::Gone,
            Liveness::Recycled => Identity::Recycled,
        }
    }
}

impl Identity {
    /// For the seed's layout, which records no start time: a process that started after the
    /// slot's last beat cannot have written it, so its pid was recycled. `started` is the
    /// process's start on the wall clock (seconds; `None` if there is no such process), known
    /// to about a second, hence the second of slack.
    pub fn for_seed(started: Option<u64>, last_beat_secs: u64) -> Identity {
        match started {
            None => Identity::Gone,
            Some(started) if started > last_beat_secs.saturating_add(1) => Identity::Recycled,
            Some(_) => Identity::Same,
        }
    }
}

/// The pids no table may get signalled: every pid up to 1, the runner, its ancestors.
#[derive(Debug, Clone, Default)]
pub struct Protected {
    pids: Vec<i32>,
}

impl Protected {
    /// `runner` and its `ancestors` (read from `/proc` by the caller).
    pub fn new(runner: i32, ancestors: impl IntoIterator<Item = i32>) -> Protected {
        let mut pids: Vec<i32> = ancestors.into_iter().collect();
        pids.push(runner);
        Protected { pids }
    }

    /// Whether `pid` must never be signalled.
    pub fn covers(&self, pid: i32) -> bool {
        pid <= 1 || self.pids.contains(&pid)
    }
}

/// Why a slot is freed without signalling anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeReason {
    /// Its process is gone.
    Gone,
    /// Its pid belongs to another process now, which is left alone.
    Recycled,
    /// It names pid 1 or below, the runner or one of its ancestors.
    Protected,
}

impl fmt::Display for FreeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FreeReason::Gone => "its process is gone",
            FreeReason::Recycled => "its pid now belongs to another process, which is left alone",
            FreeReason::Protected => {
                "it names pid 1 or below, the runner or one of its ancestors, which are never signalled"
            }
        })
    }
}

/// What to do with an overdue slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Hung: stop it (its stop signal and SIGCONT, the grace, SIGKILL), then free the slot.
    /// `age` is how long it has not beaten.
    Stop {
        /// Time since its last beat.
        age: Duration,
    },
    /// Free the slot; signal nobody.
    Free(FreeReason),
}

/// What to do with `beat`, overdue at `now_ns`, whose process was found to be `identity`.
pub fn act(beat: &Beat, now_ns: u64, identity: Identity, protected: &Protected) -> Action {
    match identity {
        Identity::Gone => Action::Free(FreeReason::Gone),
        Identity::Recycled => Action::Free(FreeReason::Recycled),
        Identity::Same if protected.covers(beat.pid) => Action::Free(FreeReason::Protected),
        Identity::Same => Action::Stop {
            age: beat.age(now_ns),
        },
    }
}

/// A slot's state as `nonstop ps` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Beating within its timeout.
    Ok,
    /// Alive, but its deadline has passed: hung, or about to be stopped.
    Late,
    /// Its process is gone (or the pid recycled): the slot is left over.
    Dead,
}

impl State {
    /// `ok`, `late` or `dead`: the words `nonstop ps` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Late => "late",
            State::Dead => "dead",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of `beat` at `now_ns`, its process being `identity`.
pub fn state(beat: &Beat, now_ns: u64, identity: Identity) -> State {
    match (identity, check(beat, now_ns)) {
        (Identity::Gone | Identity::Recycled, _) => State::Dead,
        (Identity::Same, Check::Overdue) => State::Late,
        (Identity::Same, Check::Due(_)) => State::Ok,
    }
}

#[cfg(test)]
mod tests;
