//! A plugin for the end-to-end tests (`tests/it/plugin.rs`, `tests/it/plugin_host.rs`),
//! written as any plugin is, that does on request what a plugin should not: fail, panic,
//! abort, crash, hang; in `validate` too (start a child that keeps the host's output open,
//! hang, write 200 KiB, refuse at length); or behaves, and logs, beats and stops when asked.

use nonstop_core::plugin::{Context, Task};
use serde::Deserialize;

/// What to do.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Act {
    /// Log `lines` lines and succeed.
    #[default]
    Ok,
    /// Return an error.
    Fail,
    /// Panic.
    Panic,
    /// `abort()`.
    Abort,
    /// Read address 0.
    Segv,
    /// Never return, never beat, ignore stop requests.
    Hang,
    /// Beat every 20 ms until asked to stop, then return.
    Beat,
    /// In `validate`: start `sleep 1000` (which inherits stdout and stderr), append the host's
    /// pid and the child's to `pid_file`, and accept.
    ForkInValidate,
    /// In `validate`: as `fork_in_validate`, then never return.
    HangInValidate,
    /// In `validate`: write 200 KiB to stdout and 200 KiB to stderr, and accept.
    FloodInValidate,
    /// In `validate`: refuse, pointing at `lines`, with a reason of 200 KiB
    /// (`lines: refused at length xxx...`).
    LongRefusal,
}

/// What `flood_in_validate` and `long_refusal` write.
const FLOOD: usize = 200 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    #[serde(default)]
    act: Act,
    #[serde(default)]
    lines: u32,
    #[serde(default)]
    limit: u32,
    #[serde(default)]
    panic_in_validate: bool,
    #[serde(default)]
    pid_file: Option<String>,
}

/// Starts `sleep 1000`, which inherits the host's stdout and stderr, and appends a line
/// `HOST_PID CHILD_PID` to `pid_file` (`run` validates too: its line comes after the check's).
fn fork_sleeper(pid_file: Option<&str>) -> Result<(), String> {
    let child = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .map_err(|e| format!("cannot start sleep: {e}"))?;
    if let Some(file) = pid_file {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(file)
            .and_then(|mut f| writeln!(f, "{} {}", std::process::id(), child.id()))
            .map_err(|e| format!("cannot write {file}: {e}"))?;
    }
    Ok(())
}

struct Misbehave;

impl Task for Misbehave {
    type Args = Args;

    fn validate(args: &Args) -> Result<(), String> {
        assert!(!args.panic_in_validate, "validate was asked to panic");
        if args.limit > 10 {
            return Err(format!("limit: {} is more than 10", args.limit));
        }
        match args.act {
            Act::ForkInValidate => fork_sleeper(args.pid_file.as_deref()),
            Act::HangInValidate => {
                fork_sleeper(args.pid_file.as_deref())?;
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
            Act::FloodInValidate => {
                use std::io::Write;
                let line = format!("{}\n", "z".repeat(1023));
                for _ in 0..FLOOD / 1024 {
                    std::io::stdout()
                        .write_all(line.as_bytes())
                        .map_err(|e| e.to_string())?;
                    std::io::stderr()
                        .write_all(line.as_bytes())
                        .map_err(|e| e.to_string())?;
                }
                std::io::stdout().flush().map_err(|e| e.to_string())?;
                Ok(())
            }
            Act::LongRefusal => Err(format!("lines: refused at length {}", "x".repeat(FLOOD))),
            _ => Ok(()),
        }
    }

    fn run(ctx: &mut Context<'_>, args: Args) -> Result<(), String> {
        for i in 0..args.lines {
            ctx.log(&format!("misbehave: line {i}"));
        }
        match args.act {
            Act::Ok
            | Act::ForkInValidate
            | Act::HangInValidate
            | Act::FloodInValidate
            | Act::LongRefusal => Ok(()),
            Act::Fail => Err("asked to fail".into()),
            Act::Panic => panic!("asked to panic"),
            Act::Abort => std::process::abort(),
            Act::Segv => {
                // SAFETY: none: this reads address 0 on purpose, to show that a plugin that
                // crashes takes down its task host only.
                #[allow(unsafe_code)]
                let _ = unsafe { std::ptr::null::<u8>().read_volatile() };
                Ok(())
            }
            Act::Hang => loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            },
            Act::Beat => {
                ctx.log("misbehave: beating");
                while !ctx.stop_requested() {
                    ctx.beat();
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                ctx.log("misbehave: asked to stop; stopping");
                Ok(())
            }
        }
    }
}

nonstop_core::export_plugin!(
    Misbehave,
    name = "misbehave",
    description = "does on request what a plugin should not"
);
