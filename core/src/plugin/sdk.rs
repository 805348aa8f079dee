//! The plugin side of the boundary, written once: what [`export_plugin!`](crate::export_plugin)
//! calls. Deserializes the arguments, calls the task, catches panics, and reports failures
//! through the host.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::Task;
use super::abi::{Host, Str};

/// This SDK's version, recorded in every plugin's declaration.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a running plugin task may ask of the runner.
#[derive(Debug)]
pub struct Context<'h> {
    host: &'h Host,
}

impl Context<'_> {
    /// One heartbeat (the task's `heartbeat:`; nothing if it has none). Beat from the work
    /// loop: a task that stops beating is stopped as hung.
    pub fn beat(&self) {
        (self.host.beat)(self.host.ctx);
    }

    /// Whether the task was asked to stop (the runner shuts down, or the run's `timeout`
    /// passed): finish what is safe to finish, and return.
    pub fn stop_requested(&self) -> bool {
        (self.host.stop_requested)(self.host.ctx)
    }

    /// One line for the task's log.
    pub fn log(&self, line: &str) {
        (self.host.log)(self.host.ctx, Str::new(line));
    }
}

fn fail(host: &Host, path: &str, message: &str) -> i32 {
    (host.fail)(host.ctx, Str::new(path), Str::new(message));
    1
}

/// `args` deserialized, or the failure reported (with the argument's path).
fn args<T: Task>(host: &Host, args: Str) -> Result<T::Args, i32> {
    // SAFETY: the host's contract: `args` is valid for this call.
    #[allow(unsafe_code)]
    let text = unsafe { args.to_str() };
    let text = if text.trim().is_empty() { "{}" } else { &*text };
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, T::Args>(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        fail(host, &path, &without_position(&e.into_inner().to_string()))
    })
}

/// serde_json's messages end with " at line 1 column 37": a position in JSON text the user
/// never wrote (the runner points into the YAML file instead).
fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// `path: message` into its two parts, when `message` starts with what looks like an
/// argument's path (`older_than`, `match[2]`, `a.b`).
fn split_path(message: &str) -> (&str, &str) {
    if let Some((path, rest)) = message.split_once(": ")
        && !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.[]-".contains(c))
    {
        return (path, rest);
    }
    ("", message)
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

/// The `validate` entry point of plugin `T`.
///
/// # Safety
/// `host` points to a valid [`Host`] and `args` to valid text, for this call.
#[allow(unsafe_code)]
pub unsafe fn validate<T: Task>(args_text: Str, host: *const Host) -> i32 {
    // SAFETY: the caller's contract.
    let host = unsafe { &*host };
    let result = catch_unwind(AssertUnwindSafe(|| {
        let args = match args::<T>(host, args_text) {
            Ok(args) => args,
            Err(code) => return code,
        };
        match T::validate(&args) {
            Ok(()) => 0,
            Err(message) => {
                let (path, message) = split_path(&message);
                fail(host, path, message)
            }
        }
    }));
    result.unwrap_or_else(|panic| {
        fail(
            host,
            "",
            &format!(
                "the plugin panicked in validate: {}",
                panic_message(&*panic)
            ),
        )
    })
}

/// The `run` entry point of plugin `T`.
///
/// # Safety
/// As [`validate`].
#[allow(unsafe_code)]
pub unsafe fn run<T: Task>(args_text: Str, host: *const Host) -> i32 {
    // SAFETY: the caller's contract.
    let host = unsafe { &*host };
    let result = catch_unwind(AssertUnwindSafe(|| {
        let args = match args::<T>(host, args_text) {
            Ok(args) => args,
            Err(code) => return code,
        };
        if let Err(message) = T::validate(&args) {
            let (path, message) = split_path(&message);
            return fail(host, path, message);
        }
        let mut ctx = Context { host };
        match T::run(&mut ctx, args) {
            Ok(()) => 0,
            Err(message) => fail(host, "", &message),
        }
    }));
    result.unwrap_or_else(|panic| {
        fail(
            host,
            "",
            &format!("the plugin panicked: {}", panic_message(&*panic)),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::ffi::c_void;

    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Args {
        #[serde(default)]
        times: u32,
        #[serde(default)]
        panic: bool,
    }

    struct Demo;

    impl Task for Demo {
        type Args = Args;
        fn validate(args: &Args) -> Result<(), String> {
            if args.times > 10 {
                return Err(format!("times: {} is more than 10", args.times));
            }
            Ok(())
        }
        fn run(ctx: &mut Context<'_>, args: Args) -> Result<(), String> {
            assert!(!args.panic, "asked to panic");
            for i in 0..args.times {
                ctx.log(&format!("line {i}"));
                ctx.beat();
            }
            Err("done, badly".into())
        }
    }

    #[derive(Default)]
    struct Seen {
        beats: u32,
        lines: Vec<String>,
        failure: Option<(String, String)>,
    }

    fn with_host<R>(f: impl FnOnce(&Host) -> R) -> (R, Seen) {
        extern "C" fn beat(ctx: *mut c_void) {
            // SAFETY: `ctx` is the `RefCell<Seen>` below, alive for the call.
            #[allow(unsafe_code)]
            let seen = unsafe { &*(ctx as *const RefCell<Seen>) };
            seen.borrow_mut().beats += 1;
        }
        extern "C" fn stop_requested(_: *mut c_void) -> bool {
            false
        }
        extern "C" fn log(ctx: *mut c_void, line: Str) {
            // SAFETY: as above; `line` is valid for the call.
            #[allow(unsafe_code)]
            let (seen, line) = unsafe { (&*(ctx as *const RefCell<Seen>), line.to_str()) };
            seen.borrow_mut().lines.push(line.into_owned());
        }
        extern "C" fn fail(ctx: *mut c_void, path: Str, message: Str) {
            // SAFETY: as above.
            #[allow(unsafe_code)]
            let (seen, path, message) = unsafe {
                (
                    &*(ctx as *const RefCell<Seen>),
                    path.to_str(),
                    message.to_str(),
                )
            };
            seen.borrow_mut().failure = Some((path.into_owned(), message.into_owned()));
        }
        let seen = RefCell::new(Seen::default());
        let host = Host {
            ctx: &seen as *const RefCell<Seen> as *mut c_void,
            beat,
            stop_requested,
            log,
            fail,
        };
        let r = f(&host);
        (r, seen.into_inner())
    }

    #[allow(unsafe_code)]
    fn call(entry: unsafe fn(Str, *const Host) -> i32, json: &str) -> (i32, Seen) {
        // SAFETY: the host and the text live for the call.
        with_host(|host| unsafe { entry(Str::new(json), host) })
    }

    #[test]
    fn arguments_are_checked_with_the_path_of_the_one_at_fault() {
        let (code, seen) = call(validate::<Demo>, r#"{"times": 3}"#);
        assert_eq!((code, seen.failure), (0, None));
        let (code, seen) = call(validate::<Demo>, "");
        assert_eq!(code, 0, "no args: the defaults");
        let (code, seen2) = call(validate::<Demo>, r#"{"times": 11}"#);
        assert_eq!(code, 1);
        assert_eq!(
            seen2.failure,
            Some(("times".into(), "11 is more than 10".into()))
        );
        let (_, seen3) = call(validate::<Demo>, r#"{"times": "x"}"#);
        let (path, message) = seen3.failure.unwrap();
        assert_eq!(path, "times");
        assert!(
            message.starts_with("invalid type: string \"x\""),
            "{message}"
        );
        assert!(!message.contains("line 1"), "{message}");
        let (_, seen4) = call(validate::<Demo>, r#"{"tmies": 1}"#);
        let (path, message) = seen4.failure.unwrap();
        assert_eq!(path, "tmies");
        assert!(message.starts_with("unknown field `tmies`"), "{message}");
        drop(seen);
    }

    #[test]
    fn run_logs_beats_and_turns_errors_and_panics_into_failures() {
        let (code, seen) = call(run::<Demo>, r#"{"times": 2}"#);
        assert_eq!(code, 1);
        assert_eq!(seen.beats, 2);
        assert_eq!(seen.lines, ["line 0", "line 1"]);
        assert_eq!(seen.failure, Some((String::new(), "done, badly".into())));
        let (code, seen) = call(run::<Demo>, r#"{"panic": true}"#);
        assert_eq!(code, 1);
        assert_eq!(
            seen.failure,
            Some((String::new(), "the plugin panicked: asked to panic".into()))
        );
    }
}
