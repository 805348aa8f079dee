//! One question to a task host in a child process (`nonstop plugin-host validate|info`), with
//! one deadline for the whole exchange: [`ask`].
//!
//! Loading a plugin runs its code, and that code may do anything: hang in a constructor, fork
//! a child that keeps our pipes open, write megabytes. So the host starts in a process group of
//! its own (which it kills if this process dies: `PR_SET_PDEATHSIG`, set by the host itself,
//! see `plugin_host::die_with_parent`); its stdout
//! and stderr are read while it runs ([`poll`] on both pipes and on a pidfd, never a read to
//! the end), all of it, keeping the first [`KEEP`] bytes of each ([`Text`]); when it exits,
//! its whole process group is killed (what a plugin started lives no longer than its host) and
//! the pipes are read for a short [`DRAIN`] more at most; at the deadline the group is killed
//! and the host reaped. Nothing the plugin does can keep the caller waiting past the deadline
//! plus the drain.
//!
//! [`poll`]: nix::poll::poll

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

/// How much of each stream is kept (all of it is read): the first 64 KiB, and of the line
/// [`Text`] looks out for, its first 64 KiB.
pub const KEEP: usize = 64 * 1024;

/// How long the pipes are still read once the host has exited: what it wrote is in them by
/// then; a process it left behind that holds them (out of its group, or slow to die) must not
/// keep the caller waiting.
const DRAIN: Duration = Duration::from_millis(500);

/// Without a pidfd (no `pidfd_open`, no `/proc`), how often the host's exit is looked for.
const TICK: Duration = Duration::from_millis(10);

/// The variable that tells a host the pid of the process that started it, so that it can
/// tell whether that process died before the host asked to die with it (see
/// `plugin_host::die_with_parent`).
pub const PARENT_ENV: &str = "NONSTOP_HOST_PARENT";

/// What came back.
#[derive(Debug)]
pub struct Reply {
    /// How the host ended; `None` if it still ran at the deadline (it was killed).
    pub status: Option<ExitStatus>,
    /// Its stdout.
    pub stdout: Text,
    /// Its stderr.
    pub stderr: Text,
}

/// One output stream as read: its first [`KEEP`] bytes, its length, and the last complete
/// line that a predicate picks out (the host's answer, however much the plugin wrote before
/// it), itself cut at [`KEEP`] bytes.
#[derive(Debug)]
pub struct Text {
    head: Vec<u8>,
    total: u64,
    /// The line being read: its first bytes, and its whole length.
    line: Vec<u8>,
    line_len: u64,
    /// Lines the caller looks out for.
    wanted: fn(&[u8]) -> bool,
    /// The last of them, and its whole length.
    last: Option<(Vec<u8>, u64)>,
}

impl Text {
    /// An empty stream whose lines that `wanted` picks out are remembered (the last one).
    pub fn new(wanted: fn(&[u8]) -> bool) -> Text {
        Text {
            head: Vec::new(),
            total: 0,
            line: Vec::new(),
            line_len: 0,
            wanted,
            last: None,
        }
    }

    /// Takes `bytes`, the next part of the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        let room = KEEP.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..room.min(bytes.len())]);
        self.total = self.total.saturating_add(bytes.len() as u64);
        let mut rest = bytes;
        while !rest.is_empty() {
            let (part, ended) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            let room = KEEP.saturating_sub(self.line.len());
            self.line.extend_from_slice(&part[..room.min(part.len())]);
            self.line_len = self.line_len.saturating_add(part.len() as u64);
            if ended {
                self.end_line();
                rest = &rest[part.len() + 1..];
            } else {
                rest = &[];
            }
        }
    }

    /// The end of the stream: a last line without a newline counts.
    pub fn finish(&mut self) {
        if self.line_len > 0 {
            self.end_line();
        }
    }

    fn end_line(&mut self) {
        if (self.wanted)(&self.line) {
            self.last = Some((std::mem::take(&mut self.line), self.line_len));
        } else {
            self.line.clear();
        }
        self.line_len = 0;
    }

    /// The stream as text, said to be cut if it was longer than [`KEEP`].
    pub fn text(&self) -> String {
        shown(&self.head, self.total)
    }

    /// The last line that the predicate picked out (without its newline), said to be cut if
    /// it was longer than [`KEEP`].
    pub fn wanted_line(&self) -> Option<String> {
        self.last.as_ref().map(|(bytes, len)| shown(bytes, *len))
    }
}

/// `bytes` (the first of `total`) as text, with a note of what was cut.
fn shown(bytes: &[u8], total: u64) -> String {
    if total <= bytes.len() as u64 {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    // Not a character cut in two at the end.
    let whole = match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => bytes.len(),
    };
    format!(
        "{} [cut: the first {} of {} bytes]",
        String::from_utf8_lossy(&bytes[..whole]),
        whole,
        total
    )
}

/// Runs `nonstop ARGS` (this very binary, [`crate::itself`], as a task host) and reads what it
/// says until it exits, or until `timeout`, whichever comes first; then kills its process
/// group and reaps it. `stdout` and `stderr` receive the streams.
pub fn ask(
    args: &[&OsStr],
    cwd: Option<&Path>,
    timeout: Duration,
    mut stdout: Text,
    mut stderr: Text,
) -> std::io::Result<Reply> {
    let deadline = Instant::now() + timeout;
    let mut command = crate::itself::command();
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let child = command
        .args(args)
        .env(PARENT_ENV, std::process::id().to_string())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut host = Host {
        child,
        reaped: false,
    };
    let mut pipes = (host.child.stdout.take(), host.child.stderr.take());
    for fd in [
        pipes.0.as_ref().map(AsFd::as_fd),
        pipes.1.as_ref().map(AsFd::as_fd),
    ]
    .into_iter()
    .flatten()
    {
        fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    }
    let pid = host.pid();
    // Readable once the host exits. Without one (no pidfd_open), its exit is looked for
    // every TICK.
    let pidfd = nonstop_ipc::ProcessId::of(pid.as_raw())
        .ok()
        .flatten()
        .and_then(|p| p.pidfd().ok().flatten());
    let mut exited: Option<Instant> = None;
    loop {
        if exited.is_none() && host.has_exited()? {
            exited = Some(Instant::now());
            // The host is a zombie, not reaped: its pid, which names the group, is still
            // its own. What the plugin started dies now.
            let _ = killpg(pid, Signal::SIGKILL);
        }
        if exited.is_some() && pipes.0.is_none() && pipes.1.is_none() {
            break;
        }
        let stop = match exited {
            Some(at) => deadline.min(at + DRAIN),
            None => deadline,
        };
        let now = Instant::now();
        if now >= stop {
            break;
        }
        let mut wait = stop - now;
        let mut fds = Vec::with_capacity(3);
        let mut which = Vec::with_capacity(3);
        if let Some(out) = &pipes.0 {
            fds.push(PollFd::new(out.as_fd(), PollFlags::POLLIN));
            which.push(Which::Stdout);
        }
        if let Some(err) = &pipes.1 {
            fds.push(PollFd::new(err.as_fd(), PollFlags::POLLIN));
            which.push(Which::Stderr);
        }
        match (&pidfd, exited) {
            (Some(pidfd), None) => {
                fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
                which.push(Which::Exit);
            }
            (None, None) => wait = wait.min(TICK),
            (_, Some(_)) => {}
        }
        let ready: Vec<Which> = match poll(&mut fds, poll_timeout(wait)) {
            Ok(_) => fds
                .iter()
                .zip(&which)
                .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, w)| *w)
                .collect(),
            Err(Errno::EINTR) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        drop(fds);
        for w in ready {
            match w {
                Which::Stdout => {
                    if !drain(pipes.0.as_mut(), &mut stdout)? {
                        pipes.0 = None;
                    }
                }
                Which::Stderr => {
                    if !drain(pipes.1.as_mut(), &mut stderr)? {
                        pipes.1 = None;
                    }
                }
                // Looked at at the top of the loop.
                Which::Exit => {}
            }
        }
    }
    stdout.finish();
    stderr.finish();
    let status = match exited {
        Some(_) => Some(host.reap()?),
        None => {
            host.kill();
            host.reap()?;
            None
        }
    };
    Ok(Reply {
        status,
        stdout,
        stderr,
    })
}

#[derive(Debug, Clone, Copy)]
enum Which {
    Stdout,
    Stderr,
    Exit,
}

fn poll_timeout(wait: Duration) -> PollTimeout {
    // Rounded up, so that a wait never ends just before the instant it waits for.
    let ms = wait.as_millis().saturating_add(1);
    PollTimeout::try_from(i32::try_from(ms).unwrap_or(i32::MAX)).unwrap_or(PollTimeout::MAX)
}

/// Reads what `pipe` holds now into `text`; `false` at its end.
fn drain<R: Read>(pipe: Option<&mut R>, text: &mut Text) -> std::io::Result<bool> {
    let Some(pipe) = pipe else {
        return Ok(false);
    };
    let mut buf = [0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => text.feed(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The host child: killed with its group and reaped, whatever happens.
struct Host {
    child: Child,
    reaped: bool,
}

impl Host {
    fn pid(&self) -> Pid {
        // A pid fits in an i32 (pid_max is at most 2^22).
        Pid::from_raw(self.child.id() as i32)
    }

    /// Whether it has exited, without reaping it.
    fn has_exited(&self) -> std::io::Result<bool> {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::Pid(self.pid()), flags) {
            Ok(WaitStatus::StillAlive) => Ok(false),
            Ok(_) => Ok(true),
            Err(Errno::EINTR) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// SIGKILL to its group (it leads it) and to itself; it is not reaped yet, so its pid
    /// cannot name another process.
    fn kill(&self) {
        let _ = killpg(self.pid(), Signal::SIGKILL);
        let _ = kill(self.pid(), Signal::SIGKILL);
    }

    fn reap(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait()?;
        self.reaped = true;
        Ok(status)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(line: &[u8]) -> bool {
        line == b"ok" || line.starts_with(b"error\t")
    }

    #[test]
    fn the_answer_is_found_after_any_amount_of_output_in_any_chunks() {
        let mut t = Text::new(answer);
        let noise = vec![b'x'; 3 * KEEP];
        t.feed(&noise);
        t.feed(b"\nmore\no");
        t.feed(b"k\ntrailing");
        t.finish();
        assert_eq!(t.wanted_line().as_deref(), Some("ok"));
        assert!(t.text().ends_with(&format!(
            " [cut: the first {KEEP} of {} bytes]",
            3 * KEEP + 17
        )));
        assert!(t.text().len() < KEEP + 100);
    }

    #[test]
    fn a_long_answer_is_cut_and_says_so() {
        let mut t = Text::new(answer);
        t.feed(b"error\t\t");
        for _ in 0..4 {
            t.feed(&vec![b'y'; KEEP]);
        }
        t.finish();
        let line = t.wanted_line().unwrap();
        assert!(line.starts_with("error\t\tyyy"), "{}", &line[..20]);
        assert!(
            line.ends_with(&format!(
                " [cut: the first {KEEP} of {} bytes]",
                4 * KEEP + 7
            )),
            "{}",
            &line[line.len() - 60..]
        );
    }

    #[test]
    fn a_short_stream_is_kept_whole_and_a_cut_character_is_dropped() {
        let mut t = Text::new(answer);
        t.feed(b"one\ntwo");
        t.finish();
        assert_eq!(t.text(), "one\ntwo");
        assert_eq!(t.wanted_line(), None);
        let mut bytes = vec![b'a'; KEEP - 1];
        bytes.extend_from_slice("é and more".as_bytes());
        assert_eq!(
            shown(&bytes[..KEEP], bytes.len() as u64),
            format!(
                "{} [cut: the first {} of {} bytes]",
                "a".repeat(KEEP - 1),
                KEEP - 1,
                bytes.len()
            )
        );
    }
}
