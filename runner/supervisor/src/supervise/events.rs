//! The loop's one waiting place: epoll over a signalfd, a timerfd that reports changes of the
//! wall clock, the tasks' output pipes, and the tasks' `cgroup.events` files (cgroupfs wakes
//! pollers of that file with `EPOLLPRI` when it changes).

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

/// What woke the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A signal arrived (through the signalfd).
    Signal(Received),
    /// A task's output pipe has data or was closed, or (`EPOLLPRI`) a task's `cgroup.events`
    /// changed: it may have emptied.
    Readable(RawFd),
    /// The wall clock was set (`date`, an NTP step): cron deadlines must be recomputed.
    ClockChanged,
}

/// A signal, by number (real-time signals have no `Signal` of their own), and who sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Its number.
    pub signo: i32,
    /// The sender's pid (0 from the kernel).
    pub pid: i32,
}

impl Received {
    /// Its name: `SIGTERM`, `SIGRTMIN+3`, ...
    pub fn name(&self) -> String {
        signal_name(self.signo)
    }
}

/// `SIGTERM`, or for real-time signals `SIGRTMIN+N` counted from glibc's SIGRTMIN (34), as
/// `kill -l` shows them; 32 and 33 (reserved by glibc) as `SIG32`, `SIG33`.
pub fn signal_name(signo: i32) -> String {
    match Signal::try_from(signo) {
        Ok(s) => s.as_str().to_owned(),
        Err(_) if signo >= nix::libc::SIGRTMIN() => match signo - nix::libc::SIGRTMIN() {
            0 => "SIGRTMIN".into(),
            n if signo == nix::libc::SIGRTMAX() => format!("SIGRTMAX (SIGRTMIN+{n})"),
            n => format!("SIGRTMIN+{n}"),
        },
        Err(_) => format!("SIG{signo}"),
    }
}

/// The signals the runner takes (blocked, read from the signalfd): every signal whose default
/// action would end or stop it, and SIGCHLD. Not SIGKILL and SIGSTOP, which cannot be caught,
/// and not SIGPIPE, which stays ignored (a write to a closed pipe fails with EPIPE instead).
/// A fault (SIGSEGV from a bad access, not from `kill`) still ends the runner: the kernel
/// unblocks a fault it raises itself.
const SIGNALS: &[i32] = {
    use nix::libc::*;
    &[
        SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGUSR1, SIGSEGV,
        SIGUSR2, SIGALRM, SIGTERM, SIGSTKFLT, SIGCHLD, SIGTSTP, SIGTTIN, SIGTTOU, SIGXCPU, SIGXFSZ,
        SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGSYS, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43,
        44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64,
    ]
};

/// Marks the signalfd in epoll (pipe fds are small non-negative numbers).
const SIGNAL_TOKEN: u64 = u64::MAX;
/// Marks the wall-clock timerfd in epoll.
const CLOCK_TOKEN: u64 = u64::MAX - 1;
/// The wall-clock timer's expiry: the year 2500, so it never fires; it only reports that the
/// clock was set.
const FAR_FUTURE_SECS: i64 = 16_725_225_600;

/// Resets the signals the runner takes to their default disposition and blocks them: from
/// now on they wait, pending, for the signalfd. The block outlives an `execve`, so a signal
/// sent during the hand-off is not lost.
pub fn block_signals() -> nix::Result<SigSet> {
    nonstop_scheduler::spawn::take_signals(SIGNALS)
}

#[derive(Debug)]
pub struct EventLoop {
    epoll: Epoll,
    signals: SignalFd,
    clock: TimerFd,
}

impl EventLoop {
    /// Blocks the handled signals ([`block_signals`]) and opens the signalfd and epoll, both
    /// close-on-exec.
    pub fn new() -> nix::Result<EventLoop> {
        let mask = block_signals()?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(
            signals.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, SIGNAL_TOKEN),
        )?;
        let clock = TimerFd::new(
            ClockId::CLOCK_REALTIME,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        epoll.add(
            clock.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, CLOCK_TOKEN),
        )?;
        let events = EventLoop {
            epoll,
            signals,
            clock,
        };
        events.arm_clock()?;
        Ok(events)
    }

    /// Arms the wall-clock timer: an absolute expiry far away, cancelled (readable with
    /// ECANCELED) whenever the clock is set.
    fn arm_clock(&self) -> nix::Result<()> {
        self.clock.set(
            Expiration::OneShot(TimeSpec::new(FAR_FUTURE_SECS, 0)),
            TimerSetTimeFlags::TFD_TIMER_ABSTIME | TimerSetTimeFlags::TFD_TIMER_CANCEL_ON_SET,
        )
    }

    /// Watches a pipe for input (and makes it non-blocking).
    pub fn watch(&self, fd: &impl AsFd) -> nix::Result<()> {
        let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
        fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        let raw = fd.as_fd().as_raw_fd();
        self.epoll
            .add(fd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, raw as u64))
    }

    /// Reports `fd` (an open `cgroup.events`) as readable each time its content changes:
    /// `EPOLLPRI`, edge-triggered (cgroupfs reports every such file as always readable).
    pub fn watch_changes(&self, fd: &impl AsFd) -> nix::Result<()> {
        let raw = fd.as_fd().as_raw_fd();
        self.epoll.add(
            fd.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLPRI | EpollFlags::EPOLLET, raw as u64),
        )
    }

    /// Stops watching `fd`.
    pub fn unwatch(&self, fd: &impl AsFd) -> nix::Result<()> {
        self.epoll.delete(fd.as_fd())
    }

    /// Watches a probe's connecting socket: reported when it is connected (writable) or
    /// failed (`EPOLLERR`, `EPOLLHUP`, reported whatever is asked).
    pub fn watch_connect(&self, fd: &impl AsFd) -> nix::Result<()> {
        let raw = fd.as_fd().as_raw_fd();
        self.epoll.add(
            fd.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLOUT, raw as u64),
        )
    }

    /// Watches a probe's connected socket for its reply instead.
    pub fn watch_reply(&self, fd: &impl AsFd) -> nix::Result<()> {
        let raw = fd.as_fd().as_raw_fd();
        let mut event = EpollEvent::new(EpollFlags::EPOLLIN, raw as u64);
        self.epoll.modify(fd.as_fd(), &mut event)
    }

    /// Watches `fd` for room to write instead of input.
    pub fn watch_writable(&self, fd: &impl AsFd) -> nix::Result<()> {
        let raw = fd.as_fd().as_raw_fd();
        let mut event = EpollEvent::new(EpollFlags::EPOLLOUT, raw as u64);
        self.epoll.modify(fd.as_fd(), &mut event)
    }

    /// Watches `fd` for nothing but its hang-up and errors (which epoll always reports): a
    /// control connection whose request is in, and whose answer is not ready yet.
    pub fn watch_hangup(&self, fd: &impl AsFd) -> nix::Result<()> {
        let raw = fd.as_fd().as_raw_fd();
        let mut event = EpollEvent::new(EpollFlags::empty(), raw as u64);
        self.epoll.modify(fd.as_fd(), &mut event)
    }

    /// Whether a signal waits in the signalfd (without taking it): a long run of starts checks
    /// this between two starts, so that SIGTERM is not kept waiting behind them.
    pub fn signal_pending(&self) -> bool {
        let mut fds = [nix::poll::PollFd::new(
            self.signals.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// Sleeps until something happens or `timeout` passes (`None`: no timeout at all).
    pub fn wait(&self, timeout: Option<Duration>) -> nix::Result<Vec<Event>> {
        let timeout = match timeout {
            None => EpollTimeout::NONE,
            Some(t) => {
                // Round up: waking a little early would just spin back to sleep.
                let ms = t.as_nanos().div_ceil(1_000_000);
                EpollTimeout::try_from(ms as u64).unwrap_or(EpollTimeout::MAX)
            }
        };
        let mut ready = [EpollEvent::empty(); 32];
        let n = match self.epoll.wait(&mut ready, timeout) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(e),
        };
        let mut events = Vec::with_capacity(n);
        for event in &ready[..n] {
            if event.data() == CLOCK_TOKEN {
                match nix::unistd::read(&self.clock, &mut [0u8; 8]) {
                    Err(nix::errno::Errno::ECANCELED) => events.push(Event::ClockChanged),
                    Err(nix::errno::Errno::EAGAIN) | Ok(_) => {}
                    Err(e) => return Err(e),
                }
                self.arm_clock()?;
            } else if event.data() == SIGNAL_TOKEN {
                while let Some(info) = self.signals.read_signal()? {
                    events.push(Event::Signal(Received {
                        signo: info.ssi_signo as i32,
                        pid: info.ssi_pid as i32,
                    }));
                }
            } else {
                events.push(Event::Readable(event.data() as RawFd));
            }
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_named_as_kill_l_names_them() {
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(nix::libc::SIGRTMIN()), "SIGRTMIN");
        assert_eq!(signal_name(nix::libc::SIGRTMIN() + 3), "SIGRTMIN+3");
        assert_eq!(signal_name(64), "SIGRTMAX (SIGRTMIN+30)");
        assert_eq!(signal_name(32), "SIG32");
    }

    #[test]
    fn the_runner_takes_every_signal_that_would_end_or_stop_it() {
        for n in 1..=64 {
            // KILL and STOP cannot be caught; PIPE stays ignored; these four do nothing by
            // default.
            let untaken = [9, 19, 13, 18, 23, 28];
            assert_eq!(
                SIGNALS.contains(&n),
                !untaken.contains(&n),
                "signal {n} ({})",
                signal_name(n)
            );
        }
    }
}
