//! The task state machine, transition by transition, on made-up instants.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::*;
use crate::policy::{Backoff, CrashLoop, Restart};
use crate::schedule::{Now, Schedule};

const MS: Duration = Duration::from_millis(1);

struct Clock {
    t0: Instant,
    wall: jiff::Timestamp,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            t0: Instant::now(),
            wall: jiff::Timestamp::now(),
        }
    }
    fn at(&self, ms: u64) -> Now {
        Now {
            mono: self.t0 + Duration::from_millis(ms),
            wall: self.wall + jiff::SignedDuration::from_millis(ms as i64),
        }
    }
}

fn spec(kind: Kind) -> TaskSpec {
    TaskSpec {
        name: "t".into(),
        spawn: SpawnSpec::default(),
        kind,
        backoff: Backoff {
            initial: 100 * MS,
            max: 400 * MS,
            stable: 1000 * MS,
        },
        crash_loop: CrashLoop {
            max: 4,
            within: Duration::from_secs(60),
        },
        stop: StopSpec {
            signal: Signal::SIGTERM,
            grace: 500 * MS,
        },
        after: vec![],
        heartbeat: None,
        probe: None,
        plugin: None,
        instance_of: None,
        on_failure: Vec::new(),
        on_demand: false,
    }
}

fn pid(n: i32) -> Pid {
    Pid::from_raw(n)
}

#[test]
fn a_crashing_resident_task_backs_off_then_fails_as_a_crash_loop() {
    let c = Clock::new();
    let mut t = Task::new(spec(Kind::Resident(Restart::Always)));
    assert!(!t.satisfies_dependents());
    assert_eq!(t.activate(c.at(0)), Some(Due::Start));
    let mut now = 0;
    let mut delays = vec![];
    for i in 0..4 {
        t.on_started(pid(100 + i), c.at(now));
        assert!(t.satisfies_dependents());
        now += 10;
        match t.on_exit(Exit::Code(1), c.at(now)) {
            AfterExit::Restart { delay } => delays.push(delay.as_millis()),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            t.deadline().instant(),
            Some(c.at(now).mono + delays[i as usize] as u32 * MS)
        );
        assert_eq!(t.on_deadline(c.at(now)), None, "not due yet");
        now += delays[i as usize] as u64;
        assert_eq!(t.on_deadline(c.at(now)), Some(Due::Start));
    }
    assert_eq!(delays, [100, 200, 400, 400]);
    t.on_started(pid(200), c.at(now));
    assert!(matches!(
        t.on_exit(Exit::Signal(Signal::SIGSEGV), c.at(now + 10)),
        AfterExit::CrashLoop { .. }
    ));
    assert_eq!(t.phase(), Phase::Failed);
    assert_eq!(t.deadline().instant(), None);
    assert_eq!(t.starts(), 5);
}

#[test]
fn a_stable_run_resets_the_backoff() {
    let c = Clock::new();
    let mut t = Task::new(spec(Kind::Resident(Restart::Always)));
    t.activate(c.at(0));
    t.on_started(pid(1), c.at(0));
    assert_eq!(
        t.on_exit(Exit::Code(1), c.at(10)),
        AfterExit::Restart { delay: 100 * MS }
    );
    t.on_started(pid(2), c.at(110));
    assert_eq!(
        t.on_exit(Exit::Code(1), c.at(120)),
        AfterExit::Restart { delay: 200 * MS }
    );
    t.on_started(pid(3), c.at(320));
    assert_eq!(
        t.on_exit(Exit::Code(1), c.at(5000)),
        AfterExit::Restart { delay: 100 * MS }
    );
}

#[test]
fn restart_policies_decide_what_an_exit_means() {
    let c = Clock::new();
    let mut never = Task::new(spec(Kind::Resident(Restart::Never)));
    never.activate(c.at(0));
    never.on_started(pid(1), c.at(0));
    assert_eq!(never.on_exit(Exit::Code(3), c.at(5)), AfterExit::Done);
    assert_eq!(never.phase(), Phase::Exited(Exit::Code(3)));
    // A failure is not restarted: what comes after it can never start.
    assert!(!never.satisfies_dependents());
    assert!(never.blocks_dependents());

    // A success is not restarted either: a one-shot, done, and what comes after it starts.
    let mut one_shot = Task::new(spec(Kind::Resident(Restart::Never)));
    one_shot.activate(c.at(0));
    one_shot.on_started(pid(1), c.at(0));
    assert!(one_shot.satisfies_dependents());
    assert_eq!(one_shot.on_exit(Exit::Code(0), c.at(5)), AfterExit::Done);
    assert!(one_shot.satisfies_dependents());
    assert!(!one_shot.blocks_dependents());

    let mut on_failure = Task::new(spec(Kind::Resident(Restart::OnFailure)));
    on_failure.activate(c.at(0));
    on_failure.on_started(pid(1), c.at(0));
    assert!(matches!(
        on_failure.on_exit(Exit::Code(2), c.at(5)),
        AfterExit::Restart { .. }
    ));
    assert!(!on_failure.satisfies_dependents());
    assert!(!on_failure.blocks_dependents());
    on_failure.on_started(pid(2), c.at(200));
    assert_eq!(
        on_failure.on_exit(Exit::Code(0), c.at(300)),
        AfterExit::Done
    );
    assert!(on_failure.satisfies_dependents());
}

#[test]
fn a_periodic_task_keeps_its_grid_and_skips_instead_of_overlapping() {
    let c = Clock::new();
    let mut t = Task::new(spec(Kind::Periodic {
        schedule: Schedule::Every(1000 * MS),
        timeout: None,
    }));
    assert!(!t.satisfies_dependents());
    assert_eq!(t.activate(c.at(0)), Some(Due::Start));
    t.on_started(pid(1), c.at(2));
    assert_eq!(
        t.deadline().instant(),
        Some(c.at(1000).mono),
        "next start on the grid of the first"
    );
    // The run is still going at 1000 ms: that start is skipped, not overlapped.
    assert_eq!(
        t.on_deadline(c.at(1000)),
        Some(Due::Skipped { pid: pid(1) })
    );
    // Told once per run: the starts at 2000, 3000 and 4000 are skipped without a wake-up.
    assert_eq!(t.deadline().instant(), None);
    assert_eq!(t.on_deadline(c.at(4000)), None);
    assert_eq!(
        t.on_exit(Exit::Code(0), c.at(4500)),
        AfterExit::NextRun {
            next: Deadline::At(c.at(5000).mono),
            skipped: Some(4)
        }
    );
    assert!(t.satisfies_dependents());
    assert_eq!(t.on_deadline(c.at(4999)), None);
    assert_eq!(t.on_deadline(c.at(5000)), Some(Due::Start));
    t.on_started(pid(3), c.at(5000));
    // A run that ends in time skipped nothing.
    assert_eq!(
        t.on_exit(Exit::Code(0), c.at(5500)),
        AfterExit::NextRun {
            next: Deadline::At(c.at(6000).mono),
            skipped: Some(0)
        }
    );
    let mut t = Task::new(spec(Kind::Periodic {
        schedule: Schedule::Every(1000 * MS),
        timeout: None,
    }));
    t.activate(c.at(0));
    t.on_started(pid(1), c.at(2));
    assert_eq!(
        t.on_deadline(c.at(1000)),
        Some(Due::Skipped { pid: pid(1) })
    );
    assert_eq!(
        t.on_exit(Exit::Code(0), c.at(1500)),
        AfterExit::NextRun {
            next: Deadline::At(c.at(2000).mono),
            skipped: Some(1)
        }
    );
    assert!(t.satisfies_dependents());
    assert_eq!(t.on_deadline(c.at(1999)), None);
    assert_eq!(t.on_deadline(c.at(2003)), Some(Due::Start));
    t.on_started(pid(2), c.at(2004));
    // Started 4 ms late, but the grid holds: next at 3000, not 3004.
    assert_eq!(
        t.on_exit(Exit::Code(1), c.at(2100)),
        AfterExit::NextRun {
            next: Deadline::At(c.at(3000).mono),
            skipped: Some(0)
        }
    );
    assert_eq!(t.successes(), 1);
}

#[test]
fn a_periodic_run_past_its_timeout_is_stopped_then_killed() {
    let c = Clock::new();
    let mut t = Task::new(spec(Kind::Periodic {
        schedule: Schedule::Every(10_000 * MS),
        timeout: Some(300 * MS),
    }));
    t.activate(c.at(0));
    t.on_started(pid(7), c.at(0));
    assert_eq!(t.deadline().instant(), Some(c.at(300).mono));
    assert_eq!(
        t.on_deadline(c.at(300)),
        Some(Due::Timeout {
            pid: pid(7),
            signal: Signal::SIGTERM
        })
    );
    assert_eq!(
        t.deadline().instant(),
        Some(c.at(800).mono),
        "SIGKILL after the grace"
    );
    assert_eq!(t.on_deadline(c.at(800)), Some(Due::Kill { pid: pid(7) }));
    assert_eq!(t.deadline().instant(), None);
    assert_eq!(
        t.on_exit(Exit::Signal(Signal::SIGKILL), c.at(801)),
        AfterExit::NextRun {
            next: Deadline::At(c.at(10_000).mono),
            skipped: Some(0)
        }
    );
}

#[test]
fn stopping_for_shutdown_signals_running_tasks_and_ends_the_others() {
    let c = Clock::new();
    let mut running = Task::new(spec(Kind::Resident(Restart::Always)));
    running.activate(c.at(0));
    running.on_started(pid(9), c.at(0));
    assert_eq!(running.stop(c.at(100)), Some((pid(9), Signal::SIGTERM)));
    assert_eq!(running.deadline().instant(), Some(c.at(600).mono));
    assert_eq!(
        running.on_exit(Exit::Signal(Signal::SIGTERM), c.at(150)),
        AfterExit::Stopped
    );
    assert_eq!(running.phase(), Phase::Stopped);

    let mut waiting = Task::new(spec(Kind::Resident(Restart::Always)));
    assert_eq!(waiting.stop(c.at(0)), None);
    assert_eq!(waiting.phase(), Phase::Stopped);

    let mut backing_off = Task::new(spec(Kind::Resident(Restart::Always)));
    backing_off.activate(c.at(0));
    backing_off.on_started(pid(1), c.at(0));
    backing_off.on_exit(Exit::Code(1), c.at(1));
    assert_eq!(backing_off.stop(c.at(2)), None);
    assert_eq!(backing_off.phase(), Phase::Stopped);
    assert_eq!(backing_off.on_deadline(c.at(1000)), None, "never restarted");
}

/// At shutdown nothing starts again: a task without a process is stopped at once, and one
/// that ends before its turn to stop (on its own, for a restart asked before, at its timeout)
/// is stopped, not restarted nor given a next run.
#[test]
fn once_the_runner_shuts_down_nothing_starts_again() {
    let c = Clock::new();
    let periodic = || {
        spec(Kind::Periodic {
            schedule: Schedule::Every(200 * MS),
            timeout: None,
        })
    };
    // Idle until its next run, in backoff, waiting: stopped at once.
    let mut idle = Task::new(periodic());
    idle.activate(c.at(0));
    idle.on_started(pid(1), c.at(0));
    assert!(matches!(
        idle.on_exit(Exit::Code(0), c.at(10)),
        AfterExit::NextRun { .. }
    ));
    let mut backoff = Task::new(spec(Kind::Resident(Restart::Always)));
    backoff.activate(c.at(0));
    backoff.on_started(pid(2), c.at(0));
    backoff.on_exit(Exit::Code(1), c.at(10));
    let mut waiting = Task::new(spec(Kind::Resident(Restart::Always)));
    for t in [&mut idle, &mut backoff, &mut waiting] {
        t.shut_down();
        assert_eq!(t.phase(), Phase::Stopped);
        assert_eq!(t.deadline(), Deadline::Never);
        assert_eq!(t.on_deadline(c.at(10_000)), None);
    }
    // A periodic run that fails on its own: no next run, and no start is due meanwhile.
    let mut run = Task::new(periodic());
    run.activate(c.at(0));
    run.on_started(pid(3), c.at(0));
    run.shut_down();
    assert_eq!(run.deadline(), Deadline::Never);
    assert_eq!(run.on_deadline(c.at(1000)), None, "no skipped start either");
    assert_eq!(
        run.on_exit(Exit::Code(1), c.at(1700)),
        AfterExit::ShuttingDown
    );
    assert_eq!(run.phase(), Phase::Stopped);
    // A restart asked before the shutdown: stopped, not started again.
    let mut restarted = Task::new(spec(Kind::Resident(Restart::Always)));
    restarted.activate(c.at(0));
    restarted.on_started(pid(4), c.at(0));
    assert_eq!(restarted.restart(c.at(10)), Some((pid(4), Signal::SIGTERM)));
    restarted.shut_down();
    assert_eq!(
        restarted.on_exit(Exit::Code(0), c.at(20)),
        AfterExit::ShuttingDown
    );
    assert!(AfterExit::ShuttingDown.stopped() && AfterExit::Stopped.stopped());
    // Stopped in its turn: as before.
    let mut resident = Task::new(spec(Kind::Resident(Restart::Always)));
    resident.activate(c.at(0));
    resident.on_started(pid(5), c.at(0));
    resident.shut_down();
    assert!(matches!(resident.phase(), Phase::Running { .. }));
    assert_eq!(resident.stop(c.at(10)), Some((pid(5), Signal::SIGTERM)));
    assert_eq!(
        resident.on_exit(Exit::Signal(Signal::SIGTERM), c.at(20)),
        AfterExit::Stopped
    );
}

#[test]
fn a_spawn_failure_counts_as_a_failed_run() {
    let c = Clock::new();
    let mut t = Task::new(spec(Kind::Resident(Restart::OnFailure)));
    t.activate(c.at(0));
    assert_eq!(
        t.on_exit(Exit::SpawnFailed, c.at(0)),
        AfterExit::Restart { delay: 100 * MS }
    );
}

#[test]
fn a_wall_clock_step_moves_a_cron_task_but_not_an_every_task() {
    use crate::schedule::{CronSchedule, Zone};
    let t0 = Instant::now();
    let at = |mono_s: u64, wall: &str| Now {
        mono: t0 + Duration::from_secs(mono_s),
        wall: wall.parse().unwrap(),
    };
    let hourly = CronSchedule::parse("0 * * * *", Zone::named("UTC").unwrap()).unwrap();
    let mut cron = Task::new(spec(Kind::Periodic {
        schedule: Schedule::Cron(Box::new(hourly)),
        timeout: None,
    }));
    // At 10:30 the next run is at 11:00, 30 minutes on the monotonic clock.
    assert_eq!(cron.activate(at(0, "2026-01-01T10:30:00Z")), None);
    assert_eq!(
        cron.deadline().instant(),
        Some(t0 + Duration::from_secs(1800))
    );
    // One second later the clock is set back to 08:59:00: the next run is at 09:00.
    cron.wall_clock_changed(at(1, "2026-01-01T08:59:00Z"));
    assert_eq!(
        cron.deadline().instant(),
        Some(t0 + Duration::from_secs(61))
    );

    let mut every = Task::new(spec(Kind::Periodic {
        schedule: Schedule::Every(Duration::from_secs(60)),
        timeout: None,
    }));
    every.activate(at(0, "2026-01-01T10:30:00Z"));
    every.on_started(pid(1), at(0, "2026-01-01T10:30:00Z"));
    every.on_exit(Exit::Code(0), at(1, "2026-01-01T10:30:01Z"));
    let before = every.deadline().instant();
    every.wall_clock_changed(at(2, "2026-01-01T08:00:00Z"));
    assert_eq!(every.deadline().instant(), before);
}

#[test]
fn killing_now_skips_the_grace_and_ends_in_stopped() {
    let c = Clock::new();
    let mut running = Task::new(spec(Kind::Resident(Restart::Always)));
    running.activate(c.at(0));
    running.on_started(pid(5), c.at(0));
    // A graceful stop already under way is cut short too.
    assert_eq!(running.stop(c.at(10)), Some((pid(5), Signal::SIGTERM)));
    assert_eq!(running.kill_now(), Some(pid(5)));
    assert_eq!(
        running.deadline().instant(),
        None,
        "no grace left to wait for"
    );
    assert_eq!(
        running.on_exit(Exit::Signal(Signal::SIGKILL), c.at(11)),
        AfterExit::Stopped
    );

    let mut idle = Task::new(spec(Kind::Periodic {
        schedule: Schedule::Every(Duration::from_secs(60)),
        timeout: None,
    }));
    idle.activate(c.at(0));
    idle.on_started(pid(6), c.at(0));
    idle.on_exit(Exit::Code(0), c.at(1));
    assert_eq!(idle.kill_now(), None);
    assert_eq!(idle.phase(), Phase::Stopped);
}

#[test]
fn a_main_exit_that_leaves_processes_waits_for_them_before_the_policy_decides() {
    let c = Clock::new();
    // Exit 0, processes left: a daemon. It stays running, then restarts once they are gone.
    let mut t = Task::new(spec(Kind::Resident(Restart::Always)));
    t.activate(c.at(0));
    t.on_started(pid(100), c.at(0));
    assert_eq!(
        t.on_main_exit(Exit::Code(0), true, c.at(10)),
        MainExit::Daemonized
    );
    assert_eq!(t.lingering(), Some(Exit::Code(0)));
    assert!(matches!(t.phase(), Phase::Running { .. }));
    assert!(t.satisfies_dependents(), "a daemon that runs is up");
    assert_eq!(t.deadline().instant(), None, "no restart while it runs");
    assert_eq!(
        t.on_gone(c.at(5000)),
        Some(AfterExit::Restart { delay: 100 * MS })
    );
    assert_eq!(t.lingering(), None);
    assert_eq!(t.on_gone(c.at(5000)), None, "recorded once");
    // A failure that leaves processes: they are killed, then it counts as the failure.
    t.on_deadline(c.at(5100));
    t.on_started(pid(101), c.at(5100));
    assert_eq!(
        t.on_main_exit(Exit::Code(3), true, c.at(5110)),
        MainExit::KillRest
    );
    assert_eq!(
        t.on_gone(c.at(5120)),
        Some(AfterExit::Restart { delay: 200 * MS })
    );
    // Nothing left: recorded at once.
    t.on_deadline(c.at(5400));
    t.on_started(pid(102), c.at(5400));
    assert!(matches!(
        t.on_main_exit(Exit::Code(3), false, c.at(5410)),
        MainExit::Gone(AfterExit::Restart { .. })
    ));
    // While stopping, the rest gets the grace; then the task is stopped.
    t.on_deadline(c.at(9000));
    t.on_started(pid(103), c.at(9000));
    t.stop(c.at(9100));
    assert_eq!(
        t.on_main_exit(Exit::Code(0), true, c.at(9110)),
        MainExit::Wait
    );
    assert_eq!(
        t.deadline().instant(),
        Some(c.at(9600).mono),
        "SIGKILL still due after the grace"
    );
    assert_eq!(t.on_deadline(c.at(9600)), Some(Due::Kill { pid: pid(103) }));
    assert_eq!(t.on_gone(c.at(9610)), Some(AfterExit::Stopped));
    assert_eq!(t.phase(), Phase::Stopped);
}

#[test]
fn a_hung_instance_is_stopped_then_killed_and_counts_as_a_failure() {
    let c = Clock::new();
    let mut t = Task::new(spec(Kind::Resident(Restart::OnFailure)));
    t.activate(c.at(0));
    t.on_started(pid(7), c.at(0));
    assert_eq!(t.on_hung(c.at(100)), Some((pid(7), Signal::SIGTERM)));
    assert_eq!(t.on_hung(c.at(110)), None, "already stopping");
    assert_eq!(t.deadline().instant(), Some(c.at(600).mono), "the grace");
    assert_eq!(t.on_deadline(c.at(600)), Some(Due::Kill { pid: pid(7) }));
    // Even an exit 0 on SIGTERM is a failure: on-failure restarts it, with the backoff.
    match t.on_exit(Exit::Code(0), c.at(610)) {
        AfterExit::Restart { delay } => assert_eq!(delay, 100 * MS),
        other => panic!("{other:?}"),
    }
    assert_eq!(t.successes(), 0);
    // Hangs count towards the crash loop like any failure.
    let mut now = 700;
    for i in 0..4 {
        t.on_deadline(c.at(now + 1000));
        now += 1000;
        t.on_started(pid(8 + i), c.at(now));
        t.on_hung(c.at(now + 10));
        let after = t.on_exit(Exit::Signal(Signal::SIGTERM), c.at(now + 20));
        assert_eq!(
            matches!(after, AfterExit::CrashLoop { .. }),
            i == 3,
            "exit {}: {after:?}",
            i + 2
        );
    }
    // Not running: nothing to stop.
    let mut idle = Task::new(spec(Kind::Resident(Restart::Always)));
    assert_eq!(idle.on_hung(c.at(0)), None);
}

#[test]
fn with_a_heartbeat_and_a_probe_dependents_wait_for_both_in_each_instance() {
    let c = Clock::new();
    let mut s = spec(Kind::Resident(Restart::Always));
    s.heartbeat = Some(HeartbeatSpec {
        timeout: Duration::from_secs(1),
        start: Duration::from_secs(1),
    });
    s.probe = Some(Box::new(crate::probe::ProbeSpec {
        check: crate::probe::ProbeCheck::Tcp(([127, 0, 0, 1], 1).into()),
        every: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        failures: 3,
        start: Duration::from_secs(60),
    }));
    let mut t = Task::new(s);
    assert!(!t.on_ready(Readiness::Heartbeat), "not running");
    t.activate(c.at(0));
    t.on_started(pid(7), c.at(0));
    assert!(!t.satisfies_dependents(), "running, not ready");
    assert!(
        !t.on_ready(Readiness::Heartbeat),
        "the probe is still awaited"
    );
    assert!(!t.on_ready(Readiness::Heartbeat), "once");
    assert!(!t.satisfies_dependents());
    assert!(t.on_ready(Readiness::Probe));
    assert!(t.satisfies_dependents());
    t.on_exit(Exit::Code(1), c.at(10));
    t.on_deadline(c.at(1000));
    t.on_started(pid(8), c.at(1000));
    assert!(!t.satisfies_dependents(), "each instance beats again");
    // Without a heartbeat: ready when started.
    let mut plain = Task::new(spec(Kind::Resident(Restart::Always)));
    plain.activate(c.at(0));
    plain.on_started(pid(9), c.at(0));
    assert!(plain.satisfies_dependents());
}

#[test]
fn an_operator_start_brings_a_failed_task_back_with_its_crash_loop_count_cleared() {
    let c = Clock::new();
    let mut t = Task::new(spec(Kind::Resident(Restart::Always)));
    t.activate(c.at(0));
    let mut now = 0;
    for i in 0..5 {
        t.on_started(pid(100 + i), c.at(now));
        now += 10;
        let after = t.on_exit(Exit::Code(1), c.at(now));
        if i == 4 {
            assert!(matches!(after, AfterExit::CrashLoop { .. }), "{after:?}");
        }
        now += 400;
    }
    assert_eq!(t.phase(), Phase::Failed);
    assert_eq!(t.last_exit(), Some(Exit::Code(1)));
    assert_eq!(t.start(), Started::Now);
    t.on_started(pid(200), c.at(now));
    now += 10;
    // A fresh count and backoff: the first exit after the start backs off by the initial delay.
    assert_eq!(
        t.on_exit(Exit::Code(1), c.at(now)),
        AfterExit::Restart { delay: 100 * MS }
    );
    assert_eq!(t.start(), Started::Now, "in backoff: now, not at its end");
    t.on_started(pid(201), c.at(now));
    assert_eq!(t.start(), Started::AlreadyRunning);
}

#[test]
fn an_operator_stop_keeps_a_task_stopped_until_it_is_started_again() {
    let c = Clock::new();
    let mut t = Task::new(spec(Kind::Resident(Restart::Always)));
    t.activate(c.at(0));
    t.on_started(pid(100), c.at(0));
    assert_eq!(
        t.stop_by_operator(c.at(10)),
        Some((pid(100), Signal::SIGTERM))
    );
    assert_eq!(
        t.deadline().instant(),
        Some(c.at(510).mono),
        "SIGKILL after the grace"
    );
    assert_eq!(t.stop_by_operator(c.at(20)), None, "already stopping");
    assert_eq!(
        t.on_exit(Exit::Signal(Signal::SIGTERM), c.at(30)),
        AfterExit::Stopped
    );
    assert_eq!(t.phase(), Phase::Stopped);
    assert_eq!(t.deadline().instant(), None, "not restarted");
    assert!(t.phase().is_final());
    assert_eq!(t.start(), Started::Now);
    // Started while an operator's stop is under way: it starts again once it is gone.
    t.on_started(pid(101), c.at(40));
    t.stop_by_operator(c.at(50));
    assert_eq!(t.start(), Started::AfterStop);
    assert_eq!(t.on_exit(Exit::Code(0), c.at(60)), AfterExit::Restarted);
    assert_eq!(t.on_deadline(c.at(60)), Some(Due::Start));
    // A task without a process is stopped at once; shutdown leaves an exited one exited.
    let mut idle = Task::new(spec(Kind::Periodic {
        schedule: Schedule::Every(1000 * MS),
        timeout: None,
    }));
    assert_eq!(idle.stop_by_operator(c.at(0)), None);
    assert_eq!(idle.phase(), Phase::Stopped);
}

#[test]
fn an_operator_restart_stops_then_starts_at_once_without_counting_a_crash() {
    let c = Clock::new();
    let mut t = Task::new(spec(Kind::Resident(Restart::Always)));
    t.spec.crash_loop = CrashLoop {
        max: 1,
        within: Duration::from_secs(60),
    };
    t.activate(c.at(0));
    for (n, at) in [(100, 0), (101, 100), (102, 200)] {
        t.on_started(pid(n), c.at(at));
        assert_eq!(t.restart(c.at(at + 10)), Some((pid(n), Signal::SIGTERM)));
        assert_eq!(
            t.on_exit(Exit::Signal(Signal::SIGTERM), c.at(at + 20)),
            AfterExit::Restarted,
            "not a crash loop, however often"
        );
        assert_eq!(t.deadline().instant(), Some(c.at(at + 20).mono), "at once");
        assert_eq!(t.on_deadline(c.at(at + 20)), Some(Due::Start));
    }
    // A shutdown during a restart wins.
    t.on_started(pid(103), c.at(300));
    t.restart(c.at(310));
    assert_eq!(t.stop(c.at(320)), None, "already stopping");
    assert_eq!(t.on_exit(Exit::Code(0), c.at(330)), AfterExit::Stopped);
    // A task with no process is left to the runner to start.
    let mut t = Task::new(spec(Kind::Resident(Restart::Always)));
    assert_eq!(t.restart(c.at(0)), None);
    assert_eq!(t.phase(), Phase::Waiting);
}

/// Every duration of a task at `huge`: the pipeline's maximum, or beyond what the clock counts
/// (which no check lets through, but which must not panic either).
fn huge_spec(kind: Kind, huge: Duration) -> TaskSpec {
    TaskSpec {
        backoff: Backoff {
            initial: huge,
            max: huge,
            stable: huge,
        },
        crash_loop: CrashLoop {
            max: 4,
            within: huge,
        },
        stop: StopSpec {
            signal: Signal::SIGTERM,
            grace: huge,
        },
        ..spec(kind)
    }
}

const HUGE: [Duration; 3] = [
    nonstop_core::Duration::MAX.0,
    Duration::from_secs(10_000_000_000_000_000_000),
    Duration::MAX,
];

#[test]
fn a_periodic_task_with_every_duration_beyond_the_clock_runs_and_stops_without_panicking() {
    let c = Clock::new();
    for huge in HUGE {
        let mut t = Task::new(huge_spec(
            Kind::Periodic {
                schedule: Schedule::Every(huge),
                timeout: Some(huge),
            },
            huge,
        ));
        assert_eq!(t.activate(c.at(0)), Some(Due::Start), "{huge:?}");
        t.on_started(pid(1), c.at(0));
        // Neither its next start nor its timeout falls due in any time a test can wait.
        assert!(!t.deadline().is_due(c.at(1000).mono));
        assert_eq!(t.on_deadline(c.at(1000)), None);
        let AfterExit::NextRun { next, skipped } = t.on_exit(Exit::Code(0), c.at(1000)) else {
            panic!("{:?}", t.phase());
        };
        assert_eq!(skipped, Some(0));
        assert!(!next.is_due(c.at(1000).mono));
        // Started again by an operator, then stopped with a grace that never runs out.
        assert_eq!(t.start(), Started::Now);
        t.on_started(pid(2), c.at(2000));
        assert_eq!(t.stop(c.at(2000)), Some((pid(2), Signal::SIGTERM)));
        assert!(!t.deadline().is_due(c.at(3000).mono));
        assert_eq!(t.kill_now(), Some(pid(2)));
        assert_eq!(t.deadline(), Deadline::Never);
        assert_eq!(
            t.on_exit(Exit::Signal(Signal::SIGKILL), c.at(3000)),
            AfterExit::Stopped
        );
    }
}

#[test]
fn a_resident_task_with_every_duration_beyond_the_clock_backs_off_and_stops_without_panicking() {
    let c = Clock::new();
    for huge in HUGE {
        let mut t = Task::new(huge_spec(Kind::Resident(Restart::Always), huge));
        assert_eq!(t.activate(c.at(0)), Some(Due::Start));
        t.on_started(pid(1), c.at(0));
        // Twice, so the backoff doubles past its maximum.
        for n in 0..2 {
            assert_eq!(
                t.on_exit(Exit::Code(1), c.at(10)),
                AfterExit::Restart { delay: huge },
                "{huge:?} {n}"
            );
            assert!(!t.deadline().is_due(c.at(1000).mono));
            assert_eq!(t.start(), Started::Now);
            t.on_started(pid(2), c.at(20));
        }
        // Hung, with a grace that never runs out; a stop by an operator, the same.
        assert_eq!(t.on_hung(c.at(30)), Some((pid(2), Signal::SIGTERM)));
        assert!(!t.deadline().is_due(c.at(1000).mono));
        assert_eq!(
            t.on_exit(Exit::Code(1), c.at(40)),
            AfterExit::Restart { delay: huge }
        );
        assert_eq!(t.start(), Started::Now);
        t.on_started(pid(3), c.at(50));
        assert_eq!(
            t.stop_by_operator(c.at(60)),
            Some((pid(3), Signal::SIGTERM))
        );
        assert!(!t.deadline().is_due(c.at(1000).mono));
        assert_eq!(t.on_exit(Exit::Code(0), c.at(70)), AfterExit::Stopped);
    }
}
