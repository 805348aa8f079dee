//! Task output: copying what tasks write into their log files, and compressing rotated logs
//! in a child (`nonstop compress-log`, executed from the descriptor opened at start).

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nonstop_scheduler::spawn;
use tracing::{debug, error, warn};

use super::Supervisor;

impl Supervisor {
    /// A watched descriptor is ready: a task's output (copied to its log), its
    /// `cgroup.events` (it may have emptied), or a probe's socket.
    pub(super) fn on_readable(&mut self, fd: RawFd) {
        if let Some(&i) = self.pipes.get(&fd) {
            self.drain(i);
        } else if let Some(&i) = self.watches.get(&fd) {
            self.on_cgroup_event(i);
        } else if self.probe_fds.contains_key(&fd) {
            self.on_probe_event(fd, nonstop_scheduler::schedule::Now::read());
        } else if self.control.as_ref().is_some_and(|c| c.owns(fd)) {
            self.on_control_event(fd);
        }
    }

    /// Copies everything waiting in task `i`'s output pipe to its log.
    pub(super) fn drain(&mut self, i: usize) {
        let mut buf = [0u8; 1 << 16];
        loop {
            match nix::unistd::read(&self.entries[i].output.0, &mut buf) {
                // The runner holds the write end: no end of file while it runs.
                Ok(0) => return,
                Ok(n) => self.write_log(i, &buf[..n]),
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
        self.drain(i);
        let result = self.entries[i].log.flush_partial();
        self.logged(i, result, 0);
    }

    fn write_log(&mut self, i: usize, data: &[u8]) {
        let result = self.entries[i].log.write(data);
        self.logged(i, result, data.len());
    }

    /// What became of writing `len` bytes of task `i`'s output: files rotated (compressed if
    /// asked), or an error (reported once, then counted).
    fn logged(&mut self, i: usize, result: std::io::Result<Vec<PathBuf>>, len: usize) {
        let entry = &mut self.entries[i];
        match result {
            Ok(rotated) => {
                if let Some(lost) = entry.lost.take() {
                    warn!(task = %entry.name(), "writing {} again; {lost} bytes of output were lost", entry.log.path().display());
                }
                for file in rotated {
                    debug!(task = %self.entries[i].name(), "rotated its log to {}", file.display());
                    if self.globals.logs.compress {
                        self.spawn_compressor(i, file);
                    }
                }
            }
            Err(e) => {
                // Keep supervising; the output is lost until the disk is fixed.
                match &mut entry.lost {
                    Some(lost) => *lost += len as u64,
                    None => {
                        error!(task = %entry.name(), "cannot write {}: {e}; its output is lost until writing works again", entry.log.path().display());
                        entry.lost = Some(len as u64);
                    }
                }
            }
        }
    }

    fn spawn_compressor(&mut self, task: usize, file: PathBuf) {
        let spec = spawn::SpawnSpec {
            program: "nonstop".into(),
            args: vec!["compress-log".into(), file.clone().into_os_string()],
            ..Default::default()
        };
        // It writes nothing unless it fails: then to the runner's own stderr, beside the
        // runner's log.
        let stderr = std::io::stderr();
        let output = spawn::Output {
            stdout: stderr.as_fd(),
            stderr: stderr.as_fd(),
        };
        let started = spawn::Prepared::new_at(&spec, self.nonstop.as_raw_fd())
            .and_then(|prepared| spawn::spawn_prepared(&prepared, output, self.runner, None));
        match started {
            Ok(pid) => {
                self.compressors.insert(pid, (task, file));
            }
            Err(e) => warn!("cannot start compressing {}: {e}", file.display()),
        }
    }
}
