//! The nonstop SDK: what the runner and every plugin share.
//!
//! Today it holds the human-friendly quantities of pipeline files and plugin arguments:
//! [`Duration`] (`250ms`, `5s`, `5m`, `2h`, `1.5d`, or a plain number of seconds) and
//! [`ByteSize`] (`10M`, `512KiB`, or a plain number of bytes), both parsed from strings or
//! YAML/JSON numbers with serde, durations at most [`Duration::MAX`] (100 years); [`Deadline`],
//! an instant or never, whose arithmetic saturates instead of panicking; [`printable`], text
//! made safe for a terminal or a one-line log; and the plugin SDK ([`plugin`]): the C ABI between the task
//! host and a plugin library, the [`plugin::Task`] trait, and [`export_plugin!`]. This crate
//! makes no system calls (a plugin reaches the runner through the function pointers the host
//! lends it).
//!
//! ```
//! use nonstop_core::Duration;
//! assert_eq!("1.5d".parse::<Duration>().unwrap().as_secs(), 129_600);
//! assert_eq!("250ms".parse::<Duration>().unwrap().to_string(), "250ms");
//! ```
#![deny(missing_docs)]

mod deadline;
mod patterns;
pub mod plugin;
mod quantity;
mod text;

pub use deadline::Deadline;
pub use patterns::Patterns;
pub use quantity::{ByteSize, Duration, ParseError};
pub use text::printable;
