//! The task set: every task of `tasks:` checked (copies made for `instances`, `on_failure`
//! names resolved), and the dependencies between them (unknown names, cycles).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use nonstop_scheduler::task::TaskSpec;
use serde_yaml::Mapping;

use super::task::{MAX_INSTANCES, check_task};
use super::{Ctx, raw};

/// Checks every task of `tasks:` and the dependencies between them.
pub(super) fn check_all(
    ctx: &mut Ctx,
    map: Mapping,
    dir: &Path,
    plugin_dirs: &[PathBuf],
) -> Vec<TaskSpec> {
    let mut names = HashSet::new();
    let mut raws = Vec::new();
    // Tasks with `instances:`, and how many.
    let mut groups: HashMap<String, u32> = HashMap::new();
    for (key, value) in map {
        let Some(name) = key.as_str().map(str::to_owned) else {
            let (shown, what) = match &key {
                serde_yaml::Value::Number(n) => (n.to_string(), "the number"),
                serde_yaml::Value::Bool(b) => (b.to_string(), "the boolean"),
                serde_yaml::Value::Null => ("null".to_owned(), "nothing"),
                _ => (String::new(), "a list or map"),
            };
            let hint = if shown.is_empty() {
                String::new()
            } else {
                format!(": write it in quotes (\"{shown}\")")
            };
            ctx.error_at_key(
                &format!("tasks.{shown}"),
                format!("a task name must be a string, found {what} {shown}{hint}")
                    .replace("  ", " "),
            );
            continue;
        };
        let path = format!("tasks.{name}");
        if let Err(why) = check_name(&name) {
            ctx.error_at_key(&path, why);
        } else if let Some(why) = runner_file(&name) {
            ctx.error_at_key(&path, why);
        }
        names.insert(name.clone());
        if value.is_null() {
            ctx.error(
                &path,
                "empty task: it needs `command` (a program and its arguments)",
            );
            continue;
        }
        let Some(raw) = task_section(ctx, &path, value.clone()) else {
            continue;
        };
        match raw.instances {
            None => raws.push((name, None, raw)),
            Some(n) if n == 0 || n > MAX_INSTANCES => ctx.error(
                &format!("{path}.instances"),
                format!("must be 1 to {MAX_INSTANCES}"),
            ),
            // Each copy is checked with `{instance}` replaced in every string of its
            // definition: its command, arguments, environment, probe.
            Some(n) => {
                for i in 0..n {
                    let copy = with_instance(value.clone(), i);
                    if let Some(raw) = task_section(ctx, &path, copy) {
                        raws.push((name.clone(), Some(i), raw));
                    }
                }
                groups.insert(name.clone(), n);
            }
        }
    }
    // A copy's name may not be a task's; others may come `after` a copy.
    for (group, n) in &groups {
        for i in 0..*n {
            let copy = format!("{group}.{i}");
            if !names.insert(copy.clone()) {
                ctx.error_at_key(
                    &format!("tasks.{copy}"),
                    format!("this name is taken by instance {i} of task {group} (instances: {n})"),
                );
            }
        }
    }
    // The tasks named in `on_failure`, which must exist.
    let mut handlers = HashSet::new();
    for (name, _, raw) in &raws {
        for (n, handler) in raw.on_failure.iter().enumerate() {
            if !names.contains(handler) {
                ctx.error(
                    &format!("tasks.{name}.on_failure[{n}]"),
                    format!("no task named \"{handler}\""),
                );
            } else if handler == name {
                ctx.error(
                    &format!("tasks.{name}.on_failure[{n}]"),
                    "a task cannot be its own on_failure task",
                );
            }
            handlers.insert(handler.clone());
        }
    }
    let mut specs: Vec<TaskSpec> = raws
        .into_iter()
        .filter_map(|(name, instance, raw)| {
            check_task(
                ctx,
                &name,
                instance,
                raw,
                dir,
                &names,
                &handlers,
                plugin_dirs,
            )
        })
        .collect();
    // `after: [NAME]` of a task with instances waits for every copy.
    for spec in &mut specs {
        spec.after = std::mem::take(&mut spec.after)
            .into_iter()
            .flat_map(|dep| match groups.get(&dep) {
                Some(&n) => (0..n).map(|i| format!("{dep}.{i}")).collect(),
                None => vec![dep],
            })
            .collect();
    }
    check_cycles(ctx, &specs);
    check_failure_cycles(ctx, &specs);
    specs
}

/// `value` with `{instance}` replaced by `i` in every string, and no `instances` key.
fn with_instance(value: serde_yaml::Value, i: u32) -> serde_yaml::Value {
    use serde_yaml::Value;
    match value {
        Value::String(s) => Value::String(s.replace("{instance}", &i.to_string())),
        Value::Sequence(items) => {
            Value::Sequence(items.into_iter().map(|v| with_instance(v, i)).collect())
        }
        Value::Mapping(map) => Value::Mapping(
            map.into_iter()
                .filter(|(k, _)| k.as_str() != Some("instances"))
                .map(|(k, v)| (k, with_instance(v, i)))
                .collect(),
        ),
        Value::Tagged(tagged) => {
            let tagged = *tagged;
            Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
                tag: tagged.tag,
                value: with_instance(tagged.value, i),
            }))
        }
        other => other,
    }
}

/// A task's fields whose value, when serde refuses it, is left out to go on and find the
/// task's other errors (a probe whose host does not resolve, a missing program): no other
/// check depends on them. Leaving out `command`, `every` or `backoff.max` would make errors of
/// its own (a task without a program, a periodic task taken for a resident one, a backoff
/// compared with the default). `*` is any key (an environment variable, a limit).
const INDEPENDENT: &[&[&str]] = &[
    &["stop", "signal"],
    &["stop", "grace"],
    &["stop"],
    &["umask"],
    &["limits", "*"],
    &["limits"],
    &["env", "*"],
    &["env"],
    &["user"],
    &["group"],
    &["cwd"],
    &["clear_env"],
    &["crash_loop", "max"],
    &["crash_loop", "within"],
    &["crash_loop"],
    &["timeout"],
    &["backoff", "stable"],
    &["probe", "timeout"],
    &["probe", "failures"],
    &["probe", "start"],
    &["heartbeat"],
];

/// Task `value` (at `path`) as written, every error serde finds in it reported: a value
/// refused in one of the [`INDEPENDENT`] fields is reported and left out, and the rest
/// deserialized again, so that the task is still checked further.
/// `None` once an error is in a field the rest depends on.
fn task_section(ctx: &mut Ctx, path: &str, mut value: serde_yaml::Value) -> Option<raw::Task> {
    use serde_path_to_error::Segment;
    // Each round leaves a key out: bounded by the keys there are.
    loop {
        let e = match serde_path_to_error::deserialize::<_, raw::Task>(value.clone()) {
            Ok(task) => return Some(task),
            Err(e) => e,
        };
        let keys: Option<Vec<String>> = e
            .path()
            .iter()
            .map(|segment| match segment {
                Segment::Map { key } => Some(key.clone()),
                _ => None,
            })
            .collect();
        // A field that does not exist at the task's level may be a misspelled `command`: it
        // is left out only inside an independent field, as any error there.
        let leave_out = keys.and_then(|keys| {
            // The most precise entry that the field at fault is in.
            INDEPENDENT
                .iter()
                .filter(|entry| {
                    entry.len() <= keys.len()
                        && entry.iter().zip(&keys).all(|(e, k)| *e == "*" || e == k)
                })
                .max_by_key(|entry| entry.len())
                .map(|entry| keys[..entry.len()].to_vec())
        });
        ctx.serde_error(path, e);
        let keys = leave_out?;
        if !remove(&mut value, &keys) {
            return None;
        }
    }
}

/// Removes the entry at `keys` (a path of map keys) from `value`; whether there was one.
fn remove(value: &mut serde_yaml::Value, keys: &[String]) -> bool {
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let mut at = value;
    for key in parents {
        match at.get_mut(key.as_str()) {
            Some(inner) => at = inner,
            None => return false,
        }
    }
    at.as_mapping_mut()
        .and_then(|map| map.remove(last.as_str()))
        .is_some()
}

/// The files the runner keeps for itself in `logs.dir` beside the tasks' `TASK.log`:
/// `nonstop.lock` (the pipeline's lock, `nonstop_supervisor::lock::FILE`) and `nonstop.log`
/// (its own log under `run -d`, `crate::detach::LOG`).
const RUNNER_FILES: [&str; 2] = [nonstop_supervisor::lock::FILE, crate::detach::LOG];

/// Why task `name` cannot have that name: its log, `NAME.log`, would be one of the runner's
/// own files in `logs.dir` ([`RUNNER_FILES`]): the task's output would mix with the runner's
/// log, and its rotations rename and prune it from under the runner.
fn runner_file(name: &str) -> Option<String> {
    let log = format!("{name}.log");
    RUNNER_FILES.contains(&log.as_str()).then(|| {
        format!(
            "a task cannot be named \"{name}\": its log would be logs.dir/{log}, which is the \
             runner's own log (under `run -d`); choose another name"
        )
    })
}

/// The longest task name.
const MAX_NAME: usize = 64;

/// Task names become log file names: keep them plain.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    let length = name.chars().count();
    if length > MAX_NAME {
        return Err(format!(
            "task name too long: \"{}\" is {length} characters, at most {MAX_NAME}",
            abbreviated(name)
        ));
    }
    let ok_start = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok_start || !ok_chars {
        return Err(format!(
            "invalid task name \"{name}\": use letters, digits, '-', '_' and '.', starting with a \
             letter or digit, at most {MAX_NAME} characters"
        ));
    }
    Ok(())
}

/// `text`, its first 40 characters and `…` if it is longer than a name may be, for messages.
pub(super) fn abbreviated(text: &str) -> String {
    if text.chars().count() <= MAX_NAME {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(40).collect();
    short.push('…');
    short
}

/// Reports each cycle of `after` once, at the first task of it.
fn check_cycles(ctx: &mut Ctx, specs: &[TaskSpec]) {
    let index = index_of(specs);
    let edges: Vec<Vec<usize>> = specs
        .iter()
        .map(|s| {
            s.after
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    for cycle in cycles(&edges) {
        let mut names: Vec<&str> = cycle.iter().map(|&(t, _)| specs[t].name.as_str()).collect();
        names.push(names[0]);
        ctx.error(
            &format!("tasks.{}.after", names[0]),
            format!("cyclic dependency: {}", names.join(" -> ")),
        );
    }
}

/// Reports each cycle of `on_failure` (a fails: b starts; b fails: a starts; ...), which would
/// start its tasks one after the other for ever, at the entry of its first task that names
/// the next; a copy of a task with `instances` that names itself (`a.1` in the `on_failure` of
/// every copy of `a`, or `a.{instance}`) is one too. A task naming itself as written is
/// reported where the names are checked.
fn check_failure_cycles(ctx: &mut Ctx, specs: &[TaskSpec]) {
    let index = index_of(specs);
    // The copies of each task with `instances`, which its name stands for.
    let mut copies: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, s) in specs.iter().enumerate() {
        if let Some(group) = &s.instance_of {
            copies.entry(group.as_str()).or_default().push(i);
        }
    }
    // Each edge with the position of its name in the task's `on_failure`.
    let mut at: Vec<Vec<usize>> = Vec::with_capacity(specs.len());
    let edges: Vec<Vec<usize>> = specs
        .iter()
        .map(|s| {
            let written = s.instance_of.as_deref().unwrap_or(&s.name);
            let mut to = Vec::new();
            let mut positions = Vec::new();
            for (n, handler) in s.on_failure.iter().enumerate() {
                // A task naming itself is said where the names are checked. A copy naming
                // itself (`a.1` in the `on_failure` of every copy of `a`) is a cycle here.
                if handler == written {
                    continue;
                }
                let targets = match copies.get(handler.as_str()) {
                    Some(all) => all.clone(),
                    None => index.get(handler.as_str()).copied().into_iter().collect(),
                };
                for t in targets {
                    to.push(t);
                    positions.push(n);
                }
            }
            at.push(positions);
            to
        })
        .collect();
    // The copies of a task make the same cycle: said once per set of tasks as written.
    let mut said = HashSet::new();
    for cycle in cycles(&edges) {
        let written = |t: usize| specs[t].instance_of.as_deref().unwrap_or(&specs[t].name);
        let mut set: Vec<&str> = cycle.iter().map(|&(t, _)| written(t)).collect();
        set.sort_unstable();
        set.dedup();
        if !said.insert(set) {
            continue;
        }
        let (first, edge) = cycle[0];
        let mut names: Vec<&str> = cycle.iter().map(|&(t, _)| specs[t].name.as_str()).collect();
        let message = if let [one] = names[..] {
            format!(
                "on_failure: {one} names itself (instance {} of task {}): its failure would \
                 start it again, for ever",
                one.rsplit('.').next().unwrap_or_default(),
                written(first)
            )
        } else {
            names.push(names[0]);
            format!(
                "on_failure: {} is a cycle: each task's failure would start the next, for ever",
                names.join(" -> ")
            )
        };
        ctx.error(
            &format!("tasks.{}.on_failure[{}]", written(first), at[first][edge]),
            message,
        );
    }
}

fn index_of(specs: &[TaskSpec]) -> HashMap<&str, usize> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect()
}

/// The cycles of the graph whose node `i` has edges to `edges[i]`: one for each edge that
/// closes one, as the nodes on it from the first, each with the index (in its own edges) of
/// the edge it leaves by. A depth-first walk with an explicit stack: linear in nodes and
/// edges, and no recursion, so a chain of 200,000 tasks is fine.
fn cycles(edges: &[Vec<usize>]) -> Vec<Vec<(usize, usize)>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut found = Vec::new();
    let mut mark = vec![Mark::New; edges.len()];
    // The current path: (node, how many of its edges were looked at).
    let mut path: Vec<(usize, usize)> = Vec::new();
    for root in 0..edges.len() {
        if mark[root] != Mark::New {
            continue;
        }
        mark[root] = Mark::OnPath;
        path.push((root, 0));
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let Some(&to) = edges[node].get(*next) else {
                mark[node] = Mark::Done;
                path.pop();
                continue;
            };
            *next += 1;
            match mark[to] {
                Mark::Done => {}
                Mark::New => {
                    mark[to] = Mark::OnPath;
                    path.push((to, 0));
                }
                Mark::OnPath => {
                    let start = path.iter().position(|&(t, _)| t == to).unwrap_or(0);
                    // Each node's counter is one past the edge it left by.
                    found.push(
                        path[start..]
                            .iter()
                            .map(|&(t, next)| (t, next.saturating_sub(1)))
                            .collect(),
                    );
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use nonstop_scheduler::policy::{Backoff, CrashLoop, Restart};
    use nonstop_scheduler::spawn::SpawnSpec;
    use nonstop_scheduler::task::{Kind, StopSpec};

    use super::*;

    fn spec(name: &str, after: &[String]) -> TaskSpec {
        TaskSpec {
            name: name.into(),
            spawn: SpawnSpec::default(),
            kind: Kind::Resident(Restart::Always),
            backoff: Backoff::default(),
            crash_loop: CrashLoop::default(),
            stop: StopSpec::default(),
            after: after.to_vec(),
            heartbeat: None,
            probe: None,
            plugin: None,
            instance_of: None,
            on_failure: Vec::new(),
            on_demand: false,
        }
    }

    /// Linear and without recursion: a chain of 200,000 tasks is checked at once (the
    /// recursive, quadratic walk it replaces overflows the stack here).
    #[test]
    fn a_long_chain_is_checked_for_cycles_in_linear_time() {
        const N: usize = 200_000;
        let names: Vec<String> = (0..N).map(|i| format!("t{i}")).collect();
        let mut specs: Vec<TaskSpec> = (0..N)
            .map(|i| spec(&names[i], if i == 0 { &[] } else { &names[i - 1..i] }))
            .collect();
        let mut ctx = Ctx {
            positions: crate::pipeline::locate::Positions::of(""),
            errors: Vec::new(),
            warnings: Vec::new(),
            validations: Vec::new(),
        };
        check_cycles(&mut ctx, &specs);
        assert!(ctx.errors.is_empty(), "{:?}", ctx.errors);
        // Closing the chain into a ring is one cycle, reported once.
        specs[0].after = vec![names[N - 1].clone()];
        check_cycles(&mut ctx, &specs);
        assert_eq!(ctx.errors.len(), 1);
        assert!(
            ctx.errors[0]
                .message
                .starts_with("cyclic dependency: t0 -> t199999 -> ")
        );
    }
}
