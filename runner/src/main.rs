//! `nonstop`: the runner's command line. Parses it and dispatches; `main` decides the exit
//! code in one place.
//!
//! - `nonstop check FILE`: checks a pipeline, prints one line per task, or every error.
//! - `nonstop run FILE`: checks the pipeline, then executes `nonstop-supervisor` in this
//!   process (same pid), which supervises it in the foreground until SIGTERM/SIGINT (see
//!   `nonstop_supervisor::handoff`).
//! - `nonstop beat`: one beat for the task's heartbeat slot.
//! - `nonstop ps`: a heartbeat table's slots and their states.
//! - `nonstop status|start|stop|restart|shutdown|health|logs`: a running runner, through its
//!   control socket (`control`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use nonstop_ipc::Key;
use nonstop_runner::{beat, check, compress, control, detach, plugin_host, plugins, ps, run};

/// Keeps Linux service programs running forever.
#[derive(Debug, Parser)]
#[command(name = "nonstop", version, propagate_version = true)]
struct Cli {
    /// The control socket of the runner to talk to (default: $NONSTOP_SOCKET, else
    /// /run/nonstop/nonstop.sock as root, else $XDG_RUNTIME_DIR/nonstop.sock).
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a pipeline file: one line per task, or every error with file:line:column.
    Check {
        /// The pipeline (YAML).
        file: PathBuf,
    },
    /// Run a pipeline in the foreground until SIGTERM or SIGINT, then stop every task.
    Run {
        /// The pipeline (YAML).
        file: PathBuf,
        /// Run in the background (rc.local): the runner's log goes to LOGS_DIR/nonstop.log;
        /// returns once the runner holds the pipeline.
        #[arg(short, long)]
        detach: bool,
        /// The stages of --detach (internal).
        #[arg(long, hide = true, value_parser = clap::value_parser!(u8).range(1..=2))]
        daemon_stage: Option<u8>,
    },
    /// Show every task of the running pipeline: state, pid, uptime, restarts, last exit, next
    /// start, heartbeat and probe.
    Status {
        /// JSON (docs/control.md), as --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// How to print it.
        #[arg(long, value_enum, default_value = "table")]
        format: control::Format,
    },
    /// Start tasks now (a failed one too: its crash-loop count starts over).
    Start {
        /// The tasks.
        #[arg(required = true)]
        tasks: Vec<String>,
    },
    /// Stop tasks; they stay stopped until started again.
    Stop {
        /// The tasks.
        #[arg(required = true)]
        tasks: Vec<String>,
    },
    /// Stop tasks and start them again at once.
    Restart {
        /// The tasks.
        #[arg(required = true)]
        tasks: Vec<String>,
    },
    /// Read the pipeline file again and apply the difference: new tasks start, removed ones
    /// stop, changed ones restart, the others are not touched (as SIGHUP does). An invalid
    /// file changes nothing.
    Reload,
    /// Stop every task and end the runner (as SIGTERM does).
    Shutdown,
    /// Exit 0 if the runner answers and every resident task is running and healthy, else 1
    /// (3: no runner answered). For container and Kubernetes probes.
    Health {
        /// Print nothing; the exit code says it.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Print a task's last log lines, through its rotated files.
    Logs {
        /// The task.
        task: String,
        /// How many lines.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// Then print what is appended, across rotations, until interrupted.
        #[arg(short, long)]
        follow: bool,
    },
    /// Beat once for this task's heartbeat slot (NONSTOP_HEARTBEAT), from a shell script.
    Beat,
    /// List the slots of a heartbeat table: slot, pid, name, timeout, age, state (ok, late,
    /// dead). Reads the table directly; no runner needed.
    Ps {
        /// The table's key (0x4e53 or 20051); default: the --pipeline's, else 0x4e53 (0x5095
        /// with --layout seed).
        #[arg(long, value_parser = parse_key)]
        key: Option<Key>,
        /// The pipeline whose table to read.
        #[arg(long, value_name = "FILE", conflicts_with = "key")]
        pipeline: Option<PathBuf>,
        /// The table's layout.
        #[arg(long, value_enum, default_value = "nonstop")]
        layout: ps::Layout,
        /// JSON instead of columns.
        #[arg(long)]
        json: bool,
    },
    /// List the plugins found (beside this executable, in ../lib/nonstop/plugins, and in the
    /// pipeline's plugin_dirs): file, name, version, description.
    Plugins {
        /// Also search this pipeline's plugin_dirs.
        #[arg(long, value_name = "FILE")]
        pipeline: Option<PathBuf>,
    },
    /// Print the completion script for a shell: `nonstop completions bash >
    /// /usr/share/bash-completion/completions/nonstop`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, nonstop(1), in roff: `nonstop manpage | man -l -`.
    Manpage,
    /// Run a plugin's entry point (the task host; used by the runner and by check).
    #[command(hide = true)]
    PluginHost {
        /// validate or run.
        #[arg(value_enum)]
        entry: plugin_host::Entry,
        /// The plugin library.
        library: PathBuf,
        /// The task's arguments, as JSON.
        args: String,
    },
    /// Check a pipeline for a reloading runner: the checked pipeline on stdout (used by the
    /// runner itself).
    #[command(hide = true)]
    ReloadCheck {
        /// The pipeline (YAML).
        file: PathBuf,
    },
    /// Compress a rotated log file to FILE.gz (used by the runner itself).
    #[command(hide = true)]
    CompressLog {
        /// The rotated log file.
        file: PathBuf,
    },
}

fn parse_key(s: &str) -> Result<Key, String> {
    s.parse().map_err(|e: nonstop_ipc::Error| e.to_string())
}

fn main() -> ExitCode {
    // A panic in nonstop is a bug: it ends the process at once (SIGABRT), as it did when the
    // release profile was `panic = "abort"`; the profile unwinds now only so that plugins can
    // catch their panics (see `abort_on_panic`). A plugin this process hosts has its own
    // standard library and its own hook: its panics still unwind to the SDK's boundary.
    nonstop_supervisor::abort_on_panic();
    let cli = Cli::parse();
    let socket = cli.socket.as_deref();
    let result = match cli.command {
        Command::Status { json, format } => {
            control::status(socket, if json { control::Format::Json } else { format })
        }
        Command::Start { tasks } => control::act(socket, "start", &tasks),
        Command::Stop { tasks } => control::act(socket, "stop", &tasks),
        Command::Restart { tasks } => control::act(socket, "restart", &tasks),
        Command::Shutdown => control::shutdown(socket),
        Command::Reload => control::reload(socket),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "nonstop",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Manpage => manpage(),
        Command::ReloadCheck { file } => run::reload_check(&file),
        Command::Health { quiet } => control::health(socket, quiet),
        Command::Logs {
            task,
            lines,
            follow,
        } => control::logs(socket, &task, lines, follow),
        Command::Check { file } => check::run(&file),
        Command::Run {
            file,
            detach,
            daemon_stage,
        } => match (detach, daemon_stage) {
            (_, Some(1)) => detach::stage1(&file),
            (true, None) => detach::detach(&file, socket),
            // The detached runner: its stdout and stderr are LOGS_DIR/nonstop.log.
            (_, Some(_)) => run::run(&file, socket, true),
            (false, None) => run::run(&file, socket, false),
        },
        Command::CompressLog { file } => compress::compress(&file),
        Command::Beat => beat::run(),
        Command::Plugins { pipeline } => plugins::run(pipeline.as_deref()),
        Command::PluginHost {
            entry,
            library,
            args,
        } => Ok(plugin_host::run(entry, &library, &args)),
        Command::Ps {
            key,
            pipeline,
            layout,
            json,
        } => ps::run(key, pipeline.as_deref(), layout, json),
    };
    match result {
        Ok(code) => code,
        // The reader went away (`nonstop logs -f | head`): done, as for any filter.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Its lines as they are (a file's errors, one a line), each on one line of
            // printable text: an error names paths and repeats what a runner answered.
            let text = format!("{e:#}");
            let lines: Vec<_> = text.lines().map(nonstop_core::printable).collect();
            eprintln!("nonstop: {}", lines.join("\n"));
            if e.downcast_ref::<control::Unreachable>().is_some() {
                ExitCode::from(control::UNREACHABLE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// nonstop(1), from the command-line definition: every command, option and its help.
fn manpage() -> anyhow::Result<ExitCode> {
    let command = Cli::command();
    let mut out = std::io::stdout().lock();
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    // Each command with its own options, as `nonstop help COMMAND` shows them.
    roff_line(&mut out, ".SH COMMANDS")?;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        roff_line(
            &mut out,
            &format!(".TP\n\\fBnonstop {}\\fR", sub.get_name()),
        )?;
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(|a| a.to_string());
        roff_line(&mut out, &about.unwrap_or_default().replace('-', "\\-"))?;
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
            let name = match (arg.get_long(), arg.get_short()) {
                (Some(long), Some(short)) => format!("\\-{short}, \\-\\-{long}"),
                (Some(long), None) => format!("\\-\\-{long}"),
                (None, Some(short)) => format!("\\-{short}"),
                (None, None) => arg.get_id().as_str().to_uppercase(),
            };
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            roff_line(
                &mut out,
                &format!(".RS\n.TP\n{name}\n{}\n.RE", help.replace('-', "\\-")),
            )?;
        }
    }
    roff_line(
        &mut out,
        ".SH EXIT STATUS\n0: done (health: healthy). 1: an error, an invalid pipeline, or the runner \
         refused (health: unhealthy). 2: a usage error. 3: no runner answered the control \
         socket.\n.SH ENVIRONMENT\n.TP\nNONSTOP_SOCKET\nthe control socket (see \\-\\-socket).\n\
         .TP\nNONSTOP_LOG\nthe runner's log level: debug, info (default), warn, error.\n\
         .SH SEE ALSO\ndocs/pipeline.md, docs/control.md, docs/boot.md",
    )?;
    man.render_version_section(&mut out)?;
    Ok(ExitCode::SUCCESS)
}

fn roff_line(out: &mut impl std::io::Write, text: &str) -> std::io::Result<()> {
    writeln!(out, "{text}")
}
