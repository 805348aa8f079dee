//! The runner's own log: one line per event on stderr,
//! `2026-11-25T23:52:48.817268Z  INFO started task=server pid=4242`: the time (UTC, to the
//! microsecond), the level, the message, then the event's fields as `key=value`.
//!
//! The `tracing` macros feed it through [`StderrLog`], a `Subscriber` of a few lines, in
//! place of tracing-subscriber's formatter: the runner has no spans and one output, and this
//! keeps the long-lived process smaller (no span registry). `NONSTOP_LOG=debug` (or `trace`,
//! `warn`, `error`) sets the level; the default is `info`.

use std::fmt::{self, Write as _};
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Installs [`StderrLog`] for the whole process, at the level `NONSTOP_LOG` names.
pub fn init() {
    let level = match std::env::var("NONSTOP_LOG").as_deref().map(str::trim) {
        Ok("trace") => Level::TRACE,
        Ok("debug") => Level::DEBUG,
        Ok("warn") => Level::WARN,
        Ok("error") => Level::ERROR,
        _ => Level::INFO,
    };
    // Fails only if a subscriber is already installed, which is then the one to keep.
    let _ = tracing::subscriber::set_global_default(StderrLog { level });
}

/// Writes every event at `level` or more severe as one line on stderr.
#[derive(Debug)]
pub struct StderrLog {
    level: Level,
}

impl Subscriber for StderrLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // More verbose levels compare greater.
        *metadata.level() <= self.level
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::from_level(self.level))
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        // The runner opens no spans; any one is the same, unrecorded.
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = String::with_capacity(160);
        let _ = write!(
            line,
            "{:.6} {:>5} ",
            jiff::Timestamp::now(),
            event.metadata().level()
        );
        let mut fields = String::new();
        event.record(&mut Fields {
            message: &mut line,
            fields: &mut fields,
        });
        line.push_str(&fields);
        line.push('\n');
        // One write per line, so lines from the runner's children (which share stderr) do
        // not cut into it; a log that cannot be written is not worth dying for.
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Writes the `message` field as text and the others as ` key=value` (strings quoted).
struct Fields<'a> {
    message: &'a mut String,
    fields: &'a mut String,
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line `event` makes, without the time.
    fn line_of(record: impl FnOnce()) -> String {
        #[derive(Default)]
        struct Capture(std::sync::Mutex<String>);
        impl Subscriber for Capture {
            fn enabled(&self, _: &Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &Attributes<'_>) -> Id {
                Id::from_u64(1)
            }
            fn record(&self, _: &Id, _: &Record<'_>) {}
            fn record_follows_from(&self, _: &Id, _: &Id) {}
            fn event(&self, event: &Event<'_>) {
                let mut out = self.0.lock().unwrap();
                let mut fields = String::new();
                event.record(&mut Fields {
                    message: &mut out,
                    fields: &mut fields,
                });
                out.push_str(&fields);
            }
            fn enter(&self, _: &Id) {}
            fn exit(&self, _: &Id) {}
        }
        let capture = std::sync::Arc::new(Capture::default());
        tracing::subscriber::with_default(capture.clone(), record);
        capture.0.lock().unwrap().clone()
    }

    #[test]
    fn message_first_then_fields_in_order() {
        let name = "server";
        let line = line_of(|| {
            tracing::info!(task = %name, pid = 4242, "started {} of {}", 1, 2);
        });
        assert_eq!(line, "started 1 of 2 task=server pid=4242");
        let line = line_of(|| tracing::warn!(path = "a b", "x"));
        assert_eq!(line, "x path=\"a b\"");
    }

    #[test]
    fn the_level_filters_and_prints_padded_like_tracing_subscriber() {
        let info = StderrLog { level: Level::INFO };
        tracing::subscriber::with_default(info, || {
            assert!(tracing::enabled!(Level::WARN));
            assert!(tracing::enabled!(Level::INFO));
            assert!(!tracing::enabled!(Level::DEBUG));
        });
        assert_eq!(format!("{:>5}", Level::INFO), " INFO");
        assert_eq!(format!("{:>5}", Level::ERROR), "ERROR");
        assert_eq!(
            format!("{:.6}", jiff::Timestamp::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000Z"
        );
    }
}
