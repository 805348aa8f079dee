//! `purge`: deletes the files under `dir` whose names match a pattern and that were last
//! modified more than `older_than` ago: the seed's `deletefiles`, made safe.
//!
//! ```yaml
//! tasks:
//!   purge-history:
//!     plugin: purge
//!     args: { dir: /data/surf, match: "*.log.20*,*.xml", older_than: 0.5d }
//!     cron: "0 3 * * *"
//! ```
//!
//! It walks with `openat` relative to directory descriptors opened with `O_NOFOLLOW`: it never
//! follows a symbolic link (to a file or a directory) and never deletes outside `dir`, even
//! when the tree changes while it runs (a directory swapped for a link between two calls is
//! refused by the kernel, not followed; a directory moved out of `dir` keeps its files: each is
//! taken out of its directory, the directory checked to be still in place, and only then
//! deleted: see `src/walk.rs`). Symbolic links, sockets and the like are left alone; only regular
//! files are deleted.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nonstop_core::plugin::{Context, Task};
use nonstop_plugin_files::{check_dir, compile};
use serde::Deserialize;

mod walk;

/// The task's `args`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The directory to purge (relative to the task's `cwd`).
    pub dir: PathBuf,
    /// Name patterns (glob: `*`, `?`, `[...]`), a list or the seed's comma-separated string.
    #[serde(rename = "match")]
    pub patterns: nonstop_core::Patterns,
    /// Only files last modified longer ago than this (`0.02d`, `30m`, `7d`).
    pub older_than: nonstop_core::Duration,
    /// Into subdirectories too. Default true.
    #[serde(default = "yes")]
    pub recursive: bool,
    /// Remove the directories it leaves empty (never `dir` itself). Default false.
    #[serde(default)]
    pub remove_empty_dirs: bool,
    /// Say what would go, delete nothing. Default false.
    #[serde(default)]
    pub dry_run: bool,
}

fn yes() -> bool {
    true
}

/// What a purge did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Files deleted (or, in a dry run, that would be).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Directories removed.
    pub dirs: u64,
    /// Entries looked at.
    pub seen: u64,
}

/// What the walk tells the outside world.
pub trait Report {
    /// One line for the log.
    fn log(&mut self, line: &str);
    /// Progress.
    fn beat(&mut self);
    /// Whether to stop now.
    fn stop_requested(&mut self) -> bool;
    /// `path` was just taken out of its directory, to be deleted once that directory is
    /// found still in place (see `src/walk.rs`): for tests, the instant a directory moved out
    /// must still be caught.
    fn taken(&mut self, _path: &Path) {}
}

/// The most file names logged one by one; the rest are counted.
const NAMED: u64 = 1000;

/// Purges as `args` say.
pub fn purge(args: &Args, report: &mut dyn Report) -> Result<Stats, String> {
    let matchers = compile(&args.patterns.0)?;
    let cutoff = SystemTime::now()
        .checked_sub(args.older_than.0)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let root = open(
        &args.dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open {}: {}", args.dir.display(), e.desc()))?;
    walk::Walk::new(args, matchers, cutoff, report, root)?.run()
}

struct Purge;

impl Task for Purge {
    type Args = Args;

    fn validate(args: &Args) -> Result<(), String> {
        compile(&args.patterns.0)?;
        check_dir(&args.dir)
    }

    fn run(ctx: &mut Context<'_>, args: Args) -> Result<(), String> {
        struct Ctx<'c, 'h>(&'c mut Context<'h>);
        impl Report for Ctx<'_, '_> {
            fn log(&mut self, line: &str) {
                self.0.log(line);
            }
            fn beat(&mut self) {
                self.0.beat();
            }
            fn stop_requested(&mut self) -> bool {
                self.0.stop_requested()
            }
        }
        let stats = purge(&args, &mut Ctx(ctx))?;
        let more = stats.files.saturating_sub(NAMED);
        if more > 0 {
            ctx.log(&format!("purge: and {more} more"));
        }
        ctx.log(&format!(
            "purge: {} {} files ({} bytes), {} directories, of {} entries in {}",
            if args.dry_run {
                "would remove"
            } else {
                "removed"
            },
            stats.files,
            stats.bytes,
            stats.dirs,
            stats.seen,
            args.dir.display()
        ));
        Ok(())
    }
}

nonstop_core::export_plugin!(
    Purge,
    name = "purge",
    description = "delete old files by pattern and age, never outside its directory"
);

#[cfg(test)]
mod tests;
