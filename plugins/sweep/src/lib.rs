//! `sweep`: one pass of the watchdog over a heartbeat table whose services nonstop did not
//! start: the seed's `checkproc`, run as a periodic task.
//!
//! ```yaml
//! tasks:
//!   checkproc:
//!     plugin: sweep
//!     args: { key: 0x5095, layout: seed, grace: 5s }
//!     every: 10s
//! ```
//!
//! Every slot past its deadline is looked at with the decisions of `nonstop-watchdog`: one
//! whose process is gone, whose pid now names a younger process, or that names pid 1, this
//! task or one of its ancestors (the runner) is freed and nobody is signalled; a hung one gets
//! SIGTERM and SIGCONT (through a pidfd taken and checked against the slot), SIGKILL after
//! `grace` if it still runs, and its slot is freed. The hung services are stopped together,
//! not one after the other as the seed did (while it waited on one, every other slot waited).

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use nonstop_core::Deadline;
use nonstop_core::plugin::{Context, Task};
use nonstop_ipc::{Key, PidFd, SeedOptions, SeedTable, TableOptions};
use nonstop_watchdog::{Action, Beat, Check, FreeReason, Identity, Protected};
use serde::{Deserialize, Deserializer};

/// Which table layout.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// nonstop's own table.
    #[default]
    Nonstop,
    /// The seed framework's `st_procinfo` table.
    Seed,
}

/// The task's `args`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The table's key (`0x5095`, or `20629`).
    #[serde(deserialize_with = "key")]
    pub key: Key,
    /// Its layout. Default `nonstop`.
    #[serde(default)]
    pub layout: Layout,
    /// Time between SIGTERM and SIGKILL. Default 5 s, as the seed's checkproc.
    #[serde(default = "five_seconds")]
    pub grace: nonstop_core::Duration,
}

fn five_seconds() -> nonstop_core::Duration {
    nonstop_core::Duration(Duration::from_secs(5))
}

fn key<'de, D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(i64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        Raw::Number(n) => i32::try_from(n)
            .or_else(|_| u32::try_from(n).map(|v| v as i32))
            .map_err(|_| serde::de::Error::custom(format!("{n} is not a 32-bit key")))
            .and_then(|v| Key::new(v).map_err(serde::de::Error::custom)),
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Slots looked at.
    pub slots: usize,
    /// Hung services stopped.
    pub stopped: usize,
    /// Of those, killed after the grace.
    pub killed: usize,
    /// Slots freed without signalling anyone.
    pub freed: usize,
}

/// A slot in either layout, with what the pass needs of it.
struct Seen {
    beat: Beat,
    identity: Identity,
    /// The pid's process, pinned, when it is the registered one.
    pidfd: Option<PidFd>,
}

/// One pass over the table at `args.key`; `log` gets one line per action.
pub fn sweep(args: &Args, log: &mut dyn FnMut(&str)) -> Result<Stats, String> {
    let me = std::process::id() as i32;
    let protected = Protected::new(me, nonstop_ipc::ancestors(me));
    let mut stats = Stats::default();
    let mut stopping = Vec::new();
    // No table (yet): no service has registered; nothing to watch, and no failure.
    let absent = |e: nonstop_ipc::Error, log: &mut dyn FnMut(&str)| match e {
        nonstop_ipc::Error::NotFound { .. } => {
            log(&format!(
                "sweep: no table at key {}: nothing to watch",
                args.key
            ));
            Ok(Stats::default())
        }
        e => Err(e.to_string()),
    };
    match args.layout {
        Layout::Nonstop => {
            let table = match nonstop_ipc::HeartbeatTable::open(args.key, &TableOptions::default())
            {
                Ok(table) => table,
                Err(e) => return absent(e, log),
            };
            let now = nonstop_ipc::clock::now_ns();
            for slot in table.snapshot() {
                stats.slots += 1;
                let beat = Beat::from(&slot);
                if nonstop_watchdog::check(&beat, now) != Check::Overdue {
                    continue;
                }
                let pidfd = slot.process.pidfd().ok().flatten();
                let identity = if pidfd.is_some() {
                    Identity::Same
                } else {
                    Identity::from(slot.process.liveness())
                };
                let seen = Seen {
                    beat,
                    identity,
                    pidfd,
                };
                if act(seen, now, &protected, &mut stats, &mut stopping, log) {
                    let _ = table.free(&slot);
                }
            }
        }
        Layout::Seed => {
            let table = match SeedTable::open(args.key, &SeedOptions::default()) {
                Ok(table) => table,
                Err(e) => return absent(e, log),
            };
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            for slot in table.snapshot() {
                stats.slots += 1;
                let beat = Beat::from(&slot);
                if nonstop_watchdog::check(&beat, now) != Check::Overdue {
                    continue;
                }
                let started = nonstop_ipc::started_at(slot.pid).ok().flatten();
                let identity = Identity::for_seed(started, slot.atime.max(0) as u64);
                // Pinned, then checked again: the process the pidfd holds is the one judged.
                let pidfd = match identity {
                    Identity::Same => nonstop_ipc::ProcessId::of(slot.pid)
                        .ok()
                        .flatten()
                        .and_then(|p| p.pidfd().ok().flatten()),
                    _ => None,
                };
                let seen = Seen {
                    beat,
                    identity: if pidfd.is_some() {
                        identity
                    } else if identity == Identity::Same {
                        Identity::Gone
                    } else {
                        identity
                    },
                    pidfd,
                };
                if act(seen, now, &protected, &mut stats, &mut stopping, log) {
                    let _ = table.free(&slot);
                }
            }
        }
    }
    finish(stopping, args.grace.0, &mut stats, log);
    Ok(stats)
}

/// Decides for one overdue slot; returns whether to free it.
fn act(
    seen: Seen,
    now: u64,
    protected: &Protected,
    stats: &mut Stats,
    stopping: &mut Vec<(PidFd, String)>,
    log: &mut dyn FnMut(&str),
) -> bool {
    let b = &seen.beat;
    match nonstop_watchdog::act(b, now, seen.identity, protected) {
        Action::Free(why) => {
            stats.freed += 1;
            let why = match why {
                FreeReason::Gone => "its process is gone",
                FreeReason::Recycled => "its pid belongs to another process now",
                FreeReason::Protected => "it names a process that is never signalled",
            };
            log(&format!(
                "sweep: freed slot {} ({} pid {}): {why}",
                b.index,
                nonstop_core::printable(&b.name),
                b.pid
            ));
            true
        }
        Action::Stop { age } => {
            let Some(pidfd) = seen.pidfd else {
                return true;
            };
            log(&format!(
                "sweep: {} (pid {}) is hung: no beat for {:.1}s (timeout {}s); sending SIGTERM",
                nonstop_core::printable(&b.name),
                b.pid,
                age.as_secs_f64(),
                b.timeout.as_secs()
            ));
            let _ = pidfd.signal(Signal::SIGTERM);
            let _ = pidfd.signal(Signal::SIGCONT);
            stats.stopped += 1;
            // A slot's name is what its process wrote: shown escaped, on the line it belongs to.
            stopping.push((pidfd, nonstop_core::printable(&b.name).into_owned()));
            true
        }
    }
}

/// Waits up to `grace` for every stopped service together, then SIGKILLs the ones left.
fn finish(
    stopping: Vec<(PidFd, String)>,
    grace: Duration,
    stats: &mut Stats,
    log: &mut dyn FnMut(&str),
) {
    let deadline = Deadline::after(Instant::now(), grace);
    let mut left: Vec<(PidFd, String)> = stopping;
    let mut done = HashSet::new();
    while !left.is_empty() {
        let now = Instant::now();
        if deadline.is_due(now) {
            break;
        }
        // Never (a grace beyond the clock): wait for them in slices all the same.
        let ms = deadline
            .remaining(now)
            .map_or(100, |left| left.as_millis().min(100)) as u16;
        let mut fds: Vec<nix::poll::PollFd<'_>> = left
            .iter()
            .map(|(p, _)| {
                nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(p), nix::poll::PollFlags::POLLIN)
            })
            .collect();
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
        for (i, fd) in fds.iter().enumerate() {
            if fd.revents().is_some_and(|r| !r.is_empty()) {
                done.insert(i);
            }
        }
        drop(fds);
        let mut i = 0;
        left.retain(|_| {
            let keep = !done.contains(&i);
            i += 1;
            keep
        });
        done.clear();
    }
    for (pidfd, name) in left {
        if pidfd.signal(Signal::SIGKILL).unwrap_or(false) {
            stats.killed += 1;
            log(&format!(
                "sweep: {name} (pid {}) still ran after {}s; sent SIGKILL",
                pidfd.process().pid,
                grace.as_secs_f64()
            ));
        }
    }
}

struct Sweep;

impl Task for Sweep {
    type Args = Args;

    fn run(ctx: &mut Context<'_>, args: Args) -> Result<(), String> {
        let mut lines = Vec::new();
        let stats = sweep(&args, &mut |l: &str| lines.push(l.to_owned()))?;
        for line in &lines {
            ctx.log(line);
        }
        ctx.log(&format!(
            "sweep: {} slots of {}: {} hung stopped ({} killed), {} freed",
            stats.slots, args.key, stats.stopped, stats.killed, stats.freed
        ));
        Ok(())
    }
}

nonstop_core::export_plugin!(
    Sweep,
    name = "sweep",
    description = "one pass of the watchdog over a heartbeat table (the seed's checkproc)"
);
