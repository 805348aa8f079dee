//! `nonstop plugin-host validate|run LIBRARY ARGS`: the task host, the only place a plugin is
//! loaded. It always runs in a child process of its own: the supervisor executes it (from the
//! `nonstop` binary it opened at start) for each run of a plugin task, and `nonstop check` for
//! each plugin task's arguments, so a plugin that crashes, aborts or hangs takes down only its
//! host, never the runner.
//!
//! It loads the library (`RTLD_NOW`: a missing symbol fails here, not at the first call),
//! checks the declaration's magic, ABI version and size before it reads anything else, then
//! calls one entry point with the arguments (JSON) and a [`Host`]: beats go to the task's
//! heartbeat slot (`NONSTOP_HEARTBEAT`), log lines to stdout (the task's log), and SIGTERM is
//! held as a request that `Context::stop_requested` reports.
//!
//! Exit status: 0 done; 1 the plugin failed (its reason on stderr; for `validate`, on stdout
//! as `error\tPATH\tMESSAGE` for `check` to place); 2 the library could not be used (why, on
//! stderr, naming the file).

use std::ffi::c_void;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use nonstop_core::plugin::abi::{self, Declaration, Host, Str};

/// What the plugin is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Entry {
    /// Check the arguments.
    Validate,
    /// Run the task.
    Run,
    /// Print the declaration: name, version, description, SDK version (tab-separated).
    Info,
}

/// What `nonstop plugins` shows of a library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its description.
    pub description: String,
    /// The SDK version it was built with.
    pub sdk_version: String,
}

struct State {
    heartbeat: Option<nonstop_ipc::Heartbeat>,
    failure: Option<(String, String)>,
}

extern "C" fn beat(ctx: *mut c_void) {
    // SAFETY: `ctx` is the `State` that `call` lends for the duration of the entry point.
    #[allow(unsafe_code)]
    let state = unsafe { &*(ctx as *const State) };
    if let Some(h) = &state.heartbeat {
        h.beat();
    }
}

extern "C" fn stop_requested(_: *mut c_void) -> bool {
    // SIGTERM is blocked in the host (see `run`): a pending one is the request.
    pending_term()
}

extern "C" fn log(_: *mut c_void, line: Str) {
    // SAFETY: the plugin passes a string valid for this call.
    #[allow(unsafe_code)]
    let line = unsafe { line.to_str() };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

extern "C" fn fail(ctx: *mut c_void, path: Str, message: Str) {
    // SAFETY: as in `beat`; the strings are valid for this call.
    #[allow(unsafe_code)]
    let (state, path, message) =
        unsafe { (&mut *(ctx as *mut State), path.to_str(), message.to_str()) };
    state.failure = Some((path.into_owned(), message.into_owned()));
}

/// Whether a SIGTERM waits (it is blocked in the host).
fn pending_term() -> bool {
    let mut set = std::mem::MaybeUninit::<nix::libc::sigset_t>::uninit();
    // SAFETY: sigpending fills the set it is given; sigismember reads it.
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::sigpending(set.as_mut_ptr()) == 0
            && nix::libc::sigismember(set.as_ptr(), nix::libc::SIGTERM) == 1
    }
}

/// Kills this process's group, the host and what the plugin started: the parent-death
/// signal's handler.
extern "C" fn end_group(_: nix::libc::c_int) {
    // SAFETY: kill is async-signal-safe and takes no memory; 0 is this process's group.
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::kill(0, nix::libc::SIGKILL);
    }
}

/// Started by `check` or `plugins` in a process group of its own (see [`crate::host_child`]),
/// which a Ctrl-C to that process does not reach: when that process dies, the kernel sends
/// SIGHUP (`PR_SET_PDEATHSIG`), whose handler kills this whole group (the host and whatever
/// the plugin started in it). Exits at once if that process died before this was asked
/// ([`crate::host_child::PARENT_ENV`] names it).
fn die_with_parent() {
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(end_group),
        nix::sys::signal::SaFlags::empty(),
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler makes one async-signal-safe system call.
    #[allow(unsafe_code)]
    let installed =
        unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGHUP, &action) };
    if installed.is_err()
        || nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGHUP).is_err()
    {
        return;
    }
    let parent = std::env::var(crate::host_child::PARENT_ENV)
        .ok()
        .and_then(|p| p.parse::<i32>().ok());
    if let Some(parent) = parent
        && nix::unistd::getppid().as_raw() != parent
    {
        std::process::exit(2);
    }
}

/// A loaded library and its checked declaration.
struct Loaded {
    // Kept loaded for as long as the declaration is used.
    _library: libloading::os::unix::Library,
    declaration: *const Declaration,
}

/// Loads `path` and checks its declaration; the error names the file and the cause.
fn load(path: &Path) -> Result<Loaded, String> {
    let shown = path.display();
    let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL;
    // SAFETY: loading runs the library's initialisers: foreign code, run on purpose, in this
    // child process only (the task host exists for that).
    #[allow(unsafe_code)]
    let library = unsafe { libloading::os::unix::Library::open(Some(path), flags) }
        // The whole chain: libloading's own message ("dlopen failed") says nothing; its source,
        // dlerror's text, says why (no such file, an undefined symbol, not an ELF file).
        .map_err(|e| {
            format!(
                "{shown}: cannot load it as a shared library: {:#}",
                anyhow::Error::new(e)
            )
        })?;
    // SAFETY: the symbol is looked up as the address of a static; nothing is read yet.
    #[allow(unsafe_code)]
    let symbol = unsafe { library.get::<*const Declaration>(abi::SYMBOL) }.map_err(|_| {
        format!(
            "{shown}: not a nonstop plugin: it exports no NONSTOP_PLUGIN declaration (build it \
             with nonstop_core::export_plugin!)"
        )
    })?;
    let declaration: *const Declaration = *symbol;
    // The first 16 bytes first: magic, ABI version, size. Only then the rest.
    // SAFETY: the symbol is a static of at least 16 bytes in any library that exports it as
    // a declaration of any version; the fields are read without assuming more.
    #[allow(unsafe_code)]
    let (magic, version, size) = unsafe {
        let head = declaration.cast::<u8>();
        (
            head.cast::<u64>().read_unaligned(),
            head.add(8).cast::<u32>().read_unaligned(),
            head.add(12).cast::<u32>().read_unaligned(),
        )
    };
    if magic != abi::MAGIC {
        return Err(format!(
            "{shown}: its NONSTOP_PLUGIN does not start with the nonstop plugin magic \
             ({magic:#018x}, expected {:#018x}): not a nonstop plugin, or a corrupt one",
            abi::MAGIC
        ));
    }
    if version != abi::ABI_VERSION {
        return Err(format!(
            "{shown}: built for plugin ABI version {version}; this nonstop ({}) speaks version \
             {}: rebuild the plugin against a nonstop-core of this release",
            env!("CARGO_PKG_VERSION"),
            abi::ABI_VERSION
        ));
    }
    if size != abi::DECLARATION_SIZE {
        return Err(format!(
            "{shown}: its declaration is {size} bytes, ABI version {version} says {}: a corrupt \
             or hand-made declaration",
            abi::DECLARATION_SIZE
        ));
    }
    Ok(Loaded {
        _library: library,
        declaration,
    })
}

/// The plugin's name, version, description and SDK version.
pub fn info(path: &Path) -> Result<Info, String> {
    let loaded = load(path)?;
    // SAFETY: checked by `load`: a declaration of this ABI version, alive with the library;
    // its strings are 'static in the library.
    #[allow(unsafe_code)]
    let d = unsafe { &*loaded.declaration };
    #[allow(unsafe_code)]
    // SAFETY: the declaration's strings are 'static in the library, which stays loaded for
    // this function.
    let text = |s: Str| unsafe { s.to_str().into_owned() };
    Ok(Info {
        name: text(d.name),
        version: text(d.version),
        description: text(d.description),
        sdk_version: text(d.sdk_version),
    })
}

/// `nonstop plugin-host ENTRY LIBRARY ARGS`.
pub fn run(entry: Entry, path: &Path, args: &str) -> ExitCode {
    // SIGTERM becomes a request the plugin polls (`Context::stop_requested`); a plugin that
    // does not look is killed after the task's stop grace.
    let mut term = nix::sys::signal::SigSet::empty();
    term.add(nix::sys::signal::Signal::SIGTERM);
    let _ = term.thread_block();
    // Started by `check` or `plugins` (not by the supervisor, which sets this itself), in a
    // process group of its own: die with that process.
    if entry != Entry::Run {
        die_with_parent();
    }
    if entry == Entry::Info {
        return match info(path) {
            Ok(i) => {
                println!(
                    "{}\t{}\t{}\t(SDK {})",
                    i.name, i.version, i.description, i.sdk_version
                );
                ExitCode::SUCCESS
            }
            Err(why) => {
                eprintln!("nonstop plugin-host: {why}");
                ExitCode::from(2)
            }
        };
    }
    let loaded = match load(path) {
        Ok(loaded) => loaded,
        Err(why) => {
            eprintln!("nonstop plugin-host: {why}");
            return ExitCode::from(2);
        }
    };
    let mut state = State {
        heartbeat: match entry {
            Entry::Run if std::env::var_os(nonstop_ipc::heartbeat::ENV).is_some() => {
                match nonstop_ipc::Heartbeat::from_env() {
                    Ok(h) => Some(h),
                    Err(e) => {
                        eprintln!("nonstop plugin-host: {e}");
                        None
                    }
                }
            }
            _ => None,
        },
        failure: None,
    };
    let host = Host {
        ctx: (&mut state as *mut State).cast(),
        beat,
        stop_requested,
        log,
        fail,
    };
    // SAFETY: checked by `load`; the arguments and the host live for the call, and the state
    // the host points to is not touched here until it returns.
    #[allow(unsafe_code)]
    let code = unsafe {
        let d = &*loaded.declaration;
        let f = match entry {
            Entry::Validate => d.validate,
            Entry::Run | Entry::Info => d.run,
        };
        f(Str::new(args), &host)
    };
    let _ = std::io::stdout().flush();
    if code == 0 {
        if entry == Entry::Validate {
            println!("ok");
        }
        return ExitCode::SUCCESS;
    }
    let (at, message) = state.failure.unwrap_or_else(|| {
        (
            String::new(),
            format!("failed (status {code}) without a reason"),
        )
    });
    match entry {
        Entry::Validate => println!("error\t{at}\t{message}"),
        _ if at.is_empty() => eprintln!("nonstop plugin-host: {message}"),
        _ => eprintln!("nonstop plugin-host: {at}: {message}"),
    }
    ExitCode::FAILURE
}
