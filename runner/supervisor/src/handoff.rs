//! The hand-off from `nonstop run`, which checks a pipeline, to `nonstop-supervisor`, which
//! supervises it.
//!
//! `nonstop run FILE` parses and checks the YAML, opens the binaries it will need
//! ([`Binaries`]: itself, from `/proc/self/exe`, and `nonstop-supervisor` beside it), blocks
//! the signals the loop handles, writes the checked [`Pipeline`] to a memfd and executes
//! `nonstop-supervisor` from its descriptor, in the same process, as
//! `nonstop run --handoff-fd N FILE`, the memfd at descriptor `N`.
//! The pid stays the same, so systemd, a container runtime or a pidfile see one process; the
//! supervisor names itself `nonstop` (`comm`) for `ps`, `pidof` and `pgrep`.
//!
//! Why: the long-lived process never runs, or even contains, the YAML and command-line
//! parsers, and their freed heap stays behind with the first image. Its resident memory is
//! mostly the code pages it maps, so it maps only the code it runs (BENCHMARKS.md, "runner
//! memory"). A later `reload` can check a new file the same way, in a child, so a bad file
//! never reaches the supervisor's memory.
//!
//! Every program the supervisor executes later (`nonstop compress-log`, and the plugin task
//! host to come) is executed from the descriptor of the `nonstop` binary opened at start, which
//! crosses the hand-off: installing a new version on disk while a runner runs never mixes two
//! versions in one pipeline.
//!
//! If `nonstop-supervisor` cannot be executed (missing beside `nonstop`), `nonstop run` logs
//! why and supervises in its own image: same behaviour, more memory.
//!
//! The format is postcard after a magic line that carries the package version and a build
//! fingerprint (`build.rs`): both binaries come from one build and are installed together, and
//! anything else is refused with a clear error.

use std::convert::Infallible;
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use crate::pipeline::Pipeline;

/// The flag that marks the supervising image's command line.
pub const FLAG: &str = "--handoff-fd";

/// The first bytes of a hand-off: format, package version and build fingerprint.
pub const MAGIC: &str = concat!(
    "nonstop-handoff 2 ",
    env!("CARGO_PKG_VERSION"),
    " build ",
    env!("NONSTOP_BUILD"),
    "\n"
);

/// The supervisor's file name, beside `nonstop`.
pub const SUPERVISOR: &str = "nonstop-supervisor";

/// The binaries a runner executes, opened once when `nonstop run` starts (`O_PATH`,
/// close-on-exec) and executed from these descriptors, never again by path.
#[derive(Debug)]
pub struct Binaries {
    /// `nonstop` itself (`/proc/self/exe`: the file this process runs, even if its path has
    /// been replaced since): the supervisor runs it for work it does not link itself.
    pub nonstop: OwnedFd,
    /// `nonstop-supervisor`, beside `nonstop`; the reason if it cannot be opened.
    pub supervisor: Result<OwnedFd, String>,
}

impl Binaries {
    /// Opens `nonstop` (this process's executable) and `nonstop-supervisor` beside it.
    pub fn open() -> anyhow::Result<Binaries> {
        let nonstop = open_path(Path::new("/proc/self/exe"))
            .context("cannot open the nonstop executable (/proc/self/exe)")?;
        let supervisor = std::env::current_exe()
            .map_err(|e| format!("cannot find the nonstop executable: {e}"))
            .and_then(|exe| {
                let path = exe.with_file_name(SUPERVISOR);
                open_path(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))
            });
        Ok(Binaries {
            nonstop,
            supervisor,
        })
    }
}

fn open_path(path: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
}

/// Descriptors that cross the hand-off, by number (they stay open across `execve`).
#[derive(Debug, Serialize, Deserialize)]
struct Descriptors {
    nonstop: RawFd,
}

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

/// Executes `nonstop-supervisor` (from `binaries`) with `pipeline` (checked from `file`) in
/// this process. Returns only if that failed, with the reason.
pub fn exec(binaries: &Binaries, file: &Path, pipeline: &Pipeline) -> anyhow::Error {
    match try_exec(binaries, file, pipeline) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_exec(binaries: &Binaries, file: &Path, pipeline: &Pipeline) -> anyhow::Result<Infallible> {
    let supervisor = match &binaries.supervisor {
        Ok(fd) => fd,
        Err(why) => bail!("{why}"),
    };
    let memfd = prepare(&binaries.nonstop, pipeline)?;
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
    let env = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            CString::new(kv).ok()
        })
        .collect::<Vec<_>>();
    // The next image keeps `nonstop` open (and marks it close-on-exec itself); if the exec
    // fails, this image goes on with it, and it must not leak into tasks.
    inherit(&binaries.nonstop, true)?;
    let Err(e) = nix::unistd::fexecve(supervisor.as_fd(), &argv, &env);
    inherit(&binaries.nonstop, false)?;
    Err(anyhow::Error::new(e).context(format!("cannot execute {SUPERVISOR}")))
}

/// Writes the hand-off of `pipeline`, with `nonstop` as the binary the supervisor runs for
/// work it does not link itself, to a new memfd that stays open across `execve`: the
/// descriptor to pass as `--handoff-fd`.
pub fn prepare(nonstop: &OwnedFd, pipeline: &Pipeline) -> anyhow::Result<File> {
    let descriptors = Descriptors {
        nonstop: nonstop.as_raw_fd(),
    };
    let mut bytes = MAGIC.as_bytes().to_vec();
    bytes.extend(
        postcard::to_stdvec(&(&descriptors, pipeline)).context("cannot encode the pipeline")?,
    );
    // Not close-on-exec: the descriptor must reach the next image, which closes it first.
    let fd = memfd_create(c"nonstop-handoff", MFdFlags::empty())
        .context("cannot create the hand-off memfd")?;
    let mut memfd = File::from(fd);
    memfd
        .write_all(&bytes)
        .context("cannot write the hand-off memfd")?;
    Ok(memfd)
}

/// A checked pipeline as `nonstop reload-check` writes it for a reloading supervisor: the
/// hand-off's magic line (version and build), then the pipeline.
pub fn encode_pipeline(pipeline: &Pipeline) -> anyhow::Result<Vec<u8>> {
    let mut bytes = MAGIC.as_bytes().to_vec();
    bytes.extend(postcard::to_stdvec(pipeline).context("cannot encode the pipeline")?);
    Ok(bytes)
}

/// The pipeline [`encode_pipeline`] wrote, if the same build wrote it.
pub fn decode_pipeline(bytes: &[u8]) -> anyhow::Result<Pipeline> {
    let Some(payload) = bytes.strip_prefix(MAGIC.as_bytes()) else {
        bail!(
            "the checked pipeline comes from another build of nonstop: install nonstop and \
             {SUPERVISOR} together, from one build, and restart the runner"
        );
    };
    postcard::from_bytes(payload).context("a corrupt checked pipeline")
}

/// Makes `fd` survive `execve` (`true`) or not.
fn inherit(fd: &OwnedFd, yes: bool) -> anyhow::Result<()> {
    let flags = if yes {
        FdFlag::empty()
    } else {
        FdFlag::FD_CLOEXEC
    };
    fcntl(fd, FcntlArg::F_SETFD(flags))
        .context("cannot change a descriptor's close-on-exec flag")?;
    Ok(())
}

/// What [`receive`] hands to the supervisor.
#[derive(Debug)]
pub struct Received {
    /// The `nonstop` binary that checked the pipeline.
    pub nonstop: OwnedFd,
    /// The pipeline.
    pub pipeline: Pipeline,
}

/// Reads what was handed off at descriptor `fd` and closes `fd`; names this process
/// `nonstop`. The descriptors named in the hand-off become this process's (close-on-exec).
pub fn receive(fd: RawFd) -> anyhow::Result<Received> {
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
            "{FLAG} {fd}: not a hand-off from this build of nonstop ({:?}, expected {:?}): \
             install nonstop and {SUPERVISOR} together, from one build",
            String::from_utf8_lossy(first),
            MAGIC.trim_end()
        );
    };
    let (descriptors, pipeline): (Descriptors, Pipeline) = postcard::from_bytes(payload)
        .with_context(|| format!("{FLAG} {fd}: a corrupt hand-off"))?;
    let nonstop = take(descriptors.nonstop).context("the nonstop executable")?;
    Ok(Received { nonstop, pipeline })
}

/// Takes over inherited descriptor `fd` (an `O_PATH` descriptor of a file): opens the same
/// file again through `/proc/self/fd`, close-on-exec, and closes `fd`.
fn take(fd: RawFd) -> anyhow::Result<OwnedFd> {
    if fd < 3 {
        bail!("descriptor {fd} is not a handed-off descriptor");
    }
    let owned = open_path(Path::new(&format!("/proc/self/fd/{fd}")))
        .with_context(|| format!("descriptor {fd} was not handed over"))?;
    nix::unistd::close(fd).with_context(|| format!("cannot close descriptor {fd}"))?;
    Ok(owned)
}
#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, OwnedFd};

    use super::*;

    fn memfd_with(name: &std::ffi::CStr, bytes: &[u8]) -> OwnedFd {
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC).unwrap();
        let mut file = File::from(fd);
        file.write_all(bytes).unwrap();
        file.into()
    }

    #[test]
    fn another_build_or_garbage_is_refused_by_name() {
        for (bytes, expected) in [
            (
                &b"nonstop-handoff 2 0.0.0 build 0123456789abcdef\n\x01"[..],
                "not a hand-off from this build",
            ),
            (
                &b"nonstop-handoff 1 0.1.0\n\x01"[..],
                "not a hand-off from this build",
            ),
            (&b"hello"[..], "not a hand-off from this build"),
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
    fn the_magic_carries_the_version_and_the_build() {
        let words: Vec<&str> = MAGIC.split_whitespace().collect();
        assert_eq!(
            words[..3],
            ["nonstop-handoff", "2", env!("CARGO_PKG_VERSION")]
        );
        assert_eq!(words[3], "build");
        assert_eq!(words[4].len(), 16, "{MAGIC:?}");
        assert!(words[4].chars().all(|c| c.is_ascii_hexdigit()), "{MAGIC:?}");
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
