//! The control socket, served from the loop: a Unix stream socket (mode 0600) that `nonstop
//! status|start|stop|restart|shutdown|health` connect to. One request per connection: a line
//! of words (`status`, `start web ingest`), answered with one line of JSON (see
//! docs/control.md for the schema), then the connection is closed.
//!
//! Everything is non-blocking and bounded, so a slow or hostile client can neither block the
//! loop nor grow its memory: a request is at most [`MAX_REQUEST`] bytes, at most
//! [`MAX_CLIENTS`] connections are open at once (more are answered "busy" and closed), and a
//! connection that has not sent its request and taken its answer within [`CLIENT_TIME`] is
//! closed. Only root and the runner's own uid are served (`SO_PEERCRED`); the socket's mode
//! says the same to the file system.
//!
//! One runner per socket: a `flock` on `PATH.lock` beside it, taken before a socket left by a
//! runner that died is replaced.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::socket::{getsockopt, sockopt};
use nix::sys::stat::{Mode, umask};
use nix::unistd::Uid;
use tracing::{debug, warn};

use super::Supervisor;
use super::events::EventLoop;
use crate::pipeline::ControlConfig;

/// The longest request line.
pub(super) const MAX_REQUEST: usize = 64 * 1024;
/// The most connections open at once.
pub(super) const MAX_CLIENTS: usize = 32;
/// How long a client has to send its request and take its answer.
pub(super) const CLIENT_TIME: Duration = Duration::from_secs(10);

/// The listening socket and the open connections.
pub(super) struct Control {
    listener: UnixListener,
    path: PathBuf,
    /// `PATH.lock`, held while the socket is served.
    _lock: Flock<File>,
    clients: HashMap<RawFd, Client>,
    /// The uid served besides root.
    uid: Uid,
}

/// One connection.
struct Client {
    stream: UnixStream,
    /// The request so far (until its newline), then nothing.
    request: Vec<u8>,
    /// The answer, once there is one, and how much of it is written.
    answer: Option<(Vec<u8>, usize)>,
    /// When it is closed, done or not.
    deadline: Instant,
    /// Its pid, for the log.
    pid: i32,
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
        // Holding the lock, whatever is at the path was left by a runner that died.
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
        Ok(Control {
            listener,
            path: path.to_owned(),
            _lock: lock,
            clients: HashMap::new(),
            uid: Uid::effective(),
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

    /// The earliest instant a connection must be closed at.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.clients.values().map(|c| c.deadline).min()
    }

    /// Closes the connections whose time is up.
    pub(super) fn expire(&mut self, now: Instant, events: &EventLoop) {
        let late: Vec<RawFd> = self
            .clients
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(&fd, _)| fd)
            .collect();
        for fd in late {
            if let Some(client) = self.clients.remove(&fd) {
                debug!(client = client.pid, "control connection closed: too slow");
                let _ = events.unwatch(&client.stream);
            }
        }
    }

    /// `fd` is ready: accepts new connections, or reads a request (returned when complete),
    /// or writes more of an answer.
    pub(super) fn on_event(&mut self, fd: RawFd, events: &EventLoop) -> Option<Request> {
        if fd == self.listener.as_raw_fd() {
            self.accept(events);
            return None;
        }
        let client = self.clients.get_mut(&fd)?;
        if client.answer.is_some() {
            self.write(fd, events);
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

    /// Accepts every waiting connection: a peer that is neither root nor the runner's uid, or
    /// one over [`MAX_CLIENTS`], is told why and closed.
    fn accept(&mut self, events: &EventLoop) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EMFILE and the like: the client waits in the backlog for the next try.
                    warn!("cannot accept a control connection: {e}");
                    return;
                }
            };
            let refuse = |mut stream: UnixStream, why: &str| {
                let _ = stream.set_nonblocking(true);
                // What the client sent already is read first: a socket closed with unread
                // data resets the connection, and the client would not read the answer.
                let _ = stream.read(&mut [0u8; 4096]);
                let _ = stream.write_all(&error(why));
            };
            let (uid, pid) = match getsockopt(&stream, sockopt::PeerCredentials) {
                Ok(cred) => (cred.uid(), cred.pid()),
                Err(e) => {
                    warn!("cannot read a control client's credentials: {e}");
                    continue;
                }
            };
            if uid != 0 && uid != self.uid.as_raw() {
                warn!(
                    client = pid,
                    uid, "control connection refused: only root and uid {} are served", self.uid
                );
                refuse(
                    stream,
                    &format!(
                        "permission denied: uid {uid} is neither root nor the runner's uid {}",
                        self.uid
                    ),
                );
                continue;
            }
            if self.clients.len() >= MAX_CLIENTS {
                warn!(
                    client = pid,
                    "control connection refused: {MAX_CLIENTS} already open"
                );
                refuse(stream, "busy: too many control connections; try again");
                continue;
            }
            if stream.set_nonblocking(true).is_err() || events.watch(&stream).is_err() {
                continue;
            }
            self.clients.insert(
                stream.as_raw_fd(),
                Client {
                    stream,
                    request: Vec::new(),
                    answer: None,
                    deadline: Instant::now() + CLIENT_TIME,
                    pid,
                },
            );
        }
    }

    /// Sends `answer` on connection `fd` (as much as it takes now; the rest when it is
    /// writable), then closes it.
    pub(super) fn answer(&mut self, fd: RawFd, answer: Vec<u8>, events: &EventLoop) {
        let Some(client) = self.clients.get_mut(&fd) else {
            return;
        };
        client.answer = Some((answer, 0));
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
                Ok(n) => *written += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        self.close(fd, events);
    }

    fn close(&mut self, fd: RawFd, events: &EventLoop) {
        if let Some(client) = self.clients.remove(&fd) {
            let _ = events.unwatch(&client.stream.as_fd());
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

/// An error answer: `{"schema":1,"ok":false,"error":"..."}` and a newline.
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
        let Some(request) = control.on_event(fd, &self.events) else {
            return;
        };
        // A reload answers when it is over.
        if let Some(answer) = self.handle_request(&request.line, request.pid, request.fd)
            && let Some(control) = &mut self.control
        {
            control.answer(request.fd, answer, &self.events);
        }
    }
}
