//! Starting a task's process: its own process group, its environment, directory, credentials,
//! umask and limits, stdout/stderr to pipes, and death with the runner.
//!
//! This is the one module outside `ipc` with `unsafe` code: the child's side of a
//! `clone(CLONE_VM | CLONE_VFORK)`, which runs between the clone and `execve` on the runner's
//! memory.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::raw::c_char;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::resource::Resource;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

pub use crate::Error;

mod affinity;
mod clone3;
pub mod guard;
mod slots;

pub use slots::reserve as reserve_descriptor_slots;

// The child's side makes raw system calls whose shapes differ elsewhere: 16-bit `setuid` and
// `setgroups` on i686 and armv7 (the 32-bit ones have other numbers), a 128-bit kernel signal
// set on MIPS, and the clone3 trampoline is written for these two only.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
compile_error!(
    "nonstop_scheduler::spawn makes raw system calls checked on Linux x86-64 and aarch64 only: \
     check each one (setuid/setgid/setgroups widths, the sigset size, clone3) before adding \
     an architecture"
);

/// What to start and how.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// User id to switch to.
    pub uid: Option<u32>,
    /// Primary group id to switch to.
    pub gid: Option<u32>,
    /// Supplementary groups to set (the user's groups).
    pub groups: Option<Vec<u32>>,
}

/// One resource limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    /// Which resource.
    #[serde(with = "crate::wire::resource")]
    pub resource: Resource,
    /// Soft limit (`u64::MAX`: unlimited).
    pub soft: u64,
    /// Hard limit (`u64::MAX`: unlimited).
    pub hard: u64,
    /// Not asked for by the pipeline but handed down by the runner (the `nofile` it was
    /// started with): the child lowers it to its own hard limit if that is lower (the
    /// runner's was lowered since, `prlimit`), so it never makes a start fail. One the
    /// pipeline sets is set exactly, or the start fails naming it.
    pub inherited: bool,
}

/// Where a child's stdout and stderr go (stdin is always `/dev/null`).
#[derive(Debug, Clone, Copy)]
pub struct Output<'a> {
    /// Becomes its stdout.
    pub stdout: BorrowedFd<'a>,
    /// Becomes its stderr.
    pub stderr: BorrowedFd<'a>,
}

/// Starts `spec` as a child of this process, with its stdout and stderr on `output`. This
/// process must be the runner whose pid is `runner`
/// and must call this from its long-lived main thread (the parent-death signal is tied to the
/// thread that forks).
///
/// Like `posix_spawn`, it uses `clone(CLONE_VM | CLONE_VFORK)`: the child borrows the runner's
/// memory until it calls `execve`, so nothing is copied (a full `fork` of the runner cost about
/// a third of a restart, see BENCHMARKS.md). Everything the child needs (paths, argv, envp,
/// ids) is prepared here first. In the child, before `execve`: every signal at its default
/// disposition, stdin from `/dev/null` and stdout/stderr to `output`, a new process group, the
/// working directory, supplementary groups, gid, uid, umask, limits, `PR_SET_PDEATHSIG(SIGKILL)`
/// set last (credential changes clear it) with a check that the runner did not die before
/// that, every other descriptor close-on-exec, and an empty signal mask.
///
/// With `cgroup` (a cgroup v2 directory, see [`crate::cgroup`]) it uses
/// `clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP)` instead: the child starts inside that
/// cgroup.
pub fn spawn(
    spec: &SpawnSpec,
    output: Output<'_>,
    runner: Pid,
    cgroup: Option<BorrowedFd<'_>>,
) -> Result<Pid, Error> {
    spawn_prepared(&Prepared::new(spec)?, output, runner, cgroup)
}

/// [`spawn`] for a spec prepared once with [`Prepared::new`]: a task restarted many times does
/// not build its argv and environment (or search `PATH`) again for every start.
pub fn spawn_prepared(
    prepared: &Prepared,
    output: Output<'_>,
    runner: Pid,
    cgroup: Option<BorrowedFd<'_>>,
) -> Result<Pid, Error> {
    // What the child needs from our descriptors, at the reserved low numbers (see `slots`).
    let mut slots = slots::lock()?;
    let slots = &mut *slots;
    slots::Slots::put(&mut slots.stdout, output.stdout)?;
    slots::Slots::put(&mut slots.stderr, output.stderr)?;
    let program_fd = match prepared.program_fd {
        Some(fd) => {
            // SAFETY: `Prepared::new_at` requires its caller to keep `fd` open for as long as
            // the prepared spec is used; this borrow ends within this call.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            slots::Slots::put(&mut slots.program, borrowed)?;
            Some(slots.program.as_raw_fd())
        }
        None => None,
    };
    // The child starts on this CPU, where this thread waits for it: see `affinity`.
    let pinned = affinity::pin();
    let args = ChildArgs {
        affinity: pinned.as_ref().map(|p| (p.original, p.len)),
        prepared,
        program_fd,
        stdin: slots.stdin.as_raw_fd(),
        stdout: slots.stdout.as_raw_fd(),
        stderr: slots.stderr.as_raw_fd(),
        unshare_below: slots.unshare.then(|| slots.below()),
        runner: runner.as_raw(),
        reset_signals: non_default_signals(),
        error: AtomicI32::new(0),
        stage: AtomicI32::new(0),
        detail: AtomicI32::new(0),
    };
    thread_local! {
        // One child stack per spawning thread, reused: the child is done with it (it has
        // called execve or _exit) before clone returns here.
        static STACK: std::cell::OnceCell<ChildStack> = const { std::cell::OnceCell::new() };
    }
    let (stack, stack_size) = STACK
        .with(|cell| match cell.get() {
            Some(stack) => Ok(stack.usable()),
            None => ChildStack::new().map(|stack| cell.get_or_init(|| stack).usable()),
        })
        .map_err(|e| Error::spawn("mapping the child's stack", e))?;
    // No signal handler may run in the child while it shares our memory: block every signal
    // around the clone, 32 and 33 included (glibc's sigprocmask leaves those two alone); the
    // child resets dispositions, then unblocks just before execve.
    let saved = block_all_signals();
    let arg = (&args as *const ChildArgs<'_>).cast_mut().cast();
    let share_files = if args.unshare_below.is_some() {
        nix::libc::CLONE_FILES
    } else {
        0
    };
    let pid: nix::libc::c_long = match cgroup {
        // SAFETY: `child_main` only makes async-signal-safe system calls on `args`, which
        // lives on this frame; CLONE_VFORK suspends this thread until the child has called
        // execve or _exit, so `args` and `prepared` outlive every use the child makes of
        // them. The stack is this thread's child stack (a mapping with a guard page below
        // it, never freed, 16-byte aligned at the top), which no other child uses meanwhile:
        // this thread is suspended until the child is done with it. Every signal is blocked.
        None => unsafe {
            nix::libc::clone(
                child_main,
                stack.cast::<u8>().add(stack_size).cast(),
                nix::libc::CLONE_VM | nix::libc::CLONE_VFORK | share_files | nix::libc::SIGCHLD,
                arg,
            )
        }
        .into(),
        // SAFETY: as above, the contract of `vfork_into`.
        Some(cgroup) => unsafe {
            clone3::vfork_into(
                cgroup.as_raw_fd(),
                share_files as u64,
                stack,
                stack_size,
                child_main,
                arg,
            )
        },
    };
    let clone_error = match (cgroup, pid) {
        (None, -1) => io::Error::last_os_error(),
        (Some(_), p) if p < 0 => io::Error::from_raw_os_error(-p as i32),
        _ => io::Error::from_raw_os_error(0),
    };
    set_signal_mask(saved);
    drop(pinned);
    if pid < 0 {
        let stage = if cgroup.is_some() {
            "starting it in its cgroup (clone3)"
        } else {
            "starting it (clone)"
        };
        return Err(Error::spawn(stage, clone_error));
    }
    let pid = pid as nix::libc::pid_t;
    let errno = args.error.load(Ordering::Acquire);
    if errno != 0 {
        // It exited without executing the program: reap it here, it is not a task.
        let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
        let stage = args.stage.load(Ordering::Acquire);
        let source = io::Error::from_raw_os_error(errno);
        if stage == LIMITS_STAGE
            && let Some(limit) = usize::try_from(args.detail.load(Ordering::Acquire))
                .ok()
                .and_then(|i| prepared.limits_given.get(i))
        {
            return Err(limit_error(limit, source));
        }
        let stage = STAGES.get(stage as usize).copied().unwrap_or("starting it");
        return Err(Error::spawn(stage, source));
    }
    Ok(Pid::from_raw(pid))
}

/// The kernel's signal set: 64 bits on the architectures this module supports.
type KernelSigset = u64;

/// Blocks every signal with a raw `rt_sigprocmask` (glibc's wrappers refuse to block the two
/// real-time signals it reserves, 32 and 33); returns the mask to restore.
fn block_all_signals() -> KernelSigset {
    let all: KernelSigset = !0;
    let mut old: KernelSigset = 0;
    // SAFETY: rt_sigprocmask reads one kernel sigset from `all` and writes the old one into
    // `old`, both valid for the size given; the kernel ignores SIGKILL and SIGSTOP in it.
    unsafe {
        nix::libc::syscall(
            nix::libc::SYS_rt_sigprocmask,
            nix::libc::SIG_SETMASK,
            &all as *const KernelSigset,
            &mut old as *mut KernelSigset,
            std::mem::size_of::<KernelSigset>(),
        );
    }
    old
}

/// Sets this thread's signal mask to `mask` with a raw `rt_sigprocmask`: the one
/// [`block_all_signals`] returned, or 0 to unblock every signal. A plain system call,
/// async-signal-safe (the child and the guard use it too).
fn set_signal_mask(mask: KernelSigset) {
    // SAFETY: as in `block_all_signals`; only reads `mask`.
    unsafe {
        nix::libc::syscall(
            nix::libc::SYS_rt_sigprocmask,
            nix::libc::SIG_SETMASK,
            &mask as *const KernelSigset,
            std::ptr::null_mut::<KernelSigset>(),
            std::mem::size_of::<KernelSigset>(),
        );
    }
}

/// The environment tasks inherit: this process's, read at the first spawn (the runner never
/// changes its own), each variable also as the `KEY=VALUE` string execve takes. Built once
/// and shared by every task's envp, so a hundred tasks do not hold a hundred copies.
fn inherited_env() -> &'static [(OsString, OsString, CString)] {
    static ENV: std::sync::OnceLock<Vec<(OsString, OsString, CString)>> =
        std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        std::env::vars_os()
            .filter(|(k, _)| !RUNNER_ONLY.iter().any(|r| k == r))
            .filter_map(|(k, v)| {
                let kv = CString::new(key_value(&k, &v)).ok()?;
                Some((k, v, kv))
            })
            .collect()
    })
}

/// Variables that systemd's protocols address to the runner itself, not to its tasks: a task
/// that inherited `NOTIFY_SOCKET` could tell systemd the runner is ready (or stopping), one
/// with `LISTEN_FDS` would look for sockets it does not have, and `JOURNAL_STREAM` would make
/// a task believe its stderr is the journal when it is a log file. A task may still set any of
/// them in its own `env`.
pub const RUNNER_ONLY: [&str; 7] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "JOURNAL_STREAM",
];

/// `KEY=VALUE` as bytes.
fn key_value(key: &std::ffi::OsStr, value: &std::ffi::OsStr) -> Vec<u8> {
    let mut kv = key.as_bytes().to_vec();
    kv.push(b'=');
    kv.extend_from_slice(value.as_bytes());
    kv
}

/// What failed in the child, by the index it reports.
const STAGES: [&str; 10] = [
    "starting it",
    "redirecting its standard streams",
    "creating its process group",
    "changing to its directory",
    "switching to its user and group",
    "setting its limits",
    "tying it to the runner",
    "executing the program",
    "the runner died",
    "restoring its CPU affinity",
];

/// The index of "setting its limits" in [`STAGES`].
const LIMITS_STAGE: i32 = 5;

/// `limit` could not be set in the child (`source`): what it asked for, and what the runner
/// has, which the child had before.
fn limit_error(limit: &Limit, source: io::Error) -> Error {
    let value = |n: u64| match n {
        u64::MAX => "unlimited".to_owned(),
        n => n.to_string(),
    };
    let runner = nix::sys::resource::getrlimit(limit.resource)
        .map(|(soft, hard)| {
            format!(
                " (the runner's: soft {}, hard {})",
                value(soft),
                value(hard)
            )
        })
        .unwrap_or_default();
    Error::Limit {
        resource: crate::wire::resource::name(limit.resource),
        wanted: format!(
            "soft {}, hard {}{runner}",
            value(limit.soft),
            value(limit.hard)
        ),
        source,
    }
}

/// A [`SpawnSpec`] turned into everything the child uses (NUL-terminated strings, argv and
/// envp arrays, ids, limits), allocated in the parent: the child may not allocate.
pub struct Prepared {
    program: CString,
    /// Execute the file open at this descriptor instead of `program` (see
    /// [`Prepared::executing`]).
    program_fd: Option<RawFd>,
    _argv: Vec<CString>,
    argv: Vec<*const c_char>,
    _envp: Vec<CString>,
    envp: Vec<*const c_char>,
    cwd: Option<CString>,
    groups: Option<Vec<nix::libc::gid_t>>,
    gid: Option<nix::libc::gid_t>,
    uid: Option<nix::libc::uid_t>,
    umask: Option<nix::libc::mode_t>,
    limits: Vec<(nix::libc::c_int, nix::libc::rlimit, bool)>,
    /// The limits as given, to name the one that could not be set.
    limits_given: Vec<Limit>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("program", &self.program)
            .finish_non_exhaustive()
    }
}

impl Prepared {
    /// Prepares `spec`: resolves the program (searching `PATH` if it has no `/`), builds argv
    /// and the environment (this process's, read once and shared, unless `clear_env`, with
    /// `spec.env` on top).
    pub fn new(spec: &SpawnSpec) -> Result<Prepared, Error> {
        Prepared::build(spec, None)
    }

    /// Like [`Prepared::new`], but executes the file open at `fd` (`execveat` with
    /// `AT_EMPTY_PATH`: an `O_PATH` descriptor of an ELF executable, which may be
    /// close-on-exec) instead of looking for `spec.program`, which is only `argv[0]`. The
    /// caller keeps `fd` open for as long as this is used. The runner executes its own helpers
    /// this way, from descriptors opened at start, so that an upgrade on disk cannot mix
    /// versions.
    pub fn new_at(spec: &SpawnSpec, fd: RawFd) -> Result<Prepared, Error> {
        Prepared::build(spec, Some(fd))
    }

    fn build(spec: &SpawnSpec, program_fd: Option<RawFd>) -> Result<Prepared, Error> {
        let cstring = |what: &'static str| {
            move |bytes: Vec<u8>| CString::new(bytes).map_err(|_| Error::Nul { what })
        };
        // The inherited variables the task does not set itself, then its own.
        let inherited: Vec<&(OsString, OsString, CString)> = if spec.clear_env {
            Vec::new()
        } else {
            inherited_env()
                .iter()
                .filter(|(k, _, _)| !spec.env.iter().any(|(key, _)| key == k))
                .collect()
        };
        let path = spec
            .env
            .iter()
            .rev()
            .map(|(k, v)| (k, v))
            .chain(inherited.iter().map(|(k, v, _)| (k, v)))
            .find(|(k, _)| *k == "PATH")
            .map(|(_, v)| v.clone());
        let program = if program_fd.is_some() || spec.program.as_os_str().as_bytes().contains(&b'/')
        {
            spec.program.clone()
        } else {
            search_path(&spec.program, path.as_deref(), spec.cwd.as_deref())?
        };
        let argv0 = spec.program.as_os_str().as_bytes().to_vec();
        let owned_argv: Vec<CString> = std::iter::once(argv0)
            .chain(spec.args.iter().map(|a| a.as_bytes().to_vec()))
            .map(cstring("an argument"))
            .collect::<Result<_, _>>()?;
        let mut own_env: Vec<(&OsString, &OsString)> = Vec::new();
        for (key, value) in &spec.env {
            // The last setting of a key wins.
            own_env.retain(|(k, _)| *k != key);
            own_env.push((key, value));
        }
        let owned_envp: Vec<CString> = own_env
            .iter()
            .map(|(k, v)| cstring("the environment")(key_value(k, v)))
            .collect::<Result<_, _>>()?;
        let pointers = |strings: &[CString]| {
            strings
                .iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        let credentials = spec.credentials.as_ref();
        Ok(Prepared {
            program: cstring("the program's path")(program.into_os_string().into_vec())?,
            program_fd,
            argv: pointers(&owned_argv),
            _argv: owned_argv,
            // Inherited strings live for the whole process (a static); the task's own are
            // owned by `_envp`, beside the pointers.
            envp: inherited
                .iter()
                .map(|(_, _, kv)| kv.as_ptr())
                .chain(owned_envp.iter().map(|kv| kv.as_ptr()))
                .chain(std::iter::once(std::ptr::null()))
                .collect(),
            _envp: owned_envp,
            cwd: spec
                .cwd
                .as_ref()
                .map(|c| cstring("the working directory")(c.clone().into_os_string().into_vec()))
                .transpose()?,
            groups: credentials.and_then(|c| c.groups.clone()),
            gid: credentials.and_then(|c| c.gid),
            uid: credentials.and_then(|c| c.uid),
            umask: spec.umask.map(|m| m as nix::libc::mode_t),
            limits: spec
                .limits
                .iter()
                .map(|l| {
                    (
                        l.resource as nix::libc::c_int,
                        nix::libc::rlimit {
                            rlim_cur: l.soft as nix::libc::rlim_t,
                            rlim_max: l.hard as nix::libc::rlim_t,
                        },
                        l.inherited,
                    )
                })
                .collect(),
            limits_given: spec.limits.clone(),
        })
    }
}

/// `execvp`'s search, done in the parent: the first executable regular file `name` in the
/// colon-separated `path` (the C library's default `/bin:/usr/bin` when there is none),
/// relative entries taken from `cwd`. The pipeline check uses it too, so that what `check`
/// accepts is what a start finds.
pub fn search_path(
    name: &std::path::Path,
    path: Option<&std::ffi::OsStr>,
    cwd: Option<&std::path::Path>,
) -> Result<PathBuf, Error> {
    let path = path.map_or_else(|| b"/bin:/usr/bin".to_vec(), |p| p.as_bytes().to_vec());
    for dir in path.split(|&b| b == b':').filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(OsString::from_vec(dir.to_vec()));
        let dir = match cwd {
            Some(cwd) if dir.is_relative() => cwd.join(dir),
            _ => dir,
        };
        let candidate = dir.join(name);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    Err(Error::NotFound {
        program: name.to_path_buf(),
        path: String::from_utf8_lossy(&path).into_owned(),
    })
}

/// What the child reads, and where it reports a failure.
struct ChildArgs<'a> {
    prepared: &'a Prepared,
    /// The program to execute from a descriptor (its slot), if any.
    program_fd: Option<RawFd>,
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    /// The child shares our descriptor table (`CLONE_FILES`) and must first make its own,
    /// keeping the descriptors below this one (see `slots`).
    unshare_below: Option<RawFd>,
    runner: nix::libc::pid_t,
    reset_signals: &'a [nix::libc::c_int],
    /// The parent's own CPU mask, while the parent is pinned for the clone (see `affinity`).
    affinity: Option<(affinity::CpuMask, usize)>,
    error: AtomicI32,
    stage: AtomicI32,
    /// Which of the limits could not be set.
    detail: AtomicI32,
}

/// A child's stack: a private mapping with a guard page below it, kept for the life of the
/// thread (see `spawn`).
struct ChildStack {
    base: *mut nix::libc::c_void,
    len: usize,
}

const STACK_SIZE: usize = 64 * 1024;
const GUARD_SIZE: usize = 4096;

impl ChildStack {
    fn new() -> io::Result<ChildStack> {
        let len = STACK_SIZE + GUARD_SIZE;
        // SAFETY: an anonymous private mapping at an address the kernel chooses; no existing
        // memory is touched.
        let base = unsafe {
            nix::libc::mmap(
                std::ptr::null_mut(),
                len,
                nix::libc::PROT_READ | nix::libc::PROT_WRITE,
                nix::libc::MAP_PRIVATE | nix::libc::MAP_ANONYMOUS | nix::libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == nix::libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = ChildStack { base, len };
        // SAFETY: the first page of our own mapping becomes inaccessible: an overflow of the
        // child's stack faults instead of writing into other memory.
        if unsafe { nix::libc::mprotect(base, GUARD_SIZE, nix::libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The usable stack: its lowest address, above the guard page, and its size. The initial
    /// stack pointer is its end (stacks grow down), page-aligned, so 16-byte aligned.
    fn usable(&self) -> (*mut nix::libc::c_void, usize) {
        // SAFETY: the guard page is the first page of our own mapping, which is `len` bytes
        // long: the result is inside it.
        let low = unsafe { self.base.cast::<u8>().add(GUARD_SIZE) };
        (low.cast(), self.len - GUARD_SIZE)
    }
}

/// The child, between clone and execve. Only async-signal-safe system calls; no allocation,
/// no locks, no panics: it runs on the parent's memory.
extern "C" fn child_main(arg: *mut nix::libc::c_void) -> nix::libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` the parent passed to clone, alive until we exec or exit
    // (the parent is suspended meanwhile).
    let a = unsafe { &*arg.cast::<ChildArgs<'_>>() };
    let p = a.prepared;
    let fail = |stage: i32| -> ! {
        a.error
            .store(nix::errno::Errno::last_raw().max(1), Ordering::Release);
        a.stage.store(stage, Ordering::Release);
        // SAFETY: _exit ends the child at once, without running anything of the parent's.
        unsafe { nix::libc::_exit(127) }
    };
    // Signals are all blocked (the parent did it for us): reset every disposition that is not
    // the default first, so that no handler of the runner's can run here once they are
    // unblocked, and no ignored signal stays ignored across execve.
    set_dispositions(a.reset_signals.iter().copied(), nix::libc::SIG_DFL);
    // SAFETY: every call in this block is a plain system call on descriptors, integers and
    // NUL-terminated strings prepared by the parent, which stay valid while it is suspended.
    unsafe {
        use nix::libc::*;
        // Our own table, with only the descriptors below the slots: nothing else of the
        // runner's is copied, so nothing else is closed at execve. Until this call the table
        // is the runner's: nothing above may touch a descriptor.
        if let Some(below) = a.unshare_below
            && syscall(SYS_close_range, below as u32, u32::MAX, CLOSE_RANGE_UNSHARE) != 0
        {
            fail(1);
        }
        if dup2(a.stdin, 0) < 0 || dup2(a.stdout, 1) < 0 || dup2(a.stderr, 2) < 0 {
            fail(1);
        }
        if setpgid(0, 0) != 0 {
            fail(2);
        }
        if let Some(cwd) = &p.cwd
            && chdir(cwd.as_ptr()) != 0
        {
            fail(3);
        }
        // Raw system calls, not glibc's wrappers: those broadcast credential changes to every
        // thread of the process, which here would be the runner's.
        if let Some(groups) = &p.groups
            && syscall(SYS_setgroups, groups.len(), groups.as_ptr()) != 0
        {
            fail(4);
        }
        if let Some(gid) = p.gid
            && syscall(SYS_setgid, gid) != 0
        {
            fail(4);
        }
        if let Some(uid) = p.uid
            && syscall(SYS_setuid, uid) != 0
        {
            fail(4);
        }
        if let Some(mask) = p.umask {
            umask(mask);
        }
        for (index, (resource, limit, inherited)) in p.limits.iter().enumerate() {
            let mut limit = *limit;
            // Handed down, not asked for: at most what this process may set, its hard limit
            // (lowered since the runner started, or by a change of user).
            let mut current = rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if *inherited
                && syscall(
                    SYS_prlimit64,
                    0,
                    *resource,
                    std::ptr::null::<rlimit>(),
                    &mut current as *mut rlimit,
                ) == 0
            {
                limit.rlim_max = limit.rlim_max.min(current.rlim_max);
                limit.rlim_cur = limit.rlim_cur.min(limit.rlim_max);
            }
            if syscall(SYS_prlimit64, 0, *resource, &limit as *const rlimit, 0usize) != 0 {
                a.detail.store(index as i32, Ordering::Release);
                fail(5);
            }
        }
        if prctl(PR_SET_PDEATHSIG, SIGKILL as c_ulong, 0, 0, 0) != 0 {
            fail(6);
        }
        // If the runner died before the line above, no signal will ever come: go now.
        if getppid() != a.runner {
            *__errno_location() = ESRCH;
            fail(8);
        }
    }
    if let Some((mask, len)) = &a.affinity
        && !affinity::restore(mask, *len)
    {
        fail(9);
    }
    close_inherited_on_exec();
    set_signal_mask(0);
    // SAFETY: execve (or execveat on a descriptor the parent keeps open, with an empty path)
    // with the NUL-terminated program and the null-terminated argv and envp arrays prepared
    // by the parent. Both return only on failure.
    unsafe {
        match a.program_fd {
            Some(fd) => {
                nix::libc::syscall(
                    nix::libc::SYS_execveat,
                    fd,
                    c"".as_ptr(),
                    p.argv.as_ptr(),
                    p.envp.as_ptr(),
                    nix::libc::AT_EMPTY_PATH,
                );
            }
            None => {
                nix::libc::execve(p.program.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr());
            }
        }
    }
    fail(7)
}

/// The signals whose disposition in this process is not the default (ignored, or caught by
/// a handler, such as Rust's own for SIGSEGV): the ones a child must reset. Read once, with
/// raw `rt_sigaction` (glibc hides the real-time signals it reserves); the runner does not
/// change dispositions after it starts supervising.
fn non_default_signals() -> &'static [nix::libc::c_int] {
    static SIGNALS: std::sync::OnceLock<Vec<nix::libc::c_int>> = std::sync::OnceLock::new();
    SIGNALS.get_or_init(|| {
        catchable()
            .filter(|&signo| {
                // The kernel's struct sigaction; its first field is the handler.
                let mut old = [0u64; 4];
                // SAFETY: rt_sigaction with a null new action only writes the current one into
                // `old` (32 bytes, more than the kernel's struct); 8 is the kernel's sigset
                // size.
                let rc = unsafe {
                    nix::libc::syscall(
                        nix::libc::SYS_rt_sigaction,
                        signo,
                        std::ptr::null::<u64>(),
                        old.as_mut_ptr(),
                        8usize,
                    )
                };
                rc == 0 && old[0] != nix::libc::SIG_DFL as u64
            })
            .collect()
    })
}

/// Every signal whose disposition can be set: 1 to 64 but SIGKILL and SIGSTOP.
fn catchable() -> impl Iterator<Item = nix::libc::c_int> {
    (1..=64).filter(|&signo| signo != nix::libc::SIGKILL && signo != nix::libc::SIGSTOP)
}

/// Sets the disposition of each of `signals` to `handler` (`SIG_DFL` in the child, `SIG_IGN`
/// in the guard), by raw `rt_sigaction`, since glibc refuses to touch the real-time signals
/// it reserves. A plain system call per signal, async-signal-safe.
fn set_dispositions(
    signals: impl IntoIterator<Item = nix::libc::c_int>,
    handler: nix::libc::sighandler_t,
) {
    // The kernel's `struct sigaction`: the handler first on every architecture this module
    // supports, then no flags, no restorer and an empty mask (all zero).
    let action: [u64; 4] = [handler as u64, 0, 0, 0];
    for signo in signals {
        // SAFETY: rt_sigaction reads one kernel sigaction from `action` (32 valid bytes,
        // more than the kernel's struct) and writes nothing (null old action); 8 is the size
        // of the kernel's signal set.
        unsafe {
            nix::libc::syscall(
                nix::libc::SYS_rt_sigaction,
                signo,
                action.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            );
        }
    }
}

/// In the child: marks every descriptor from 3 up close-on-exec (Linux 5.11+; on an older
/// kernel the call fails, and [`cloexec_inherited`], which the runner calls once at start,
/// together with the runner opening everything close-on-exec, is what keeps them out).
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

/// For the runner itself, once at start: marks every descriptor from 3 up that it has open
/// (those it inherited from whoever started it) close-on-exec, so that no task inherits one
/// even on a kernel without `close_range(CLOSE_RANGE_CLOEXEC)` (before Linux 5.11). Returns
/// how many were not close-on-exec yet.
pub fn cloexec_inherited() -> io::Result<usize> {
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= 3)
        .collect();
    let mut marked = 0;
    for fd in fds {
        // SAFETY: F_GETFD/F_SETFD take plain integers and only read or change the
        // descriptor's flags; a descriptor that is gone (the directory listing's own) fails
        // with EBADF, which is skipped.
        let flags = unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) };
        if flags < 0 || flags & nix::libc::FD_CLOEXEC != 0 {
            continue;
        }
        // SAFETY: as above.
        if unsafe { nix::libc::fcntl(fd, nix::libc::F_SETFD, flags | nix::libc::FD_CLOEXEC) } == 0 {
            marked += 1;
        }
    }
    Ok(marked)
}

/// For the runner itself: takes the signals numbered `numbers` (1 to 64; the real-time ones
/// and glibc's reserved 32 and 33 included, which `nix::sys::signal::Signal` cannot name) for a
/// signalfd: resets each to its default disposition (an ignored SIGCHLD would make the kernel
/// reap children itself, and a handler inherited or installed by a library would not run
/// anyway), blocks them with a raw `rt_sigprocmask` (glibc's wrappers refuse 32 and 33), and
/// returns them as a set for `signalfd`. The block outlives `execve`.
pub fn take_signals(numbers: &[nix::libc::c_int]) -> nix::Result<nix::sys::signal::SigSet> {
    let numbers: Vec<nix::libc::c_int> = numbers
        .iter()
        .copied()
        .filter(|&n| (1..=64).contains(&n) && n != nix::libc::SIGKILL && n != nix::libc::SIGSTOP)
        .collect();
    set_dispositions(numbers.iter().copied(), nix::libc::SIG_DFL);
    let mask: KernelSigset = numbers.iter().fold(0, |m, &n| m | 1 << (n - 1));
    // SAFETY: rt_sigprocmask reads one kernel sigset from `mask`, valid for its size, and adds
    // it to this thread's blocked set; no old set is written.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_rt_sigprocmask,
            nix::libc::SIG_BLOCK,
            &mask as *const KernelSigset,
            std::ptr::null_mut::<KernelSigset>(),
            std::mem::size_of::<KernelSigset>(),
        )
    };
    nix::errno::Errno::result(rc)?;
    // SAFETY: a zeroed sigset_t is the empty set (what sigemptyset writes on Linux); its first
    // 64 bits are the kernel's set, signal n at bit n - 1, the layout rt_sigprocmask and
    // signalfd read. Every bit set is a signal number from 1 to 64.
    let set = unsafe {
        let mut raw: nix::libc::sigset_t = std::mem::zeroed();
        (&mut raw as *mut nix::libc::sigset_t)
            .cast::<KernelSigset>()
            .write(mask);
        nix::sys::signal::SigSet::from_sigset_t_unchecked(raw)
    };
    Ok(set)
}
