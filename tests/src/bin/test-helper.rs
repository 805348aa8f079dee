//! A child process for the end-to-end tests: each role does one thing (with the real
//! `nonstop-ipc` API, or as a task of the real runner) and reports on stdout, one line per
//! event, so the test can drive real, separate processes. Not installed; used only by
//! `tests/it`.
//!
//! Roles (`test-helper ROLE ARGS...`):
//! - `probe`: prints what it started with, reading only its own state: `sigblk`, `sigign`,
//!   `fds` (open descriptors), `pgid` and `pid`, `umask`, `nofile`, `cwd`, and `env NAME=VALUE`
//!   lines. Used as a task of the runner.
//! - `sem-race KEY ROUNDS FILE`: waits for a line on stdin, then opens-or-creates the
//!   semaphore and, ROUNDS times, takes the lock and increments the number in FILE by a
//!   non-atomic read-modify-write; prints `ok`.
//! - `hold KEY`: takes the lock, prints `locked`, and waits to be killed.
//! - `open-as-nobody KEY`: switches to uid/gid 65534 (when root), then attaches the table and
//!   prints `opened` or `error MESSAGE`.
//! - `beat INTERVAL_MS COUNT`: a task with `heartbeat:` using the Rust client
//!   (`Heartbeat::from_env`): prints `beating KEY:SLOT`, beats COUNT times (-1: forever)
//!   every INTERVAL_MS, then hangs.
//! - `register KEY SLOTS NAME`: opens-or-creates the table, waits for a line on stdin,
//!   registers, prints `slot N`, beats until stdin closes, then frees and prints `freed`.
//! - `connect SOCKET N`: opens N connections to the Unix socket SOCKET, one after the other,
//!   and sends nothing; prints `connected N`, then holds them until stdin closes (an idle
//!   crowd for the control socket, run as the uid a test chooses).
//! - `mover DATA ARCHIVE FILES`: an archiver racing a purge of DATA: prints `watching`, then
//!   over and over looks at each directory `day*` in DATA and, as soon as it holds fewer than FILES
//!   files (at any depth) but not none (a purge is in it), renames it into ARCHIVE and prints
//!   `moved NAME COUNT`, COUNT the files it holds there right after the move; prints `done`
//!   and exits once every `day*` directory left in DATA is empty.
//! - `rotate DIR ROTATIONS LINES`: a logger and its log rotation: appends numbered lines
//!   (`N text...`, from 0) to `DIR/app.log`, and after every LINES lines moves it to
//!   `DIR/app.log.1` and starts a new `app.log`, as logrotate does, but only if no
//!   `app.log.1` is there (never replacing one: it waits for the compressor, writing on);
//!   stops after ROTATIONS rotations and prints `wrote N`.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use nonstop_ipc::{HeartbeatTable, Key, SemOptions, Semaphore, TableOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("error {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    if args.first().map(String::as_str) == Some("probe") {
        return probe();
    }
    if args.first().map(String::as_str) == Some("beat") {
        let interval: u64 = args.get(1).ok_or("missing INTERVAL_MS")?.parse()?;
        let count: i64 = args.get(2).ok_or("missing COUNT")?.parse()?;
        let heartbeat = nonstop_ipc::Heartbeat::from_env()?;
        say(&format!(
            "beating {}:{}",
            heartbeat.key(),
            heartbeat.index()
        ))?;
        let mut beats = 0;
        while count < 0 || beats < count {
            heartbeat.beat();
            beats += 1;
            std::thread::sleep(Duration::from_millis(interval));
        }
        loop {
            std::thread::park();
        }
    }
    if args.first().map(String::as_str) == Some("connect") {
        let socket = args.get(1).ok_or("missing SOCKET")?;
        let n: usize = args.get(2).ok_or("missing N")?.parse()?;
        // One descriptor per connection: as many as the hard limit allows.
        let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard)?;
        let held: Vec<std::os::unix::net::UnixStream> = (0..n)
            .map(|_| std::os::unix::net::UnixStream::connect(socket))
            .collect::<Result<_, _>>()?;
        say(&format!("connected {}", held.len()))?;
        wait_for_go()?;
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("mover") {
        let data = std::path::Path::new(args.get(1).ok_or("missing DATA")?);
        let archive = std::path::Path::new(args.get(2).ok_or("missing ARCHIVE")?);
        let files: usize = args.get(3).ok_or("missing FILES")?.parse()?;
        return mover(data, archive, files);
    }
    if args.first().map(String::as_str) == Some("rotate") {
        let dir = std::path::Path::new(args.get(1).ok_or("missing DIR")?);
        let rotations: u32 = args.get(2).ok_or("missing ROTATIONS")?.parse()?;
        let lines: u64 = args.get(3).ok_or("missing LINES")?.parse()?;
        return rotate(dir, rotations, lines);
    }
    let key: Key = args.get(1).ok_or("missing KEY")?.parse()?;
    match args.first().map(String::as_str) {
        Some("sem-race") => {
            let rounds: u32 = args.get(2).ok_or("missing ROUNDS")?.parse()?;
            let file = args.get(3).ok_or("missing FILE")?;
            wait_for_go()?;
            let sem = Semaphore::open_or_create(key, &SemOptions::default())?;
            for _ in 0..rounds {
                let _guard = sem.acquire_timeout(Duration::from_secs(10))?;
                let n: u64 = std::fs::read_to_string(file)?.trim().parse()?;
                std::fs::write(file, format!("{}\n", n + 1))?;
            }
            say("ok")
        }
        Some("hold") => {
            let sem = Semaphore::open_or_create(key, &SemOptions::default())?;
            let _guard = sem.acquire_timeout(Duration::from_secs(10))?;
            say("locked")?;
            loop {
                std::thread::park();
            }
        }
        Some("open-as-nobody") => {
            if nix::unistd::getuid().is_root() {
                nix::unistd::setgid(nix::unistd::Gid::from_raw(65534))?;
                nix::unistd::setuid(nix::unistd::Uid::from_raw(65534))?;
            }
            HeartbeatTable::open(key, &TableOptions::default())?;
            say("opened")
        }
        Some("register") => {
            let slots: u32 = args.get(2).ok_or("missing SLOTS")?.parse()?;
            let name = args.get(3).ok_or("missing NAME")?;
            let options = TableOptions {
                slots,
                ..TableOptions::default()
            };
            let table = HeartbeatTable::open_or_create(key, &options)?;
            wait_for_go()?;
            let me = table.register(name, Duration::from_secs(60))?;
            say(&format!("slot {}", me.info().index))?;
            let mut line = String::new();
            while std::io::stdin().lock().read_line(&mut line)? > 0 {
                me.beat();
                line.clear();
            }
            me.free()?;
            say("freed")
        }
        _ => Err(format!("unknown role in {args:?}").into()),
    }
}

fn mover(
    data: &std::path::Path,
    archive: &std::path::Path,
    files: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    /// Regular files under `dir`, at any depth; 0 if it is gone.
    fn count(dir: &std::path::Path) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => count(&e.path()),
                Ok(t) if t.is_file() => 1,
                _ => 0,
            })
            .sum()
    }
    say("watching")?;
    loop {
        let mut full = 0;
        for entry in std::fs::read_dir(data)?.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir())
                || !entry.file_name().to_string_lossy().starts_with("day")
            {
                continue;
            }
            let n = count(&entry.path());
            if n == 0 {
                continue;
            }
            full += 1;
            if n < files {
                let to = archive.join(entry.file_name());
                std::fs::rename(entry.path(), &to)?;
                say(&format!(
                    "moved {} {}",
                    entry.file_name().to_string_lossy(),
                    count(&to)
                ))?;
            }
        }
        if full == 0 {
            return say("done");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn wait_for_go() -> std::io::Result<()> {
    std::io::stdin()
        .lock()
        .read_line(&mut String::new())
        .map(|_| ())
}

fn say(line: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// `probe`: this process's own state, as the runner started it.
fn probe() -> Result<(), Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or(String::new(), |v| v.trim().to_owned())
    };
    say(&format!("sigblk={}", field("SigBlk:")))?;
    say(&format!("sigign={}", field("SigIgn:")))?;
    say(&format!("umask={}", field("Umask:")))?;
    // stat() on /proc/self/fd/N opens nothing, so it sees only what we were given.
    let fds: Vec<String> = (0..1024)
        .filter(|fd| std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_ok())
        .map(|fd| fd.to_string())
        .collect();
    say(&format!("fds={}", fds.join(" ")))?;
    say(&format!(
        "pgid={} pid={}",
        nix::unistd::getpgrp(),
        nix::unistd::getpid()
    ))?;
    let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)?;
    say(&format!("nofile={soft}"))?;
    say(&format!("cwd={}", std::env::current_dir()?.display()))?;
    let mut env: Vec<String> = std::env::vars()
        .map(|(k, v)| format!("env {k}={v}"))
        .collect();
    env.sort();
    for line in env {
        say(&line)?;
    }
    Ok(())
}

/// The `rotate` role.
fn rotate(
    dir: &std::path::Path,
    rotations: u32,
    lines: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let (live, rotated) = (dir.join("app.log"), dir.join("app.log.1"));
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&live)
            .map(|f| std::io::BufWriter::with_capacity(1 << 16, f))
    };
    let mut log = open()?;
    let (mut n, mut in_file, mut done) = (0u64, 0u64, 0);
    while done < rotations {
        writeln!(
            log,
            "{n} 2026-12-02T10:00:00 <record id=\"{}\" what=\"a line of a log\"/>",
            n % 977
        )?;
        n += 1;
        in_file += 1;
        if in_file.is_multiple_of(20) {
            // A pace a compressor can keep up with, now and then.
            std::thread::sleep(Duration::from_millis(1));
        }
        if in_file >= lines && (in_file - lines).is_multiple_of(100) {
            log.flush()?;
            // A link never replaces: EEXIST while the last app.log.1 is not compressed yet.
            if std::fs::hard_link(&live, &rotated).is_ok() {
                std::fs::remove_file(&live)?;
                log = open()?;
                in_file = 0;
                done += 1;
            }
        }
    }
    log.flush()?;
    say(&format!("wrote {n}"))
}
