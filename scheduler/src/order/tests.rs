//! `after` gating, shutdown order and the agenda, on made-up tasks and instants.

use std::time::Instant;

use nix::unistd::Pid;

use super::*;
use crate::policy::{Backoff, CrashLoop, Restart};
use crate::schedule::Now;
use crate::spawn::SpawnSpec;
use crate::task::{Exit, Kind, StopSpec};

fn spec(name: &str, restart: Restart, after: &[&str]) -> TaskSpec {
    TaskSpec {
        name: name.into(),
        spawn: SpawnSpec::default(),
        kind: Kind::Resident(restart),
        backoff: Backoff::default(),
        crash_loop: CrashLoop::default(),
        stop: StopSpec::default(),
        after: after.iter().map(|s| s.to_string()).collect(),
        heartbeat: None,
        probe: None,
        plugin: None,
        instance_of: None,
        on_failure: Vec::new(),
        on_demand: false,
    }
}

fn now() -> Now {
    Now {
        mono: Instant::now(),
        wall: jiff::Timestamp::now(),
    }
}

/// `a`, then `b` after `a`, then `c` after `a` and `b`.
fn diamond() -> (Vec<Task>, Order) {
    let specs = vec![
        spec("a", Restart::Always, &[]),
        spec("b", Restart::Never, &["a"]),
        spec("c", Restart::Always, &["a", "b"]),
    ];
    let order = Order::new(&specs);
    (specs.into_iter().map(Task::new).collect(), order)
}

fn start(tasks: &mut [Task], i: usize, pid: i32) {
    let n = now();
    assert_eq!(tasks[i].activate(n), Some(crate::task::Due::Start));
    tasks[i].on_started(Pid::from_raw(pid), n);
}

#[test]
fn a_task_waits_for_what_it_comes_after_then_starts() {
    let (mut tasks, order) = diamond();
    assert_eq!(order.dependencies(2), [0, 1]);
    assert_eq!(order.dependents(0), [1, 2]);
    assert_eq!(order.gate(0, |j| &tasks[j]), Gate::Open);
    assert_eq!(order.gate(1, |j| &tasks[j]), Gate::Wait(vec![0]));
    assert_eq!(order.gate(2, |j| &tasks[j]), Gate::Wait(vec![0, 1]));
    start(&mut tasks, 0, 10);
    assert_eq!(order.gate(1, |j| &tasks[j]), Gate::Open);
    assert_eq!(order.gate(2, |j| &tasks[j]), Gate::Wait(vec![1]));
    start(&mut tasks, 1, 11);
    assert_eq!(order.gate(2, |j| &tasks[j]), Gate::Open);
}

#[test]
fn a_dependency_that_ended_without_success_closes_the_gate_for_good() {
    let (mut tasks, order) = diamond();
    start(&mut tasks, 0, 10);
    start(&mut tasks, 1, 11);
    // `b` (restart: never) fails: `c` will never start.
    tasks[1].on_exit(Exit::Code(3), now());
    assert_eq!(order.gate(2, |j| &tasks[j]), Gate::Never(vec![1]));
    // Had it succeeded, it would count as done (a one-shot).
    let (mut tasks, order) = diamond();
    start(&mut tasks, 0, 10);
    start(&mut tasks, 1, 11);
    tasks[1].on_exit(Exit::Code(0), now());
    assert_eq!(order.gate(2, |j| &tasks[j]), Gate::Open);
}

#[test]
fn at_shutdown_dependents_stop_first() {
    let (mut tasks, order) = diamond();
    for (i, pid) in [(0, 10), (1, 11), (2, 12)] {
        start(&mut tasks, i, pid);
    }
    let stoppable = |tasks: &[Task]| -> Vec<usize> {
        (0..tasks.len())
            .filter(|&i| order.may_stop(i, |j| &tasks[j]))
            .collect()
    };
    assert_eq!(stoppable(&tasks), [2]);
    tasks[2].stop(now());
    assert_eq!(
        stoppable(&tasks),
        [] as [usize; 0],
        "c is stopping, not stopped"
    );
    tasks[2].on_exit(Exit::Code(0), now());
    assert_eq!(stoppable(&tasks), [1]);
    tasks[1].stop(now());
    tasks[1].on_exit(Exit::Code(0), now());
    assert_eq!(stoppable(&tasks), [0]);
    tasks[0].stop(now());
    tasks[0].on_exit(Exit::Code(0), now());
    assert!(stoppable(&tasks).is_empty());
    assert!(tasks.iter().all(|t| t.phase().is_final()));
}

#[test]
fn the_agenda_holds_each_task_once_in_order() {
    let (_, order) = diamond();
    let mut agenda = Agenda::all(3);
    assert_eq!(agenda.pop(), Some(0));
    agenda.push(0);
    agenda.push(1);
    agenda.push(0);
    assert_eq!(
        std::iter::from_fn(|| agenda.pop()).collect::<Vec<_>>(),
        [1, 2, 0]
    );
    assert!(agenda.is_empty());
    agenda.changed(1, &order);
    assert_eq!(
        std::iter::from_fn(|| agenda.pop()).collect::<Vec<_>>(),
        [1, 0, 2]
    );
    agenda.push_all();
    assert_eq!(
        std::iter::from_fn(|| agenda.pop()).collect::<Vec<_>>(),
        [0, 1, 2]
    );
}

/// Starting and stopping a chain of n tasks (each after the one before) the way the runner
/// does looks at each task a bounded number of times: linear, not quadratic.
#[test]
fn a_long_chain_starts_and_stops_in_linear_work() {
    const N: usize = 200_000;
    let names: Vec<String> = (0..N).map(|i| format!("t{i}")).collect();
    let specs: Vec<TaskSpec> = (0..N)
        .map(|i| {
            let after: Vec<&str> = if i == 0 { vec![] } else { vec![&names[i - 1]] };
            spec(&names[i], Restart::Always, &after)
        })
        .collect();
    let order = Order::new(&specs);
    let mut tasks: Vec<Task> = specs.into_iter().map(Task::new).collect();
    let mut agenda = Agenda::all(N);
    let mut looks = 0;
    let n = now();
    while let Some(i) = agenda.pop() {
        looks += 1;
        if tasks[i].phase() == Phase::Waiting && order.gate(i, |j| &tasks[j]) == Gate::Open {
            start(&mut tasks, i, i as i32 + 2);
            agenda.changed(i, &order);
        }
    }
    assert!(
        tasks
            .iter()
            .all(|t| matches!(t.phase(), Phase::Running { .. }))
    );
    assert!(looks <= 3 * N, "{looks} looks for {N} tasks");
    agenda.push_all();
    looks = 0;
    while let Some(i) = agenda.pop() {
        looks += 1;
        if order.may_stop(i, |j| &tasks[j]) {
            tasks[i].stop(n);
            tasks[i].on_exit(Exit::Signal(nix::sys::signal::Signal::SIGTERM), n);
            agenda.changed(i, &order);
        }
    }
    assert!(tasks.iter().all(|t| t.phase() == Phase::Stopped));
    assert!(looks <= 4 * N, "{looks} looks for {N} tasks");
}
