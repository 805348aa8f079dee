//! [`ProcessId`]: a pid plus its start time, which names one process even after the pid is
//! recycled.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{Signal, kill};
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

impl ProcessId {
    /// A pidfd on this very process: `None` if it is gone or its pid now names another
    /// process. The pidfd is opened first and the start time checked after, so the process it
    /// refers to is this one; signals through it never reach a process that took the pid
    /// later.
    pub fn pidfd(&self) -> Result<Option<PidFd>> {
        if self.pid <= 0 {
            return Ok(None);
        }
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no
        // memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid, 0) };
        if fd < 0 {
            return match Errno::last() {
                Errno::ESRCH => Ok(None),
                errno => Err(Error::Process {
                    op: "pidfd_open",
                    pid: self.pid,
                    errno,
                }),
            };
        }
        // SAFETY: the call returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        match self.liveness() {
            Liveness::Alive => Ok(Some(PidFd { fd, process: *self })),
            Liveness::Gone | Liveness::Recycled => Ok(None),
        }
    }
}

/// A descriptor that refers to one process (`pidfd_open`): readable once it has exited, and
/// its signals ([`PidFd::signal`]) reach that process or none, whoever has its pid by then.
#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
    process: ProcessId,
}

impl PidFd {
    /// The process.
    pub fn process(&self) -> ProcessId {
        self.process
    }

    /// Sends `signal`; `Ok(false)` if the process has exited.
    pub fn signal(&self, signal: Signal) -> Result<bool> {
        use std::os::fd::AsRawFd;
        // SAFETY: pidfd_send_signal takes our descriptor, a signal number, a null siginfo
        // (the kernel fills in the sender's) and flags 0.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal as i32,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r == 0 {
            return Ok(true);
        }
        match Errno::last() {
            Errno::ESRCH => Ok(false),
            errno => Err(Error::Process {
                op: "pidfd_send_signal",
                pid: self.process.pid,
                errno,
            }),
        }
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} (started at tick {})", self.pid, self.start_time)
    }
}

/// The ancestors of `pid`, its parent first, up to pid 1 (or the first it cannot read), from
/// `/proc/PID/stat`: the processes a watchdog must never signal, whatever a table says.
pub fn ancestors(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut current = pid;
    while current > 1 && out.len() < 4096 {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{current}/stat")) else {
            break;
        };
        // Field 4, counted after the last ')': the parent.
        let parent = text
            .rfind(')')
            .and_then(|at| text[at + 1..].split_ascii_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        match parent {
            Some(parent) if parent > 0 => {
                out.push(parent);
                current = parent;
            }
            _ => break,
        }
    }
    out
}

/// When the process that has `pid` now started, on the wall clock (seconds since the epoch:
/// the boot time plus its start time in clock ticks); `None` if there is no such process or
/// it is a zombie. For the seed's table, whose slots name a process by pid only.
pub fn started_at(pid: i32) -> Result<Option<u64>> {
    let Some(stat) = read_stat(pid)? else {
        return Ok(None);
    };
    if stat.zombie {
        return Ok(None);
    }
    let proc_stat = |source| Error::Proc {
        path: "/proc/stat".into(),
        source,
    };
    let text = std::fs::read_to_string("/proc/stat").map_err(proc_stat)?;
    let btime = text
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| {
            proc_stat(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no btime line",
            ))
        })?;
    let ticks = match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    };
    Ok(Some(btime + stat.start_time / ticks))
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
    fn a_pidfd_signals_its_process_and_refuses_a_recycled_pid() {
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let process = ProcessId::of(child.id() as i32).unwrap().unwrap();
        let impostor = ProcessId {
            start_time: process.start_time + 1,
            ..process
        };
        assert!(impostor.pidfd().unwrap().is_none(), "another start time");
        let pidfd = process.pidfd().unwrap().unwrap();
        assert!(pidfd.signal(Signal::SIGKILL).unwrap());
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert!(!pidfd.signal(Signal::SIGKILL).unwrap(), "reaped: gone");
        assert!(process.pidfd().unwrap().is_none());
    }

    #[test]
    fn the_ancestors_of_this_process_start_with_its_parent() {
        let up = ancestors(std::process::id() as i32);
        assert_eq!(
            up.first(),
            Some(&(std::os::unix::process::parent_id() as i32))
        );
        assert!(up.iter().all(|&p| p >= 1));
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
