//! Task output: copying what tasks write into their log files, and compressing rotated logs
//! in children (`nonstop compress-log`, executed from the descriptor opened at start), as
//! many at once as [`Compressions`](super::compressions::Compressions) allows.
//!
//! A pipe is read at most [`TURN_BYTES`] per turn of the loop: a task that writes without
//! pause (`yes`) keeps its pipe readable for ever, and reading it until empty kept the loop
//! from everything else (signals, reaping, the control socket, the other tasks).

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nonstop_scheduler::spawn;
use tracing::{debug, error, info, warn};

use super::Supervisor;

/// The most bytes read from one task's pipe per turn of the loop (one read: as much as a pipe
/// holds by default). What is left is read at the next turn: epoll reports the pipe again,
/// after the other descriptors that are ready.
pub(super) const TURN_BYTES: usize = 1 << 16;

/// The most bytes read from a task's pipe when its run is over, to log its last output
/// before what follows: more than a pipe holds (up to `fs.pipe-max-size`, 1 MiB by default),
/// and a bound all the same, since a process that escaped the task may still write.
const LAST_BYTES: usize = 16 << 20;

impl Supervisor {
    /// A watched descriptor is ready: a task's output (copied to its log), its
    /// `cgroup.events` (it may have emptied), or a probe's socket.
    pub(super) fn on_readable(&mut self, fd: RawFd) {
        if let Some(&i) = self.pipes.get(&fd) {
            self.drain(i, TURN_BYTES);
        } else if let Some(&i) = self.watches.get(&fd) {
            self.on_cgroup_event(i);
        } else if self.probe_fds.contains_key(&fd) {
            self.on_probe_event(fd, nonstop_scheduler::schedule::Now::read());
        } else if self.control.as_ref().is_some_and(|c| c.owns(fd)) {
            self.on_control_event(fd);
        }
    }

    /// Copies what waits in task `i`'s output pipe to its log, at most `budget` bytes (at
    /// least one read).
    pub(super) fn drain(&mut self, i: usize, budget: usize) {
        let mut buf = [0u8; TURN_BYTES];
        let mut read = 0;
        loop {
            match nix::unistd::read(&self.entries[i].output.0, &mut buf) {
                // The runner holds the write end: no end of file while it runs.
                Ok(0) => return,
                Ok(n) => {
                    self.write_log(i, &buf[..n]);
                    read += n;
                    if read >= budget {
                        return;
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return,
                Err(e) => {
                    warn!(task = %self.entries[i].name(), "reading its output failed: {e}");
                    return;
                }
            }
        }
    }

    /// Task `i` is over (every process of its run is gone): copies what is left in its pipe,
    /// and writes a last line that did not end (ending it).
    pub(super) fn finish_output(&mut self, i: usize) {
        self.drain(i, LAST_BYTES);
        let result = self.entries[i].log.flush_partial();
        self.logged(i, result, 0);
    }

    fn write_log(&mut self, i: usize, data: &[u8]) {
        let result = self.entries[i].log.write(data);
        self.logged(i, result, data.len());
    }

    /// What became of writing `len` bytes of task `i`'s output: files rotated (queued for
    /// compression if asked), or an error (reported once, then counted).
    fn logged(&mut self, i: usize, result: std::io::Result<Vec<PathBuf>>, len: usize) {
        let entry = &mut self.entries[i];
        match result {
            Ok(rotated) => {
                if let Some(lost) = entry.lost.take() {
                    warn!(task = %entry.name(), "writing {} again; {lost} bytes of output were lost", entry.log.path().display());
                }
                if rotated.is_empty() {
                    return;
                }
                match (rotated.first(), rotated.last()) {
                    (Some(first), Some(last)) if rotated.len() > 1 => {
                        debug!(task = %entry.name(), "rotated its log {} times, to {} .. {}", rotated.len(), first.display(), last.display());
                    }
                    _ => {
                        for file in &rotated {
                            debug!(task = %entry.name(), "rotated its log to {}", file.display());
                        }
                    }
                }
                if self.globals.logs.compress {
                    let keep = usize::try_from(self.globals.logs.keep).unwrap_or(usize::MAX);
                    self.compressions.queue(i, rotated, keep);
                    self.start_compressions();
                }
            }
            Err(e) => {
                // Keep supervising; the output is lost until the disk is fixed.
                match &mut entry.lost {
                    Some(lost) => *lost = lost.saturating_add(len as u64),
                    None => {
                        error!(task = %entry.name(), "cannot write {}: {e}; its output is lost until writing works again", entry.log.path().display());
                        entry.lost = Some(len as u64);
                    }
                }
            }
        }
    }

    /// Starts the compressions waiting, as many as there is room for (see
    /// [`Compressions`](super::compressions::Compressions)). A file pruned while it waited
    /// is passed over.
    pub(super) fn start_compressions(&mut self) {
        while let Some((task, file)) = self.compressions.next() {
            // Pruned meanwhile (more rotations than `keep` came): nothing to do.
            if std::fs::symlink_metadata(&file).is_err() {
                self.compressions.ended(task);
                continue;
            }
            match self.spawn_compressor(&file) {
                Ok(pid) => {
                    self.compressions.started(pid, task);
                    self.entries[task].log.set_compressing(Some(file));
                }
                Err(e) => {
                    warn!("cannot start compressing {}: {e}", file.display());
                    self.compressions.ended(task);
                }
            }
        }
    }

    /// At the end of a shutdown: no compression starts any more; the rotated logs still
    /// waiting stay as they are (said).
    pub(super) fn close_compressions(&mut self) {
        let left = self.compressions.close();
        if left > 0 {
            info!("{left} rotated logs are left uncompressed: the runner is stopping");
        }
    }

    fn spawn_compressor(&self, file: &std::path::Path) -> Result<nix::unistd::Pid, spawn::Error> {
        let spec = spawn::SpawnSpec {
            program: "nonstop".into(),
            args: vec!["compress-log".into(), file.as_os_str().to_owned()],
            ..Default::default()
        };
        // It writes nothing unless it fails: then to the runner's own stderr, beside the
        // runner's log.
        let stderr = std::io::stderr();
        let output = spawn::Output {
            stdout: stderr.as_fd(),
            stderr: stderr.as_fd(),
        };
        spawn::Prepared::new_at(&spec, self.nonstop.as_raw_fd())
            .and_then(|prepared| spawn::spawn_prepared(&prepared, output, self.runner, None))
    }
}
