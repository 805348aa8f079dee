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
//! It walks with `openat`/`unlinkat` relative to directory descriptors opened with
//! `O_NOFOLLOW`: it never follows a symbolic link (to a file or a directory) and never deletes
//! outside `dir`, even when the tree changes while it runs (a directory swapped for a link
//! between two calls is refused by the kernel, not followed). Symbolic links, sockets and the
//! like are left alone; only regular files are deleted.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat};
use nix::unistd::UnlinkatFlags;
use nonstop_core::plugin::{Context, Task};
use nonstop_plugin_files::{check_dir, compile, names};
use serde::Deserialize;

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
    let mut walk = Walk {
        args,
        matchers,
        cutoff,
        stats: Stats::default(),
        report,
    };
    walk.dir(&root, &args.dir)?;
    Ok(walk.stats)
}

struct Walk<'a> {
    args: &'a Args,
    matchers: Vec<glob::Pattern>,
    cutoff: SystemTime,
    stats: Stats,
    report: &'a mut dyn Report,
}

impl Walk<'_> {
    /// Purges the directory open at `dir` (shown as `shown`).
    fn dir(&mut self, dir: &OwnedFd, shown: &Path) -> Result<(), String> {
        for (name, hint) in
            names(dir).map_err(|e| format!("cannot list {}: {}", shown.display(), e.desc()))?
        {
            if self.report.stop_requested() {
                return Ok(());
            }
            self.stats.seen += 1;
            if self.stats.seen.is_multiple_of(1000) {
                self.report.beat();
            }
            // What the directory entry already says spares a stat (as find does).
            let name_matches = || {
                let n = String::from_utf8_lossy(name.as_bytes());
                self.matchers.iter().any(|m| m.matches(&n))
            };
            match hint {
                Some(nix::dir::Type::File) if !name_matches() => continue,
                Some(nix::dir::Type::Directory) if !self.args.recursive => continue,
                Some(nix::dir::Type::File | nix::dir::Type::Directory) | None => {}
                Some(_) => continue,
            }
            let st = match fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Gone meanwhile: nothing to do.
                Err(Errno::ENOENT) => continue,
                Err(e) => {
                    self.report.log(&format!(
                        "purge: cannot look at {}: {}",
                        shown.join(&name).display(),
                        e.desc()
                    ));
                    continue;
                }
            };
            let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            if kind == SFlag::S_IFDIR && self.args.recursive {
                self.subdir(dir, &name, shown)?;
            } else if kind == SFlag::S_IFREG && self.wanted(&name, &st) {
                self.file(dir, &name, &st, shown);
            }
        }
        Ok(())
    }

    fn subdir(&mut self, dir: &OwnedFd, name: &OsStr, shown: &Path) -> Result<(), String> {
        // O_NOFOLLOW: a directory swapped for a symbolic link since fstatat is refused (ELOOP
        // or ENOTDIR), never followed.
        let child = match openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(child) => child,
            Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => return Ok(()),
            Err(e) => {
                self.report.log(&format!(
                    "purge: cannot open {}: {}",
                    shown.join(name).display(),
                    e.desc()
                ));
                return Ok(());
            }
        };
        self.dir(&child, &shown.join(name))?;
        drop(child);
        if self.args.remove_empty_dirs && !self.args.dry_run {
            match nix::unistd::unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
                Ok(()) => {
                    self.stats.dirs += 1;
                    self.report.log(&format!(
                        "purge: removed the empty directory {}",
                        shown.join(name).display()
                    ));
                }
                Err(Errno::ENOTEMPTY | Errno::EEXIST | Errno::ENOENT) => {}
                Err(e) => self.report.log(&format!(
                    "purge: cannot remove {}: {}",
                    shown.join(name).display(),
                    e.desc()
                )),
            }
        }
        Ok(())
    }

    fn wanted(&self, name: &OsStr, st: &FileStat) -> bool {
        let modified = SystemTime::UNIX_EPOCH
            + Duration::new(
                st.st_mtime.max(0) as u64,
                st.st_mtime_nsec.clamp(0, 999_999_999) as u32,
            );
        let name = String::from_utf8_lossy(name.as_bytes());
        modified < self.cutoff && self.matchers.iter().any(|m| m.matches(&name))
    }

    fn file(&mut self, dir: &OwnedFd, name: &OsStr, st: &FileStat, shown: &Path) {
        let path = shown.join(name);
        if !self.args.dry_run
            && let Err(e) = nix::unistd::unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)
        {
            if e != Errno::ENOENT {
                self.report.log(&format!(
                    "purge: cannot remove {}: {}",
                    path.display(),
                    e.desc()
                ));
            }
            return;
        }
        self.stats.files += 1;
        self.stats.bytes += st.st_size.max(0) as u64;
        if self.stats.files <= NAMED {
            let verb = if self.args.dry_run {
                "would remove"
            } else {
                "removed"
            };
            self.report
                .log(&format!("purge: {verb} {}", path.display()));
        }
    }
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
