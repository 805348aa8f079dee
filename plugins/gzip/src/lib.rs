//! `gzip`: compresses the files under `dir` whose names match and that were last modified more
//! than `older_than` ago, each into `NAME.gz` beside it: the seed's `gzipfiles`, made safe.
//!
//! ```yaml
//! tasks:
//!   compress:
//!     plugin: gzip
//!     args: { dir: /log/idc, match: "*.log.20*", older_than: 0.02d }
//!     every: 5m
//! ```
//!
//! **At every instant there is either the original or a complete `.gz`**: a file is
//! compressed into a temporary file in the same directory (`.NAME.gz.nonstop-partial`), which
//! is given the original's mode and times and fsynced, renamed to `NAME.gz`, and the directory
//! fsynced; only then is the original removed. A run killed at any point leaves the original
//! (and perhaps a partial temporary, which the next run removes), or the original and a
//! complete `NAME.gz` (the next run finds that `NAME.gz` holds exactly the original, and
//! removes the original), or the complete `NAME.gz` alone. It never follows a symbolic link
//! (`openat` under `O_NOFOLLOW` descriptors, as `purge`), skips `.gz` files and anything that is
//! not a regular file, and compresses `jobs` files at a time.
//!
//! **Nothing is ever replaced or removed that it did not read** (`place.rs`): when `NAME.gz`
//! exists already (log rotation made a new `app.log.1` after the last one was compressed), the
//! new one is `NAME.STAMP.gz` (the original's modification time), and the rename refuses to
//! replace anything, in the kernel. A file that changed while it was compressed is left for a
//! later run, and the original is removed only if its name still holds the same file, unchanged
//! (device, inode, size and modification time), not one renamed onto it meanwhile.

mod place;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, futimens};
use nix::sys::time::TimeSpec;
use nix::unistd::UnlinkatFlags;
use nonstop_core::plugin::{Context, Task};
use nonstop_plugin_files::{check_dir, compile, names};
use place::{Identity, Removal, gz_names, place, remove_if_same, rename_new};
use serde::Deserialize;

/// The suffix of a temporary file (after `.NAME.gz`).
const PARTIAL: &str = ".nonstop-partial";

/// The task's `args`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// The directory (relative to the task's `cwd`).
    pub dir: PathBuf,
    /// Name patterns, a list or the seed's comma-separated string.
    #[serde(rename = "match")]
    pub patterns: nonstop_core::Patterns,
    /// Only files last modified longer ago than this (`0.02d`). Default 0: any.
    #[serde(default)]
    pub older_than: nonstop_core::Duration,
    /// Into subdirectories too. Default true.
    #[serde(default = "yes")]
    pub recursive: bool,
    /// Compression level, 1 (fast) to 9 (small). Default 6, as gzip's.
    #[serde(default = "six")]
    pub level: u32,
    /// Files compressed at once. Default: the CPUs this task may use.
    #[serde(default)]
    pub jobs: Option<usize>,
    /// Pack the matched files into this one archive in `dir` (`NAME.tar.gz`; `{time}` in the
    /// name becomes the UTC time of the run, `20261202T103000Z`) instead of a `.gz` each.
    #[serde(default)]
    pub archive: Option<String>,
}

fn yes() -> bool {
    true
}

fn six() -> u32 {
    6
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Files compressed.
    pub files: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// The bytes of their `.gz`.
    pub bytes_out: u64,
    /// Temporary files of an interrupted run removed.
    pub leftovers: u64,
}

/// One file to compress: its directory and name.
struct Job {
    dir: Arc<OwnedFd>,
    name: OsString,
    shown: PathBuf,
}

fn check(args: &Args) -> Result<Vec<glob::Pattern>, String> {
    if let Some(name) = &args.archive
        && (name.is_empty()
            || name.contains('/')
            || name.starts_with('.')
            || !name.ends_with(".tar.gz"))
    {
        return Err(format!(
            "archive: {name:?} is not a file name ending in .tar.gz (it is made in `dir`)"
        ));
    }
    if !(1..=9).contains(&args.level) {
        return Err(format!("level: {} is not 1 to 9", args.level));
    }
    if args.jobs == Some(0) {
        return Err("jobs: must be at least 1".into());
    }
    let matchers = compile(&args.patterns.0)?;
    check_dir(&args.dir)?;
    Ok(matchers)
}

/// Compresses as `args` say; `log` gets a line per file and error, `stop` says when to stop
/// (the files being compressed are finished, no new one is begun).
pub fn gzip(
    args: &Args,
    log: &mut dyn FnMut(&str),
    stop: &mut dyn FnMut() -> bool,
) -> Result<Stats, String> {
    let matchers = check(args)?;
    let cutoff = SystemTime::now()
        .checked_sub(args.older_than.0)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let root = Arc::new(
        open(
            &args.dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("cannot open {}: {}", args.dir.display(), e.desc()))?,
    );
    let mut stats = Stats::default();
    let mut jobs = Vec::new();
    collect(
        root.clone(),
        &args.dir,
        args.recursive,
        &matchers,
        cutoff,
        &mut jobs,
        &mut stats,
        log,
    );
    if let Some(name) = &args.archive {
        return archive(&root, &args.dir, name, args.level, &jobs, stats, log);
    }
    let workers = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, jobs.len().max(1));
    let next = AtomicUsize::new(0);
    let stopping = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, Result<Done, String>)>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (jobs, next, stopping) = (&jobs, &next, &stopping);
            scope.spawn(move || {
                loop {
                    if stopping.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else {
                        return;
                    };
                    if tx.send((i, compress(job, args.level))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok((i, Ok(done))) => {
                    stats.files += 1;
                    stats.bytes_in += done.bytes_in;
                    stats.bytes_out += done.bytes_out;
                    log(&done.line(&jobs[i]));
                }
                Ok((i, Err(why))) => log(&format!("gzip: {}: {why}", jobs[i].shown.display())),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if stop() {
                stopping.store(true, Ordering::Relaxed);
            }
        }
    });
    Ok(stats)
}

/// Archive mode: every job into one `name` in the directory open at `root`, under the same
/// rule as a file: a temporary, fsynced, renamed, the directory fsynced, then the originals
/// removed, each only if its name still holds the file that was archived, unchanged. An archive
/// of that name that exists already is never replaced (the rename itself refuses to).
fn archive(
    root: &OwnedFd,
    dir: &Path,
    name: &str,
    level: u32,
    jobs: &[Job],
    mut stats: Stats,
    log: &mut dyn FnMut(&str),
) -> Result<Stats, String> {
    if jobs.is_empty() {
        log("gzip: nothing to archive");
        return Ok(stats);
    }
    let name = name.replace("{time}", &utc_stamp(SystemTime::now()));
    let exists = || {
        format!(
            "archive: {} exists already; it is never replaced (put {{time}} in the name)",
            dir.join(&name).display()
        )
    };
    if fstatat(root, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW).is_ok() {
        return Err(exists());
    }
    let tmp_name = format!(".{name}{PARTIAL}");
    let tmp = openat(
        root,
        tmp_name.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| format!("cannot create {tmp_name}: {}", e.desc()))?;
    // For each job, the file archived (to remove once the archive is in place), or why not.
    let mut archived: Vec<Result<Identity, String>> = Vec::with_capacity(jobs.len());
    let written = (|| -> Result<u64, String> {
        let gz = flate2::write::GzEncoder::new(
            std::io::BufWriter::with_capacity(1 << 18, File::from(tmp)),
            flate2::Compression::new(level),
        );
        let mut tar = tar::Builder::new(gz);
        tar.follow_symlinks(false);
        for job in jobs {
            let entry = append(&mut tar, job, dir)?;
            if let Ok(read) = &entry {
                stats.bytes_in += read.size().max(0) as u64;
            }
            archived.push(entry);
        }
        let gz = tar.into_inner().map_err(|e| format!("cannot write: {e}"))?;
        let out = gz.finish().map_err(|e| format!("cannot write: {e}"))?;
        let out = out
            .into_inner()
            .map_err(|e| format!("cannot write: {}", e.error()))?;
        out.sync_all().map_err(|e| format!("cannot fsync: {e}"))?;
        Ok(out.metadata().map(|m| m.len()).unwrap_or(0))
    })();
    let placed =
        written.and_then(
            |bytes_out| match rename_new(root, tmp_name.as_ref(), name.as_ref()) {
                Ok(()) => Ok(bytes_out),
                Err(Errno::EEXIST) => Err(exists()),
                Err(e) => Err(format!("cannot rename to {name}: {}", e.desc())),
            },
        );
    let bytes_out = match placed {
        Ok(n) => n,
        Err(why) => {
            let _ = nix::unistd::unlinkat(root, tmp_name.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(why);
        }
    };
    nix::unistd::fsync(root.as_fd())
        .map_err(|e| format!("cannot fsync the directory: {}", e.desc()))?;
    for (job, entry) in jobs.iter().zip(&archived) {
        let why = match entry {
            Ok(read) => match remove_if_same(&job.dir, job.name.as_os_str(), read) {
                Removal::Removed | Removal::Gone => continue,
                Removal::Left(why) => format!("archived, but the original is left: {why}"),
            },
            Err(why) => why.clone(),
        };
        log(&format!("gzip: {}: {why}", job.shown.display()));
    }
    stats.files = archived.iter().filter(|a| a.is_ok()).count() as u64;
    stats.bytes_out = bytes_out;
    log(&format!(
        "gzip: archived {} files into {}",
        stats.files,
        dir.join(&name).display()
    ));
    Ok(stats)
}

/// Appends `job` to `tar` (its path relative to `dir`): `Ok(Ok(what was read))`, or
/// `Ok(Err(why))` for a file left out or archived but not to be removed (gone since it was
/// listed; changed while it was read, so the archive's copy may not be all of it); `Err` when
/// the archive cannot be written. Exactly the size the header says is written, whatever the
/// file does meanwhile.
fn append(
    tar: &mut tar::Builder<impl std::io::Write>,
    job: &Job,
    dir: &Path,
) -> Result<Result<Identity, String>, String> {
    let source = match openat(
        &*job.dir,
        job.name.as_os_str(),
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => File::from(fd),
        Err(Errno::ENOENT) => return Ok(Err("gone before it was archived".into())),
        Err(e) => {
            return Err(format!(
                "{}: cannot open: {}",
                job.shown.display(),
                e.desc()
            ));
        }
    };
    let meta = source
        .metadata()
        .map_err(|e| format!("{}: cannot stat: {e}", job.shown.display()))?;
    if !meta.is_file() {
        return Ok(Err("no longer a regular file: left alone".into()));
    }
    let read = Identity::of_metadata(&meta);
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
    let size = meta.len();
    let data = (&source).take(size).chain(std::io::repeat(0)).take(size);
    let inside = job.shown.strip_prefix(dir).unwrap_or(&job.shown);
    tar.append_data(&mut header, inside, data)
        .map_err(|e| format!("{}: cannot archive: {e}", job.shown.display()))?;
    let now = source
        .metadata()
        .map_err(|e| format!("{}: cannot stat: {e}", job.shown.display()))?;
    if Identity::of_metadata(&now) != read {
        return Ok(Err(
            "archived, but it changed while it was read (is it still written to?): the \
             original is left"
                .into(),
        ));
    }
    Ok(Ok(read))
}

/// `20261202T103000Z`: `t` in UTC.
fn utc_stamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Lists the files to compress in the directory open at `dir`, and removes the temporaries an
/// interrupted run left.
#[allow(clippy::too_many_arguments)]
fn collect(
    dir: Arc<OwnedFd>,
    shown: &Path,
    recursive: bool,
    matchers: &[glob::Pattern],
    cutoff: SystemTime,
    jobs: &mut Vec<Job>,
    stats: &mut Stats,
    log: &mut dyn FnMut(&str),
) {
    let names = match names(&dir) {
        Ok(names) => names,
        Err(e) => {
            log(&format!(
                "gzip: cannot list {}: {}",
                shown.display(),
                e.desc()
            ));
            return;
        }
    };
    for (name, hint) in names {
        let bytes = name.as_bytes();
        if bytes.starts_with(b".") && bytes.ends_with(PARTIAL.as_bytes()) {
            if nix::unistd::unlinkat(&*dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir).is_ok() {
                stats.leftovers += 1;
                log(&format!(
                    "gzip: removed {}, left by an interrupted run",
                    shown.join(&name).display()
                ));
            }
            continue;
        }
        // What the directory entry already says spares a stat.
        match hint {
            Some(nix::dir::Type::File)
                if bytes.ends_with(b".gz")
                    || !matchers
                        .iter()
                        .any(|m| m.matches(&String::from_utf8_lossy(bytes))) =>
            {
                continue;
            }
            Some(nix::dir::Type::Directory) if !recursive => continue,
            Some(nix::dir::Type::File | nix::dir::Type::Directory) | None => {}
            Some(_) => continue,
        }
        let Ok(st) = fstatat(&*dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFDIR && recursive {
            if let Ok(child) = openat(
                &*dir,
                name.as_os_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                collect(
                    Arc::new(child),
                    &shown.join(&name),
                    recursive,
                    matchers,
                    cutoff,
                    jobs,
                    stats,
                    log,
                );
            }
        } else if kind == SFlag::S_IFREG
            && !bytes.ends_with(b".gz")
            && wanted(&name, &st, matchers, cutoff)
        {
            jobs.push(Job {
                dir: dir.clone(),
                shown: shown.join(&name),
                name,
            });
        }
    }
}

fn wanted(name: &OsStr, st: &FileStat, matchers: &[glob::Pattern], cutoff: SystemTime) -> bool {
    let modified = SystemTime::UNIX_EPOCH
        + Duration::new(
            st.st_mtime.max(0) as u64,
            st.st_mtime_nsec.clamp(0, 999_999_999) as u32,
        );
    let name = String::from_utf8_lossy(name.as_bytes());
    modified < cutoff && matchers.iter().any(|m| m.matches(&name))
}

/// What became of one file.
#[derive(Debug)]
struct Done {
    bytes_in: u64,
    bytes_out: u64,
    /// The name its `.gz` took.
    into: OsString,
    /// `NAME.gz` held it already (a run was killed before it removed the original): not
    /// compressed again.
    found: bool,
    /// What became of the original.
    removal: Removal,
}

impl Done {
    /// The log line of `job`.
    fn line(&self, job: &Job) -> String {
        let mut gz = job.name.clone();
        gz.push(".gz");
        let mut line = if self.found {
            format!(
                "gzip: {}: {} holds it already (a run was stopped before removing it)",
                job.shown.display(),
                self.into.to_string_lossy()
            )
        } else {
            format!(
                "gzip: {} ({} -> {} bytes)",
                job.shown.display(),
                self.bytes_in,
                self.bytes_out
            )
        };
        if !self.found && self.into != gz {
            line += &format!(
                " into {}: {} exists",
                self.into.to_string_lossy(),
                gz.to_string_lossy()
            );
        }
        if let Removal::Left(why) = &self.removal {
            line += &format!("; the original is left: {why}");
        }
        line
    }
}

/// Compresses one file under the atomic rule, into the first free name of [`gz_names`].
fn compress(job: &Job, level: u32) -> Result<Done, String> {
    let dir = &*job.dir;
    let name = job.name.as_os_str();
    // O_NONBLOCK: a FIFO put in the file's place cannot block the open (it is refused below).
    let source = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open: {}", e.desc()))?;
    let st = fstat(&source).map_err(|e| format!("cannot stat: {}", e.desc()))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err("no longer a regular file: left alone".into());
    }
    let read = Identity::of(&st);
    let mut source = File::from(source);
    let stamp = utc_stamp(SystemTime::UNIX_EPOCH + Duration::from_secs(st.st_mtime.max(0) as u64));
    if let Some((into, bytes_out)) = compressed_already(dir, name, &stamp, &mut source, &st)? {
        return Ok(Done {
            bytes_in: st.st_size.max(0) as u64,
            bytes_out,
            into,
            found: true,
            removal: remove_if_same(dir, name, &read),
        });
    }
    let mut gz_name = job.name.clone();
    gz_name.push(".gz");
    let mut tmp_name = OsString::from(".");
    tmp_name.push(&gz_name);
    tmp_name.push(PARTIAL);
    let tmp = openat(
        dir,
        tmp_name.as_os_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| format!("cannot create {}: {}", tmp_name.to_string_lossy(), e.desc()))?;
    let result = (|| -> Result<(u64, u64), String> {
        let mut encoder = flate2::write::GzEncoder::new(
            std::io::BufWriter::with_capacity(1 << 18, File::from(tmp)),
            flate2::Compression::new(level),
        );
        let bytes_in = std::io::copy(
            &mut BufReader::with_capacity(1 << 16, &source),
            &mut encoder,
        )
        .map_err(|e| format!("cannot compress: {e}"))?;
        let out = encoder.finish().map_err(|e| format!("cannot write: {e}"))?;
        let out = out
            .into_inner()
            .map_err(|e| format!("cannot write: {}", e.error()))?;
        // The original's mode and times, then complete on disk before it takes a name.
        fchmod(&out, Mode::from_bits_truncate(st.st_mode & 0o7777))
            .map_err(|e| format!("cannot set the mode: {}", e.desc()))?;
        futimens(
            &out,
            &TimeSpec::new(st.st_atime, st.st_atime_nsec),
            &TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
        )
        .map_err(|e| format!("cannot set the times: {}", e.desc()))?;
        out.sync_all().map_err(|e| format!("cannot fsync: {e}"))?;
        // Grown (or rewritten) while it was read: what was read is not all of it. Left whole
        // for a later run, when it is no longer written to.
        let now = fstat(&source).map_err(|e| format!("cannot stat: {}", e.desc()))?;
        if Identity::of(&now) != read {
            return Err(
                "it changed while it was compressed (is it still written to?): left for a \
                 later run"
                    .into(),
            );
        }
        let bytes_out = out.metadata().map(|m| m.len()).unwrap_or(0);
        Ok((bytes_in, bytes_out))
    })();
    let placed = result
        .and_then(|sizes| place(dir, &tmp_name, gz_names(name, &stamp)).map(|into| (sizes, into)));
    let ((bytes_in, bytes_out), into) = match placed {
        Ok(placed) => placed,
        Err(why) => {
            let _ = nix::unistd::unlinkat(dir, tmp_name.as_os_str(), UnlinkatFlags::NoRemoveDir);
            return Err(why);
        }
    };
    // The rename on disk before the original goes.
    nix::unistd::fsync(dir.as_fd()).map_err(|e| {
        format!(
            "compressed into {}, but cannot fsync the directory (the original is left): {}",
            into.to_string_lossy(),
            e.desc()
        )
    })?;
    Ok(Done {
        bytes_in,
        bytes_out,
        into,
        found: false,
        removal: remove_if_same(dir, name, &read),
    })
}

/// The `.gz` of `name` (of the names [`gz_names`] gives) that holds exactly the bytes of
/// `source` already, and its size: a run was killed after it put the `.gz` in place and before
/// it removed the original, which must not become a second copy. Only a regular file with the
/// original's modification time (this plugin gives its `.gz` the original's) is decompressed
/// and compared. Leaves `source` at its start.
fn compressed_already(
    dir: &OwnedFd,
    name: &OsStr,
    stamp: &str,
    source: &mut File,
    st: &FileStat,
) -> Result<Option<(OsString, u64)>, String> {
    for gz in gz_names(name, stamp) {
        let Ok(fd) = openat(
            dir,
            gz.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) else {
            // The names are taken in order: none after the first free one.
            return Ok(None);
        };
        let Ok(g) = fstat(&fd) else {
            continue;
        };
        if SFlag::from_bits_truncate(g.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG
            || (g.st_mtime, g.st_mtime_nsec) != (st.st_mtime, st.st_mtime_nsec)
        {
            continue;
        }
        let same = same_bytes(
            flate2::read::MultiGzDecoder::new(BufReader::new(File::from(fd))),
            &*source,
        );
        source
            .rewind()
            .map_err(|e| format!("cannot read it again: {e}"))?;
        if same {
            return Ok(Some((gz, g.st_size.max(0) as u64)));
        }
    }
    Ok(None)
}

/// Whether `a` and `b` read the same bytes to their ends (a read error: no).
fn same_bytes(a: impl Read, b: impl Read) -> bool {
    let mut a = BufReader::with_capacity(1 << 16, a);
    let mut b = BufReader::with_capacity(1 << 16, b);
    loop {
        let (Ok(x), Ok(y)) = (a.fill_buf(), b.fill_buf()) else {
            return false;
        };
        if x.is_empty() || y.is_empty() {
            return x.is_empty() && y.is_empty();
        }
        let n = x.len().min(y.len());
        if x[..n] != y[..n] {
            return false;
        }
        a.consume(n);
        b.consume(n);
    }
}

struct Gzip;

impl Task for Gzip {
    type Args = Args;

    fn validate(args: &Args) -> Result<(), String> {
        check(args).map(drop)
    }

    fn run(ctx: &mut Context<'_>, args: Args) -> Result<(), String> {
        let started = Instant::now();
        let ctx = std::cell::RefCell::new(ctx);
        let stats = gzip(
            &args,
            &mut |line| {
                let c = ctx.borrow_mut();
                c.log(line);
                c.beat();
            },
            &mut || ctx.borrow_mut().stop_requested(),
        )?;
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        let ratio = if stats.bytes_in > 0 {
            stats.bytes_out as f64 / stats.bytes_in as f64
        } else {
            0.0
        };
        ctx.borrow_mut().log(&format!(
            "gzip: {} files, {} bytes in, {} out (ratio {:.3}), {:.1} MB/s",
            stats.files,
            stats.bytes_in,
            stats.bytes_out,
            ratio,
            stats.bytes_in as f64 / secs / 1e6
        ));
        Ok(())
    }
}

nonstop_core::export_plugin!(
    Gzip,
    name = "gzip",
    description = "compress old files in place; at every instant the original or a complete .gz"
);

#[cfg(test)]
mod tests;
