//! The pipeline file: loading, checking, and the typed [`Pipeline`] the supervisor runs.
//!
//! Two stages. `raw` deserializes each section and each task on its own (serde, unknown fields
//! and wrong types rejected), so one bad task does not hide the errors of the next; then
//! `task` checks what serde cannot (exclusive fields, programs, users, cron, dependencies) and
//! builds the scheduler's typed specs. Every problem becomes a [`Diagnostic`] that names
//! `file:line:column`, the field path and what is wrong; all of them are reported at once.

mod access;
mod exec_size;
mod locate;
pub mod plugin;
mod probe;
mod raw;
mod task;
mod tasks;

use std::fmt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nonstop_supervisor::pipeline::{
    ContainmentMode, ControlConfig, HeartbeatConfig, LogConfig, Pipeline,
};
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use locate::{Pos, Positions};

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where.
    pub pos: Pos,
    /// The field path, e.g. `tasks.server.restart`; empty for the document as a whole.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Diagnostic {
    /// `FILE:LINE:COL: PATH: MESSAGE`, on one line of printable text: what the file holds
    /// (names, paths, values) may contain NUL, escape sequences or newlines, shown escaped
    /// (`\0`, `\u{1b}`, `\n`), and a field path with a name longer than a task name may be
    /// shows its start.
    pub fn display<'a>(&'a self, file: &'a str) -> impl fmt::Display + 'a {
        struct Shown<'a>(&'a Diagnostic, &'a str);
        impl fmt::Display for Shown<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let Shown(d, file) = self;
                write!(f, "{}:{}:{}: ", printable(file), d.pos.line, d.pos.col)?;
                if !d.path.is_empty() {
                    let path: Vec<String> = d.path.split('.').map(tasks::abbreviated).collect();
                    write!(f, "{}: ", printable(&path.join(".")))?;
                }
                f.write_str(&printable(&d.message))
            }
        }
        Shown(self, file)
    }
}

/// Text from the file, escaped for one line of a terminal (`nonstop_core::printable`).
pub use nonstop_core::printable;

/// A checked pipeline and what `check` warns about (things accepted that have no effect yet).
#[derive(Debug)]
pub struct Checked {
    /// The pipeline, as the supervisor runs it.
    pub pipeline: Pipeline,
    /// Warnings, each with its position.
    pub warnings: Vec<Diagnostic>,
}

/// Default `logs.max_size`: 10 MiB.
pub const DEFAULT_MAX_SIZE: u64 = 10 << 20;
/// Default `logs.keep`.
pub const DEFAULT_KEEP: u32 = 5;
/// Default `heartbeat.slots`.
pub const DEFAULT_SLOTS: u32 = 1024;

const TOP_LEVEL: &[&str] = &[
    "heartbeat",
    "plugin_dirs",
    "control",
    "metrics",
    "logs",
    "containment",
    "tasks",
];

/// The `plugin_dirs` of the pipeline in `file` (for `nonstop plugins`), read without checking
/// the rest.
pub fn plugin_dirs_of(file: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let text = read(file).map_err(|why| anyhow::anyhow!("{}: {why}", file.display()))?;
    let value: Value = serde_yaml::from_str(&text)?;
    Ok(match value.get("plugin_dirs") {
        Some(dirs) => serde_yaml::from_value(dirs.clone())?,
        None => Vec::new(),
    })
}

/// The largest pipeline file read: a chain of 200,000 tasks is 10 MiB.
pub const MAX_FILE: u64 = 64 << 20;

/// [`load`], each error printed to stderr as `FILE:LINE:COL: FIELD: MESSAGE` (the file as
/// `path` shows it); `Err` holds how many there were.
pub fn load_or_report(path: &Path) -> Result<Checked, usize> {
    load(path).map_err(|errors| {
        let shown = path.display().to_string();
        for e in &errors {
            eprintln!("{}", e.display(&shown));
        }
        errors.len()
    })
}

/// The text of the pipeline file at `path`, or why it cannot be one. Only a regular file is
/// read: a FIFO would block the reader until someone writes to it (for ever, for `check`; a
/// reload gave up only after its minute), and a device such as `/dev/zero` never ends. The
/// file is opened with `O_NONBLOCK` (so that opening a FIFO does not wait for a writer), then
/// judged by `fstat` on that descriptor, so what is read is what was judged.
fn read(path: &Path) -> Result<String, String> {
    let not_regular = |meta: &std::fs::Metadata| {
        format!(
            "the pipeline is {}: it must be a regular file (a pipe or a device could block the \
             reader or never end)",
            file_kind(meta)
        )
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match std::fs::metadata(path) {
            // A Unix socket cannot be opened at all (ENXIO): say what it is.
            Ok(meta) if e.raw_os_error() == Some(nix::libc::ENXIO) => not_regular(&meta),
            _ => format!("cannot read the pipeline: {}", os_error(&e)),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read the pipeline: {}", os_error(&e)))?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_FILE + 1), &mut bytes)
        .map_err(|e| format!("cannot read the pipeline: {}", os_error(&e)))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(format!(
            "the pipeline is larger than {} MiB: not a pipeline file?",
            MAX_FILE >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|e| format!("the pipeline is not UTF-8 text: {e}"))
}

/// Reads and checks the pipeline at `path`.
pub fn load(path: &Path) -> Result<Checked, Vec<Diagnostic>> {
    let whole = |message: String| {
        vec![Diagnostic {
            pos: Pos::START,
            path: String::new(),
            message,
        }]
    };
    let text = read(path).map_err(whole)?;
    let dir = std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    parse(&text, &dir)
}

/// Checks the pipeline `text`, whose relative paths are relative to `dir`.
pub fn parse(text: &str, dir: &Path) -> Result<Checked, Vec<Diagnostic>> {
    let mut ctx = Ctx {
        positions: Positions::of(text),
        errors: Vec::new(),
        warnings: Vec::new(),
        validations: Vec::new(),
    };
    let document: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Err(vec![
                duplicate_key(&ctx.positions, &e)
                    .or_else(|| too_large(&e))
                    .or_else(|| long_key(text, &ctx.positions, &e))
                    .unwrap_or_else(|| syntax_error(&e)),
            ]);
        }
    };
    let top = match document {
        Value::Mapping(m) => m,
        Value::Null => {
            ctx.error(
                "",
                "the pipeline is empty: it needs at least a `tasks:` map",
            );
            return Err(ctx.errors);
        }
        _ => {
            ctx.error("", "the pipeline must be a map with a `tasks:` key");
            return Err(ctx.errors);
        }
    };

    let (mut heartbeat, mut logs, mut tasks, mut containment) = (None, None, None, None);
    let (mut control, mut metrics) = (None, None);
    let mut plugin_dirs: Vec<PathBuf> = Vec::new();
    for (key, value) in top {
        let Some(name) = key.as_str().map(str::to_owned) else {
            ctx.error("", format!("top-level keys must be strings, found {key:?}"));
            continue;
        };
        match name.as_str() {
            "heartbeat" => heartbeat = ctx.section::<raw::Heartbeat>("heartbeat", value),
            "plugin_dirs" => {
                plugin_dirs = ctx
                    .section::<Vec<PathBuf>>("plugin_dirs", value)
                    .unwrap_or_default();
            }
            "control" => {
                let written = ctx.section::<raw::Control>("control", value);
                control = written.as_ref().map(|c| ControlConfig {
                    socket: dir.join(&c.socket),
                });
                if let (Some(c), Some(w)) = (&control, &written)
                    && let Err(why) = socket_path_usable(&c.socket, &w.socket)
                {
                    ctx.error("control.socket", why);
                }
            }
            "metrics" => {
                metrics = ctx
                    .section::<PathBuf>("metrics", value)
                    .map(|m| dir.join(m));
            }
            "logs" => logs = ctx.section::<raw::Logs>("logs", value),
            "containment" => {
                containment = ctx.section::<raw::Containment>("containment", value);
            }
            "tasks" => tasks = Some(value),
            other => ctx.error_at_key(
                other,
                format!(
                    "unknown field \"{other}\", expected one of {}",
                    TOP_LEVEL.join(", ")
                ),
            ),
        }
    }

    let heartbeat = heartbeat.and_then(|h: raw::Heartbeat| {
        let slots = h.slots.unwrap_or(DEFAULT_SLOTS);
        if slots == 0 || slots > nonstop_ipc::table::layout::MAX_SLOTS {
            ctx.error(
                "heartbeat.slots",
                format!("must be 1 to {}", nonstop_ipc::table::layout::MAX_SLOTS),
            );
            return None;
        }
        Some(HeartbeatConfig {
            key: h.key.0,
            slots,
        })
    });
    // Tasks with heartbeats and no table named: the default table.
    let heartbeat = match (heartbeat, &tasks) {
        (None, Some(Value::Mapping(map))) if map.values().any(|t| t.get("heartbeat").is_some()) => {
            Some(HeartbeatConfig {
                key: nonstop_ipc::Key::DEFAULT,
                slots: DEFAULT_SLOTS,
            })
        }
        (heartbeat, _) => heartbeat,
    };
    let logs = log_config(&mut ctx, logs.unwrap_or_default(), dir);

    let specs = match tasks {
        None => {
            ctx.error(
                "",
                "missing field \"tasks\": a pipeline needs at least one task",
            );
            Vec::new()
        }
        Some(Value::Mapping(map)) if map.is_empty() => {
            ctx.error("tasks", "no tasks: a pipeline needs at least one task");
            Vec::new()
        }
        Some(Value::Mapping(map)) => {
            let plugin_dirs = plugin::search_dirs(&plugin_dirs, dir);
            let specs = tasks::check_all(&mut ctx, map, dir, &plugin_dirs);
            plugin::validate_all(&mut ctx);
            specs
        }
        Some(other) => {
            ctx.error(
                "tasks",
                format!(
                    "expected a map of task names to tasks, found {}",
                    kind(&other)
                ),
            );
            Vec::new()
        }
    };

    if let Some(h) = heartbeat {
        check_slots(&mut ctx, h, &specs);
    }
    check_runner_files(
        &mut ctx,
        &logs,
        control.as_ref(),
        metrics.as_deref(),
        &specs,
    );

    if !ctx.errors.is_empty() {
        // The copies of a task with `instances` make the same mistakes: each is said once.
        let mut seen = std::collections::HashSet::new();
        ctx.errors
            .retain(|d| seen.insert((d.pos.line, d.pos.col, d.message.clone())));
        ctx.errors.sort_by_key(|d| d.pos);
        return Err(ctx.errors);
    }
    Ok(Checked {
        pipeline: Pipeline {
            heartbeat,
            logs,
            containment: match containment {
                None | Some(raw::Containment::Auto) => ContainmentMode::Auto,
                Some(raw::Containment::Cgroup) => ContainmentMode::Cgroup,
                Some(raw::Containment::ProcessGroup) => ContainmentMode::ProcessGroup,
            },
            control,
            metrics,
            own_log: None,
            tasks: specs,
            fingerprints: Vec::new(),
        }
        .with_fingerprints(),
        warnings: ctx.warnings,
    })
}

/// The runner reserves a slot of the heartbeat table for each task with `heartbeat:` (each
/// copy of `instances` counts), for its whole life: a pipeline with more such tasks than the
/// table has slots could not start.
fn check_slots(ctx: &mut Ctx, h: HeartbeatConfig, specs: &[nonstop_scheduler::task::TaskSpec]) {
    let beating: Vec<&nonstop_scheduler::task::TaskSpec> =
        specs.iter().filter(|s| s.heartbeat.is_some()).collect();
    let n = beating.len();
    let Some(first_over) = beating.get(h.slots as usize) else {
        return;
    };
    let need = format!(
        "{n} tasks have a heartbeat (each copy of `instances` counts) and the runner reserves a \
         slot of the table for each"
    );
    if ctx.positions.has("heartbeat") {
        let slots = if ctx.positions.has("heartbeat.slots") {
            format!("heartbeat.slots is {}", h.slots)
        } else {
            format!("the table has {} slots (the default)", h.slots)
        };
        ctx.error(
            "heartbeat.slots",
            format!("{need}, but {slots}: set heartbeat.slots to at least {n}"),
        );
    } else {
        let task = first_over
            .instance_of
            .as_deref()
            .unwrap_or(&first_over.name);
        ctx.error(
            &format!("tasks.{task}.heartbeat"),
            format!(
                "{need}, but the default table has {} slots: add `heartbeat: {{ key: KEY, \
                 slots: {n} }}` to the pipeline",
                h.slots
            ),
        );
    }
}

/// The control socket (and its `PATH.lock`) and the metrics file may be in `logs.dir`, but not
/// at a name the runner or a task keeps there: binding the socket removes what is at its path,
/// and the metrics file is renamed over its path every second, so either would take the place
/// of the pipeline's lock, the runner's log or a task's log (`TASK.log`, and its rotations
/// `TASK.log.*`), and the two may not be one file.
fn check_runner_files(
    ctx: &mut Ctx,
    logs: &LogConfig,
    control: Option<&ControlConfig>,
    metrics: Option<&Path>,
    specs: &[nonstop_scheduler::task::TaskSpec],
) {
    let mut files: Vec<(&str, PathBuf, &str)> = Vec::new();
    if let Some(c) = control {
        let mut lock = c.socket.as_os_str().to_owned();
        lock.push(".lock");
        files.push(("control.socket", c.socket.clone(), "control socket"));
        files.push((
            "control.socket",
            PathBuf::from(lock),
            "control socket's lock (PATH.lock)",
        ));
    }
    if let Some(m) = metrics {
        files.push((
            "metrics",
            m.to_path_buf(),
            "metrics file (renamed over it every second)",
        ));
    }
    for (field, file, what) in &files {
        let (Some(parent), Some(name)) = (file.parent(), file.file_name().and_then(|n| n.to_str()))
        else {
            continue;
        };
        if !same_dir(parent, &logs.dir) {
            continue;
        }
        let whose = if name == nonstop_supervisor::lock::FILE {
            Some("the pipeline's lock".to_owned())
        } else if name == crate::detach::LOG {
            Some("the runner's own log (under `run -d`)".to_owned())
        } else {
            // `TASK.log`, or a rotation of it: `TASK.log.YYYYMMDD-HHMMSS...`.
            specs.iter().find_map(|t| {
                let log = format!("{}.log", t.name);
                let rotation = name
                    .strip_prefix(&log)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
                (name == log || rotation).then(|| format!("a log file of task {}", t.name))
            })
        };
        if let Some(whose) = whose {
            ctx.error(
                field,
                format!(
                    "\"{name}\" in logs.dir is {whose}: the {what} would take its place; choose \
                     another name"
                ),
            );
        }
    }
    if let (Some(c), Some(m)) = (control, metrics)
        && same_file(&c.socket, m)
    {
        ctx.error(
            "metrics",
            "the control socket is at this path (control.socket): the metrics file needs one of \
             its own",
        );
    }
}

/// Whether `a` and `b` name one directory: the same path once `.` and `..` are taken out, or
/// the same directory on disk (through links).
fn same_dir(a: &Path, b: &Path) -> bool {
    normal(a) == normal(b)
        || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// Whether `a` and `b` name one file (in one directory, by [`same_dir`]).
fn same_file(a: &Path, b: &Path) -> bool {
    a.file_name() == b.file_name()
        && match (a.parent(), b.parent()) {
            (Some(x), Some(y)) => same_dir(x, y),
            _ => false,
        }
}

/// `path` with `.` left out and each `..` taking out the name before it, as written.
fn normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Why a Unix socket cannot be bound at `path` (absolute, as the runner binds it): longer
/// than `sockaddr_un.sun_path` holds, or something other than a socket is there (the runner
/// replaces only a socket a dead runner left). Also used by `nonstop run` for a socket named
/// by `--socket` or the environment. Messages name it as `shown` (as written).
pub fn socket_path_usable(path: &Path, shown: &Path) -> Result<(), String> {
    let len = path.as_os_str().len();
    if len > ControlConfig::MAX_PATH {
        return Err(format!(
            "the socket path \"{}\" is {len} bytes long, but a Unix socket's path is at most {} \
             bytes (sockaddr_un.sun_path, 108 with its final NUL): choose a shorter one",
            path.display(),
            ControlConfig::MAX_PATH
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => Err(format!(
            "\"{}\" exists and is {}, not a socket: the runner replaces only a socket that a \
             runner left; choose another path",
            shown.display(),
            file_kind(&meta)
        )),
        _ => Ok(()),
    }
}

/// "a regular file", "a directory", ... for messages.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_file() {
        "a regular file"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

fn log_config(ctx: &mut Ctx, logs: raw::Logs, dir: &Path) -> LogConfig {
    let max_size = logs.max_size.map_or(DEFAULT_MAX_SIZE, |s| s.0);
    if max_size < 1024 {
        ctx.error("logs.max_size", "must be at least 1K");
    }
    let written = logs.dir.unwrap_or_else(|| PathBuf::from("logs"));
    let logs_dir = dir.join(&written);
    if let Err(why) = writable_dir(&logs_dir, &written) {
        ctx.error("logs.dir", why);
    }
    LogConfig {
        dir: logs_dir,
        max_size,
        keep: logs.keep.unwrap_or(DEFAULT_KEEP),
        compress: logs.compress.unwrap_or(false),
        timestamps: logs.timestamps.unwrap_or(false),
    }
}

/// Why the runner could not keep its logs (and its lock) in `dir`: it must be a directory this
/// process can write in, or one it can create. Tried for real (a file made and removed, or the
/// first missing directory made and removed), so a read-only mount, `/proc`, or a file in the
/// way are found now, not when the runner starts.
/// Messages name the directory as `written` in the pipeline.
fn writable_dir(dir: &Path, written: &Path) -> Result<(), String> {
    let shown = written.display();
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            // A file without a name (O_TMPFILE), so that nothing is ever left behind; a named
            // one where the file system cannot make those.
            let unnamed = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_TMPFILE)
                .mode(0o600)
                .open(dir);
            match unnamed {
                Ok(_) => Ok(()),
                Err(e) if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) => {
                    let probe = dir.join(format!(".nonstop-check-{}", std::process::id()));
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&probe)
                        .map_err(|e| format!("cannot write in \"{shown}\": {}", os_error(&e)))?;
                    let _ = std::fs::remove_file(&probe);
                    Ok(())
                }
                Err(e) => Err(format!("cannot write in \"{shown}\": {}", os_error(&e))),
            }
        }
        Ok(_) => Err(format!("\"{shown}\" is not a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Make the first missing directory, the one run would make first.
            let mut first = dir;
            while let Some(parent) = first.parent() {
                if parent.as_os_str().is_empty() || parent.exists() {
                    break;
                }
                first = parent;
            }
            match std::fs::create_dir(first) {
                Ok(()) => {
                    let _ = std::fs::remove_dir(first);
                    Ok(())
                }
                // Made meanwhile (another check or run of a pipeline here): it can be made.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(format!("cannot create \"{shown}\": {}", os_error(&e))),
            }
        }
        Err(e) => Err(format!("cannot use \"{shown}\": {}", os_error(&e))),
    }
}

/// The system's words for `e`, without Rust's ` (os error N)`.
fn os_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// A key repeated in one map (`PATH: duplicate entry with key "K"`), pointed at its second
/// occurrence (the position index keeps the last one).
fn duplicate_key(positions: &Positions, e: &serde_yaml::Error) -> Option<Diagnostic> {
    let message = e.to_string();
    // In a nested map serde_yaml names the map first (`tasks: duplicate entry ...`); at the
    // top level it does not.
    const DUPLICATE: &str = "duplicate entry with key \"";
    let (parent, rest) = match message.strip_prefix(DUPLICATE) {
        Some(rest) => ("", rest),
        None => message.split_once(&format!(": {DUPLICATE}"))?,
    };
    let key = &rest[..rest.find('"')?];
    let path = if parent == "." || parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    };
    Some(Diagnostic {
        pos: positions.find_key(&path),
        path,
        message: format!("duplicate key \"{key}\": a key may appear only once in a map"),
    })
}

/// An integer beyond 64 bits (`18446744073709551616`), which the YAML parser reads as a 128-bit
/// one that no value of the document can hold (`invalid type: integer ... as u128, expected
/// any YAML value`), said as what it is, at its field.
fn too_large(e: &serde_yaml::Error) -> Option<Diagnostic> {
    let message = e.to_string();
    const INTEGER: &str = "invalid type: integer `";
    let at = message.find(INTEGER)?;
    let rest = &message[at + INTEGER.len()..];
    let (number, rest) = rest.split_once('`')?;
    if !rest.starts_with(" as u128") && !rest.starts_with(" as i128") {
        return None;
    }
    let path = message[..at].strip_suffix(": ").unwrap_or_default();
    let pos = e.location().map_or(Pos::START, |l| Pos {
        line: l.line(),
        col: l.column(),
    });
    Some(Diagnostic {
        pos,
        path: if path == "." {
            String::new()
        } else {
            path.to_owned()
        },
        message: format!(
            "the number {number} is too large for 64 bits: a number in a pipeline is from {} to {}; \
             if it is text, write it in quotes",
            i64::MIN,
            u64::MAX
        ),
    })
}

/// The longest key YAML allows written plainly, without `? ` (a "simple key").
const MAX_SIMPLE_KEY: usize = 1024;

/// A key longer than YAML allows ([`MAX_SIMPLE_KEY`]), which the parser reports as a syntax
/// error at its `:`: said as what it is, for a task as its name's error. The map it is in is
/// the key on the nearest line above that is indented less (the index has the document up to
/// the error).
fn long_key(text: &str, positions: &Positions, e: &serde_yaml::Error) -> Option<Diagnostic> {
    let location = e.location()?;
    let lines: Vec<&str> = text.lines().take(location.line()).collect();
    let (line, above) = lines.split_last()?;
    let indent = |l: &str| l.len() - l.trim_start_matches([' ', '-']).len();
    let start = indent(line);
    let rest = &line[start..];
    // The `:` that ends it (followed by a blank or the end of the line; ASCII, so a boundary).
    let bytes = rest.as_bytes();
    let end = (0..bytes.len())
        .find(|&i| bytes[i] == b':' && bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace()))?;
    let key = rest[..end].trim_end();
    let key = key
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .or_else(|| key.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')))
        .unwrap_or(key);
    let length = key.chars().count();
    if length <= MAX_SIMPLE_KEY {
        return None;
    }
    let parent = above
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .find(|(_, l)| indent(l) < start)
        .and_then(|(i, l)| {
            positions.key_at(Pos {
                line: i + 1,
                col: indent(l) + 1,
            })
        })
        .unwrap_or_default();
    let pos = Pos {
        line: location.line(),
        col: start + 1,
    };
    let shown = tasks::abbreviated(key);
    Some(if parent == "tasks" {
        Diagnostic {
            pos,
            path: format!("tasks.{shown}"),
            message: tasks::check_name(key).err()?,
        }
    } else {
        Diagnostic {
            pos,
            path: parent.to_owned(),
            message: format!(
                "a key of {length} characters (\"{shown}\"): YAML allows at most \
                 {MAX_SIMPLE_KEY} in a key"
            ),
        }
    })
}

/// A syntax error, from serde_yaml's location and message.
fn syntax_error(e: &serde_yaml::Error) -> Diagnostic {
    let pos = e.location().map_or(Pos::START, |l| Pos {
        line: l.line(),
        col: l.column(),
    });
    let message = e.to_string();
    // serde_yaml appends " at line L column C"; the position is already in front.
    let message = match message.find(" at line ") {
        Some(i) => {
            let rest = &message[i + " at line ".len()..];
            let after = rest
                .find(',')
                .map_or(String::new(), |j| rest[j..].to_owned());
            format!("{}{after}", &message[..i])
        }
        None => message,
    };
    Diagnostic {
        pos,
        path: String::new(),
        message,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Errors and warnings collected while checking, with the positions to point at.
struct Ctx {
    positions: Positions,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// Plugin tasks' arguments, validated once every task is checked.
    validations: Vec<plugin::Validation>,
}

impl Ctx {
    fn diagnostic(&self, path: &str, message: impl Into<String>, pos: Pos) -> Diagnostic {
        Diagnostic {
            pos,
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// An error about the value at `path`.
    fn error(&mut self, path: &str, message: impl Into<String>) {
        let d = self.diagnostic(path, message, self.positions.find(path));
        self.errors.push(d);
    }

    /// An error about the key of `path` (it should not be there).
    fn error_at_key(&mut self, path: &str, message: impl Into<String>) {
        let d = self.diagnostic(path, message, self.positions.find_key(path));
        self.errors.push(d);
    }

    /// Deserializes `value`, found at `base`; a failure becomes an error at the exact field.
    fn section<T: DeserializeOwned>(&mut self, base: &str, value: Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.serde_error(base, e);
                None
            }
        }
    }

    /// Serde's error `e` about a value found at `base`, as an error at the exact field (an
    /// unknown field at its key).
    fn serde_error(&mut self, base: &str, e: serde_path_to_error::Error<serde_yaml::Error>) {
        let inner = e.path().to_string();
        let path = match inner.as_str() {
            "." => base.to_owned(),
            p if p.starts_with('[') => format!("{base}{p}"),
            p => format!("{base}.{p}"),
        };
        let message = serde_message(&e.into_inner().to_string());
        if message.starts_with("unknown field") {
            self.error_at_key(&path, message);
        } else {
            self.error(&path, message);
        }
    }
}

/// serde's messages quote with backticks: the offending name becomes `"name"`, and the lists
/// of what was expected lose their quotes: `unknown variant "allways", expected one of
/// always, on-failure, never`.
fn serde_message(message: &str) -> String {
    let first_quoted = [
        "unknown variant",
        "unknown field",
        "missing field",
        "duplicate field",
    ]
    .iter()
    .any(|p| message.starts_with(p));
    let mut out = String::with_capacity(message.len());
    for (i, part) in message.split('`').enumerate() {
        if i == 1 && first_quoted {
            out.push('"');
            out.push_str(part);
            out.push('"');
        } else {
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bad input of any shape is an error with a position, never a panic.
    #[test]
    fn mutated_pipelines_never_panic() {
        let good = "\
heartbeat: { key: 0x7e4e5301, slots: 8 }
logs: { max_size: 1M, keep: 2 }
tasks:
  server:
    command: [/bin/sleep, \"100\"]
    backoff: { initial: 0ms, max: 5s }
    env: { A: b }
    limits: { nofile: { soft: 10, hard: 20 } }
  job:
    every: 5m
    after: [server]
    command: [/bin/true]
  nightly:
    cron: \"0 3 * * *\"
    timezone: UTC
    command: [/bin/true]
";
        let dir = std::path::Path::new("/");
        assert!(parse(good, dir).is_ok());
        let pieces = [
            ":", " ", "\n", "[", "]", "{", "}", "-", "\"", "'", "0x", "&a", "*a", "!!", "\t", "#",
        ];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let mut text: Vec<char> = good.chars().collect();
            for _ in 0..(1 + next() % 4) {
                if text.is_empty() {
                    break;
                }
                let at = (next() as usize) % text.len();
                match next() % 3 {
                    0 => {
                        text.remove(at);
                    }
                    1 => {
                        let piece = pieces[(next() as usize) % pieces.len()];
                        for (i, c) in piece.chars().enumerate() {
                            text.insert(at + i, c);
                        }
                    }
                    _ => text.truncate(at),
                }
            }
            let text: String = text.into_iter().collect();
            if let Err(errors) = parse(&text, dir) {
                assert!(
                    !errors.is_empty(),
                    "an error without a diagnostic for:\n{text}"
                );
                for e in &errors {
                    assert!(e.pos.line >= 1 && e.pos.col >= 1, "{e:?}");
                }
            }
        }
    }

    #[test]
    fn serde_messages_are_requoted() {
        assert_eq!(
            serde_message(
                "unknown variant `allways`, expected one of `always`, `on-failure`, `never`"
            ),
            "unknown variant \"allways\", expected one of always, on-failure, never"
        );
        assert_eq!(
            serde_message("missing field `command`"),
            "missing field \"command\""
        );
        assert_eq!(
            serde_message("invalid type: string \"x\", expected u32"),
            "invalid type: string \"x\", expected u32"
        );
    }
}
