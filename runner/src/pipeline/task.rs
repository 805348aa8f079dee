//! Checking one task beyond what serde checks, and building its [`TaskSpec`] (the task set:
//! `tasks.rs`).

use std::collections::HashSet;
use std::ffi::{CString, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::resource::Resource;
use nonstop_scheduler::policy::{Backoff, CrashLoop, Restart};
use nonstop_scheduler::schedule::{CronSchedule, Schedule, Zone};
use nonstop_scheduler::spawn::{Credentials, Limit, SpawnSpec};
use nonstop_scheduler::task::{HeartbeatSpec, Kind, StopSpec, TaskSpec};

use super::{Ctx, raw};

/// The most copies `instances:` makes of a task.
pub(super) const MAX_INSTANCES: u32 = 1000;

/// Task `name`, or its copy number `instance` (named `NAME.I`; errors still point at `NAME`).
#[allow(clippy::too_many_arguments)]
pub(super) fn check_task(
    ctx: &mut Ctx,
    name: &str,
    instance: Option<u32>,
    t: raw::Task,
    dir: &Path,
    names: &HashSet<String>,
    handlers: &HashSet<String>,
    plugin_dirs: &[PathBuf],
) -> Option<TaskSpec> {
    let path = format!("tasks.{name}");
    let field = |f: &str| format!("{path}.{f}");
    let errors_before = ctx.errors.len();

    let mut plugin_library = None;
    let command = match (&t.command, &t.plugin) {
        (Some(_), Some(_)) => {
            ctx.error_at_key(
                &field("plugin"),
                "`command` and `plugin` exclude each other: a task runs one program or one plugin",
            );
            None
        }
        (None, None) => {
            ctx.error(
                &path,
                "a task needs `command` (a program and its arguments) or `plugin`",
            );
            None
        }
        (None, Some(plugin)) => {
            // Its arguments are checked where it runs: paths in them are from the task's cwd.
            let cwd = t
                .cwd
                .as_ref()
                .map_or_else(|| dir.to_path_buf(), |c| dir.join(c));
            let found = Found {
                dir,
                plugin_dirs,
                cwd: &cwd,
            };
            plugin_command(ctx, &path, plugin, t.args.as_ref(), &found).map(|(library, command)| {
                plugin_library = Some(library);
                command
            })
        }
        (Some(command), None) => Some(command.clone()),
    };
    if t.args.is_some() && t.plugin.is_none() {
        ctx.error_at_key(
            &field("args"),
            "`args` are for plugin tasks; give a program's arguments in `command`",
        );
    }

    let cwd = match &t.cwd {
        None => dir.to_path_buf(),
        Some(written) => {
            let cwd = dir.join(written);
            let shown = written.display();
            let why = match std::fs::metadata(&cwd) {
                Ok(meta) if meta.is_dir() => None,
                Ok(_) => Some(format!("\"{shown}\" is not a directory")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Some(format!("directory \"{shown}\" does not exist"))
                }
                Err(e) => Some(format!("cannot use \"{shown}\": {}", super::os_error(&e))),
            };
            if let Some(why) = why {
                ctx.error(&field("cwd"), why);
            }
            cwd
        }
    };

    let (credentials, account) = credentials(ctx, &path, t.user.as_deref(), t.group.as_deref());
    let own_name = match instance {
        Some(i) => format!("{name}.{i}"),
        None => name.to_owned(),
    };
    let mut env: Vec<(OsString, OsString)> = vec![("NONSTOP_TASK".into(), own_name.clone().into())];
    if let Some(i) = instance {
        env.push(("NONSTOP_INSTANCE".into(), i.to_string().into()));
    }
    // `NONSTOP_HEARTBEAT_KEY` is the runner's to give (see `make` in the supervisor): the
    // table it runs with, which a reload that changes `heartbeat:` does not replace.
    // As `su -` and systemd's `User=` do: the user's own home, names and shell (the task's
    // `env` may still set them).
    if let Some(user) = account {
        env.push(("HOME".into(), user.dir.into_os_string()));
        env.push(("USER".into(), user.name.clone().into()));
        env.push(("LOGNAME".into(), user.name.into()));
        env.push(("SHELL".into(), user.shell.into_os_string()));
    }
    for (key, value) in &t.env {
        if key.is_empty() || key.contains(['=', '\0']) {
            ctx.error_at_key(
                &field(&format!("env.{key}")),
                format!("invalid variable name \"{key}\""),
            );
        } else if value.0.contains('\0') {
            ctx.error(
                &field(&format!("env.{key}")),
                "a value cannot contain a NUL byte",
            );
        } else {
            env.push((key.into(), value.0.clone().into()));
        }
    }
    let search_path: Option<String> = match t.env.get("PATH") {
        Some(p) => Some(p.0.clone()),
        None if t.clear_env => None,
        None => std::env::var("PATH").ok(),
    };

    let (program, args) = match command {
        Some(command) if command.is_empty() => {
            ctx.error(
                &field("command"),
                "empty: the first item is the program to run",
            );
            (PathBuf::new(), Vec::new())
        }
        // The task host: not looked for on disk, since the runner executes it from the
        // descriptor of its own binary (`nonstop` is only its `argv[0]`).
        Some(command) if plugin_library.is_some() => (
            PathBuf::from(command[0].as_str()),
            command[1..].iter().map(OsString::from).collect(),
        ),
        Some(command) => {
            for (i, item) in command.iter().enumerate() {
                if item.contains('\0') {
                    ctx.error(
                        &field(&format!("command[{i}]")),
                        "a NUL byte cannot be passed to a program (execve would end the \
                         argument there)",
                    );
                }
            }
            let program = match resolve_program(&command[0], &cwd, search_path.as_deref()) {
                Ok(p) => p,
                Err(why) => {
                    ctx.error(&field("command[0]"), why);
                    PathBuf::new()
                }
            };
            let args = command[1..].iter().map(OsString::from).collect();
            (program, args)
        }
        None => (PathBuf::new(), Vec::new()),
    };

    // `user:` (or `group:`) must be able to execute the program (a plugin task's host loads
    // its library as that user): check runs as someone else, usually root.
    if let Some(c) = &credentials
        && !program.as_os_str().is_empty()
    {
        let who = super::access::Who::of(c, t.user.as_deref(), t.group.as_deref());
        match &plugin_library {
            Some(library) => {
                if let Some(why) = who.cannot_read(library) {
                    ctx.error(
                        &field("plugin"),
                        format!(
                            "{} cannot load the plugin library \"{}\": {why}",
                            who.name(),
                            library.display()
                        ),
                    );
                }
            }
            None => {
                if let Some(why) = who.cannot_run(&program, &cwd) {
                    let written = t.command.as_ref().and_then(|c| c.first());
                    ctx.error(
                        &field("command[0]"),
                        format!(
                            "{} cannot execute program \"{}\": {why}",
                            who.name(),
                            written.map_or_else(|| program.display().to_string(), Clone::clone)
                        ),
                    );
                }
            }
        }
    }

    // A task another names in `on_failure` runs once per failure: by default it is not
    // restarted, and it cannot be periodic or restarted for ever. So does one copy of a task
    // with `instances` named as `NAME.I` (the others run as the task says); its definition is
    // the task's, so the rules hold for the task.
    let on_demand = handlers.contains(name) || (instance.is_some() && handlers.contains(&own_name));
    if on_demand {
        let named = if handlers.contains(name) {
            "this task is named in `on_failure`".to_owned()
        } else {
            format!("its instance {own_name} is named in `on_failure`")
        };
        if t.every.is_some() || t.cron.is_some() {
            ctx.error_at_key(
                &field(if t.every.is_some() { "every" } else { "cron" }),
                format!("{named}: it runs once per failure, not on a schedule"),
            );
        }
        if t.restart == Some(raw::Restart::Always) {
            ctx.error_at_key(
                &field("restart"),
                format!(
                    "{named}: it runs once per failure; `restart: always` would run it for ever \
                     (use on-failure or never)"
                ),
            );
        }
    }
    let kind = schedule(ctx, &path, &t).map(|kind| match kind {
        Kind::Resident(_) if on_demand && t.restart.is_none() => Kind::Resident(Restart::Never),
        kind => kind,
    });
    let defaults = Backoff::default();
    let b = t.backoff.unwrap_or_default();
    let backoff = Backoff {
        initial: b.initial.map_or(defaults.initial, Into::into),
        max: b.max.map_or(defaults.max, Into::into),
        stable: b.stable.map_or(defaults.stable, Into::into),
    };
    if backoff.initial > backoff.max {
        ctx.error(
            &field("backoff.initial"),
            format!(
                "{} is longer than backoff.max ({})",
                nonstop_core::Duration(backoff.initial),
                nonstop_core::Duration(backoff.max)
            ),
        );
    }
    let defaults = CrashLoop::default();
    let c = t.crash_loop.unwrap_or_default();
    let crash_loop = CrashLoop {
        max: c.max.unwrap_or(defaults.max),
        within: c.within.map_or(defaults.within, Into::into),
    };
    if crash_loop.max == 0 {
        ctx.error(&field("crash_loop.max"), "must be at least 1");
    }
    // The runner keeps the time of each exit within the window: bounded, so that a task
    // restarting fast for a long window cannot grow the runner without end.
    if crash_loop.max > CRASH_LOOP_MAX {
        ctx.error(
            &field("crash_loop.max"),
            format!("must be at most {CRASH_LOOP_MAX}"),
        );
    }
    if crash_loop.within.is_zero() {
        ctx.error(&field("crash_loop.within"), "must be longer than 0");
    }
    let s = t.stop.unwrap_or_default();
    let stop = StopSpec {
        signal: s.signal.map_or(StopSpec::default().signal, |s| s.0),
        grace: s.grace.map_or(StopSpec::default().grace, Into::into),
    };

    let mut seen = HashSet::new();
    for (i, dep) in t.after.iter().enumerate() {
        let at = field(&format!("after[{i}]"));
        if dep == name {
            ctx.error(&at, "a task cannot come after itself");
        } else if !names.contains(dep) {
            ctx.error(&at, format!("unknown task \"{dep}\""));
        } else if !seen.insert(dep) {
            ctx.error(&at, format!("\"{dep}\" is listed twice"));
        }
    }

    let mut limits_ok = Vec::new();
    for (name, limit) in t.limits.map(limits).unwrap_or_default() {
        match raisable(&limit) {
            Ok(()) => limits_ok.push(limit),
            Err(why) => ctx.error(&field(&format!("limits.{name}")), why),
        }
    }
    let limits = limits_ok;
    let heartbeat = t
        .heartbeat
        .and_then(|h| task_heartbeat(ctx, &field("heartbeat"), h));

    let spawn = SpawnSpec {
        program,
        args,
        env,
        clear_env: t.clear_env,
        cwd: Some(cwd),
        credentials,
        umask: t.umask.map(|u| u.0),
        limits,
    };
    if !spawn.program.as_os_str().is_empty() {
        let extra = super::exec_size::RUNNER_VARIABLES
            + if on_demand {
                super::exec_size::FAILURE_VARIABLES
            } else {
                0
            };
        exec_fits(ctx, &path, t.plugin.is_some(), &t.env, &spawn, extra);
    }
    let probe = t
        .probe
        .and_then(|p| super::probe::check(ctx, &field("probe"), p, &spawn, search_path.as_deref()))
        .map(Box::new);

    if ctx.errors.len() > errors_before {
        return None;
    }
    Some(TaskSpec {
        name: own_name,
        spawn,
        kind: kind?,
        backoff,
        crash_loop,
        stop,
        after: t.after,
        heartbeat,
        probe,
        plugin: plugin_library,
        instance_of: instance.map(|_| name.to_owned()),
        on_failure: t.on_failure,
        on_demand,
    })
}

/// Errors at `path` (a task, a plugin task if `plugin`, with `env` as written) for what execve
/// would refuse of its command and environment (see `exec_size`), each at the field that
/// holds it.
fn exec_fits(
    ctx: &mut Ctx,
    path: &str,
    plugin: bool,
    env: &std::collections::BTreeMap<String, raw::EnvValue>,
    spawn: &SpawnSpec,
    extra: usize,
) {
    use super::exec_size::TooBig;
    for too_big in super::exec_size::check(spawn, extra) {
        let (at, what) = match &too_big {
            TooBig::Arg(_, _) if plugin => (
                format!("{path}.args"),
                "the plugin's arguments, as JSON,".to_owned(),
            ),
            TooBig::Arg(0, _) => (
                format!("{path}.command[0]"),
                "the program's path".to_owned(),
            ),
            TooBig::Arg(i, _) => (format!("{path}.command[{i}]"), "this argument".to_owned()),
            TooBig::Env(key, _) => {
                let key = key.to_string_lossy().into_owned();
                let at = if env.contains_key(&key) {
                    format!("{path}.env.{key}")
                } else {
                    path.to_owned()
                };
                (at, format!("{key}=VALUE"))
            }
            TooBig::Total { .. } => {
                let env: usize = env.iter().map(|(k, v)| k.len() + v.0.len()).sum();
                let args: usize = spawn.args.iter().map(|a| a.len()).sum();
                let at = if env > args {
                    "env"
                } else if plugin {
                    "args"
                } else {
                    "command"
                };
                (
                    format!("{path}.{at}"),
                    "the command and the environment".to_owned(),
                )
            }
        };
        ctx.error(&at, format!("{what} {}", too_big.message()));
    }
}

/// Where a plugin task's library is looked for and its arguments checked.
struct Found<'a> {
    /// The pipeline file's directory.
    dir: &'a Path,
    /// Where plugins are looked for.
    plugin_dirs: &'a [PathBuf],
    /// The task's working directory.
    cwd: &'a Path,
}

/// A plugin task's command: the task host (`nonstop plugin-host run LIBRARY ARGS`, the
/// runner's own binary) with the library found for `plugin` and `args` as JSON, which a child
/// validates later (in the task's cwd, see `plugin::validate_all`). Errors point at `plugin`
/// or at the argument at fault.
fn plugin_command(
    ctx: &mut Ctx,
    path: &str,
    plugin: &str,
    args: Option<&serde_yaml::Value>,
    found: &Found<'_>,
) -> Option<(PathBuf, Vec<String>)> {
    // A plugin's arguments are named: a list would reach its `Args` as positional fields
    // (`[a, b]` as the first two, whatever they are).
    let shape = args.and_then(|value| {
        let kind = match value {
            serde_yaml::Value::Mapping(_) => return None,
            serde_yaml::Value::Sequence(_) => "a list",
            serde_yaml::Value::String(_) => "a string",
            serde_yaml::Value::Number(_) => "a number",
            serde_yaml::Value::Bool(_) => "a boolean",
            serde_yaml::Value::Tagged(_) => "a tagged value",
            serde_yaml::Value::Null => return None,
        };
        Some(kind)
    });
    if let Some(kind) = shape {
        ctx.error(
            &format!("{path}.args"),
            format!(
                "must be a mapping of argument names to values (`args: {{ name: value }}`), \
                 not {kind}"
            ),
        );
    }
    let library = match super::plugin::locate(plugin, found.plugin_dirs, found.dir) {
        Ok(library) => library,
        Err(why) => {
            ctx.error(&format!("{path}.plugin"), why);
            return None;
        }
    };
    if shape.is_some() {
        return None;
    }
    let json = match args {
        None => "{}".to_owned(),
        Some(value) => match serde_json::to_string(&finite(value.clone())) {
            Ok(json) => json,
            Err(e) => {
                ctx.error(
                    &format!("{path}.args"),
                    format!("cannot be passed to a plugin: {e}"),
                );
                return None;
            }
        },
    };
    // Validated with every other plugin task's arguments, once all are checked (see
    // `plugin::validate_all`).
    ctx.validations.push(super::plugin::Validation {
        path: path.to_owned(),
        has_args: args.is_some(),
        library: library.clone(),
        args: json.clone(),
        cwd: found.cwd.to_path_buf(),
    });
    Some((
        library.clone(),
        vec![
            // Only `argv[0]`: the runner executes the binary it opened at start, whatever
            // this one's path names now (an upgrade may have renamed another over it); a
            // name that does not depend on that path keeps the task's fingerprint across it.
            "nonstop".into(),
            "plugin-host".into(),
            "run".into(),
            library.to_string_lossy().into_owned(),
            json,
        ],
    ))
}

/// `value` with each number that is not finite (YAML's `.inf`, `-.inf`, `.nan`) written as
/// that text: JSON has no such numbers, and the JSON writer would pass `null` (a duration then
/// said "invalid type: null"); as text, the plugin's own parser says what is wrong with it
/// (`invalid duration ".inf": must be a finite number of seconds`), or takes it as the text it
/// may have been meant as.
fn finite(value: serde_yaml::Value) -> serde_yaml::Value {
    use serde_yaml::Value;
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && !f.is_finite() => Value::String(
                if f.is_nan() {
                    ".nan"
                } else if f > 0.0 {
                    ".inf"
                } else {
                    "-.inf"
                }
                .to_owned(),
            ),
            _ => Value::Number(n),
        },
        Value::Sequence(items) => Value::Sequence(items.into_iter().map(finite).collect()),
        Value::Mapping(map) => {
            Value::Mapping(map.into_iter().map(|(k, v)| (k, finite(v))).collect())
        }
        Value::Tagged(tagged) => {
            let tagged = *tagged;
            Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
                tag: tagged.tag,
                value: finite(tagged.value),
            }))
        }
        other => other,
    }
}

/// The most exits `crash_loop.max` may allow within its window (the runner keeps their times).
const CRASH_LOOP_MAX: u32 = 10_000;

/// Shortest heartbeat timeout: the coarse clock of the beats ticks every 1 to 4 ms.
const MIN_HEARTBEAT: std::time::Duration = std::time::Duration::from_millis(10);

fn task_heartbeat(ctx: &mut Ctx, path: &str, h: raw::TaskHeartbeat) -> Option<HeartbeatSpec> {
    let (timeout, start) = (h.timeout.0, h.start.map(|s| s.0));
    let human = nonstop_core::Duration;
    let errors_before = ctx.errors.len();
    let (timeout_path, start_path) = match start {
        Some(_) => (format!("{path}.timeout"), format!("{path}.start")),
        None => (path.to_owned(), path.to_owned()),
    };
    if timeout < MIN_HEARTBEAT {
        ctx.error(
            &timeout_path,
            format!(
                "{} is too short: a heartbeat timeout is at least 10ms (beats are stamped with a \
                 clock that ticks every few milliseconds)",
                human(timeout)
            ),
        );
    }
    if let Some(start) = start
        && start < timeout
    {
        ctx.error(
            &start_path,
            format!(
                "{} is shorter than the timeout ({}): `start` is a longer first deadline for \
                 programs that start slowly",
                human(start),
                human(timeout)
            ),
        );
    }
    (ctx.errors.len() == errors_before).then(|| HeartbeatSpec {
        timeout,
        start: start.unwrap_or(timeout),
    })
}

/// Resident (with its restart policy) or periodic (with its schedule).
fn schedule(ctx: &mut Ctx, path: &str, t: &raw::Task) -> Option<Kind> {
    let field = |f: &str| format!("{path}.{f}");
    if let Some(timeout) = t.timeout
        && timeout.0.is_zero()
    {
        ctx.error(&field("timeout"), "must be longer than 0");
    }
    match (t.restart, t.every, &t.cron) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            ctx.error_at_key(
                &field("restart"),
                "`restart` is for resident tasks; a task with `every` or `cron` is periodic",
            );
            None
        }
        (_, Some(_), Some(_)) => {
            ctx.error_at_key(&field("cron"), "`every` and `cron` exclude each other");
            None
        }
        (restart, None, None) => {
            if t.timeout.is_some() {
                ctx.error_at_key(
                    &field("timeout"),
                    "`timeout` applies to periodic tasks (`every` or `cron`)",
                );
            }
            if t.timezone.is_some() {
                ctx.error_at_key(&field("timezone"), "`timezone` applies to `cron` tasks");
            }
            Some(Kind::Resident(
                match restart.unwrap_or(raw::Restart::Always) {
                    raw::Restart::Always => Restart::Always,
                    raw::Restart::OnFailure => Restart::OnFailure,
                    raw::Restart::Never => Restart::Never,
                },
            ))
        }
        (None, Some(every), None) => {
            if every.0 < MIN_EVERY {
                ctx.error(
                    &field("every"),
                    format!(
                        "{} is too short: the shortest period is {}",
                        nonstop_core::Duration(every.0),
                        nonstop_core::Duration(MIN_EVERY)
                    ),
                );
            }
            if t.timezone.is_some() {
                ctx.error_at_key(&field("timezone"), "`timezone` applies to `cron` tasks");
            }
            periodic_only(ctx, path, t);
            Some(Kind::Periodic {
                schedule: Schedule::Every(every.0),
                timeout: t.timeout.map(Into::into),
            })
        }
        (None, None, Some(expr)) => {
            let zone = match &t.timezone {
                None => Zone::Local,
                Some(name) => match Zone::named(name) {
                    Ok(zone) => zone,
                    Err(_) => {
                        ctx.error(
                            &field("timezone"),
                            format!(
                                "unknown time zone \"{name}\": use an IANA name such as \
                                 Europe/Berlin or UTC (from the system's tzdata)"
                            ),
                        );
                        Zone::Local
                    }
                },
            };
            periodic_only(ctx, path, t);
            match CronSchedule::parse(expr, zone) {
                Ok(cron) if !cron.fires() => {
                    ctx.error(
                        &field("cron"),
                        format!(
                            "cron expression \"{expr}\" never fires: no date matches it (such \
                             as the 30th of February)"
                        ),
                    );
                    None
                }
                Ok(cron) => Some(Kind::Periodic {
                    schedule: Schedule::Cron(Box::new(cron)),
                    timeout: t.timeout.map(Into::into),
                }),
                Err(why) => {
                    ctx.error(
                        &field("cron"),
                        format!("invalid cron expression \"{expr}\": {why}"),
                    );
                    None
                }
            }
        }
    }
}

/// The shortest `every`: shorter periods would have the runner do little but start runs.
const MIN_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// Resident-only settings on a periodic task are mistakes.
fn periodic_only(ctx: &mut Ctx, path: &str, t: &raw::Task) {
    for (present, name) in [
        (t.backoff.is_some(), "backoff"),
        (t.crash_loop.is_some(), "crash_loop"),
    ] {
        if present {
            ctx.error_at_key(
                &format!("{path}.{name}"),
                format!("`{name}` applies to resident tasks; this task is periodic"),
            );
        }
    }
}

/// The program as execve will find it: a path relative to the task's directory, or a name in
/// `PATH`. It must exist and be executable. Messages name it as written.
pub(super) fn resolve_program(
    program: &str,
    cwd: &Path,
    search: Option<&str>,
) -> Result<PathBuf, String> {
    if program.is_empty() {
        return Err("the program name is empty".into());
    }
    let path = if program.contains('/') {
        let path = cwd.join(program);
        executable(&path).map_err(|why| format!("program \"{program}\" {why}"))?;
        path
    } else {
        nonstop_scheduler::spawn::search_path(
            Path::new(program),
            search.map(std::ffi::OsStr::new),
            Some(cwd),
        )
        .map_err(|_| {
            // With no PATH at all, execvp searches the C library's default.
            let search = search.unwrap_or("/bin:/usr/bin");
            format!("program \"{program}\" not found in PATH ({search})")
        })?
    };
    loadable(&path, cwd).map_err(|why| format!("program \"{program}\" {why}"))?;
    Ok(path)
}

/// Why the kernel would refuse to execute `path` although it is an executable file: it is
/// neither a binary nor a script with a `#!` line (`ENOEXEC`), or its interpreter is missing.
/// A file this process cannot read is given the benefit of the doubt.
fn loadable(path: &Path, cwd: &Path) -> Result<(), String> {
    let mut head = [0u8; 256];
    let n = match std::fs::File::open(path).and_then(|mut f| std::io::Read::read(&mut f, &mut head))
    {
        Ok(n) => n,
        Err(_) => return Ok(()),
    };
    let head = &head[..n];
    if head.starts_with(b"\x7fELF") {
        return Ok(());
    }
    let Some(line) = head.strip_prefix(b"#!") else {
        return Err(
            "is neither a binary nor a script with a #! line: execve would refuse it \
             (ENOEXEC); add a #! line, or run it through its interpreter, e.g. [sh, FILE]"
                .into(),
        );
    };
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let Some(interpreter) = line.split_whitespace().next() else {
        return Err("has a #! line that names no interpreter".into());
    };
    match executable(&cwd.join(interpreter)) {
        Ok(()) => Ok(()),
        Err(why) => Err(format!(
            "names the interpreter \"{interpreter}\", which {why}"
        )),
    }
}

/// Why `path` cannot be executed, if it cannot.
fn executable(path: &Path) -> Result<(), &'static str> {
    match std::fs::metadata(path) {
        Err(_) => Err("does not exist"),
        Ok(m) if m.is_dir() => Err("is a directory"),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err("is not executable"),
        Ok(_) => Ok(()),
    }
}

/// The ids to switch to for `user` and `group`, and the user's account (for its home, name
/// and shell).
fn credentials(
    ctx: &mut Ctx,
    path: &str,
    user: Option<&str>,
    group: Option<&str>,
) -> (Option<Credentials>, Option<nix::unistd::User>) {
    if user.is_none() && group.is_none() {
        return (None, None);
    }
    let mut credentials = Credentials {
        uid: None,
        gid: None,
        groups: None,
    };
    let mut account = None;
    if let Some(name) = user {
        match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => {
                credentials.uid = Some(u.uid.as_raw());
                credentials.gid = Some(u.gid.as_raw());
                credentials.groups = CString::new(name)
                    .ok()
                    .and_then(|c| nix::unistd::getgrouplist(&c, u.gid).ok())
                    .map(|g| g.into_iter().map(|g| g.as_raw()).collect());
                account = Some(u);
            }
            Ok(None) => ctx.error(&format!("{path}.user"), format!("unknown user \"{name}\"")),
            Err(e) => ctx.error(
                &format!("{path}.user"),
                format!("cannot look up \"{name}\": {e}"),
            ),
        }
    }
    if let Some(name) = group {
        match nix::unistd::Group::from_name(name) {
            Ok(Some(g)) => credentials.gid = Some(g.gid.as_raw()),
            Ok(None) => ctx.error(
                &format!("{path}.group"),
                format!("unknown group \"{name}\""),
            ),
            Err(e) => ctx.error(
                &format!("{path}.group"),
                format!("cannot look up \"{name}\": {e}"),
            ),
        }
    }
    (Some(credentials), account)
}

/// The limits set, each with its field's name.
fn limits(l: raw::Limits) -> Vec<(&'static str, Limit)> {
    [
        ("as", l.address_space, Resource::RLIMIT_AS),
        ("core", l.core, Resource::RLIMIT_CORE),
        ("cpu", l.cpu, Resource::RLIMIT_CPU),
        ("data", l.data, Resource::RLIMIT_DATA),
        ("fsize", l.fsize, Resource::RLIMIT_FSIZE),
        ("locks", l.locks, Resource::RLIMIT_LOCKS),
        ("memlock", l.memlock, Resource::RLIMIT_MEMLOCK),
        ("msgqueue", l.msgqueue, Resource::RLIMIT_MSGQUEUE),
        ("nice", l.nice, Resource::RLIMIT_NICE),
        ("nofile", l.nofile, Resource::RLIMIT_NOFILE),
        ("nproc", l.nproc, Resource::RLIMIT_NPROC),
        ("rss", l.rss, Resource::RLIMIT_RSS),
        ("rtprio", l.rtprio, Resource::RLIMIT_RTPRIO),
        ("sigpending", l.sigpending, Resource::RLIMIT_SIGPENDING),
        ("stack", l.stack, Resource::RLIMIT_STACK),
    ]
    .into_iter()
    .filter_map(|(name, limit, resource)| {
        limit.map(|l| {
            (
                name,
                Limit {
                    resource,
                    soft: l.soft,
                    hard: l.hard,
                    inherited: false,
                },
            )
        })
    })
    .collect()
}

/// Why a task could not be given `limit`: a hard limit above this process's own needs
/// `CAP_SYS_RESOURCE` (root), and `nofile` can never exceed the kernel's `fs.nr_open`.
/// `check` and `run` run this as the user who runs them.
fn raisable(limit: &Limit) -> Result<(), String> {
    let shown = |n: u64| {
        if n == u64::MAX {
            "unlimited".to_owned()
        } else {
            n.to_string()
        }
    };
    if limit.resource == Resource::RLIMIT_NOFILE
        && let Some(nr_open) = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
        && limit.hard > nr_open
    {
        return Err(format!(
            "a hard limit of {} is above the kernel's maximum for open files, fs.nr_open \
             ({nr_open}); ask for less, or raise it with sysctl",
            shown(limit.hard)
        ));
    }
    let own = nix::sys::resource::getrlimit(limit.resource)
        .map(|(_, hard)| hard)
        .unwrap_or(u64::MAX);
    if limit.hard > own && !has_cap_sys_resource() {
        return Err(format!(
            "a hard limit of {} is above this process's own ({}), and raising a hard limit \
             needs root (CAP_SYS_RESOURCE)",
            shown(limit.hard),
            shown(own)
        ));
    }
    Ok(())
}

/// Whether this process has `CAP_SYS_RESOURCE` (bit 24 of `CapEff` in /proc/self/status).
fn has_cap_sys_resource() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_a_pipeline_can_set_can_be_handed_off() {
        let l = |n| Some(raw::Limit { soft: n, hard: n });
        // No `..Default::default()`: a new field must be added here to compile.
        let all = raw::Limits {
            address_space: l(1),
            core: l(2),
            cpu: l(3),
            data: l(4),
            fsize: l(5),
            locks: l(6),
            memlock: l(7),
            msgqueue: l(8),
            nice: l(9),
            nofile: l(10),
            nproc: l(11),
            rss: l(12),
            rtprio: l(13),
            sigpending: l(14),
            stack: l(15),
        };
        let named = limits(all);
        // An error names a limit as the pipeline does.
        for (name, limit) in &named {
            assert_eq!(
                nonstop_scheduler::wire::resource::name(limit.resource),
                *name
            );
        }
        let set: Vec<Limit> = named.into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            set.len(),
            15,
            "a field of raw::Limits is not mapped: {set:?}"
        );
        let wire = nonstop_scheduler::wire::resource::ALL;
        for limit in &set {
            assert!(
                wire.contains(&limit.resource),
                "{:?} is missing from wire::resource::ALL",
                limit.resource
            );
        }
        let distinct: HashSet<i32> = set.iter().map(|l| l.resource as i32).collect();
        assert_eq!(distinct.len(), set.len(), "two fields map to one resource");
    }
}
