//! The loop's one waiting place: epoll over a signalfd and the tasks' output pipes.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// What woke the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A signal arrived (through the signalfd).
    Signal(Signal),
    /// A task's output pipe has data or was closed.
    Readable(RawFd),
}

/// The signals the runner handles; blocked in the thread, read from the signalfd.
const SIGNALS: [Signal; 4] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
];

/// Marks the signalfd in epoll (pipe fds are small non-negative numbers).
const SIGNAL_TOKEN: u64 = u64::MAX;

#[derive(Debug)]
pub struct EventLoop {
    epoll: Epoll,
    signals: SignalFd,
}

impl EventLoop {
    /// Resets the handled signals to their default disposition (one inherited as ignored would
    /// never arrive), blocks them in this (the only) thread, and opens the signalfd and epoll,
    /// both close-on-exec.
    pub fn new() -> nix::Result<EventLoop> {
        nonstop_scheduler::spawn::reset_to_default(&SIGNALS)?;
        let mut mask = SigSet::empty();
        for s in SIGNALS {
            mask.add(s);
        }
        mask.thread_block()?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(
            signals.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, SIGNAL_TOKEN),
        )?;
        Ok(EventLoop { epoll, signals })
    }

    /// Watches a pipe for input (and makes it non-blocking).
    pub fn watch(&self, fd: &impl AsFd) -> nix::Result<()> {
        let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
        fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        let raw = fd.as_fd().as_raw_fd();
        self.epoll
            .add(fd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, raw as u64))
    }

    /// Stops watching a pipe.
    pub fn unwatch(&self, fd: &impl AsFd) -> nix::Result<()> {
        let fd: BorrowedFd<'_> = fd.as_fd();
        self.epoll.delete(fd)
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
            if event.data() == SIGNAL_TOKEN {
                while let Some(info) = self.signals.read_signal()? {
                    if let Ok(signal) = Signal::try_from(info.ssi_signo as i32) {
                        events.push(Event::Signal(signal));
                    }
                }
            } else {
                events.push(Event::Readable(event.data() as RawFd));
            }
        }
        Ok(events)
    }
}
