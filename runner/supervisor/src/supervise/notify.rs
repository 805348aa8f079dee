//! systemd's notification protocol (`Type=notify`): `READY=1` once the initial tasks are
//! started and ready, `STOPPING=1` at shutdown, each with a `STATUS=` line, and `WATCHDOG=1`
//! every half `WATCHDOG_USEC` from the loop itself, so that a wedged runner stops pinging and
//! systemd restarts it. Nothing is sent, and the watchdog costs no wake-up, when systemd did not
//! ask (`NOTIFY_SOCKET`, `WATCHDOG_USEC` unset). Tasks never see these variables.

use std::time::{Duration, Instant};

use nonstop_core::Deadline;
use sd_notify::NotifyState;
use tracing::{debug, warn};

/// What has been said to systemd, and when to ping it next.
#[derive(Debug)]
pub(super) struct Notifier {
    enabled: bool,
    ready: bool,
    /// The ping period (half of `WATCHDOG_USEC`) and the next ping.
    watchdog: Option<(Duration, Deadline)>,
}

impl Notifier {
    /// From the runner's environment.
    pub(super) fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let watchdog = sd_notify::watchdog_enabled()
            .filter(|_| enabled)
            .map(|usec| (usec / 2, Deadline::At(Instant::now())));
        if let Some((every, _)) = watchdog {
            debug!("systemd watchdog: pinging every {every:?}");
        }
        Notifier {
            enabled,
            ready: false,
            watchdog,
        }
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if self.enabled
            && let Err(e) = sd_notify::notify(states)
        {
            warn!("cannot notify systemd: {e}");
        }
    }

    /// The initial tasks are started and ready: `READY=1`, once.
    pub(super) fn ready(&mut self, status: &str) {
        if !self.ready {
            self.ready = true;
            self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
        }
    }

    /// Whether `READY=1` was sent.
    pub(super) fn is_ready(&self) -> bool {
        self.ready
    }

    /// A reload begins: `RELOADING=1` with the monotonic time systemd requires beside it.
    pub(super) fn reloading(&self) {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| i128::from(t.tv_sec()) * 1_000_000 + i128::from(t.tv_nsec()) / 1000)
            .unwrap_or_default();
        self.send(&[NotifyState::Reloading, NotifyState::MonotonicUsec(now)]);
    }

    /// A reload is over (done or refused): `READY=1` again, if it was said before.
    pub(super) fn reloaded(&self, status: &str) {
        if self.ready {
            self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
        }
    }

    /// Shutdown begins.
    pub(super) fn stopping(&self, status: &str) {
        self.send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }

    /// When the loop must turn next for the watchdog, if systemd watches it.
    pub(super) fn deadline(&self) -> Deadline {
        self.watchdog.map_or(Deadline::Never, |(_, next)| next)
    }

    /// The loop is turning: pings systemd if a ping is due.
    pub(super) fn turn(&mut self, now: Instant) {
        if let Some((every, next)) = self.watchdog
            && next.is_due(now)
        {
            self.send(&[NotifyState::Watchdog]);
            self.watchdog = Some((every, Deadline::after(now, every)));
        }
    }
}
