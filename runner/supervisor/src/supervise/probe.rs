//! Probes, run from the loop: tcp and http probes are non-blocking sockets watched by epoll
//! (no thread, no blocking call: addresses were resolved when the pipeline was checked), exec
//! probes are children reaped like any other. Each instance's schedule and verdicts are
//! `nonstop_scheduler::probe::Probing`'s; this module does the I/O and acts on a hang as the
//! heartbeat watch does.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockType, SockaddrStorage, connect, getsockopt, send,
    socket, sockopt,
};
use nix::unistd::Pid;
use nonstop_core::Deadline;
use nonstop_scheduler::probe::{Health, ProbeCheck, ProbeDue, ProbeSpec, Probing};
use nonstop_scheduler::schedule::Now;
use nonstop_scheduler::spawn;
use nonstop_scheduler::task::{Phase, Readiness};
use tracing::{debug, warn};

use super::{Supervisor, human};

/// The longest status line read from an HTTP server.
const MAX_REPLY: usize = 4096;

/// One instance's probes: the schedule and the probe in flight.
#[derive(Debug)]
pub(super) struct ProbeRun {
    state: Probing,
    io: Option<InFlight>,
}

impl ProbeRun {
    pub(super) fn new(spec: &ProbeSpec, started: Instant) -> ProbeRun {
        ProbeRun {
            state: Probing::new(spec, started),
            io: None,
        }
    }

    pub(super) fn deadline(&self) -> Deadline {
        self.state.deadline()
    }

    /// Whether a probe of this instance has been healthy.
    pub(super) fn healthy_once(&self) -> bool {
        self.state.healthy_once()
    }

    /// Failed probes in a row since the last healthy one.
    pub(super) fn failed(&self) -> u32 {
        self.state.failed()
    }
}

/// A probe in flight.
#[derive(Debug)]
enum InFlight {
    /// A tcp or http probe: its socket, whether it is connected, and the reply so far.
    Socket {
        fd: OwnedFd,
        connected: bool,
        reply: Vec<u8>,
    },
    /// An exec probe: its process (and process group).
    Exec(Pid),
}

impl Supervisor {
    /// Starts and times out the probes that are due; stops probing tasks that no longer run.
    pub(super) fn drive_probes(&mut self, now: Now) {
        for i in 0..self.entries.len() {
            if self.entries[i].probe.is_none() {
                continue;
            }
            if !matches!(self.entries[i].task.phase(), Phase::Running { .. }) {
                self.stop_probing(i);
                continue;
            }
            while let Some(run) = &mut self.entries[i].probe {
                match run.state.on_deadline(now.mono) {
                    Some(ProbeDue::Start) => self.start_probe(i, now),
                    Some(ProbeDue::TimedOut) => {
                        self.cancel_in_flight(i);
                        let timeout = self.entries[i]
                            .task
                            .spec
                            .probe
                            .as_ref()
                            .map_or(String::new(), |p| human(p.timeout));
                        self.probe_result(i, false, &format!("no answer within {timeout}"), now);
                    }
                    None => break,
                }
            }
        }
    }

    /// Ends task `i`'s probing (its instance is gone or stopping).
    pub(super) fn stop_probing(&mut self, i: usize) {
        self.cancel_in_flight(i);
        self.entries[i].probe = None;
    }

    fn cancel_in_flight(&mut self, i: usize) {
        let Some(run) = &mut self.entries[i].probe else {
            return;
        };
        match run.io.take() {
            Some(InFlight::Socket { fd, .. }) => {
                // Closing it takes it out of epoll.
                self.probe_fds.remove(&fd.as_raw_fd());
            }
            Some(InFlight::Exec(pid)) => {
                self.probe_pids.remove(&pid);
                let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
            }
            None => {}
        }
    }

    fn start_probe(&mut self, i: usize, now: Now) {
        let Some(spec) = self.entries[i].task.spec.probe.as_ref() else {
            return;
        };
        let started = match &spec.check {
            ProbeCheck::Tcp(addr) | ProbeCheck::Http { addr, .. } => {
                self.connect(i, *addr).map(|fd| InFlight::Socket {
                    fd,
                    connected: false,
                    reply: Vec::new(),
                })
            }
            ProbeCheck::Exec(_) => self.start_exec_probe(i).map(InFlight::Exec),
        };
        match started {
            Ok(io) => {
                if let Some(run) = &mut self.entries[i].probe {
                    run.io = Some(io);
                }
            }
            Err(why) => self.probe_result(i, false, &why, now),
        }
    }

    /// A non-blocking connection to `addr`, watched for writability (which epoll reports at
    /// once if it connected at once). An error now (refused) is the probe's failure.
    fn connect(&mut self, i: usize, addr: std::net::SocketAddr) -> Result<OwnedFd, String> {
        let family = if addr.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        let fd = socket(
            family,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| format!("cannot make a socket: {e}"))?;
        match connect(fd.as_raw_fd(), &SockaddrStorage::from(addr)) {
            Ok(()) | Err(Errno::EINPROGRESS) => {}
            Err(e) => return Err(format!("cannot connect to {addr}: {}", e.desc())),
        }
        self.events
            .watch_connect(&fd)
            .map_err(|e| format!("cannot watch a probe's socket: {e}"))?;
        self.probe_fds.insert(fd.as_raw_fd(), i);
        Ok(fd)
    }

    fn start_exec_probe(&mut self, i: usize) -> Result<Pid, String> {
        let (Some(prepared), Some(devnull)) = (&self.entries[i].probe_prepared, &self.devnull)
        else {
            return Err("the probe's command was not prepared".into());
        };
        let output = spawn::Output {
            stdout: devnull.as_fd(),
            stderr: devnull.as_fd(),
        };
        let pid = spawn::spawn_prepared(prepared, output, self.runner, None)
            .map_err(|e| format!("cannot start the probe: {e}"))?;
        self.probe_pids.insert(pid, i);
        Ok(pid)
    }

    /// A probe's socket is ready: connected (tcp: healthy; http: send the request), failed,
    /// or part of the reply has come.
    pub(super) fn on_probe_event(&mut self, fd: std::os::fd::RawFd, now: Now) {
        let Some(&i) = self.probe_fds.get(&fd) else {
            return;
        };
        let request = match self.entries[i].task.spec.probe.as_deref().map(|p| &p.check) {
            Some(ProbeCheck::Http { host, path, .. }) => Some(format!(
                "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: nonstop-probe\r\n\
                 Connection: close\r\n\r\n"
            )),
            _ => None,
        };
        let Some(ProbeRun {
            io:
                Some(InFlight::Socket {
                    fd: socket,
                    connected,
                    reply,
                }),
            ..
        }) = &mut self.entries[i].probe
        else {
            return;
        };
        let outcome: Option<Result<(), String>> = if !*connected {
            match getsockopt(&*socket, sockopt::SocketError) {
                Ok(0) => {
                    *connected = true;
                    match &request {
                        Some(request) => {
                            match send(
                                socket.as_raw_fd(),
                                request.as_bytes(),
                                MsgFlags::MSG_NOSIGNAL,
                            ) {
                                Ok(n) if n == request.len() => {
                                    match self.events.watch_reply(&*socket) {
                                        Ok(()) => None,
                                        Err(e) => Some(Err(format!("cannot watch the reply: {e}"))),
                                    }
                                }
                                Ok(_) => Some(Err("could not send the request at once".into())),
                                Err(e) => {
                                    Some(Err(format!("cannot send the request: {}", e.desc())))
                                }
                            }
                        }
                        None => Some(Ok(())),
                    }
                }
                Ok(errno) => Some(Err(format!(
                    "cannot connect: {}",
                    Errno::from_raw(errno).desc()
                ))),
                Err(e) => Some(Err(format!("cannot connect: {}", e.desc()))),
            }
        } else {
            read_reply(socket, reply)
        };
        let Some(outcome) = outcome else {
            return;
        };
        self.cancel_in_flight(i);
        match outcome {
            Ok(()) => self.probe_result(i, true, "", now),
            Err(why) => self.probe_result(i, false, &why, now),
        }
    }

    /// An exec probe's process exited.
    pub(super) fn on_probe_exit(&mut self, pid: Pid, exit: nonstop_scheduler::task::Exit) {
        let Some(i) = self.probe_pids.remove(&pid) else {
            return;
        };
        if let Some(run) = &mut self.entries[i].probe {
            run.io = None;
        }
        let now = Now::read();
        if exit.success() {
            self.probe_result(i, true, "", now);
        } else {
            self.probe_result(i, false, &format!("the probe exited with {exit}"), now);
        }
    }

    /// What a probe's result means for task `i`: ready, a failure logged, or a hang.
    fn probe_result(&mut self, i: usize, healthy: bool, why: &str, now: Now) {
        let Some(run) = &mut self.entries[i].probe else {
            return;
        };
        let health = run.state.on_result(healthy, now.mono);
        let entry = &self.entries[i];
        let Some(spec) = entry.task.spec.probe.as_ref() else {
            return;
        };
        match health {
            Health::Ready => self.on_ready(i, Readiness::Probe, "first healthy probe"),
            Health::Healthy => {}
            Health::Failing { failed: 0 } => {
                debug!(task = %entry.name(), "probe failed while starting: {why}");
            }
            Health::Failing { failed } => warn!(
                task = %entry.name(),
                "probe failed ({failed} of {} in a row): {why}", spec.failures
            ),
            Health::Hung { failed } => {
                let what = if failed == 0 {
                    format!(
                        "no healthy probe within {} of its start (last: {why})",
                        human(spec.start)
                    )
                } else {
                    format!("{failed} probes failed in a row (last: {why})")
                };
                self.stop_probing(i);
                self.on_hung_task(i, &what, now);
            }
        }
    }
}

/// Reads what an HTTP server sent; `Some` once the status line is in (or the reply is bad).
fn read_reply(socket: &OwnedFd, reply: &mut Vec<u8>) -> Option<Result<(), String>> {
    let mut buf = [0u8; 1024];
    loop {
        match nix::unistd::read(socket, &mut buf) {
            Ok(0) => {
                return Some(status(reply).and_then(|ok| {
                    ok.ok_or_else(|| {
                        "the server closed the connection without a status line".to_string()
                    })
                }));
            }
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                if let Some(done) = status(reply).transpose() {
                    return Some(done);
                }
                if reply.len() > MAX_REPLY {
                    return Some(Err("no status line in the first 4 KiB of the reply".into()));
                }
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => return None,
            Err(e) => return Some(Err(format!("cannot read the reply: {}", e.desc()))),
        }
    }
}

/// The status line of `reply`, once complete: `Ok(Some(()))` for 2xx, an error naming the
/// status otherwise; `Ok(None)` while incomplete.
fn status(reply: &[u8]) -> Result<Option<()>, String> {
    let Some(end) = reply.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    let line = String::from_utf8_lossy(&reply[..end]);
    let line = line.trim_end();
    let mut words = line.split_whitespace();
    let (Some(version), Some(code)) = (words.next(), words.next()) else {
        return Err(format!("not an HTTP status line: {line:?}"));
    };
    if !version.starts_with("HTTP/") || code.len() != 3 {
        return Err(format!("not an HTTP status line: {line:?}"));
    }
    if code.starts_with('2') {
        Ok(Some(()))
    } else {
        Err(format!("status {line:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_2xx_status_line_is_healthy_and_anything_else_says_what_it_was() {
        assert_eq!(status(b"HTTP/1.0 200 OK\r\n"), Ok(Some(())));
        assert_eq!(status(b"HTTP/1.1 204 No Content\r\nx"), Ok(Some(())));
        assert_eq!(status(b"HTTP/1.0 200 O"), Ok(None), "incomplete");
        assert_eq!(
            status(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Err("status \"HTTP/1.0 503 Service Unavailable\"".into())
        );
        assert!(
            status(b"SSH-2.0-OpenSSH\r\n")
                .unwrap_err()
                .contains("not an HTTP status")
        );
    }
}
