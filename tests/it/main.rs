//! End-to-end tests: real processes, real System V objects, real C programs. Each test takes
//! its own [`harness::TestKey`] and its children are [`harness::Proc`]s, so everything it
//! creates is removed and reaped even when it fails.

// All of this crate is test code: a panic is how it fails a test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod boot;
mod check;
mod containment;
mod control;
mod descriptors;
mod disk_full;
mod dist;
mod durations;
mod flood;
mod gzip;
mod hang;
mod harness;
mod hooks;
mod plugin;
mod plugin_host;
mod probe;
mod purge;
mod reload;
mod restart_after_kill;
mod run_handoff;
mod run_periodic;
mod run_resident;
mod run_stop;
mod seed;
mod sem;
mod servers;
mod shm;
mod signals;
mod table;
