//! The guard: a small process the runner forks at start, whose only job is to end the
//! pipeline's processes if the runner dies without stopping them (SIGKILL, a crash, the OOM
//! killer), so that nothing of a pipeline runs on unsupervised and the next runner does not
//! find its ports taken.
//!
//! It holds the read end of a pipe whose write end only the runner holds (close-on-exec, so no
//! task inherits it), and sleeps in `read`. The runner writes `exit` when it has stopped every
//! task and ends normally ([`Guard::dismiss`]), and the guard exits. End of file without that
//! means the runner is gone, however it died. Then the guard:
//!
//! - with cgroups (a pipeline [`Cgroup`]): writes `1` to its `cgroup.kill`, which ends every
//!   process of every task, wherever it moved in its session or process group, waits (at most
//!   5 s) until the cgroup is empty and removes it;
//! - without: SIGKILLs the process groups the runner told it about ([`Guard::add_group`] when
//!   a task starts, [`Guard::remove_group`] when it is gone). A process that left its group
//!   escapes this.
//!
//! It is its own process group and ignores every signal but SIGKILL, so Ctrl-C or a TERM to
//! the runner's group does not end it. It keeps the descriptors it is told to keep (the
//! pipeline lock), so that a new runner waits until the cleanup is over. If the guard dies
//! while the runner lives, the runner starts another.
//!
//! It is forked, not executed: it needs no file on disk. The runner is single-threaded, so
//! the child may do what the parent could.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::libc;
use nix::unistd::Pid;

use crate::Error;
use crate::cgroup::Cgroup;

/// The runner's side of the guard.
#[derive(Debug)]
pub struct Guard {
    pid: Pid,
    tx: File,
    /// Messages not written yet: they go together at [`Guard::flush`], once per turn of the
    /// runner's loop, not one write (and one wake-up of the guard) per task started.
    pending: Vec<u8>,
    /// Whether the runner has reported a failed message (it reports the first only).
    pub warned: bool,
}

/// The longest message line; longer ones are cut, and not acted on.
const LINE_MAX: usize = 512;

/// The longest the guard waits for a killed cgroup to empty before removing what it can.
const WAIT_EMPTY: Duration = Duration::from_secs(5);

impl Guard {
    /// Forks the guard. With `cgroup` (the pipeline's), it kills that cgroup if the runner
    /// dies; without, the process groups in `groups` and those reported later, `capacity` at
    /// most at once (the guard allocates nothing for them after the fork). `keep` are
    /// descriptors it keeps open until it ends (the pipeline lock). Must be called from a
    /// single-threaded process.
    pub fn start(
        cgroup: Option<&Cgroup>,
        keep: &[RawFd],
        groups: &[Pid],
        capacity: usize,
    ) -> Result<Guard, Error> {
        let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::io("creating the guard's pipe", e.into()))?;
        let mut watched: Vec<libc::pid_t> = Vec::with_capacity(capacity.max(groups.len()) + 16);
        watched.extend(groups.iter().map(|g| g.as_raw()));
        let mut keep: Vec<RawFd> = keep.to_vec();
        keep.push(rx.as_raw_fd());
        if let Some(cgroup) = cgroup {
            keep.extend(cgroup.descriptors());
        }
        keep.sort_unstable();
        let runner = nix::unistd::getpid().as_raw();
        // SAFETY: the runner is single-threaded (the caller's contract), so the child is a
        // full copy of a process in which no lock is held; it only runs `guard_main`, which
        // ends with `_exit`.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                drop(tx);
                guard_main(rx, &keep, cgroup, watched, runner)
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                drop(rx);
                let tx = File::from(tx);
                nix::fcntl::fcntl(
                    &tx,
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                )
                .map_err(|e| Error::io("making the guard's pipe non-blocking", e.into()))?;
                Ok(Guard {
                    pid: child,
                    tx,
                    pending: Vec::new(),
                    warned: false,
                })
            }
            Err(e) => Err(Error::io("forking the guard", e.into())),
        }
    }

    /// Its pid (a child of the runner).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Without cgroups: kill process group `pgid` if the runner dies. Told at the next
    /// [`Guard::flush`]; a runner killed before it leaves that group to its parent-death
    /// signal (the task's main process is the runner's child).
    pub fn add_group(&mut self, pgid: Pid) {
        self.queue(&format!("+{}\n", pgid.as_raw()));
    }

    /// Without cgroups: process group `pgid` is gone; forget it (at the next flush).
    pub fn remove_group(&mut self, pgid: Pid) {
        self.queue(&format!("-{}\n", pgid.as_raw()));
    }

    /// With cgroups: remove `name`, an empty cgroup directly below the pipeline's. The guard
    /// does it on its own CPU while the runner goes on (an `rmdir` in cgroupfs costs 30 to
    /// 50 µs); one it cannot remove (not empty, a name too long for a message) is left to the
    /// runner's last sweep ([`Cgroup::remove`] of the pipeline's, after the guard is gone).
    pub fn remove_cgroup(&mut self, name: &str) {
        if !name.contains('\n') {
            self.queue(&format!("r{name}\n"));
        }
    }

    fn queue(&mut self, message: &str) {
        self.pending.extend_from_slice(message.as_bytes());
    }

    /// Writes the messages queued since the last flush. Returns false if they could not all be
    /// written (the guard is stopped, or its pipe is full): the pipe is non-blocking, so a
    /// stuck guard never blocks the runner.
    pub fn flush(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        // Whole lines per write: the guard reads lines, and a pipe write of up to PIPE_BUF
        // bytes is never interleaved with another's.
        let written = self.tx.write_all(&self.pending).is_ok();
        self.pending.clear();
        written
    }

    /// The runner has stopped every task and ends normally: the guard exits at once, without
    /// killing anything.
    pub fn dismiss(mut self) {
        self.queue("exit\n");
        // Blocking for this last write: the guard reads until it sees it.
        let _ = nix::fcntl::fcntl(
            &self.tx,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
        );
        self.flush();
    }
}

/// The guard's life. Never returns.
fn guard_main(
    rx: OwnedFd,
    keep: &[RawFd],
    cgroup: Option<&Cgroup>,
    mut groups: Vec<libc::pid_t>,
    runner: libc::pid_t,
) -> ! {
    super::set_dispositions(super::catchable(), libc::SIG_IGN);
    super::set_signal_mask(0);
    // SAFETY: each call below is a plain system call on integers, on descriptors this process
    // owns, or on NUL-terminated strings prepared before the fork.
    unsafe {
        libc::setpgid(0, 0);
        libc::prctl(libc::PR_SET_NAME, c"nonstop-guard".as_ptr(), 0, 0, 0);
        // Only stdin/stdout/stderr (for its one line of report) and what it keeps.
        let mut from = 3;
        for &fd in keep {
            if fd >= from {
                if fd > from {
                    libc::syscall(libc::SYS_close_range, from as u32, (fd - 1) as u32, 0);
                }
                from = fd + 1;
            }
        }
        libc::syscall(libc::SYS_close_range, from as u32, u32::MAX, 0);
    }
    rename(runner);
    let mut buf = [0u8; 4096];
    let mut line = [0u8; LINE_MAX];
    let mut len = 0;
    loop {
        let n = match nix::unistd::read(&rx, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        };
        for &b in &buf[..n] {
            if b != b'\n' {
                if len < line.len() {
                    line[len] = b;
                    len += 1;
                }
                continue;
            }
            match &line[..len] {
                b"exit" => exit(0),
                [b'+', digits @ ..] => {
                    if let Some(g) = number(digits)
                        && groups.len() < groups.capacity()
                    {
                        groups.push(g);
                    }
                }
                [b'-', digits @ ..] => {
                    if let Some(g) = number(digits) {
                        groups.retain(|&x| x != g);
                    }
                }
                [b'r', name @ ..] if len < LINE_MAX => {
                    if let Some(cgroup) = cgroup {
                        let _ = cgroup.remove_child(name);
                    }
                }
                _ => {}
            }
            len = 0;
        }
    }
    // The runner is gone without saying goodbye.
    match cgroup {
        Some(cgroup) => {
            let killed = cgroup.pids().map(|p| p.len()).unwrap_or(0);
            let _ = cgroup.kill();
            let empty = cgroup.wait_empty(WAIT_EMPTY).unwrap_or(false);
            let _ = cgroup.remove();
            report(runner, killed, "processes of its cgroup", empty);
        }
        None => {
            for &g in &groups {
                // SAFETY: kill takes integers; a group that is gone fails with ESRCH.
                unsafe {
                    libc::kill(-g, libc::SIGKILL);
                }
            }
            report(runner, groups.len(), "process groups", true);
        }
    }
    exit(0)
}

/// Shows the guard as `nonstop-guard (runner PID)` in `ps` and `/proc/PID/cmdline`, not with
/// the runner's command line that the fork copied (so that `pgrep -f "nonstop run"` finds the
/// runner only): the argument area's bytes, between `arg_start` and `arg_end` of
/// `/proc/self/stat`, are overwritten through `/proc/self/mem`. Best effort.
fn rename(runner: libc::pid_t) {
    use std::os::unix::fs::FileExt;
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name; arg_start and arg_end are fields 48 and 49.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return;
    };
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let (Some(&start), Some(&end)) = (fields.get(44), fields.get(45)) else {
        return;
    };
    let Some(len) = end.checked_sub(start).filter(|&l| l > 1) else {
        return;
    };
    let mut name = format!("nonstop-guard (runner {runner})").into_bytes();
    name.resize(len as usize, 0);
    name[len as usize - 1] = 0;
    if let Ok(mem) = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")
    {
        let _ = mem.write_at(&name, start);
    }
}

/// One line on stderr (the runner's log).
fn report(runner: libc::pid_t, count: usize, what: &str, complete: bool) {
    let line = format!(
        "nonstop-guard: the runner (pid {runner}) ended without stopping its tasks: killed \
         {count} {what}{}\n",
        if complete {
            String::new()
        } else {
            format!("; some did not end within {} s", WAIT_EMPTY.as_secs())
        }
    );
    let _ = nix::unistd::write(std::io::stderr(), line.as_bytes());
}

fn number(digits: &[u8]) -> Option<libc::pid_t> {
    std::str::from_utf8(digits)
        .ok()?
        .parse()
        .ok()
        .filter(|&n| n > 1)
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit ends the process at once; nothing of the runner's (atexit handlers,
    // buffered output) runs in the guard.
    unsafe { libc::_exit(code) }
}
