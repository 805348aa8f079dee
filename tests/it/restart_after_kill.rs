//! A task runs again after every path that kills its cgroup: its main process killed by a
//! signal while it has children, a stop whose grace ran out, a hung task that ignores TERM, a
//! periodic run killed at its `timeout`. (On some kernels a child cloned into a cgroup that
//! was once `cgroup.kill`ed is SIGKILLed at once: the task must get a fresh cgroup.) Each task
//! writes its pid to `starts` when it runs, so a start that was killed before it ran is seen.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::{KillOnDrop, PipelineDir, Runner, alive, ctl_ok, nonstop, wait_until};

const SECOND: Duration = Duration::from_secs(1);

/// The pids written to `starts` so far, waiting until there are at least `n`.
fn starts(p: &PipelineDir, n: usize, runner: &mut Runner) -> Vec<i32> {
    let enough = wait_until(30 * SECOND, || p.numbers::<i32>("starts").len() >= n);
    assert!(
        enough,
        "{n} runs expected, {:?} seen; the log:\n{}",
        p.numbers::<i32>("starts"),
        runner.drain().join("\n")
    );
    p.numbers("starts")
}

/// No start of the task was killed before it ran (the symptom: "after 0ms").
fn assert_no_instant_kill(runner: &mut Runner) {
    let log = runner.drain().join("\n");
    assert!(
        !log.contains("SIGKILL after 0ms") && !log.contains("failed, not restarted"),
        "{log}"
    );
}

#[test]
fn a_task_whose_main_process_was_killed_with_children_left_starts_again() {
    let p = PipelineDir::new(
        "tasks:\n  a:\n    command: [sh, -c, 'echo $$ >> starts; sleep 1000 & wait']\n    \
         backoff: { initial: 10ms }\n",
    );
    let mut runner = Runner::start(&p);
    let mut cleanup = KillOnDrop::default();
    // Three rounds: each start after a killed cgroup must run.
    for round in 1..=3 {
        let pids = starts(&p, round, &mut runner);
        let main = pids[round - 1];
        cleanup.0.push(main);
        runner.wait_for(&["started", &format!("pid={main}")], 10 * SECOND);
        kill(Pid::from_raw(main), Signal::SIGKILL).unwrap();
        runner.wait_for(
            &[
                "exited with signal SIGKILL",
                "killing the 1 process it left",
            ],
            10 * SECOND,
        );
    }
    let pids = starts(&p, 4, &mut runner);
    assert!(alive(pids[3]), "the fourth instance does not run");
    assert_no_instant_kill(&mut runner);
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn a_task_stopped_past_its_grace_starts_again() {
    let p = PipelineDir::new(
        "tasks:\n  deaf:\n    command: [sh, -c, \"echo $$ >> starts; trap '' TERM; sleep 1000 & wait\"]\n    \
         stop: { grace: 100ms }\n",
    );
    let mut runner = Runner::start(&p);
    let first = starts(&p, 1, &mut runner)[0];
    let _cleanup = KillOnDrop(vec![first]);
    ctl_ok(&p, &["stop", "deaf"]);
    runner.wait_for(&["deaf", "stopped"], 30 * SECOND);
    assert!(!alive(first));
    ctl_ok(&p, &["start", "deaf"]);
    let second = starts(&p, 2, &mut runner)[1];
    let _cleanup2 = KillOnDrop(vec![second]);
    assert!(alive(second), "the second instance does not run");
    // Its cgroup is a working one: a restart by the operator (TERM ignored again, so KILL)
    // gives a third instance.
    ctl_ok(&p, &["restart", "deaf"]);
    let third = starts(&p, 3, &mut runner)[2];
    let _cleanup3 = KillOnDrop(vec![third]);
    assert!(alive(third), "the third instance does not run");
    assert_no_instant_kill(&mut runner);
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn a_hung_task_that_ignores_term_starts_again() {
    let key = crate::harness::TestKey::new();
    // The first instance beats once and hangs; the next ones beat on.
    let script = format!(
        "echo $$ >> starts; trap '' TERM; \
         if [ -e hung-once ]; then while :; do {nonstop} beat; sleep 0.2; done; \
         else touch hung-once; {nonstop} beat; sleep 1000; fi",
        nonstop = nonstop().display()
    );
    let p = PipelineDir::new(&format!(
        "heartbeat: {{ key: {key} }}\ntasks:\n  stuck:\n    command: [sh, -c, {script:?}]\n    \
         heartbeat: {{ timeout: 1s, start: 30s }}\n    stop: {{ grace: 100ms }}\n",
        key = key.arg(),
    ));
    let mut runner = Runner::start(&p);
    let first = starts(&p, 1, &mut runner)[0];
    let _cleanup = KillOnDrop(vec![first]);
    runner.wait_for(&["hung: no heartbeat for", "task=stuck"], 30 * SECOND);
    let second = starts(&p, 2, &mut runner)[1];
    let _cleanup2 = KillOnDrop(vec![second]);
    assert!(!alive(first), "the hung instance lives on");
    // The new instance runs and beats: `nonstop beat` wrote into its slot.
    assert!(alive(second), "the second instance does not run");
    assert_no_instant_kill(&mut runner);
    assert!(runner.terminate(10 * SECOND).success());
}

#[test]
fn a_periodic_run_killed_at_its_timeout_runs_again() {
    // The first run hangs (ignoring TERM) and is killed at its timeout; the next ones finish.
    let p = PipelineDir::new(
        "tasks:\n  job:\n    command: [sh, -c, \"echo $$ >> starts; trap '' TERM; \
         if [ -e hung-once ]; then exit 0; fi; touch hung-once; sleep 1000 & wait\"]\n    \
         every: 1s\n    timeout: 300ms\n    stop: { grace: 100ms }\n",
    );
    let mut runner = Runner::start(&p);
    let first = starts(&p, 1, &mut runner)[0];
    let _cleanup = KillOnDrop(vec![first]);
    runner.wait_for(&["task=job", "run exceeded its timeout"], 30 * SECOND);
    starts(&p, 3, &mut runner);
    runner.wait_for(&["task=job", "run finished with status 0"], 30 * SECOND);
    runner.wait_for(&["task=job", "run finished with status 0"], 30 * SECOND);
    assert_no_instant_kill(&mut runner);
    assert!(runner.terminate(10 * SECOND).success());
}
