//! Plugin tasks at check time: finding the library a `plugin:` names, and validating the
//! task's `args` in a child (`nonstop plugin-host validate`), never in this process: loading a
//! plugin runs its code, and this process may become the supervisor.
//!
//! Validations are collected while the tasks are checked ([`Validation`]) and run at the end
//! ([`validate_all`]): each distinct library, arguments and directory once (the copies of a
//! task with `instances` usually have the same), up to [`AT_ONCE`] at a time, so that a check
//! takes about as long as its slowest validation, not the sum of them all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::Ctx;
use crate::host_child::{self, Text};

/// The longest a plugin's `validate` may take, from the start of its host to its answer.
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most validations (task hosts) that run at once.
const AT_ONCE: usize = 16;

/// A plugin task's arguments to validate, and where its errors go.
#[derive(Debug)]
pub(super) struct Validation {
    /// The task's path in the file (`tasks.NAME`).
    pub path: String,
    /// Whether it has `args` (errors about an argument point into them).
    pub has_args: bool,
    /// The plugin's library.
    pub library: PathBuf,
    /// Its arguments as JSON.
    pub args: String,
    /// The task's working directory.
    pub cwd: PathBuf,
}

/// Runs every validation `ctx` collected (each distinct one once, [`AT_ONCE`] at a time) and
/// adds their refusals to its errors, in the order they were collected.
pub(super) fn validate_all(ctx: &mut Ctx) {
    let pending = std::mem::take(&mut ctx.validations);
    let mut distinct: Vec<(&Path, &str, &Path)> = Vec::new();
    let mut seen: HashMap<(&Path, &str, &Path), usize> = HashMap::new();
    let which: Vec<usize> = pending
        .iter()
        .map(|v| {
            let key = (v.library.as_path(), v.args.as_str(), v.cwd.as_path());
            *seen.entry(key).or_insert_with(|| {
                distinct.push(key);
                distinct.len() - 1
            })
        })
        .collect();
    let results = in_parallel(&distinct, AT_ONCE, |(library, args, cwd)| {
        validate(library, args, cwd)
    });
    for (v, &k) in pending.iter().zip(&which) {
        let Err((at, message)) = &results[k] else {
            continue;
        };
        let at = match (at.is_empty(), v.has_args) {
            (true, _) => format!("{}.plugin", v.path),
            (false, true) => format!("{}.args.{at}", v.path),
            (false, false) => format!("{}.args", v.path),
        };
        let message = super::serde_message(message);
        if message.starts_with("unknown field") {
            ctx.error_at_key(&at, message);
        } else {
            ctx.error(&at, message);
        }
    }
}

/// `work` on each of `items`, on up to `most` threads (this one among them), the results in
/// the items' order. Fewer threads if no more can be made.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    most: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let worker = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else {
                return done;
            };
            done.push((i, work(item)));
        }
    };
    let mut all: Vec<(usize, R)> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..most.min(items.len()))
            .map_while(|n| {
                std::thread::Builder::new()
                    .name(format!("validate-{n}"))
                    .spawn_scoped(scope, worker)
                    .ok()
            })
            .collect();
        let mut all = worker();
        for helper in helpers {
            match helper.join() {
                Ok(done) => all.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    });
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

/// Where plugins are looked for, in order: the pipeline's `plugin_dirs` (relative to its
/// directory), the directory of the `nonstop` executable, and `../lib/nonstop/plugins` from
/// there.
pub fn search_dirs(plugin_dirs: &[PathBuf], pipeline_dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = plugin_dirs.iter().map(|d| pipeline_dir.join(d)).collect();
    if let Some(bin) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(bin.join("../lib/nonstop/plugins"));
        dirs.insert(plugin_dirs.len(), bin);
    }
    // Each directory once, in its first place.
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.canonicalize().unwrap_or_else(|_| d.clone())));
    dirs
}

/// The library `name` names: a path if it has a `/` (relative to the pipeline's directory),
/// else `libNAME.so` or `libnonstop_NAME.so` in the first of `dirs` that has one.
pub fn locate(name: &str, dirs: &[PathBuf], pipeline_dir: &Path) -> Result<PathBuf, String> {
    if name.contains('/') {
        let path = pipeline_dir.join(name);
        return match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(path),
            Ok(meta) if meta.is_dir() => Err(format!(
                "plugin file \"{name}\" is a directory: name the plugin's library (a .so file) \
                 in it"
            )),
            Ok(_) => Err(format!(
                "plugin file \"{name}\" is not a regular file: a plugin is a library (a .so \
                 file)"
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
                "plugin file \"{name}\" does not exist (a path is taken from the pipeline's \
                 directory)"
            )),
            Err(e) => Err(format!(
                "cannot use plugin file \"{name}\": {}",
                super::os_error(&e)
            )),
        };
    }
    if name.is_empty() || name.contains('\0') {
        return Err(format!("{name:?} is not a plugin name"));
    }
    let files = [format!("lib{name}.so"), format!("libnonstop_{name}.so")];
    for dir in dirs {
        for file in &files {
            let path = dir.join(file);
            if path.is_file() {
                return Ok(path);
            }
        }
    }
    let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(format!(
        "plugin \"{name}\" not found: no {} or {} in {}",
        files[0],
        files[1],
        looked.join(", ")
    ))
}

/// Why `validate` refused: the argument at fault (dotted, empty for the task) and why.
pub type Refusal = (String, String);

/// The host's answer to `validate`: `ok`, or `error\tPATH\tMESSAGE`.
fn is_answer(line: &[u8]) -> bool {
    line == b"ok" || line.starts_with(b"error\t")
}

/// Runs the plugin's `validate` on `args` (JSON) in a child, in `cwd` (the task's, where it
/// will run: paths in its arguments are from there) if that is a directory,
/// [`VALIDATE_TIMEOUT`] at most for the whole exchange (see [`crate::host_child`]).
pub fn validate(library: &Path, args: &str, cwd: &Path) -> Result<(), Refusal> {
    let whole = |why: String| (String::new(), why);
    let reply = host_child::ask(
        &[
            "plugin-host".as_ref(),
            "validate".as_ref(),
            library.as_os_str(),
            args.as_ref(),
        ],
        cwd.is_dir().then_some(cwd),
        VALIDATE_TIMEOUT,
        Text::new(is_answer),
        Text::new(|_| false),
    )
    .map_err(|e| whole(format!("cannot run the plugin host: {e}")))?;
    let Some(status) = reply.status else {
        // The host cannot tell loading (the library's initialisers) from `validate`: one
        // deadline covers both.
        return Err(whole(format!(
            "{}: loading it or its validate did not finish within {} s (the plugin host and \
             what it started were killed)",
            library.display(),
            VALIDATE_TIMEOUT.as_secs()
        )));
    };
    let answer = reply.stdout.wanted_line();
    if status.success() && answer.as_deref() == Some("ok") {
        return Ok(());
    }
    if let Some(line) = answer.as_deref().and_then(|l| l.strip_prefix("error\t")) {
        let (at, message) = line.split_once('\t').unwrap_or(("", line));
        return Err((at.to_owned(), message.to_owned()));
    }
    let err = reply.stderr.text();
    let reason = err
        .lines()
        .map(|l| l.strip_prefix("nonstop plugin-host: ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("; ");
    Err(whole(match nix_signal(&status) {
        Some(signal) => format!(
            "{}: the plugin crashed in validate ({signal}){}",
            library.display(),
            if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            }
        ),
        None if reason.is_empty() => format!("{}: validate failed ({status})", library.display()),
        None => reason,
    }))
}

fn nix_signal(status: &std::process::ExitStatus) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    status.signal().map(|s| {
        nix::sys::signal::Signal::try_from(s)
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|_| format!("signal {s}"))
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::in_parallel;

    #[test]
    fn work_in_parallel_comes_back_in_order_with_at_most_so_many_at_once() {
        let items: Vec<u32> = (0..40).collect();
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let results = in_parallel(&items, 4, |&n| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
            n * 2
        });
        assert_eq!(results, items.iter().map(|n| n * 2).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 4);
        assert!(in_parallel(&[] as &[u32], 4, |&n| n).is_empty());
        assert_eq!(in_parallel(&[7], 4, |&n| n + 1), [8]);
    }
}
