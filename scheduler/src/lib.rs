//! Spawning and timing of tasks.
//!
//! - [`task::Task`]: one task's state machine (waiting, running, stopping, backoff, idle,
//!   exited, failed, stopped). Pure: the runner tells it what happened and when, and it answers
//!   what to do next ([`task::Due`], [`task::AfterExit`]).
//! - [`policy`]: restart policy, capped exponential [`policy::Backoff`], crash-loop limit.
//! - [`schedule`]: `every` (monotonic, never drifting) and `cron` (wall clock, time zones).
//! - [`spawn`]: starting a process in its own process group with its environment, directory,
//!   credentials, umask and limits, tied to the runner's life by `PR_SET_PDEATHSIG`.
//!
//! Deadlines are on the monotonic clock; the wall clock is read only for cron.
//!
//! Specs ([`task::TaskSpec`] and what it holds) implement serde, so the runner can hand a
//! checked pipeline to its supervising process ([`wire`] has the representations of the
//! types that are not serde's own).

pub mod cgroup;
mod error;
pub mod order;
pub mod policy;
pub mod probe;
pub mod schedule;
// Starting a child is a clone and raw system calls up to execve, and the guard is a fork:
// `unsafe`, allowed here only.
#[allow(unsafe_code)]
pub mod spawn;
pub mod task;
pub mod wire;

pub use error::Error;
