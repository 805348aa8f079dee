//! A template for nonstop plugins: counts the files of a directory and logs what it found.
//! Every argument is optional, so `plugin: /path/to/libtemplate.so` alone runs.
//!
//! ```yaml
//! tasks:
//!   count:
//!     plugin: ./target/release/libtemplate.so
//!     args: { dir: /var/log, greeting: "counting" }
//!     every: 1m
//! ```

use nonstop_core::plugin::{Context, Task};
use serde::Deserialize;

/// The task's `args:`. Unknown fields are errors that name the field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Args {
    /// The directory whose entries are counted.
    dir: String,
    /// Said first.
    greeting: String,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            dir: ".".into(),
            greeting: "hello from the template plugin".into(),
        }
    }
}

struct Template;

impl Task for Template {
    type Args = Args;

    /// Checks without changing anything (`nonstop check` calls it). An error that starts with
    /// the argument's name and a colon points at that argument in the pipeline file.
    fn validate(args: &Args) -> Result<(), String> {
        if args.dir.is_empty() {
            return Err("dir: must not be empty".into());
        }
        Ok(())
    }

    fn run(ctx: &mut Context<'_>, args: Args) -> Result<(), String> {
        ctx.log(&args.greeting);
        let entries = std::fs::read_dir(&args.dir).map_err(|e| format!("{}: {e}", args.dir))?;
        let mut count = 0u64;
        for entry in entries {
            if ctx.stop_requested() {
                ctx.log("asked to stop");
                break;
            }
            entry.map_err(|e| e.to_string())?;
            count += 1;
            ctx.beat();
        }
        ctx.log(&format!("{} has {count} entries", args.dir));
        Ok(())
    }
}

nonstop_core::export_plugin!(
    Template,
    name = "template",
    description = "counts the entries of a directory (a template for plugin authors)"
);
