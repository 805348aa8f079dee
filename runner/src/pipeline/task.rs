//! Checking one task beyond what serde checks, and building its [`TaskSpec`].

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::resource::Resource;
use nonstop_scheduler::policy::{Backoff, CrashLoop, Restart};
use nonstop_scheduler::schedule::{CronSchedule, Schedule, Zone};
use nonstop_scheduler::spawn::{Credentials, Limit, SpawnSpec};
use nonstop_scheduler::task::{Kind, StopSpec, TaskSpec};
use serde_yaml::Mapping;

use super::{Ctx, HeartbeatConfig, raw};

/// Checks every task of `tasks:` and the dependencies between them.
pub(super) fn check_all(
    ctx: &mut Ctx,
    map: Mapping,
    dir: &Path,
    heartbeat: Option<HeartbeatConfig>,
) -> Vec<TaskSpec> {
    let mut names = Vec::new();
    let mut raws = Vec::new();
    for (key, value) in map {
        let Some(name) = key.as_str().map(str::to_owned) else {
            ctx.error(
                "tasks",
                format!("task names must be strings, found {key:?}"),
            );
            continue;
        };
        let path = format!("tasks.{name}");
        if let Err(why) = check_name(&name) {
            ctx.error_at_key(&path, why);
        }
        names.push(name.clone());
        if value.is_null() {
            ctx.error(
                &path,
                "empty task: it needs `command` (a program and its arguments)",
            );
            continue;
        }
        if let Some(raw) = ctx.section::<raw::Task>(&path, value) {
            raws.push((name, raw));
        }
    }
    let specs: Vec<TaskSpec> = raws
        .into_iter()
        .filter_map(|(name, raw)| check_task(ctx, &name, raw, dir, heartbeat, &names))
        .collect();
    check_cycles(ctx, &specs);
    specs
}

/// Task names become log file names: keep them plain.
fn check_name(name: &str) -> Result<(), String> {
    let ok_start = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok_start || !ok_chars || name.len() > 64 {
        return Err(format!(
            "invalid task name \"{name}\": use letters, digits, '-', '_' and '.', starting with a \
             letter or digit, at most 64 characters"
        ));
    }
    Ok(())
}

fn check_task(
    ctx: &mut Ctx,
    name: &str,
    t: raw::Task,
    dir: &Path,
    heartbeat: Option<HeartbeatConfig>,
    names: &[String],
) -> Option<TaskSpec> {
    let path = format!("tasks.{name}");
    let field = |f: &str| format!("{path}.{f}");
    let errors_before = ctx.errors.len();

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
            ctx.error(
                &field("plugin"),
                format!(
                    "plugin tasks are not supported by this build yet (plugin \"{plugin}\"); \
                     run a program with `command`"
                ),
            );
            None
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
        Some(cwd) => {
            let cwd = dir.join(cwd);
            if !cwd.is_dir() {
                ctx.error(
                    &field("cwd"),
                    format!("directory \"{}\" does not exist", cwd.display()),
                );
            }
            cwd
        }
    };

    let (credentials, account) = credentials(ctx, &path, t.user.as_deref(), t.group.as_deref());
    let mut env: Vec<(OsString, OsString)> = vec![("NONSTOP_TASK".into(), name.into())];
    if let Some(h) = heartbeat {
        env.push(("NONSTOP_HEARTBEAT_KEY".into(), h.key.to_string().into()));
    }
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
        Some(command) => {
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

    let kind = schedule(ctx, &path, &t);
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

    let limits = t.limits.map(limits).unwrap_or_default();
    if t.heartbeat.is_some() {
        ctx.error_at_key(
            &field("heartbeat"),
            "hang detection is not enforced by this build yet (it arrives with the watchdog); \
             remove `heartbeat` for now",
        );
    }

    if ctx.errors.len() > errors_before {
        return None;
    }
    Some(TaskSpec {
        name: name.to_owned(),
        spawn: SpawnSpec {
            program,
            args,
            env,
            clear_env: t.clear_env,
            cwd: Some(cwd),
            credentials,
            umask: t.umask.map(|u| u.0),
            limits,
        },
        kind: kind?,
        backoff,
        crash_loop,
        stop,
        after: t.after,
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
            if every.0.is_zero() {
                ctx.error(&field("every"), "must be longer than 0");
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
fn resolve_program(program: &str, cwd: &Path, search: Option<&str>) -> Result<PathBuf, String> {
    if program.is_empty() {
        return Err("the program name is empty".into());
    }
    if program.contains('/') {
        let path = cwd.join(program);
        return executable(&path)
            .map(|()| path)
            .map_err(|why| format!("program \"{program}\" {why}"));
    }
    nonstop_scheduler::spawn::search_path(
        Path::new(program),
        search.map(std::ffi::OsStr::new),
        Some(cwd),
    )
    .map_err(|_| {
        // With no PATH at all, execvp searches the C library's default.
        let search = search.unwrap_or("/bin:/usr/bin");
        format!("program \"{program}\" not found in PATH ({search})")
    })
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

fn limits(l: raw::Limits) -> Vec<Limit> {
    [
        (l.address_space, Resource::RLIMIT_AS),
        (l.core, Resource::RLIMIT_CORE),
        (l.cpu, Resource::RLIMIT_CPU),
        (l.data, Resource::RLIMIT_DATA),
        (l.fsize, Resource::RLIMIT_FSIZE),
        (l.locks, Resource::RLIMIT_LOCKS),
        (l.memlock, Resource::RLIMIT_MEMLOCK),
        (l.msgqueue, Resource::RLIMIT_MSGQUEUE),
        (l.nice, Resource::RLIMIT_NICE),
        (l.nofile, Resource::RLIMIT_NOFILE),
        (l.nproc, Resource::RLIMIT_NPROC),
        (l.rss, Resource::RLIMIT_RSS),
        (l.rtprio, Resource::RLIMIT_RTPRIO),
        (l.sigpending, Resource::RLIMIT_SIGPENDING),
        (l.stack, Resource::RLIMIT_STACK),
    ]
    .into_iter()
    .filter_map(|(limit, resource)| {
        limit.map(|l| Limit {
            resource,
            soft: l.soft,
            hard: l.hard,
        })
    })
    .collect()
}

/// Reports each cycle of `after` once, at the first task of it.
fn check_cycles(ctx: &mut Ctx, specs: &[TaskSpec]) {
    let index: HashMap<&str, &TaskSpec> = specs.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut done: HashSet<&str> = HashSet::new();
    for spec in specs {
        let mut stack: Vec<&str> = Vec::new();
        visit(spec.name.as_str(), &index, &mut stack, &mut done, ctx);
    }
}

fn visit<'a>(
    name: &'a str,
    index: &HashMap<&'a str, &'a TaskSpec>,
    stack: &mut Vec<&'a str>,
    done: &mut HashSet<&'a str>,
    ctx: &mut Ctx,
) {
    if done.contains(name) {
        return;
    }
    if let Some(start) = stack.iter().position(|n| *n == name) {
        let mut cycle: Vec<&str> = stack[start..].to_vec();
        cycle.push(name);
        let first = cycle[0];
        ctx.error(
            &format!("tasks.{first}.after"),
            format!("cyclic dependency: {}", cycle.join(" -> ")),
        );
        return;
    }
    let Some(spec) = index.get(name) else { return };
    stack.push(name);
    for dep in &spec.after {
        visit(dep.as_str(), index, stack, done, ctx);
    }
    stack.pop();
    done.insert(name);
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
        let set = limits(all);
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
