//! The control commands: `nonstop status|start|stop|restart|shutdown|health|logs`, clients of
//! a runner's control socket (`nonstop_supervisor::supervise`'s `control` module serves it;
//! docs/control.md is the protocol and the JSON schema). A request is one line of words, the
//! answer one line of JSON.
//!
//! Exit codes (documented in docs/control.md): 0 done (`health`: healthy), 1 the runner
//! refused or failed the request (`health`: unhealthy), 2 a usage error (clap's), 3 no runner
//! answered.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;

/// The environment variable that names the socket (for `nonstop run` too).
pub const ENV: &str = "NONSTOP_SOCKET";

/// How long a request may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long `reload` waits for its answer: the runner's check may take a minute.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(75);

/// The schema version this client reads.
const SCHEMA: u64 = 1;

/// The exit code when no runner answered.
pub const UNREACHABLE: u8 = 3;

/// The socket when none is named: `NONSTOP_SOCKET`, else `/run/nonstop/nonstop.sock` for
/// root, else `$XDG_RUNTIME_DIR/nonstop.sock`; `None` without any of these.
pub fn default_socket() -> Option<PathBuf> {
    default_socket_from().map(|(socket, _)| socket)
}

/// [`default_socket`], and where it comes from (for messages): `NONSTOP_SOCKET`, `the
/// default for root` or `XDG_RUNTIME_DIR`.
pub fn default_socket_from() -> Option<(PathBuf, &'static str)> {
    if let Some(s) = std::env::var_os(ENV).filter(|s| !s.is_empty()) {
        return Some((s.into(), ENV));
    }
    if nix::unistd::Uid::effective().is_root() {
        return Some(("/run/nonstop/nonstop.sock".into(), "the default for root"));
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| (Path::new(&d).join("nonstop.sock"), "XDG_RUNTIME_DIR"))
}

/// No runner answered (exit code [`UNREACHABLE`]).
#[derive(Debug)]
pub struct Unreachable(pub String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unreachable {}

/// The socket to use: `--socket`, else [`default_socket`].
fn socket(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    match given.map(Path::to_owned).or_else(default_socket) {
        Some(s) => Ok(s),
        None => Err(Unreachable(format!(
            "no control socket named: use --socket PATH or {ENV} (XDG_RUNTIME_DIR is not set)"
        ))
        .into()),
    }
}

/// What every answer begins with (the rest is skipped, not built).
#[derive(Deserialize)]
struct Head {
    schema: Option<u64>,
    ok: Option<bool>,
    error: Option<String>,
}

/// `status`, as this client reads it.
#[derive(Deserialize)]
struct Status {
    runner: StatusRunner,
    healthy: bool,
    tasks: Vec<StatusTask>,
}

#[derive(Deserialize)]
struct StatusRunner {
    shutting_down: bool,
}

#[derive(Deserialize)]
struct StatusTask {
    name: String,
    state: String,
    pid: Option<i64>,
    uptime: Option<f64>,
    restarts: u64,
    last_exit: Option<LastExit>,
    next_start: Option<String>,
    ready: bool,
    healthy: bool,
    heartbeat: Option<Check>,
    probe: Option<Check>,
    log: String,
}

#[derive(Deserialize)]
struct LastExit {
    code: Option<i64>,
    signal: Option<String>,
}

#[derive(Deserialize)]
struct Check {
    state: String,
}

/// Sends `line` to the runner at `socket` and returns its answer, a success's JSON (checked:
/// schema and `ok`), or the runner's error as an error.
pub fn request(socket: &Path, line: &str) -> anyhow::Result<Vec<u8>> {
    // No runner can serve such a path: said as it is, not as the C library's `SUN_LEN`.
    let len = socket.as_os_str().len();
    let most = nonstop_supervisor::pipeline::ControlConfig::MAX_PATH;
    if len > most {
        return Err(Unreachable(format!(
            "cannot connect to {}: the path is {len} bytes long, but a Unix socket's path is at \
             most {most} bytes (sockaddr_un.sun_path): name a shorter one with --socket or \
             {ENV}",
            socket.display()
        ))
        .into());
    }
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                "no runner serves it (is `nonstop run` running? pick another with --socket or \
                 NONSTOP_SOCKET)"
                    .to_owned()
            }
            std::io::ErrorKind::PermissionDenied => {
                "permission denied (the socket is for root and the runner's user)".to_owned()
            }
            _ => e.to_string(),
        };
        Unreachable(format!("cannot connect to {}: {why}", socket.display()))
    })?;
    // A reload is answered when the runner has checked the file, which it allows a minute.
    let wait = if line.split_whitespace().next() == Some("reload") {
        RELOAD_TIMEOUT
    } else {
        TIMEOUT
    };
    stream.set_read_timeout(Some(wait))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    // A runner that refuses the client answers at once and closes: its answer is read even
    // when the request could not be sent whole.
    let sent = stream.write_all(format!("{line}\n").as_bytes());
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        // Reset after a whole answer (a runner refusing a request it did not read): the answer
        // stands.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && answer.ends_with(b"\n") => {}
        Err(e) => return Err(e).with_context(|| format!("no answer from {}", socket.display())),
    }
    if answer.is_empty() {
        let why = match sent {
            Err(e) => format!("cannot send the request: {e}"),
            Ok(()) => "the connection was closed without an answer".into(),
        };
        return Err(Unreachable(format!("{}: {why}", socket.display())).into());
    }
    // The runner writes these two fields first: a success is known without reading the rest
    // twice (a status of 1000 tasks is ~300 KB). Anything else is read in full.
    if answer.starts_with(format!("{{\"schema\":{SCHEMA},\"ok\":true").as_bytes()) {
        return Ok(answer);
    }
    let head: Head = serde_json::from_slice(&answer)
        .with_context(|| format!("the answer from {} is not JSON", socket.display()))?;
    if head.schema != Some(SCHEMA) {
        bail!(
            "the runner answers in schema {:?} and this nonstop reads {SCHEMA}: use the nonstop \
             binary of the running version",
            head.schema
        );
    }
    if head.ok != Some(true) {
        bail!(
            "the runner refused: {}",
            head.error.as_deref().unwrap_or("(no reason given)")
        );
    }
    Ok(answer)
}

/// A small answer as a JSON value.
fn value(answer: &[u8]) -> anyhow::Result<Value> {
    serde_json::from_slice(answer).context("the runner's answer is not JSON")
}

/// The runner's `status`.
fn status_of(socket: &Path) -> anyhow::Result<Status> {
    let answer = request(socket, "status")?;
    serde_json::from_slice(&answer)
        .context("the runner's status does not have the fields of schema 1")
}

/// How `nonstop status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Columns for people.
    Table,
    /// The runner's answer (docs/control.md).
    Json,
    /// Prometheus text exposition format.
    Prometheus,
}

/// `nonstop status`.
pub fn status(given: Option<&Path>, format: Format) -> anyhow::Result<ExitCode> {
    let socket = socket(given)?;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Prometheus => {
            #[derive(Deserialize)]
            struct Metrics {
                text: String,
            }
            let answer = request(&socket, "metrics")?;
            let metrics: Metrics = serde_json::from_slice(&answer)
                .context("the runner's metrics answer has no text")?;
            out.write_all(metrics.text.as_bytes())?;
        }
        // As the runner wrote it (one line).
        Format::Json => out.write_all(&request(&socket, "status")?)?,
        Format::Table => out.write_all(table(&status_of(&socket)?).as_bytes())?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The status as columns: TASK STATE PID UPTIME RESTARTS LAST-EXIT NEXT HEALTH.
fn table(status: &Status) -> String {
    let mut rows = vec![
        [
            "TASK",
            "STATE",
            "PID",
            "UPTIME",
            "RESTARTS",
            "LAST-EXIT",
            "NEXT",
            "HEALTH",
        ]
        .map(String::from),
    ];
    for t in &status.tasks {
        let last = match &t.last_exit {
            None => "-".to_owned(),
            Some(LastExit {
                code: Some(code), ..
            }) => format!("status {code}"),
            Some(LastExit {
                signal: Some(signal),
                ..
            }) => signal.clone(),
            Some(_) => "start failed".to_owned(),
        };
        let mut health = Vec::new();
        if let Some(h) = &t.heartbeat {
            health.push(format!("heartbeat {}", h.state));
        }
        if let Some(p) = &t.probe {
            health.push(format!("probe {}", p.state));
        }
        let or_dash = |s: Option<String>| s.unwrap_or_else(|| "-".into());
        rows.push([
            t.name.clone(),
            t.state.clone(),
            or_dash(t.pid.map(|p| p.to_string())),
            or_dash(t.uptime.map(human)),
            t.restarts.to_string(),
            last,
            or_dash(t.next_start.clone()),
            if health.is_empty() {
                "-".into()
            } else {
                health.join(", ")
            },
        ]);
    }
    // What the runner answered, shown on one line of printable text whatever it holds.
    let rows: Vec<[String; 8]> = rows
        .into_iter()
        .map(|row| row.map(|cell| nonstop_core::printable(&cell).into_owned()))
        .collect();
    let widths: Vec<usize> = (0..8)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `1.5s`, `3m12s`, `2h5m`, `3d4h`.
fn human(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..60 => format!("{secs:.1}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

/// `nonstop start|stop|restart TASK...`: one line per task, `NAME: RESULT`.
pub fn act(given: Option<&Path>, verb: &str, tasks: &[String]) -> anyhow::Result<ExitCode> {
    let socket = socket(given)?;
    let answer = value(&request(&socket, &format!("{verb} {}", tasks.join(" ")))?)?;
    for t in answer["tasks"].as_array().into_iter().flatten() {
        println!(
            "{}: {}",
            nonstop_core::printable(t["name"].as_str().unwrap_or("?")),
            nonstop_core::printable(t["result"].as_str().unwrap_or("?"))
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `nonstop reload`: what changed, or the file's errors (exit 1, nothing changed).
pub fn reload(given: Option<&Path>) -> anyhow::Result<ExitCode> {
    let socket = socket(given)?;
    let answer = value(&request(&socket, "reload")?)?;
    for what in ["added", "removed", "changed"] {
        let names: Vec<&str> = answer[what]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !names.is_empty() {
            println!("{what}: {}", nonstop_core::printable(&names.join(" ")));
        }
    }
    println!("unchanged: {}", answer["unchanged"]);
    // Tasks whose new definition the runner could not take (the rest was applied).
    let failed: Vec<&str> = answer["failed"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for why in &failed {
        eprintln!("nonstop: not applied: {why}");
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `nonstop shutdown`.
pub fn shutdown(given: Option<&Path>) -> anyhow::Result<ExitCode> {
    let socket = socket(given)?;
    request(&socket, "shutdown")?;
    println!("shutting down");
    Ok(ExitCode::SUCCESS)
}

/// `nonstop health`: exit 0 when the runner answers and every resident task is running and
/// healthy; 1 otherwise, naming the tasks that are not; 3 when no runner answers.
pub fn health(given: Option<&Path>, quiet: bool) -> anyhow::Result<ExitCode> {
    let socket = socket(given)?;
    let status = status_of(&socket)?;
    let unhealthy: Vec<String> = status
        .tasks
        .iter()
        .filter(|t| !t.healthy)
        .map(|t| {
            let mut why = t.state.clone();
            if t.state == "running" {
                why = if !t.ready {
                    "running, not ready yet".into()
                } else {
                    let states =
                        [("heartbeat", &t.heartbeat), ("probe", &t.probe)].map(|(what, check)| {
                            check
                                .as_ref()
                                .filter(|c| c.state != "ok" && c.state != "healthy")
                                .map(|c| format!("{what} {}", c.state))
                        });
                    let states: Vec<String> = states.into_iter().flatten().collect();
                    format!("running, {}", states.join(", "))
                };
            }
            format!("{}: {why}", t.name)
        })
        .collect();
    if status.runner.shutting_down {
        if !quiet {
            println!("unhealthy: the runner is shutting down");
        }
        return Ok(ExitCode::FAILURE);
    }
    if unhealthy.is_empty() && status.healthy {
        if !quiet {
            println!("healthy");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !quiet {
        println!(
            "unhealthy: {}",
            nonstop_core::printable(&unhealthy.join("; "))
        );
    }
    Ok(ExitCode::FAILURE)
}

/// `nonstop logs TASK [-n N] [-f]`: the last `lines` lines of the task's log, through its
/// rotated files (gzipped or not) when the live one has fewer; then, with `follow`, what is
/// appended, across rotations (the file is opened again when its name points to a new one).
pub fn logs(
    given: Option<&Path>,
    task: &str,
    lines: usize,
    follow: bool,
) -> anyhow::Result<ExitCode> {
    let socket = socket(given)?;
    let status = status_of(&socket)?;
    let Some(entry) = status.tasks.iter().find(|t| t.name == task) else {
        bail!("no task named \"{task}\"");
    };
    let live = PathBuf::from(&entry.log);
    let mut out = std::io::stdout().lock();
    for line in last_lines(&live, lines)? {
        out.write_all(&line)?;
    }
    out.flush()?;
    if follow {
        self::follow(&live, &mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The last `n` lines of `live` and, before it, of its rotated files, newest first.
fn last_lines(live: &Path, n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut rotated = nonstop_supervisor::logfile::rotated_logs(live)
        .with_context(|| format!("cannot list the rotated logs of {}", live.display()))?;
    rotated.sort_by_key(|p| nonstop_supervisor::logfile::rotation_key(p));
    let mut files = vec![live.to_owned()];
    files.extend(rotated.into_iter().rev());
    let mut kept: std::collections::VecDeque<Vec<u8>> = std::collections::VecDeque::new();
    for file in files {
        if kept.len() >= n {
            break;
        }
        let Some(content) = read_log(&file)? else {
            continue;
        };
        let mut lines: Vec<Vec<u8>> = content
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect();
        while kept.len() < n {
            match lines.pop() {
                Some(line) => kept.push_front(line),
                None => break,
            }
        }
    }
    Ok(kept.into())
}

/// A log file's content, gunzipped if only its `.gz` is left; `None` if it is gone (pruned
/// or compressed meanwhile).
fn read_log(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(content) => return Ok(Some(content)),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot read {}", path.display()));
        }
        Err(_) => {}
    }
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    match std::fs::File::open(&gz) {
        Ok(file) => {
            let mut content = Vec::new();
            flate2::read::GzDecoder::new(file)
                .read_to_end(&mut content)
                .with_context(|| format!("cannot read {}", gz.display()))?;
            Ok(Some(content))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", gz.display())),
    }
}

/// Copies what is appended to `live` to `out`, for ever (until interrupted): `tail -F`.
fn follow(live: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let open = || -> anyhow::Result<(BufReader<std::fs::File>, u64)> {
        let file =
            std::fs::File::open(live).with_context(|| format!("cannot open {}", live.display()))?;
        let inode = file.metadata()?.ino();
        Ok((BufReader::new(file), inode))
    };
    let (mut reader, mut inode) = open()?;
    reader.seek(std::io::SeekFrom::End(0))?;
    let mut line = Vec::new();
    loop {
        let n = reader.read_until(b'\n', &mut line)?;
        if n > 0 && line.ends_with(b"\n") {
            out.write_all(&line)?;
            out.flush()?;
            line.clear();
            continue;
        }
        // At the end: a rotation gives the name to a new file, whose lines come next.
        let renamed = std::fs::metadata(live).is_ok_and(|m| m.ino() != inode);
        if renamed {
            // What the old file got before it was renamed comes first.
            reader.read_to_end(&mut line)?;
            out.write_all(&line)?;
            line.clear();
            (reader, inode) = open()?;
            continue;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
