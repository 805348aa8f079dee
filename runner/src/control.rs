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
use serde_json::Value;

/// The environment variable that names the socket (for `nonstop run` too).
pub const ENV: &str = "NONSTOP_SOCKET";

/// How long a request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The schema version this client reads.
const SCHEMA: u64 = 1;

/// The exit code when no runner answered.
pub const UNREACHABLE: u8 = 3;

/// The socket when none is named: `NONSTOP_SOCKET`, else `/run/nonstop/nonstop.sock` for
/// root, else `$XDG_RUNTIME_DIR/nonstop.sock`; `None` without any of these.
pub fn default_socket() -> Option<PathBuf> {
    if let Some(s) = std::env::var_os(ENV).filter(|s| !s.is_empty()) {
        return Some(s.into());
    }
    if nix::unistd::Uid::effective().is_root() {
        return Some("/run/nonstop/nonstop.sock".into());
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(&d).join("nonstop.sock"))
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

/// Sends `line` to the runner at `socket` and returns its answer: a success's JSON, or the
/// runner's error as an error.
pub fn request(socket: &Path, line: &str) -> anyhow::Result<Value> {
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
    stream.set_read_timeout(Some(TIMEOUT))?;
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
    let value: Value = serde_json::from_slice(&answer)
        .with_context(|| format!("the answer from {} is not JSON", socket.display()))?;
    if value["schema"].as_u64() != Some(SCHEMA) {
        bail!(
            "the runner answers in schema {} and this nonstop reads {SCHEMA}: use the nonstop \
             binary of the running version",
            value["schema"]
        );
    }
    if value["ok"] != Value::Bool(true) {
        bail!(
            "the runner refused: {}",
            value["error"].as_str().unwrap_or("(no reason given)")
        );
    }
    Ok(value)
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
    match format {
        Format::Prometheus => {
            let answer = request(&socket, "metrics")?;
            print!("{}", answer["text"].as_str().unwrap_or_default());
        }
        Format::Json => {
            let answer = request(&socket, "status")?;
            println!("{answer}");
        }
        Format::Table => {
            let answer = request(&socket, "status")?;
            print!("{}", table(&answer));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The status as columns: TASK STATE PID UPTIME RESTARTS LAST-EXIT NEXT HEALTH.
fn table(status: &Value) -> String {
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
    for t in status["tasks"].as_array().into_iter().flatten() {
        let text = |v: &Value| match v {
            Value::Null => "-".to_owned(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let last = match &t["last_exit"] {
            Value::Null => "-".to_owned(),
            e if e["code"].is_number() => format!("status {}", e["code"]),
            e if e["signal"].is_string() => text(&e["signal"]),
            _ => "start failed".to_owned(),
        };
        let mut health = Vec::new();
        if t["heartbeat"].is_object() {
            health.push(format!("heartbeat {}", text(&t["heartbeat"]["state"])));
        }
        if t["probe"].is_object() {
            health.push(format!("probe {}", text(&t["probe"]["state"])));
        }
        rows.push([
            text(&t["name"]),
            text(&t["state"]),
            text(&t["pid"]),
            t["uptime"].as_f64().map_or("-".into(), human),
            text(&t["restarts"]),
            last,
            text(&t["next_start"]),
            if health.is_empty() {
                "-".into()
            } else {
                health.join(", ")
            },
        ]);
    }
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
    let answer = request(&socket, &format!("{verb} {}", tasks.join(" ")))?;
    for t in answer["tasks"].as_array().into_iter().flatten() {
        println!(
            "{}: {}",
            t["name"].as_str().unwrap_or("?"),
            t["result"].as_str().unwrap_or("?")
        );
    }
    Ok(ExitCode::SUCCESS)
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
    let status = request(&socket, "status")?;
    let unhealthy: Vec<String> = status["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["healthy"] != Value::Bool(true))
        .map(|t| {
            let mut why = t["state"].as_str().unwrap_or("?").to_owned();
            if t["state"] == "running" {
                why = if t["ready"] != Value::Bool(true) {
                    "running, not ready yet".into()
                } else {
                    let states = ["heartbeat", "probe"].map(|what| {
                        t[what]["state"]
                            .as_str()
                            .filter(|s| *s != "ok" && *s != "healthy")
                            .map(|s| format!("{what} {s}"))
                    });
                    let states: Vec<String> = states.into_iter().flatten().collect();
                    format!("running, {}", states.join(", "))
                };
            }
            format!("{}: {why}", t["name"].as_str().unwrap_or("?"))
        })
        .collect();
    if status["runner"]["shutting_down"] == Value::Bool(true) {
        if !quiet {
            println!("unhealthy: the runner is shutting down");
        }
        return Ok(ExitCode::FAILURE);
    }
    if unhealthy.is_empty() && status["healthy"] == Value::Bool(true) {
        if !quiet {
            println!("healthy");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !quiet {
        println!("unhealthy: {}", unhealthy.join("; "));
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
    let status = request(&socket, "status")?;
    let Some(entry) = status["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"] == task)
    else {
        bail!("no task named \"{task}\"");
    };
    let live = PathBuf::from(entry["log"].as_str().unwrap_or_default());
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
