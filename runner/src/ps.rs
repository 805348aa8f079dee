//! `nonstop ps`: every used slot of a heartbeat table, read directly (no runner needed):
//! slot, pid, name, timeout, age of the last beat, and state, one of `ok`, `late`, `dead`
//! (decided by `nonstop_watchdog::state`).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use nonstop_ipc::{Error, HeartbeatTable, Key, SeedOptions, SeedTable, TableOptions, clock};
use nonstop_watchdog::{Beat, Identity, State};
use serde::Serialize;

use crate::pipeline;

/// Which table layout to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// nonstop's own table.
    Nonstop,
    /// The seed framework's `st_procinfo` table (key 0x5095 by default).
    Seed,
}

/// One line of the listing.
#[derive(Debug, Serialize)]
struct Row {
    slot: u32,
    pid: i32,
    name: String,
    timeout_ms: u128,
    age_ms: u128,
    state: &'static str,
    /// Whether the program has beaten since it was registered (nonstop's layout).
    beaten: bool,
}

/// Lists the table at `key`, or the one `pipeline` names, or the default one.
pub fn run(
    key: Option<Key>,
    pipeline: Option<&Path>,
    layout: Layout,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let key = match (key, pipeline) {
        (Some(key), _) => key,
        (None, Some(file)) => match pipeline_key(file)? {
            Some(key) => key,
            None => {
                eprintln!(
                    "nonstop: {} has no heartbeat table (no `heartbeat:` section and no task \
                     with `heartbeat:`)",
                    file.display()
                );
                return Ok(ExitCode::FAILURE);
            }
        },
        (None, None) if layout == Layout::Seed => Key::SEED,
        (None, None) => Key::DEFAULT,
    };
    let rows = match layout {
        Layout::Nonstop => nonstop_rows(key),
        Layout::Seed => seed_rows(key),
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(Error::NotFound { .. }) => {
            eprintln!(
                "nonstop: no heartbeat table at key {key} (no runner with one is running; \
                 another key: --key KEY or --pipeline FILE)"
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read the table at key {key}")),
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &rows)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn pipeline_key(file: &Path) -> anyhow::Result<Option<Key>> {
    match pipeline::load(file) {
        Ok(checked) => Ok(checked.pipeline.heartbeat.map(|h| h.key)),
        Err(errors) => {
            let shown = file.display().to_string();
            let lines: Vec<String> = errors
                .iter()
                .map(|d| d.display(&shown).to_string())
                .collect();
            anyhow::bail!("{}", lines.join("\n"))
        }
    }
}

fn nonstop_rows(key: Key) -> Result<Vec<Row>, Error> {
    let table = HeartbeatTable::open(key, &TableOptions::default())?;
    let now = clock::now_ns();
    Ok(table
        .snapshot()
        .iter()
        .map(|slot| {
            let identity = Identity::from(slot.process.liveness());
            row(&Beat::from(slot), now, identity)
        })
        .collect())
}

fn seed_rows(key: Key) -> Result<Vec<Row>, Error> {
    let table = SeedTable::open(key, &SeedOptions::default())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Ok(table
        .snapshot()
        .iter()
        .map(|slot| {
            let started = nonstop_ipc::started_at(slot.pid).ok().flatten();
            let identity = Identity::for_seed(started, slot.atime.max(0) as u64);
            row(&Beat::from(slot), now, identity)
        })
        .collect())
}

fn row(beat: &Beat, now_ns: u64, identity: Identity) -> Row {
    let state: State = nonstop_watchdog::state(beat, now_ns, identity);
    Row {
        slot: beat.index,
        pid: beat.pid,
        name: beat.name.clone(),
        timeout_ms: beat.timeout.as_millis(),
        age_ms: beat.age(now_ns).as_millis(),
        state: state.as_str(),
        beaten: beat.beaten,
    }
}

/// The rows as columns. A slot's name is what the process that registered it wrote there: shown
/// escaped (`\u{1b}`, `\n`), so that it can neither drive the terminal nor split its row.
fn print_table(out: &mut impl Write, rows: &[Row]) -> std::io::Result<()> {
    let names: Vec<_> = rows
        .iter()
        .map(|r| nonstop_core::printable(&r.name))
        .collect();
    let name_width = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "{:>5} {:>8}  {:name_width$}  {:>8} {:>8}  STATE",
        "SLOT", "PID", "NAME", "TIMEOUT", "AGE"
    )?;
    for (r, name) in rows.iter().zip(&names) {
        let timeout = nonstop_core::Duration(Duration::from_millis(r.timeout_ms as u64));
        writeln!(
            out,
            "{:>5} {:>8}  {:name_width$}  {:>8} {:>8}  {}{}",
            r.slot,
            r.pid,
            name,
            timeout.to_string(),
            age(r.age_ms),
            r.state,
            if r.beaten { "" } else { " (no beat yet)" }
        )?;
    }
    Ok(())
}

/// `850ms`, `12.3s`, `2m5s`, `3h2m`.
fn age(ms: u128) -> String {
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}
