//! A child process for the end-to-end IPC tests: each role does one thing with the real
//! `nonstop-ipc` API and reports on stdout, one line per event, so the test can drive real,
//! separate processes. Not installed; used only by `tests/it`.
//!
//! Roles (`ipc-helper ROLE KEY ARGS...`):
//! - `sem-race KEY ROUNDS FILE`: waits for a line on stdin, then opens-or-creates the
//!   semaphore and, ROUNDS times, takes the lock and increments the number in FILE by a
//!   non-atomic read-modify-write; prints `ok`.
//! - `hold KEY`: takes the lock, prints `locked`, and waits to be killed.
//! - `open-as-nobody KEY`: switches to uid/gid 65534 (when root), then attaches the table and
//!   prints `opened` or `error MESSAGE`.
//! - `register KEY SLOTS NAME`: opens-or-creates the table, waits for a line on stdin,
//!   registers, prints `slot N`, beats until stdin closes, then frees and prints `freed`.

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
