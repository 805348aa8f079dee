//! `nonstop check FILE`.

use std::path::Path;
use std::process::ExitCode;

use nonstop_core::Duration;
use nonstop_scheduler::policy::Restart;
use nonstop_scheduler::probe::ProbeCheck;
use nonstop_scheduler::task::{Kind, TaskSpec};

use crate::pipeline;

/// Prints one line per task and exits 0, or prints every error and exits 1.
pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let shown = file.display().to_string();
    match pipeline::load_or_report(file) {
        Ok(p) => {
            for w in &p.warnings {
                eprintln!(
                    "{}",
                    w.display(&shown)
                        .to_string()
                        .replacen(": ", ": warning: ", 1)
                );
            }
            if let Some(why) = descriptors_warning(&p.pipeline) {
                eprintln!("{shown}: warning: {why}");
            }
            let width = p
                .pipeline
                .tasks
                .iter()
                .map(|t| t.name.len())
                .max()
                .unwrap_or(0);
            // Arguments, paths and cron expressions as the file has them, but on one line of
            // printable text: an argument with an escape sequence or a newline in it shows it
            // escaped (`\u{1b}`, `\n`), as errors do.
            for task in &p.pipeline.tasks {
                println!(
                    "{:width$}  {}",
                    pipeline::printable(&task.name),
                    pipeline::printable(&summary(task))
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!(
                "{}: {errors} error{}",
                pipeline::printable(&shown),
                if errors == 1 { "" } else { "s" }
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Whether this process's hard `nofile` limit is too low for the pipeline's descriptors
/// (counting a cgroup per task unless `containment: process-group`): a warning, since the
/// runner may run elsewhere, under another limit (a unit's `LimitNOFILE=`); `nonstop run`
/// refuses such a pipeline where the limit is too low.
fn descriptors_warning(pipeline: &nonstop_supervisor::pipeline::Pipeline) -> Option<String> {
    use nonstop_supervisor::pipeline::ContainmentMode;
    use nonstop_supervisor::supervise::descriptors;
    let cgroups = pipeline.containment != ContainmentMode::ProcessGroup;
    let why = descriptors::need(&pipeline.tasks, cgroups, 0).over(descriptors::hard_limit())?;
    Some(format!(
        "{why} here, and `nonstop run` refuses to start where it is this low; {}",
        descriptors::ADVICE
    ))
}

/// `resident, restart always, backoff 100ms..30s: /bin/server --port 5005`.
pub fn summary(task: &TaskSpec) -> String {
    let kind = match &task.kind {
        Kind::Resident(restart) => {
            let mut s = format!("resident, restart {}", restart.as_str());
            if *restart != Restart::Never {
                s += &format!(
                    ", backoff {}..{}",
                    Duration(task.backoff.initial),
                    Duration(task.backoff.max)
                );
            }
            s
        }
        Kind::Periodic { schedule, timeout } => {
            let mut s = format!("periodic, {schedule}");
            if let Some(t) = timeout {
                s += &format!(", timeout {}", Duration(*t));
            }
            s
        }
    };
    let heartbeat = match task.heartbeat {
        Some(h) if h.start > h.timeout => format!(
            ", heartbeat {} (first {})",
            Duration(h.timeout),
            Duration(h.start)
        ),
        Some(h) => format!(", heartbeat {}", Duration(h.timeout)),
        None => String::new(),
    };
    let probe = match &task.probe {
        Some(p) => {
            let what = match &p.check {
                ProbeCheck::Tcp(addr) => format!("tcp {addr}"),
                ProbeCheck::Http { host, path, .. } => format!("http://{host}{path}"),
                ProbeCheck::Exec(spec) => {
                    format!("exec {}", quote(&spec.program.to_string_lossy()))
                }
            };
            format!(", probe {what} every {}", Duration(p.every))
        }
        None => String::new(),
    };
    let after = if task.after.is_empty() {
        String::new()
    } else {
        format!(", after {}", task.after.join(", "))
    };
    let command: Vec<String> = match &task.plugin {
        // The task host's command line ends with the library and the arguments (JSON).
        Some(library) => vec![
            "plugin".into(),
            quote(&library.to_string_lossy()),
            quote(
                &task
                    .spawn
                    .args
                    .last()
                    .map_or(String::new(), |a| a.to_string_lossy().into_owned()),
            ),
        ],
        None => std::iter::once(task.spawn.program.as_os_str())
            .chain(task.spawn.args.iter().map(|a| a.as_os_str()))
            .map(|word| quote(&word.to_string_lossy()))
            .collect(),
    };
    format!("{kind}{heartbeat}{probe}{after}: {}", command.join(" "))
}

/// `word` as a shell would need it to read it back as one word: as is if it is plain, else in
/// single quotes (`--save ''`, `'two words'`, `'it'\''s'`).
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_a_shell_would_need_it() {
        assert_eq!(quote("--port"), "--port");
        assert_eq!(quote("/usr/bin/redis-server"), "/usr/bin/redis-server");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("two words"), "'two words'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$HOME"), "'$HOME'");
    }
}
