//! The control socket, served from the loop: a Unix stream socket (mode 0600) that `nonstop
//! status|start|stop|restart|shutdown|health` connect to. One request per connection: a line
//! of words (`status`, `start web ingest`), answered with one line of JSON (see
//! docs/control.md for the schema), then the connection is closed.
//!
//! Everything is non-blocking and bounded, so a slow or hostile client can neither block the
//! loop nor grow its memory: a request is at most [`MAX_REQUEST`] bytes, at most
//! [`MAX_CLIENTS`] connections are open at once, and a connection that has not sent its
//! request and taken its answer within [`CLIENT_TIME`] is closed. Only root and the runner's
//! own uid are served (`SO_PEERCRED`); the socket's mode says the same to the file system.
//!
//! Idle connections cannot lock anyone out: when every place is taken, a newcomer takes the
//! place of the connection that has kept the runner waiting longest (one that has not sent its
//! whole request, or does not take its answer); a uid other than root holds at most
//! [`MAX_PER_UID`] places, the others being root's. Only when every place is held by a request
//! the runner is working on (a reload) is a newcomer answered `busy`. The commands send their
//! request as they connect, and it is read as the connection is accepted, so they are never
//! the ones waited for.
//!
//! Out of descriptors (`EMFILE` at `accept`), the runner frees one: the longest-waiting
//! connection's, else a spare `/dev/null` it holds for this, so that `status` is answered even
//! then. When nothing can be freed, the listener rests (it is not watched, so a connection
//! waiting in the backlog does not wake the loop at once, for ever) until a connection ends or
//! the rest is over. Warnings a crowd could repeat are throttled ([`super::throttle`]).
//!
//! One runner per socket: a `flock` on `PATH.lock` beside it, taken before a socket left by a
//! runner that died is replaced.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::socket::{getsockopt, sockopt};
use nix::sys::stat::{Mode, umask};
use nix::unistd::Uid;
use nonstop_core::Deadline;
use tracing::{debug, warn};

use super::Supervisor;
use super::events::EventLoop;
use super::throttle::{INTERVAL, Throttle, more};
use crate::pipeline::ControlConfig;

/// The longest request line.
pub(super) const MAX_REQUEST: usize = 64 * 1024;
/// The most connections open at once.
pub(crate) const MAX_CLIENTS: usize = 32;
/// The most connections one uid other than root may hold: the other places are root's.
pub(super) const MAX_PER_UID: usize = MAX_CLIENTS - 8;
/// How long a client has to send its request and take its answer.
pub(super) const CLIENT_TIME: Duration = Duration::from_secs(10);
/// How long the listener rests the first time `accept` fails for want of descriptors (or
/// memory) and nothing can be freed; doubled at each failure in a row, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// The longest rest of the listener.
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// The most connections accepted in one turn of the loop: a crowd that connects without end
/// keeps the backlog full, and the loop must go on to signals and exits between batches
/// (the listener, still readable, is reported again at the next turn).
const ACCEPT_BATCH: usize = 2 * MAX_CLIENTS;

/// The listening socket and the open connections.
pub(super) struct Control {
    listener: UnixListener,
    path: PathBuf,
    /// `PATH.lock`, held while the socket is served.
    _lock: Flock<File>,
    clients: HashMap<RawFd, Client>,
    /// The uid served besides root.
    uid: Uid,
    /// `/dev/null`, held open so that a descriptor is free for one more client when the
    /// runner has no other: closed to accept a connection at `EMFILE`, opened again when a
    /// connection ends.
    spare: Option<File>,
    /// The listener is not watched until then: `accept` failed and nothing could be freed.
    /// A connection that ends wakes it earlier.
    paused: Option<Instant>,
    /// The next rest of the listener.
    pause: Duration,
    /// The warnings a crowd of clients could repeat without end.
    warned: Warned,
}

/// The control socket's warnings, each throttled.
#[derive(Default)]
struct Warned {
    /// `accept` failed.
    accept: Throttle,
    /// A connection was closed to make room for another.
    evicted: Throttle,
    /// A connection was answered `busy`.
    busy: Throttle,
    /// A connection from a uid that is not served.
    refused: Throttle,
}

/// One connection.
struct Client {
    stream: UnixStream,
    /// The request so far (until its newline), then nothing.
    request: Vec<u8>,
    /// Whether its whole request came: from then on the runner works for it (a reload's
    /// answer comes when the reload is over) until its answer is ready.
    asked: bool,
    /// The answer, once there is one, and how much of it is written.
    answer: Option<(Vec<u8>, usize)>,
    /// When it is closed, done or not.
    deadline: Deadline,
    /// When it last did its part: connected, sent part of its request, took part of its
    /// answer.
    progress: Instant,
    /// Its uid, for the places each uid may hold.
    uid: u32,
    /// Its pid, for the log.
    pid: i32,
}

impl Client {
    /// Whether the runner waits for this client (for its request, or for room to write its
    /// answer), not the other way round: such a client may be closed to make room for another.
    fn keeps_waiting(&self) -> bool {
        !self.asked || self.answer.is_some()
    }
}

/// What the loop must do with a request that arrived.
pub(super) struct Request {
    /// The connection to answer.
    pub fd: RawFd,
    /// The request line, without its newline.
    pub line: String,
    /// The client's pid.
    pub pid: i32,
}

impl Control {
    /// Serves `path`: takes `PATH.lock`, replaces a socket left there by a runner that died,
    /// binds with mode 0600, listens, and watches the socket in `events`.
    pub(super) fn bind(path: &Path, events: &EventLoop) -> anyhow::Result<Control> {
        if path.as_os_str().len() > ControlConfig::MAX_PATH {
            bail!(
                "the control socket path {} is too long for a Unix socket (at most {} bytes); \
                 set a shorter control.socket",
                path.display(),
                ControlConfig::MAX_PATH
            );
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .with_context(|| {
                    format!("cannot create {} for the control socket", dir.display())
                })?;
        }
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(nix::libc::O_CLOEXEC)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => bail!(
                "another runner serves the control socket {} (it holds {}); give this pipeline \
                 its own `control: {{ socket: PATH }}` or NONSTOP_SOCKET",
                path.display(),
                lock_path.display()
            ),
            Err((_, e)) => bail!("cannot lock {}: {e}", lock_path.display()),
        };
        // Holding the lock, a socket at the path was left by a runner that died. Anything
        // else there is someone's file: never removed.
        match std::fs::symlink_metadata(path) {
            Ok(meta) if !meta.file_type().is_socket() => bail!(
                "{} exists and is not a socket: the runner replaces only a socket that a runner \
                 left; give the control socket another path",
                path.display()
            ),
            _ => {}
        }
        match std::fs::remove_file(path) {
            Ok(()) => debug!(
                "replaced the control socket {} left by a runner that died",
                path.display()
            ),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot replace {}", path.display())),
        }
        // Created 0600, not chmod-ed after: no instant at which others may connect. (One
        // thread: the umask is this process's alone.)
        let old = umask(Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(path);
        umask(old);
        let listener =
            bound.with_context(|| format!("cannot bind the control socket {}", path.display()))?;
        listener
            .set_nonblocking(true)
            .context("cannot make the control socket non-blocking")?;
        events
            .watch(&listener)
            .context("cannot watch the control socket")?;
        let spare = Some(spare().context("cannot open /dev/null")?);
        Ok(Control {
            listener,
            path: path.to_owned(),
            _lock: lock,
            clients: HashMap::new(),
            uid: Uid::effective(),
            spare,
            paused: None,
            pause: FIRST_PAUSE,
            warned: Warned::default(),
        })
    }

    /// The socket's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `fd` is the listening socket or a connection.
    pub(super) fn owns(&self, fd: RawFd) -> bool {
        fd == self.listener.as_raw_fd() || self.clients.contains_key(&fd)
    }

    /// The earliest instant something is due: a connection to close, the end of the
    /// listener's rest, a summary of warnings held back. (Nothing while idle.)
    pub(super) fn deadline(&self) -> Deadline {
        let w = &self.warned;
        let others = self
            .paused
            .into_iter()
            .chain(
                [&w.accept, &w.evicted, &w.busy, &w.refused]
                    .into_iter()
                    .filter_map(Throttle::deadline),
            )
            .map(Deadline::At);
        self.clients
            .values()
            .map(|c| c.deadline)
            .chain(others)
            .min()
            .unwrap_or(Deadline::Never)
    }

    /// Gives connection `fd` until `time` from now to take its answer, if that is later than
    /// it has: a reload's client waits for its check, which may take longer than
    /// [`CLIENT_TIME`].
    pub(super) fn allow(&mut self, fd: RawFd, time: Duration) {
        if let Some(client) = self.clients.get_mut(&fd) {
            client.deadline = client.deadline.max(Deadline::after(Instant::now(), time));
        }
    }

    /// Closes the connections whose time is up, ends the listener's rest when it is over,
    /// and logs the warnings held back.
    pub(super) fn expire(&mut self, now: Instant, events: &EventLoop) {
        let late: Vec<RawFd> = self
            .clients
            .iter()
            .filter(|(_, c)| c.deadline.is_due(now))
            .map(|(&fd, _)| fd)
            .collect();
        for fd in late {
            if let Some(client) = self.clients.get_mut(&fd) {
                debug!(client = client.pid, "control connection closed: too slow");
                // Told why, if it is still waiting to be heard (non-blocking: no wait).
                if !client.asked {
                    let why = format!(
                        "{} within {} s: closed",
                        unfinished(client),
                        CLIENT_TIME.as_secs()
                    );
                    let _ = client.stream.write(&error(&why));
                }
            }
            self.close(fd, events);
        }
        if self.paused.is_some_and(|until| until <= now) {
            self.resume(events);
        }
        let w = &mut self.warned;
        if let Some(n) = w.accept.due(now) {
            warn!(
                "{n} more control connections could not be accepted in the last {}s",
                INTERVAL.as_secs()
            );
        }
        if let Some(n) = w.evicted.due(now) {
            warn!(
                "{n} more control connections were closed to make room in the last {}s",
                INTERVAL.as_secs()
            );
        }
        if let Some(n) = w.busy.due(now) {
            warn!(
                "{n} more control connections were refused (busy) in the last {}s",
                INTERVAL.as_secs()
            );
        }
        if let Some(n) = w.refused.due(now) {
            warn!(
                "{n} more control connections were refused (uid) in the last {}s",
                INTERVAL.as_secs()
            );
        }
    }

    /// `fd` is ready: accepts new connections (and reads the requests that came with them),
    /// or reads a request, or writes more of an answer. Returns the requests now complete.
    pub(super) fn on_event(&mut self, fd: RawFd, events: &EventLoop) -> Vec<Request> {
        if fd == self.listener.as_raw_fd() {
            return self.accept(events);
        }
        let Some(client) = self.clients.get(&fd) else {
            return Vec::new();
        };
        if client.answer.is_some() {
            self.write(fd, events);
            return Vec::new();
        }
        if client.asked {
            // Watched for nothing until its answer is ready: this is its hang-up or an
            // error. Nobody waits for the answer any more.
            self.close(fd, events);
            return Vec::new();
        }
        self.read(fd, events).into_iter().collect()
    }

    /// Reads what client `fd` sent: its request once it is complete.
    fn read(&mut self, fd: RawFd, events: &EventLoop) -> Option<Request> {
        let client = self.clients.get_mut(&fd)?;
        if client.asked {
            return None;
        }
        let mut buf = [0u8; 4096];
        loop {
            match client.stream.read(&mut buf) {
                Ok(0) => {
                    // The client has said all it will: what it sent is the request.
                    if client.request.is_empty() {
                        self.close(fd, events);
                        return None;
                    }
                    break;
                }
                Ok(n) => {
                    client.progress = Instant::now();
                    client.request.extend_from_slice(&buf[..n]);
                    if client.request.contains(&b'\n') {
                        break;
                    }
                    if client.request.len() > MAX_REQUEST {
                        let pid = client.pid;
                        warn!(
                            client = pid,
                            "control request over {MAX_REQUEST} bytes: refused"
                        );
                        client.asked = true;
                        self.answer(
                            fd,
                            error(&format!("request over {MAX_REQUEST} bytes")),
                            events,
                        );
                        return None;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(fd, events);
                    return None;
                }
            }
        }
        client.asked = true;
        // What else it sends is not read, and its input no longer wakes the loop while its
        // answer is being made (a reload's comes when the reload is over); its hang-up does.
        if events.watch_hangup(&client.stream).is_err() {
            self.close(fd, events);
            return None;
        }
        let request = std::mem::take(&mut client.request);
        let end = request
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(request.len());
        match String::from_utf8(request[..end].to_vec()) {
            Ok(line) => Some(Request {
                fd,
                line,
                pid: client.pid,
            }),
            Err(_) => {
                self.answer(fd, error("the request is not UTF-8"), events);
                None
            }
        }
    }

    /// Accepts the waiting connections (at most [`ACCEPT_BATCH`] a turn) and reads the
    /// requests that came with them (the commands send theirs at once). A peer that is neither root nor the runner's uid is
    /// told why and closed. With every place taken, the connection that has kept the runner
    /// waiting longest makes room (see [`Control::make_room`]); only when none does is the
    /// newcomer answered `busy`. When `accept` fails for want of descriptors, one is freed
    /// (that connection's, else the spare) and it is tried again; when nothing can be freed,
    /// the listener rests (see [`Control::rest`]).
    fn accept(&mut self, events: &EventLoop) -> Vec<Request> {
        let mut requests = Vec::new();
        if self.paused.is_some() {
            return requests;
        }
        for _ in 0..ACCEPT_BATCH {
            let now = Instant::now();
            let stream = match self.listener.accept() {
                Ok((stream, _)) => {
                    self.pause = FIRST_PAUSE;
                    stream
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // Gone before it was taken: the next one may be fine.
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    let out_of_descriptors = matches!(
                        e.raw_os_error(),
                        Some(nix::libc::EMFILE | nix::libc::ENFILE)
                    );
                    if out_of_descriptors {
                        // `accept` takes a descriptor before it looks for a connection: it
                        // fails so with none waiting too, and then nothing is to be freed.
                        if !self.waiting() {
                            break;
                        }
                        if let Some(fd) = self.longest_waiting(|_| true) {
                            self.evict(fd, "the runner is out of descriptors", now, events);
                            continue;
                        }
                        if self.spare.take().is_some() {
                            continue;
                        }
                    }
                    self.rest(&e, now, events);
                    return requests;
                }
            };
            let (uid, pid) = match getsockopt(&stream, sockopt::PeerCredentials) {
                Ok(cred) => (cred.uid(), cred.pid()),
                Err(e) => {
                    warn!("cannot read a control client's credentials: {e}");
                    continue;
                }
            };
            if uid != 0 && uid != self.uid.as_raw() {
                if let Some(held) = self.warned.refused.hit(now) {
                    warn!(
                        client = pid,
                        uid,
                        "control connection refused: only root and uid {} are served{}",
                        self.uid,
                        more(held)
                    );
                }
                refuse(
                    stream,
                    &format!(
                        "permission denied: uid {uid} is neither root nor the runner's uid {}",
                        self.uid
                    ),
                );
                continue;
            }
            if !self.make_room(uid, now, events) {
                if let Some(held) = self.warned.busy.hit(now) {
                    warn!(
                        client = pid,
                        uid,
                        "control connection refused: its places are all taken by requests \
                         under way{}",
                        more(held)
                    );
                }
                refuse(stream, "busy: too many control connections; try again");
                continue;
            }
            if stream.set_nonblocking(true).is_err() || events.watch(&stream).is_err() {
                continue;
            }
            let fd = stream.as_raw_fd();
            self.clients.insert(
                fd,
                Client {
                    stream,
                    request: Vec::new(),
                    asked: false,
                    answer: None,
                    deadline: Deadline::after(now, CLIENT_TIME),
                    progress: now,
                    uid,
                    pid,
                },
            );
            // The request usually came with the connection: taken now, it is not "waiting"
            // when the next newcomer needs a place.
            requests.extend(self.read(fd, events));
        }
        self.refill_spare();
        requests
    }

    /// Whether a connection waits to be accepted (the listener is readable).
    fn waiting(&self) -> bool {
        let mut fds = [nix::poll::PollFd::new(
            self.listener.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// Makes a place for a newcomer of `uid`, if every place is taken (or, for a uid other
    /// than root, every place that uid may hold, [`MAX_PER_UID`]): closes the connection,
    /// among those it may take the place of, that has kept the runner waiting longest
    /// (without sending its whole request, or without taking its answer). One the runner
    /// works for (a reload under way) is never closed. Returns whether there is a place.
    fn make_room(&mut self, uid: u32, now: Instant, events: &EventLoop) -> bool {
        let held = self.clients.values().filter(|c| c.uid == uid).count();
        let capped = uid != 0 && held >= MAX_PER_UID;
        if !capped && self.clients.len() < MAX_CLIENTS {
            return true;
        }
        let victim = if capped {
            self.longest_waiting(|c| c.uid == uid)
        } else {
            self.longest_waiting(|_| true)
        };
        match victim {
            Some(fd) => {
                self.evict(fd, "every control connection was taken", now, events);
                true
            }
            None => false,
        }
    }

    /// Among the connections `which` selects, the one that has kept the runner waiting
    /// longest ([`Client::keeps_waiting`]).
    fn longest_waiting(&self, which: impl Fn(&Client) -> bool) -> Option<RawFd> {
        self.clients
            .iter()
            .filter(|(_, c)| c.keeps_waiting() && which(c))
            .min_by_key(|(_, c)| c.progress)
            .map(|(&fd, _)| fd)
    }

    /// Closes connection `fd` to make room (`why`), telling a client that never asked.
    fn evict(&mut self, fd: RawFd, why: &str, now: Instant, events: &EventLoop) {
        let Some(mut client) = self.clients.remove(&fd) else {
            return;
        };
        let _ = events.unwatch(&client.stream);
        let waited = now.saturating_duration_since(client.progress);
        let what = if client.asked {
            "taking its answer"
        } else {
            "sending its request"
        };
        if !client.asked {
            // Non-blocking, and nothing of it was read: no reset, and no wait.
            let _ = client.stream.write(&error(&format!(
                "closed to make room ({why}): {} in {:.1} s",
                unfinished(&client),
                waited.as_secs_f64()
            )));
        }
        if let Some(held) = self.warned.evicted.hit(now) {
            warn!(
                client = client.pid,
                uid = client.uid,
                "control connection closed to make room ({why}): {:.1}s without {what}{}",
                waited.as_secs_f64(),
                more(held)
            );
        }
        // Not `freed`: the descriptor is the newcomer's, not the spare's.
    }

    /// `accept` failed with `e` and nothing could be freed: the listener is not watched for a
    /// while (so that a connection waiting in the backlog does not wake the loop again at
    /// once, for ever), until a connection ends or the rest is over, each rest twice the last
    /// up to [`MAX_PAUSE`]. The connection waits in the backlog.
    fn rest(&mut self, e: &std::io::Error, now: Instant, events: &EventLoop) {
        let _ = events.unwatch(&self.listener);
        self.paused = Some(now + self.pause);
        if let Some(held) = self.warned.accept.hit(now) {
            warn!(
                "cannot accept a control connection: {e}; trying again in {} ms or when a \
                 connection ends{}",
                self.pause.as_millis(),
                more(held)
            );
        }
        self.pause = (self.pause * 2).min(MAX_PAUSE);
    }

    /// Watches the listener again after a rest.
    fn resume(&mut self, events: &EventLoop) {
        if self.paused.take().is_none() {
            return;
        }
        self.refill_spare();
        if let Err(e) = events.watch(&self.listener) {
            // Without the listener in epoll nothing would ever wake it: rest again.
            let now = Instant::now();
            self.rest(&std::io::Error::from(e), now, events);
        }
    }

    /// Opens the spare descriptor again if it was used.
    fn refill_spare(&mut self) {
        if self.spare.is_none() {
            self.spare = spare().ok();
        }
    }

    /// Sends `answer` on connection `fd` (as much as it takes now; the rest when it is
    /// writable), then closes it.
    pub(super) fn answer(&mut self, fd: RawFd, answer: Vec<u8>, events: &EventLoop) {
        let Some(client) = self.clients.get_mut(&fd) else {
            return;
        };
        // Only a client that asked and has no answer yet: a reload's client may have been
        // closed for its time meanwhile, and its descriptor number given to a newcomer.
        if !client.asked || client.answer.is_some() {
            return;
        }
        client.answer = Some((answer, 0));
        client.progress = Instant::now();
        if events.watch_writable(&client.stream).is_err() {
            self.close(fd, events);
            return;
        }
        self.write(fd, events);
    }

    fn write(&mut self, fd: RawFd, events: &EventLoop) {
        let Some(client) = self.clients.get_mut(&fd) else {
            return;
        };
        let Some((answer, written)) = &mut client.answer else {
            return;
        };
        while *written < answer.len() {
            match client.stream.write(&answer[*written..]) {
                Ok(n) => {
                    *written += n;
                    client.progress = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        self.close(fd, events);
    }

    /// Closes connection `fd`, which is over: its descriptor is free again (for the spare
    /// first, then for the listener if it rests).
    fn close(&mut self, fd: RawFd, events: &EventLoop) {
        if let Some(client) = self.clients.remove(&fd) {
            let _ = events.unwatch(&client.stream.as_fd());
            drop(client);
            self.refill_spare();
            self.resume(events);
        }
    }
}

impl Drop for Control {
    /// Stops serving, however the runner ends: the socket file is removed (before the lock
    /// on `PATH.lock` is let go; the lock file stays, it is reused).
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            warn!(
                "cannot remove the control socket {}: {e}",
                self.path.display()
            );
        }
    }
}

/// The spare descriptor: `/dev/null`, close-on-exec (`File::open` sets `O_CLOEXEC`).
fn spare() -> std::io::Result<File> {
    File::open("/dev/null")
}

/// Answers a connection that is not taken (`why`) and closes it.
fn refuse(mut stream: UnixStream, why: &str) {
    let _ = stream.set_nonblocking(true);
    // What the client sent already is read first: a socket closed with unread data resets
    // the connection, and the client would not read the answer.
    let _ = stream.read(&mut [0u8; 4096]);
    let _ = stream.write_all(&error(why));
}

/// An error answer: `{"schema":1,"ok":false,"error":"..."}` and a newline.
/// What a client that has not asked yet has sent: nothing, or part of a line.
fn unfinished(client: &Client) -> &'static str {
    if client.request.is_empty() {
        "you sent no request"
    } else {
        "you sent no whole request line (ending in a newline)"
    }
}

pub(super) fn error(why: &str) -> Vec<u8> {
    let mut out = String::from("{\"schema\":1,\"ok\":false,\"error\":");
    super::json::string(&mut out, why);
    out.push_str("}\n");
    out.into_bytes()
}

impl Supervisor {
    /// A control socket connection or the listener is ready.
    pub(super) fn on_control_event(&mut self, fd: RawFd) {
        let Some(control) = &mut self.control else {
            return;
        };
        for request in control.on_event(fd, &self.events) {
            // A reload answers when it is over.
            if let Some(answer) = self.handle_request(&request.line, request.pid, request.fd)
                && let Some(control) = &mut self.control
            {
                control.answer(request.fd, answer, &self.events);
            }
        }
    }
}
