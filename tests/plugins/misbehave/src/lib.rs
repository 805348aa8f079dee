//! A plugin for the end-to-end tests (`tests/it/plugin.rs`), written as any plugin is, that
//! does on request what a plugin should not: fail, panic, abort, crash, hang; or behaves, and
//! logs, beats and stops when asked.

use nonstop_core::plugin::{Context, Task};
use serde::Deserialize;

/// What to do.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
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
}

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
}

struct Misbehave;

impl Task for Misbehave {
    type Args = Args;

    fn validate(args: &Args) -> Result<(), String> {
        assert!(!args.panic_in_validate, "validate was asked to panic");
        if args.limit > 10 {
            return Err(format!("limit: {} is more than 10", args.limit));
        }
        Ok(())
    }

    fn run(ctx: &mut Context<'_>, args: Args) -> Result<(), String> {
        for i in 0..args.lines {
            ctx.log(&format!("misbehave: line {i}"));
        }
        match args.act {
            Act::Ok => Ok(()),
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
