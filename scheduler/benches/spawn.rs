//! What putting a task into its cgroup costs: `spawn` of a tiny program into a cgroup
//! (`clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP)`) against the same spawn without one
//! (`clone(CLONE_VM | CLONE_VFORK)`), rounds interleaved, medians reported; and, for scale,
//! moving the child into the cgroup after the fact (a write to `cgroup.procs`), which is what
//! a supervisor without `CLONE_INTO_CGROUP` does. Each spawn is timed until the child has
//! called `execve` (when `spawn` returns). Needs a writable cgroup2 hierarchy (root).
//!
//! Run with `cargo xtask bench spawn`. Target: the cgroup adds at most about 50 µs per start.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::sys::wait::waitpid;
use nonstop_scheduler::cgroup::{self, Cgroup};
use nonstop_scheduler::spawn::{self, Output, Prepared, SpawnSpec};

const ROUNDS: usize = 21;
const SPAWNS: usize = 200;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    // As the runner does: the descriptors children get are low, so they copy few.
    spawn::reserve_descriptor_slots()?;
    let (_, own) = cgroup::hierarchy()?;
    let cg = Cgroup::create(&own.join(format!("nonstop-bench-{}", std::process::id())))?;
    let result = run(&cg);
    let _ = cg.wait_empty(Duration::from_secs(5));
    let _ = cg.remove();
    result
}

/// How a sample places its children.
#[derive(Clone, Copy)]
enum Placement {
    /// Not in a cgroup of their own.
    None,
    /// All in one cgroup, as a task's restarts are.
    Same,
    /// Each in a cgroup of its own, as the first starts of many tasks are.
    Fresh,
    /// Started outside, then moved by writing `cgroup.procs`.
    Moved,
}

fn run(cg: &Cgroup) -> Result<()> {
    let prepared = Prepared::new(&SpawnSpec {
        program: "/bin/true".into(),
        ..SpawnSpec::default()
    })?;
    let devnull = std::fs::File::open("/dev/null")?;
    let out = Output {
        stdout: devnull.as_fd(),
        stderr: devnull.as_fd(),
    };
    let me = nix::unistd::getpid();
    let procs = cg.path().join("cgroup.procs");
    let sample = |how: Placement, round: usize| -> Result<Duration> {
        let fresh: Vec<Cgroup> = match how {
            Placement::Fresh => (0..SPAWNS)
                .map(|i| Cgroup::create(&cg.path().join(format!("r{round}-{i}"))))
                .collect::<std::result::Result<_, _>>()?,
            _ => Vec::new(),
        };
        let mut total = Duration::ZERO;
        let mut fresh_cgroups = fresh.iter();
        for _ in 0..SPAWNS {
            let t = Instant::now();
            let pid = match how {
                Placement::None => spawn::spawn_prepared(&prepared, out, me, None)?,
                Placement::Same => spawn::spawn_prepared(&prepared, out, me, Some(cg.as_fd()))?,
                Placement::Fresh => {
                    let cgroup = fresh_cgroups.next().ok_or("too few cgroups")?;
                    spawn::spawn_prepared(&prepared, out, me, Some(cgroup.as_fd()))?
                }
                Placement::Moved => {
                    let pid = spawn::spawn_prepared(&prepared, out, me, None)?;
                    // Moving a process that has already exited fails; that is fine here.
                    let _ = std::fs::write(&procs, pid.to_string());
                    pid
                }
            };
            total += t.elapsed();
            waitpid(pid, None)?;
        }
        for c in &fresh {
            c.wait_empty(Duration::from_secs(5))?;
            c.remove()?;
        }
        Ok(total / SPAWNS as u32)
    };
    let kinds = [
        Placement::None,
        Placement::Same,
        Placement::Fresh,
        Placement::Moved,
    ];
    let mut samples = vec![Vec::new(); kinds.len()];
    for round in 0..ROUNDS {
        for (k, &how) in kinds.iter().enumerate() {
            samples[k].push(sample(how, round)?);
        }
    }
    let us: Vec<f64> = samples
        .iter_mut()
        .map(|v| {
            v.sort();
            v[v.len() / 2].as_secs_f64() * 1e6
        })
        .collect();
    println!(
        "spawn of /bin/true until it has called execve, median of {ROUNDS} rounds of {SPAWNS}"
    );
    println!(
        "  no cgroup: clone(CLONE_VM|CLONE_VFORK)              {:8.1} us",
        us[0]
    );
    println!(
        "  its cgroup: clone3(...|CLONE_INTO_CGROUP), restarts  {:8.1} us",
        us[1]
    );
    println!(
        "  a new cgroup each time, as a pipeline's first starts {:8.1} us",
        us[2]
    );
    println!(
        "  no cgroup, then moved by a write to cgroup.procs     {:8.1} us",
        us[3]
    );
    println!(
        "  cost of the cgroup per start: {:+.1} us (restart), {:+.1} us (first start); \
         target <= 50 us. Moving afterwards: {:+.1} us",
        us[1] - us[0],
        us[2] - us[0],
        us[3] - us[0]
    );
    Ok(())
}
