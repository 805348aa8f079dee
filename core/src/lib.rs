//! The nonstop plugin SDK: what the runner and every plugin share.
//!
//! Not built yet. The plugin ABI (one `#[repr(C)]` declaration behind one exported symbol,
//! checked for ABI and SDK version), the `Task` trait and the shared duration type arrive with
//! the runner and plugin issues; see `ARCHITECTURE.md`. This crate makes no system calls.
#![deny(missing_docs)]
