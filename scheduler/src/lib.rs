//! Spawning and timing of tasks: process groups, environment, limits and log files; reaping;
//! restart policy, backoff, crash-loop limit, intervals and cron.
//!
//! Not built yet: it arrives with the runner issue (see `ARCHITECTURE.md`).
