//! [`ProcessId`]: a pid plus its start time, which names one process even after the pid is
//! recycled.

use std::fmt;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::{Error, Result};

/// One process: its pid and its start time (field 22 of `/proc/PID/stat`, clock ticks since
/// boot). Two processes never share both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessId {
    /// The pid.
    pub pid: i32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
}

/// What became of a registered process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The same process still runs.
    Alive,
    /// No process has this pid any more, or it is a zombie (it exited; it will never beat).
    Gone,
    /// The pid now belongs to another process (its start time differs).
    Recycled,
}

impl ProcessId {
    /// This process.
    pub fn current() -> Result<ProcessId> {
        let pid = std::process::id() as i32;
        match read_stat(pid)? {
            Some(stat) => Ok(ProcessId {
                pid,
                start_time: stat.start_time,
            }),
            // Our own /proc entry always exists while we run.
            None => Err(Error::Proc {
                path: format!("/proc/{pid}/stat"),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            }),
        }
    }

    /// The process that has `pid` now, if any (zombies included).
    pub fn of(pid: i32) -> Result<Option<ProcessId>> {
        Ok(read_stat(pid)?.map(|stat| ProcessId {
            pid,
            start_time: stat.start_time,
        }))
    }

    /// Whether this process still runs.
    pub fn liveness(&self) -> Liveness {
        match read_stat(self.pid) {
            Ok(Some(stat)) if stat.start_time != self.start_time => Liveness::Recycled,
            Ok(Some(stat)) if stat.zombie => Liveness::Gone,
            Ok(Some(_)) => Liveness::Alive,
            Ok(None) => Liveness::Gone,
            // /proc unreadable (hidepid, another pid namespace): fall back to kill(pid, 0),
            // which cannot tell a recycled pid but never calls a live process dead.
            Err(_) => match kill(Pid::from_raw(self.pid), None) {
                Err(Errno::ESRCH) => Liveness::Gone,
                _ => Liveness::Alive,
            },
        }
    }
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} (started at tick {})", self.pid, self.start_time)
    }
}

/// Whether a process with `pid` exists and is not a zombie (one read of `/proc/PID/stat`).
/// Says nothing about which process it is: for the seed's table, which records no start time.
pub(crate) fn is_running(pid: i32) -> Result<bool> {
    Ok(read_stat(pid)?.is_some_and(|stat| !stat.zombie))
}

struct Stat {
    start_time: u64,
    zombie: bool,
}

/// Reads state and start time of `pid`; `Ok(None)` if there is no such process.
fn read_stat(pid: i32) -> Result<Option<Stat>> {
    if pid <= 0 {
        return Ok(None);
    }
    let path = format!("/proc/{pid}/stat");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // ESRCH: the process exited while we read.
        Err(e) if e.raw_os_error() == Some(nix::libc::ESRCH) => return Ok(None),
        Err(source) => return Err(Error::Proc { path, source }),
    };
    parse_stat(&text).map(Some).ok_or_else(|| Error::Proc {
        path,
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "unexpected format"),
    })
}

/// Parses `/proc/PID/stat`. Field 2 (the command name, in parentheses) may itself contain
/// spaces and parentheses, so the fields are counted after the **last** `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // Field 3 is the state; field 22 the start time, 19 fields further.
    let state = fields.next()?;
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(Stat {
        start_time,
        zombie: matches!(state, "Z" | "X" | "x"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_after_the_last_parenthesis() {
        let line = "1234 (evil) name (x) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 100 18446744073709551615";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.start_time, 987654);
        assert!(!stat.zombie);
        let zombie = "7 (z) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0 0";
        let stat = parse_stat(zombie).unwrap();
        assert_eq!(stat.start_time, 42);
        assert!(stat.zombie);
        assert!(parse_stat("7 (short) S 1 2").is_none());
        assert!(parse_stat("no parenthesis").is_none());
    }

    #[test]
    fn current_process_is_alive_and_a_changed_start_time_is_recycled() {
        let me = ProcessId::current().unwrap();
        assert_eq!(me.liveness(), Liveness::Alive);
        let impostor = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert_eq!(impostor.liveness(), Liveness::Recycled);
        assert_eq!(ProcessId::of(me.pid).unwrap(), Some(me));
        let nobody = ProcessId {
            pid: i32::MAX,
            start_time: 1,
        };
        assert_eq!(nobody.liveness(), Liveness::Gone);
    }
}
