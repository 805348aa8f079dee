//! What one heartbeat costs: nonstop's beat against the seed framework's two ways, measured in
//! the same run so the ratios hold on a noisy, shared machine.
//!
//! - nonstop: `Registration::beat`, a `CLOCK_MONOTONIC_COARSE` read and one atomic store;
//! - seed, unlocked: `CPActive::UptATime`, a plain store of `time(0)` (what the seed does);
//! - seed, locked: semop(-1, SEM_UNDO), store `time(0)`, semop(+1): the "safe" way the seed's
//!   readers might expect, and what a beat costs if it takes the table's lock.
//!
//! Run with `cargo xtask bench`. Samples of the three are interleaved, and the median of each
//! is reported, so a burst of load elsewhere skews all three alike.

use std::hint::black_box;
use std::time::{Duration, Instant};

use nonstop_ipc::clock::CoarseClock;
use nonstop_ipc::testing::TestKey;
use nonstop_ipc::{HeartbeatTable, SeedOptions, SeedTable, TableOptions};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const SAMPLES: usize = 11;
const BEATS: u32 = 5_000_000;
const LOCKED_BEATS: u32 = 100_000;

fn main() -> Result<()> {
    let table_key = TestKey::new();
    let seed_key = TestKey::new();
    let options = TableOptions {
        slots: 16,
        ..TableOptions::default()
    };
    let table = HeartbeatTable::open_or_create(table_key.key(), &options)?;
    let me = table.register("bench", Duration::from_secs(60))?;
    let seed = SeedTable::open_or_create(seed_key.key(), &SeedOptions::default())?;
    let seed_me = seed.register("bench", 60)?;
    let lock = seed.semaphore();

    let mut nonstop = Vec::new();
    let mut unlocked = Vec::new();
    let mut locked = Vec::new();
    let mut vdso = Vec::new();
    let mut glibc = Vec::new();
    let (direct, through_libc) = (CoarseClock::get(), CoarseClock::via_libc());
    for _ in 0..SAMPLES {
        vdso.push(per_op(BEATS, || {
            black_box(direct.now_ns());
        }));
        glibc.push(per_op(BEATS, || {
            black_box(through_libc.now_ns());
        }));
        nonstop.push(per_op(BEATS, || me.beat()));
        unlocked.push(per_op(BEATS, || seed_me.beat()));
        let start = Instant::now();
        for _ in 0..LOCKED_BEATS {
            let _guard = lock.acquire()?;
            seed_me.beat();
        }
        locked.push(start.elapsed().as_nanos() as f64 / f64::from(LOCKED_BEATS));
    }
    let nonstop = median(nonstop);
    let unlocked = median(unlocked);
    let locked = median(locked);
    let (vdso, glibc) = (median(vdso), median(glibc));

    println!("heartbeat beat, median of {SAMPLES} interleaved samples");
    println!("  nonstop beat (coarse monotonic + atomic store)   {nonstop:8.2} ns");
    println!("  seed beat, unlocked (time(0) + plain store)      {unlocked:8.2} ns");
    println!("  seed beat, locked (semop, time(0) store, semop)  {locked:8.2} ns");
    println!("  clock read alone: vDSO entry point {vdso:.2} ns, through glibc {glibc:.2} ns");
    let vs_unlocked = nonstop / unlocked;
    let vs_locked = locked / nonstop;
    println!("  ratio nonstop / seed unlocked: {vs_unlocked:.2}x (target <= 2x)");
    println!("  ratio seed locked / nonstop:   {vs_locked:.0}x faster");
    println!(
        "  target <= 10 ns per beat and <= 2x seed unlocked: {}",
        if nonstop <= 10.0 && vs_unlocked <= 2.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    drop(me);
    drop(seed_me);
    table.remove()?;
    seed.remove()?;
    Ok(())
}

fn per_op(n: u32, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        op();
        black_box(());
    }
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
