//! `nonstop run FILE`: checks the pipeline, then hands it to `nonstop-supervisor` in this
//! process (`nonstop_supervisor::handoff`), or supervises in this image if that binary is
//! missing.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use nonstop_supervisor::handoff::{self, Binaries};
use nonstop_supervisor::supervise;
use tracing::warn;

use crate::{control, pipeline};
use nonstop_supervisor::pipeline::ControlConfig;

/// Runs the pipeline at `file` until SIGTERM/SIGINT and every task is stopped.
/// The control socket is the pipeline's `control.socket`, else `socket` (`--socket`), else
/// the default (`control::default_socket`); with none, there is no control socket. A
/// `detached` runner (`run -d`) writes its own log to `LOGS_DIR/nonstop.log`, which SIGUSR2
/// opens again.
pub fn run(file: &Path, socket: Option<&Path>, detached: bool) -> anyhow::Result<ExitCode> {
    let shown = file.display().to_string();
    let Ok(checked) = pipeline::load_or_report(file) else {
        return Ok(ExitCode::FAILURE);
    };
    nonstop_supervisor::log::init();
    for w in &checked.warnings {
        warn!("{}", w.display(&shown));
    }
    let mut checked = checked;
    // Where the socket's path comes from, for a message about it.
    let mut named_by = "control.socket";
    if checked.pipeline.control.is_none() {
        let named = match socket {
            Some(socket) => Some((socket.to_owned(), "--socket")),
            None => control::default_socket_from(),
        };
        match named {
            Some((socket, from)) => {
                named_by = from;
                checked.pipeline.control = Some(ControlConfig { socket });
            }
            None => warn!(
                "no control socket: XDG_RUNTIME_DIR is not set; set control.socket in the \
                 pipeline or NONSTOP_SOCKET to control this runner with `nonstop status` and \
                 the like"
            ),
        }
    }
    if detached {
        checked.pipeline.own_log = Some(checked.pipeline.logs.dir.join(crate::detach::LOG));
    }
    // Absolute, as tasks are told it (NONSTOP_SOCKET) and may run in other directories.
    if let Some(control) = &mut checked.pipeline.control {
        control.socket = std::path::absolute(&control.socket).with_context(|| {
            format!("cannot make {} an absolute path", control.socket.display())
        })?;
        // Said now, not by the supervisor after it took the pipeline's lock.
        if let Err(why) = pipeline::socket_path_usable(&control.socket, &control.socket) {
            anyhow::bail!(
                "cannot serve the control socket named by {named_by}: {why} (with --socket, \
                 NONSTOP_SOCKET or control.socket in the pipeline)"
            );
        }
    }
    let binaries = Binaries::open()?;
    // Blocked before the hand-off, so a SIGTERM sent meanwhile waits for the signalfd.
    supervise::block_signals().context("cannot block signals")?;
    let e = handoff::exec(&binaries, file, &checked.pipeline);
    warn!(
        "supervising in this process, without {}: {e:#}",
        handoff::SUPERVISOR
    );
    supervise::supervise(&shown, checked.pipeline, binaries.nonstop)
}

/// `nonstop reload-check FILE`, run by a reloading runner: the checked pipeline on stdout
/// (`handoff::encode_pipeline`), warnings on stderr; or every error on stderr and exit 1.
pub fn reload_check(file: &Path) -> anyhow::Result<ExitCode> {
    let shown = file.display().to_string();
    match pipeline::load_or_report(file) {
        Err(_) => Ok(ExitCode::FAILURE),
        Ok(checked) => {
            for w in &checked.warnings {
                eprintln!("{}", w.display(&shown));
            }
            let bytes = handoff::encode_pipeline(&checked.pipeline)?;
            std::io::Write::write_all(&mut std::io::stdout().lock(), &bytes)
                .context("cannot write the checked pipeline")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, IntoRawFd};
    use std::path::Path;

    use super::*;

    /// Every field the supervisor uses, set to something other than its default.
    const FULL: &str = "
heartbeat: { key: 0x7e0001, slots: 64 }
logs: { dir: /var/log/x, max_size: 1M, keep: 3, compress: true }
tasks:
  server:
    command: [/bin/sh, -c, \"exec sleep 1\", two words]
    restart: on-failure
    backoff: { initial: 0ms, max: 2s, stable: 1m }
    crash_loop: { max: 3, within: 10s }
    stop: { signal: HUP, grace: 250ms }
    env: { A: \"1\", B: two words }
    clear_env: true
    cwd: /tmp
    umask: \"027\"
    limits:
      # Every resource a task may limit (each must survive the hand-off).
      { as: unlimited, core: unlimited, cpu: 3600, data: unlimited, fsize: unlimited,
        locks: 100, memlock: 65536, msgqueue: 819200, nice: 0, nofile: 4096, nproc: 512,
        rss: unlimited, rtprio: 0, sigpending: 1000, stack: 8388608 }
  ingest:
    command: [/bin/true]
    every: 1.5m
    timeout: 30s
    after: [server]
  purge:
    command: [/bin/true]
    cron: \"*/5 * * * * *\"
    timezone: Asia/Shanghai
    after: [ingest]
  nightly:
    command: [/bin/true]
    cron: \"0 3 * * *\"
";

    #[test]
    fn a_pipeline_arrives_as_it_was_checked() {
        let sent = pipeline::parse(FULL, Path::new("/etc/nonstop"))
            .unwrap()
            .pipeline;
        let binaries = Binaries::open().unwrap();
        let memfd = handoff::prepare(&binaries.nonstop, &sent).unwrap();
        // `receive` takes the descriptors over and closes them.
        let raw = memfd.into_raw_fd();
        let nonstop_raw = binaries.nonstop.as_raw_fd();
        std::mem::forget(binaries.nonstop);
        let received = handoff::receive(raw).unwrap();
        assert_eq!(format!("{:?}", received.pipeline), format!("{sent:?}"));
        assert!(format!("{:?}", received.pipeline).contains("Asia/Shanghai"));
        assert_eq!(received.pipeline.tasks[0].spawn.limits.len(), 15);
        // The executable crossed as a descriptor of this very file.
        let exe =
            std::fs::read_link(format!("/proc/self/fd/{}", received.nonstop.as_raw_fd())).unwrap();
        assert_eq!(exe, std::env::current_exe().unwrap());
        assert_ne!(
            received.nonstop.as_raw_fd(),
            nonstop_raw,
            "taken over, not kept"
        );
        // (Another test may have the number by now, but not a memfd of this name.)
        let now = std::fs::read_link(format!("/proc/self/fd/{raw}"));
        assert!(
            !now.is_ok_and(|l| l.to_string_lossy().contains("memfd:nonstop-handoff")),
            "the hand-off descriptor is still open"
        );
    }
}
