//! The nonstop SDK: what the runner and every plugin share.
//!
//! Today it holds the human-friendly quantities of pipeline files and plugin arguments:
//! [`Duration`] (`250ms`, `5s`, `5m`, `2h`, `1.5d`, or a plain number of seconds) and
//! [`ByteSize`] (`10M`, `512KiB`, or a plain number of bytes), both parsed from strings or
//! YAML/JSON numbers with serde. The plugin ABI and the `Task` trait arrive with the plugin
//! issues; see `ARCHITECTURE.md`. This crate makes no system calls.
//!
//! ```
//! use nonstop_core::Duration;
//! assert_eq!("1.5d".parse::<Duration>().unwrap().as_secs(), 129_600);
//! assert_eq!("250ms".parse::<Duration>().unwrap().to_string(), "250ms");
//! ```
#![deny(missing_docs)]

mod quantity;

pub use quantity::{ByteSize, Duration, ParseError};
