//! `nonstop run`, periodic tasks: the grid of `every`, no overlap, cron, timeouts.

use std::time::Duration;

use crate::harness::{PipelineDir, Runner};

const SECOND: Duration = Duration::from_secs(1);
const MS: u128 = 1_000_000;

#[test]
fn periodic_runs_never_overlap_and_missed_starts_are_logged() {
    let p = PipelineDir::new(
        "\
tasks:
  slow:
    every: 200ms
    command: [sh, -c, \"echo start $(date +%s%N) >> runs; sleep 0.5; echo end $(date +%s%N) >> runs\"]
",
    );
    let mut runner = Runner::start(&p);
    runner.wait_for(&["slow", "skipped a run"], 10 * SECOND);
    for _ in 0..3 {
        runner.wait_for(&["slow", "run finished"], 10 * SECOND);
    }
    assert!(runner.terminate(10 * SECOND).success());
    let runs = std::fs::read_to_string(p.file("runs")).unwrap();
    let events: Vec<(&str, u128)> = runs
        .lines()
        .map(|l| {
            let (what, t) = l.split_once(' ').unwrap();
            (what, t.parse().unwrap())
        })
        .collect();
    assert!(events.len() >= 6, "{runs}");
    // start, end, start, end...: a run never starts before the previous one ended.
    for (i, pair) in events.windows(2).enumerate() {
        assert_ne!(
            pair[0].0, pair[1].0,
            "two {}s in a row at {i}:\n{runs}",
            pair[0].0
        );
        assert!(pair[1].1 >= pair[0].1, "{runs}");
    }
}

#[test]
fn every_keeps_its_grid_so_runs_do_not_drift() {
    let p = PipelineDir::new(
        "\
tasks:
  tick:
    every: 200ms
    command: [sh, -c, \"date +%s%N >> ticks; sleep 0.05\"]
",
    );
    let mut runner = Runner::start(&p);
    for _ in 0..11 {
        runner.wait_for(&["tick", "run finished"], 10 * SECOND);
    }
    assert!(runner.terminate(10 * SECOND).success());
    let ticks: Vec<u128> = std::fs::read_to_string(p.file("ticks"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let t0 = ticks[0];
    // Measured from each exit, 10 periods of 200 ms plus a 50 ms run would end 500 ms late;
    // on the grid, start k is at k * 200 ms after the first, give or take start-up jitter.
    for (k, t) in ticks.iter().enumerate().take(11) {
        let on_grid = t0 + k as u128 * 200 * MS;
        assert!(*t + 40 * MS >= on_grid, "run {k} started early: {ticks:?}");
        assert!(*t < on_grid + 300 * MS, "run {k} drifted: {ticks:?}");
    }
}

#[test]
fn cron_with_seconds_fires_on_the_wall_clock() {
    let p = PipelineDir::new(
        "\
tasks:
  every_second:
    cron: \"*/1 * * * * *\"
    timezone: UTC
    command: [sh, -c, \"date +%s%N >> fired\"]
",
    );
    let mut runner = Runner::start(&p);
    for _ in 0..3 {
        runner.wait_for(&["every_second", "run finished"], 10 * SECOND);
    }
    assert!(runner.terminate(10 * SECOND).success());
    let fired: Vec<u128> = std::fs::read_to_string(p.file("fired"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(fired.len() >= 3);
    // Each run starts just after a whole second, once per second.
    for t in &fired {
        assert!(
            t % (1000 * MS) < 300 * MS,
            "fired at {} ms into a second",
            t % (1000 * MS) / MS
        );
    }
    let seconds: Vec<u128> = fired.iter().map(|t| t / (1000 * MS)).collect();
    for pair in seconds.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "{seconds:?}");
    }
}

#[test]
fn a_run_past_its_timeout_is_stopped_then_killed_after_the_grace() {
    let p = PipelineDir::new(
        "\
tasks:
  stuck:
    every: 1h
    timeout: 300ms
    stop: { signal: TERM, grace: 300ms }
    command: [sh, -c, \"trap '' TERM; sleep 1000\"]
",
    );
    let mut runner = Runner::start(&p);
    runner.wait_for(
        &["stuck", "exceeded its timeout; sending SIGTERM"],
        10 * SECOND,
    );
    runner.wait_for(&["stuck", "sending SIGKILL"], 10 * SECOND);
    let line = runner.wait_for(&["stuck", "run failed with signal SIGKILL"], 10 * SECOND);
    assert!(line.contains("next run in"), "{line}");
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn an_overrunning_run_is_warned_about_once_and_its_skipped_starts_counted() {
    let p = PipelineDir::new(
        "\
tasks:
  overrun:
    every: 10ms
    command: [sleep, \"0.5\"]
",
    );
    let mut runner = Runner::start(&p);
    for _ in 0..2 {
        let line = runner.wait_for(&["overrun", "run finished"], 10 * SECOND);
        // About 50 starts fell due during half a second.
        let skipped: u64 = line
            .split("; ")
            .find_map(|part| {
                part.split_once(" starts were skipped while it ran")
                    .map(|(n, _)| n)
            })
            .unwrap_or_else(|| panic!("{line}"))
            .parse()
            .unwrap();
        assert!((30..=100).contains(&skipped), "{line}");
    }
    assert!(runner.terminate(10 * SECOND).success());
    let log = runner.seen.join("\n");
    let runs = log.matches("started task=overrun").count();
    let warnings = log.matches("skipped a run").count();
    assert!(
        warnings <= runs,
        "{warnings} warnings for {runs} runs:\n{log}"
    );
}
