//! Decisions that involve several tasks: which waiting task may start (`after`), which task
//! may be stopped at shutdown (its dependents first), and which tasks to look at again after
//! one changed ([`Agenda`]). Pure, like [`Task`]: the runner asks and does the I/O; the tests
//! drive made-up tasks.
//!
//! Work is proportional to what changed: a task's change puts only it, the tasks it comes
//! after and the tasks that come after it on the [`Agenda`], so a chain of 200,000 tasks is
//! started and stopped in linear time.

use std::collections::{HashMap, VecDeque};

use crate::task::{Phase, Task, TaskSpec};

/// The `after` relation between the tasks of a pipeline, by index in the pipeline.
#[derive(Debug, Clone, Default)]
pub struct Order {
    /// For each task, the tasks it comes `after`.
    dependencies: Vec<Vec<usize>>,
    /// For each task, the tasks that come `after` it.
    dependents: Vec<Vec<usize>>,
}

/// Whether a waiting task may start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Every task it comes after is satisfied: start it.
    Open,
    /// These tasks it comes after are not satisfied yet.
    Wait(Vec<usize>),
    /// These tasks it comes after ended without success and are not restarted: it will not
    /// start unless they are started again.
    Never(Vec<usize>),
}

impl Order {
    /// The relation among `specs`; names in `after` that are not in `specs` are left out (the
    /// pipeline check reports them).
    pub fn new(specs: &[TaskSpec]) -> Order {
        let index: HashMap<&str, usize> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let dependencies: Vec<Vec<usize>> = specs
            .iter()
            .map(|s| {
                s.after
                    .iter()
                    .filter_map(|d| index.get(d.as_str()).copied())
                    .collect()
            })
            .collect();
        let mut dependents = vec![Vec::new(); specs.len()];
        for (i, deps) in dependencies.iter().enumerate() {
            for &d in deps {
                dependents[d].push(i);
            }
        }
        Order {
            dependencies,
            dependents,
        }
    }

    /// The tasks that task `i` comes after.
    pub fn dependencies(&self, i: usize) -> &[usize] {
        &self.dependencies[i]
    }

    /// The tasks that come after task `i`.
    pub fn dependents(&self, i: usize) -> &[usize] {
        &self.dependents[i]
    }

    /// Whether task `i` may start now, as far as `after` is concerned (`task(j)` is task `j`).
    pub fn gate<'a>(&self, i: usize, task: impl Fn(usize) -> &'a Task) -> Gate {
        let never: Vec<usize> = self.dependencies[i]
            .iter()
            .copied()
            .filter(|&d| task(d).blocks_dependents())
            .collect();
        if !never.is_empty() {
            return Gate::Never(never);
        }
        let wait: Vec<usize> = self.dependencies[i]
            .iter()
            .copied()
            .filter(|&d| !task(d).satisfies_dependents())
            .collect();
        if wait.is_empty() {
            Gate::Open
        } else {
            Gate::Wait(wait)
        }
    }

    /// At shutdown: whether task `i` is to be stopped now. It is not stopped or stopping yet,
    /// and every task that comes after it has stopped (tasks stop in the reverse order of
    /// `after`).
    pub fn may_stop<'a>(&self, i: usize, task: impl Fn(usize) -> &'a Task) -> bool {
        let phase = task(i).phase();
        !phase.is_final()
            && !matches!(phase, Phase::Stopping { .. })
            && self.dependents[i]
                .iter()
                .all(|&d| task(d).phase().is_final())
    }
}

/// The tasks to look at again, each at most once in the queue, in the order they were put
/// there.
#[derive(Debug, Clone, Default)]
pub struct Agenda {
    queue: VecDeque<usize>,
    queued: Vec<bool>,
}

impl Agenda {
    /// An agenda with every one of `n` tasks on it.
    pub fn all(n: usize) -> Agenda {
        Agenda {
            queue: (0..n).collect(),
            queued: vec![true; n],
        }
    }

    /// Puts task `i` on the agenda (once).
    pub fn push(&mut self, i: usize) {
        if !self.queued[i] {
            self.queued[i] = true;
            self.queue.push_back(i);
        }
    }

    /// Task `i` changed: it, the tasks it comes after and those that come after it may have
    /// something to do now.
    pub fn changed(&mut self, i: usize, order: &Order) {
        self.push(i);
        for &d in order.dependencies(i).iter().chain(order.dependents(i)) {
            self.push(d);
        }
    }

    /// Every task on the agenda again (shutdown begins).
    pub fn push_all(&mut self) {
        for i in 0..self.queued.len() {
            self.push(i);
        }
    }

    /// The next task to look at.
    pub fn pop(&mut self) -> Option<usize> {
        let i = self.queue.pop_front()?;
        self.queued[i] = false;
        Some(i)
    }

    /// Whether nothing is on the agenda.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests;
