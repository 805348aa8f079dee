//! Starting a task's process: its own process group, its environment, directory, credentials,
//! umask and limits, stdout/stderr to pipes, and death with the runner.
//!
//! This is the one module outside `ipc` with `unsafe` code: the `pre_exec` hook, which runs in
//! the child between `fork` and `execve`.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::stat::{Mode, umask};
use nix::unistd::{Gid, Pid, Uid, getppid, setgid, setgroups, setuid};

/// What to start and how.
#[derive(Debug, Clone, Default)]
pub struct SpawnSpec {
    /// The program: an absolute path, or a name looked up in `PATH`.
    pub program: PathBuf,
    /// Its arguments (without `argv[0]`).
    pub args: Vec<OsString>,
    /// Variables to set, after clearing the environment if `clear_env`.
    pub env: Vec<(OsString, OsString)>,
    /// Start from an empty environment instead of the runner's.
    pub clear_env: bool,
    /// The working directory.
    pub cwd: Option<PathBuf>,
    /// Switch to this user and group (the runner must be root).
    pub credentials: Option<Credentials>,
    /// The umask, e.g. `0o027`.
    pub umask: Option<u32>,
    /// Resource limits.
    pub limits: Vec<Limit>,
}

/// A user and/or group to run as, resolved before the fork. Needs a root runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User id to switch to.
    pub uid: Option<u32>,
    /// Primary group id to switch to.
    pub gid: Option<u32>,
    /// Supplementary groups to set (the user's groups).
    pub groups: Option<Vec<u32>>,
}

/// One resource limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Which resource.
    pub resource: Resource,
    /// Soft limit (`u64::MAX`: unlimited).
    pub soft: u64,
    /// Hard limit (`u64::MAX`: unlimited).
    pub hard: u64,
}

/// A started process.
#[derive(Debug)]
pub struct Spawned {
    /// Its pid, which is also its process group id.
    pub pid: Pid,
    /// Read end of its stdout.
    pub stdout: OwnedFd,
    /// Read end of its stderr.
    pub stderr: OwnedFd,
}

/// Starts `spec` as a child of this process, which must be the runner whose pid is `runner`
/// and must call this from its long-lived main thread (the parent-death signal is tied to the
/// thread that forks).
///
/// In the child, before `execve`: a new process group (`setpgid(0, 0)`), stdin from
/// `/dev/null`, default SIGPIPE (done by `std`), an empty signal mask, then supplementary
/// groups, gid, uid, umask, limits, and `PR_SET_PDEATHSIG(SIGKILL)` set last (credential changes
/// clear it), followed by a check that the runner did not die before that. Every descriptor of
/// the runner is close-on-exec, so the child inherits only its three standard streams.
pub fn spawn(spec: &SpawnSpec, runner: Pid) -> io::Result<Spawned> {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args);
    if spec.clear_env {
        cmd.env_clear();
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);

    // Everything the child needs is computed here, before the fork: the hook allocates nothing.
    let credentials = spec.credentials.as_ref().map(|c| {
        let groups: Option<Vec<Gid>> = c
            .groups
            .as_ref()
            .map(|g| g.iter().copied().map(Gid::from_raw).collect());
        (c.uid.map(Uid::from_raw), c.gid.map(Gid::from_raw), groups)
    });
    let mask = spec.umask.map(|m| Mode::from_bits_truncate(m as _));
    let limits = spec.limits.clone();
    let child_setup = move || -> io::Result<()> {
        // The runner blocks the signals it reads through its signalfd, and a blocked mask
        // survives execve: a task would never see SIGTERM. Start it with an empty mask
        // (std's Command does not reset it).
        SigSet::empty().thread_set_mask()?;
        // Ignored dispositions survive execve too, whoever set them (the runner's own parent,
        // say): every signal starts at its default.
        default_dispositions();
        // Descriptors the runner inherited without close-on-exec (a parent's pipes) must not
        // reach the task. Marking, not closing, keeps std's exec-error pipe working.
        close_inherited_on_exec();
        if let Some((uid, gid, groups)) = &credentials {
            // Groups first, then gid, then uid: after setuid we could no longer change them.
            if let Some(groups) = groups {
                setgroups(groups)?;
            }
            if let Some(gid) = gid {
                setgid(*gid)?;
            }
            if let Some(uid) = uid {
                setuid(*uid)?;
            }
        }
        if let Some(mask) = mask {
            umask(mask);
        }
        for limit in &limits {
            setrlimit(limit.resource, limit.soft, limit.hard)?;
        }
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
        // If the runner died before the line above, no signal will ever come: go now.
        if getppid() != runner {
            return Err(io::Error::from_raw_os_error(nix::libc::ESRCH));
        }
        Ok(())
    };
    // SAFETY: the hook runs in the forked child before execve, where only async-signal-safe
    // calls are allowed. It makes only raw system calls, directly or through nix's thin
    // wrappers (pthread_sigmask, rt_sigaction, close_range, setgroups, setgid, setuid, umask,
    // setrlimit, prctl, getppid) on values computed before the fork; it allocates nothing, takes no lock, and touches no state shared with other
    // threads. Its error (io::Error from a raw errno) needs no allocation either.
    unsafe {
        cmd.pre_exec(child_setup);
    }
    let mut child = cmd.spawn()?;
    let pid = Pid::from_raw(child.id() as i32);
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        // Both were requested as pipes above, so std always provides them.
        return Err(io::Error::other("std did not provide the child's pipes"));
    };
    Ok(Spawned {
        pid,
        stdout: stdout.into(),
        stderr: stderr.into(),
    })
}

/// In the child: every signal's disposition back to default (`SIG_DFL`), by raw
/// `rt_sigaction`, since glibc refuses to touch the real-time signals it reserves.
fn default_dispositions() {
    // The kernel's `struct sigaction` with every field zero: handler SIG_DFL, no flags, an
    // empty mask. Zero is the same on every architecture, whatever the field order.
    let default = [0u64; 4];
    for signo in 1..=64 {
        if signo == nix::libc::SIGKILL || signo == nix::libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction reads one kernel sigaction from `default` (32 valid bytes,
        // more than the kernel's struct) and writes nothing (null old action); 8 is the size
        // of the kernel's signal set. It is a plain system call, async-signal-safe.
        unsafe {
            nix::libc::syscall(
                nix::libc::SYS_rt_sigaction,
                signo,
                default.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            );
        }
    }
}

/// In the child: marks every descriptor from 3 up close-on-exec (Linux 5.11+; on an older
/// kernel the call fails and std's own close-on-exec flags are all there is).
fn close_inherited_on_exec() {
    // SAFETY: close_range takes plain integers and only changes descriptor flags; a plain
    // system call, async-signal-safe.
    unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            3u32,
            u32::MAX,
            nix::libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}

/// For the runner itself, before it blocks `signals` to read them from a signalfd: a signal
/// inherited as ignored is discarded by the kernel even while blocked, so the signalfd would
/// never see it (and an ignored SIGCHLD would make the kernel reap children itself). Sets each
/// back to its default disposition.
pub fn reset_to_default(signals: &[Signal]) -> nix::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, sigaction};
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for &signal in signals {
        // SAFETY: installing SIG_DFL runs no code of ours in a signal handler; it only
        // changes what the kernel does with the signal.
        unsafe { sigaction(signal, &default) }?;
    }
    Ok(())
}
