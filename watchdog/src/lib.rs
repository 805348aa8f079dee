//! The watchdog sweep: read a heartbeat table, free the slots of dead processes, and stop hung
//! ones (TERM, grace, KILL, to the whole process group, after checking their identity).
//!
//! Not built yet: it arrives with the watchdog issue (see `ARCHITECTURE.md`).
