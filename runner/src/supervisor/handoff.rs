//! The hand-off from `nonstop run`, which checks a pipeline, to `nonstop-supervisor`, which
//! supervises it.
//!
//! `nonstop run FILE` parses and checks the YAML, blocks the signals the loop handles, writes
//! the checked [`Pipeline`] and its own path to a memfd and executes `nonstop-supervisor` (the
//! file beside its own) in the same process as `nonstop run --handoff-fd N FILE`, the memfd at
//! descriptor `N`.
//! The pid stays the same, so systemd, a container runtime or a pidfile see one process; the
//! supervisor names itself `nonstop` (`comm`) for `ps`, `pidof` and `pgrep`.
//!
//! Why: the long-lived process never runs, or even contains, the YAML and command-line
//! parsers, and their freed heap stays behind with the first image. Its resident memory is
//! mostly the code pages it maps, so it maps only the code it runs (BENCHMARKS.md, "runner
//! memory"). A later `reload` can check a new file the same way, in a child, so a bad file
//! never reaches the supervisor's memory.
//!
//! If `nonstop-supervisor` cannot be executed (missing beside `nonstop`), `nonstop run` logs
//! why and supervises in its own image: same behaviour, more memory.
//!
//! The format is postcard after a magic prefix that carries the version: both binaries are
//! built and installed together, and a mismatch is refused with a clear error.

use std::convert::Infallible;
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nix::sys::memfd::{MFdFlags, memfd_create};

use crate::pipeline::Pipeline;

/// The flag that marks the supervising image's command line.
pub const FLAG: &str = "--handoff-fd";

/// The first bytes of a hand-off: format and version.
const MAGIC: &str = concat!("nonstop-handoff 1 ", env!("CARGO_PKG_VERSION"), "\n");

/// The supervisor's file name, beside `nonstop`.
pub const SUPERVISOR: &str = "nonstop-supervisor";

/// The descriptor and pipeline file of a command line `nonstop run --handoff-fd N FILE`, or
/// `None` for any other command line.
pub fn arguments(args: &[OsString]) -> Option<(RawFd, PathBuf)> {
    match args {
        [_, run, flag, fd, file] if run == "run" && flag == FLAG => {
            let fd = fd.to_str()?.parse().ok()?;
            Some((fd, PathBuf::from(file)))
        }
        _ => None,
    }
}

/// Executes `nonstop-supervisor` with `pipeline` (checked from `file`) in this process.
/// Returns only if that failed, with the reason.
pub fn exec(file: &Path, pipeline: &Pipeline) -> anyhow::Error {
    match try_exec(file, pipeline) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_exec(file: &Path, pipeline: &Pipeline) -> anyhow::Result<Infallible> {
    let nonstop = std::env::current_exe().context("cannot find the nonstop executable")?;
    let supervisor = nonstop.with_file_name(SUPERVISOR);
    let program = CString::new(supervisor.clone().into_os_string().into_vec())
        .context("a NUL byte in the supervisor's path")?;
    let mut bytes = MAGIC.as_bytes().to_vec();
    bytes.extend(postcard::to_stdvec(&(&nonstop, pipeline)).context("cannot encode the pipeline")?);
    // Not close-on-exec: the descriptor must reach the next image, which closes it first.
    let fd = memfd_create(c"nonstop-handoff", MFdFlags::empty())
        .context("cannot create the hand-off memfd")?;
    let mut memfd = File::from(fd);
    memfd
        .write_all(&bytes)
        .context("cannot write the hand-off memfd")?;
    let argv0 = std::env::args_os()
        .next()
        .unwrap_or_else(|| OsString::from("nonstop"));
    let argv = [
        argv0,
        "run".into(),
        FLAG.into(),
        memfd.as_raw_fd().to_string().into(),
        file.as_os_str().to_owned(),
    ]
    .into_iter()
    .map(|a| CString::new(a.into_vec()))
    .collect::<Result<Vec<_>, _>>()
    .context("a NUL byte in the command line")?;
    let Err(e) = nix::unistd::execv(&program, &argv);
    Err(anyhow::Error::new(e).context(format!("cannot execute {}", supervisor.display())))
}

/// Reads what was handed off at descriptor `fd`: the path of the `nonstop` binary that
/// checked the pipeline (the supervisor runs it for work it does not link itself, such as
/// `nonstop compress-log`), and the pipeline. Closes `fd` and names this process `nonstop`.
pub fn receive(fd: RawFd) -> anyhow::Result<(PathBuf, Pipeline)> {
    // `ps`, `pidof` and `pgrep` show what the operator started; /proc/PID/exe tells the truth.
    nix::sys::prctl::set_name(c"nonstop").context("cannot name the process")?;
    if fd < 3 {
        bail!("{FLAG} {fd}: not a hand-off descriptor (nonstop passes it to itself)");
    }
    // A fresh open file description of the same memfd, read from the start; the inherited
    // descriptor is closed so that it does not stay open for the runner's life.
    let mut memfd = File::open(format!("/proc/self/fd/{fd}"))
        .with_context(|| format!("{FLAG} {fd}: cannot open the hand-off"))?;
    nix::unistd::close(fd).with_context(|| format!("{FLAG} {fd}: cannot close it"))?;
    let mut bytes = Vec::new();
    memfd
        .read_to_end(&mut bytes)
        .with_context(|| format!("{FLAG} {fd}: cannot read the hand-off"))?;
    let Some(payload) = bytes.strip_prefix(MAGIC.as_bytes()) else {
        let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        bail!(
            "{FLAG} {fd}: not a hand-off from this version of nonstop ({:?}, expected {:?}): \
             install nonstop and {SUPERVISOR} together",
            String::from_utf8_lossy(first),
            MAGIC.trim_end()
        );
    };
    postcard::from_bytes(payload).with_context(|| format!("{FLAG} {fd}: a corrupt hand-off"))
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, OwnedFd};

    use super::*;
    use crate::pipeline;

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

    fn memfd_with(name: &std::ffi::CStr, bytes: &[u8]) -> OwnedFd {
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC).unwrap();
        let mut file = File::from(fd);
        file.write_all(bytes).unwrap();
        file.into()
    }

    #[test]
    fn a_pipeline_arrives_as_it_was_checked() {
        let sent = pipeline::parse(FULL, Path::new("/etc/nonstop")).unwrap();
        let mut bytes = MAGIC.as_bytes().to_vec();
        let nonstop = Path::new("/opt/nonstop/bin/nonstop");
        bytes.extend(postcard::to_stdvec(&(nonstop, &sent)).unwrap());
        let fd = memfd_with(c"roundtrip", &bytes);
        // `receive` closes the descriptor itself.
        let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
        let (received_nonstop, received) = receive(raw).unwrap();
        assert_eq!(received_nonstop, nonstop);
        assert_eq!(format!("{received:?}"), format!("{sent:?}"));
        assert!(format!("{received:?}").contains("Asia/Shanghai"));
        assert_eq!(received.tasks[0].spawn.limits.len(), 15);
        // (Another test may have the number by now, but not a memfd of this name.)
        let now = std::fs::read_link(format!("/proc/self/fd/{raw}"));
        assert!(
            !now.is_ok_and(|l| l.to_string_lossy().contains("memfd:roundtrip")),
            "the hand-off descriptor is still open"
        );
    }

    #[test]
    fn another_version_or_garbage_is_refused_by_name() {
        for (bytes, expected) in [
            (
                &b"nonstop-handoff 1 0.0.0\n\x01"[..],
                "not a hand-off from this version",
            ),
            (&b"hello"[..], "not a hand-off from this version"),
        ] {
            let fd = memfd_with(c"garbage", bytes);
            let e = receive(fd.as_raw_fd()).unwrap_err();
            std::mem::forget(fd); // `receive` closed it.
            assert!(format!("{e:#}").contains(expected), "{e:#}");
        }
        let mut bytes = MAGIC.as_bytes().to_vec();
        bytes.extend([0xff, 0xff, 0xff]);
        let fd = memfd_with(c"corrupt", &bytes);
        let e = receive(fd.as_raw_fd()).unwrap_err();
        std::mem::forget(fd);
        assert!(format!("{e:#}").contains("a corrupt hand-off"), "{e:#}");
        let e = receive(2).unwrap_err();
        assert!(
            format!("{e:#}").contains("not a hand-off descriptor"),
            "{e:#}"
        );
    }

    #[test]
    fn only_the_handoff_command_line_is_taken() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            arguments(&args(&["nonstop", "run", FLAG, "7", "p.yaml"])),
            Some((7, PathBuf::from("p.yaml")))
        );
        assert_eq!(arguments(&args(&["nonstop", "run", "p.yaml"])), None);
        assert_eq!(
            arguments(&args(&["nonstop", "check", FLAG, "7", "p.yaml"])),
            None
        );
        assert_eq!(
            arguments(&args(&["nonstop", "run", FLAG, "x", "p.yaml"])),
            None
        );
        assert_eq!(
            arguments(&args(&["nonstop", "run", FLAG, "7", "p.yaml", "more"])),
            None
        );
    }
}
