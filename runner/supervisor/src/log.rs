//! The runner's own log: one line per event on stderr,
//! `2026-11-25T23:52:48.817268Z  INFO started task=server pid=4242`: the time (UTC, to the
//! microsecond), the level, the message, then the event's fields as `key=value`.
//!
//! The `tracing` macros feed it through [`StderrLog`], a `Subscriber` of a few lines, in
//! place of tracing-subscriber's formatter: the runner has no spans and one output, and this
//! keeps the long-lived process smaller (no span registry). `NONSTOP_LOG=debug` (or `trace`,
//! `warn`, `error`) sets the level; the default is `info`.
//!
//! The supervision loop turns on [`batch`]ing: lines are then kept until the loop is about to
//! wait again ([`flush`]), and written together, whole lines only and at most [`BATCH`] bytes a
//! write. Stopping a hundred tasks logs two hundred lines in a few milliseconds; a write each
//! was a fifth of the runner's time then. A runner killed with SIGKILL loses the lines of the
//! turn of its loop it was in.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::Mutex;

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

/// The most a batched write holds: a pipe's `PIPE_BUF`, so a batch written to a pipe that
/// others write to is never cut into.
pub const BATCH: usize = 4096;

/// Lines kept while batching (`Some`), or `None`: each line written at once.
static PENDING: Mutex<Option<Vec<u8>>> = Mutex::new(None);

/// From now on, keeps lines until [`flush`] (the loop calls it before it waits).
pub fn batch() {
    if let Ok(mut pending) = PENDING.lock() {
        pending.get_or_insert_with(|| Vec::with_capacity(BATCH));
    }
}

/// Writes the lines kept so far and stops batching: each line is written at once again.
pub fn unbatch() {
    flush();
    if let Ok(mut pending) = PENDING.lock() {
        *pending = None;
    }
}

/// Writes the lines kept so far.
pub fn flush() {
    if let Ok(mut pending) = PENDING.lock()
        && let Some(buf) = pending.as_mut()
        && !buf.is_empty()
    {
        let _ = std::io::stderr().write_all(buf);
        buf.clear();
    }
}

/// Writes `line` now, or keeps it while batching (writing what is kept first if it would grow
/// past [`BATCH`]).
fn emit(line: &[u8]) {
    let mut stderr = std::io::stderr();
    match PENDING.lock() {
        Ok(mut pending) => keep(pending.as_mut(), line, &mut stderr),
        Err(_) => keep(None, line, &mut stderr),
    }
}

/// Adds `line` to `kept` (batching), writing what is kept to `out` first if the batch would
/// grow past [`BATCH`]; without `kept`, or for a line longer than a batch, writes it at once.
/// Whole lines only, one write each time: lines from the runner's children (which share
/// stderr) never cut into one; a log that cannot be written is not worth dying for.
fn keep(kept: Option<&mut Vec<u8>>, line: &[u8], out: &mut impl std::io::Write) {
    if let Some(buf) = kept {
        if buf.len() + line.len() > BATCH && !buf.is_empty() {
            let _ = out.write_all(buf);
            buf.clear();
        }
        if line.len() <= BATCH {
            buf.extend_from_slice(line);
            return;
        }
    }
    let _ = out.write_all(line);
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
        emit(line.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Writes the `message` field as text and the others as ` key=value` (strings quoted), each
/// on one line of printable text: a program's path, a task's or a slot's name (a process names
/// its own slot), an error's words may hold escape sequences and newlines, shown escaped
/// (`\u{1b}`, `\n`) by [`nonstop_core::printable`], so that no line of the log can recolour
/// a terminal that shows it, or pass for another line.
struct Fields<'a> {
    message: &'a mut String,
    fields: &'a mut String,
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(&nonstop_core::printable(value));
        } else {
            // `Debug` of a `str` quotes it and escapes what is not printable.
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `message`'s format arguments, a `%value`'s `Display`: as they come, then escaped.
        let text = format!("{value:?}");
        let text = nonstop_core::printable(&text);
        if field.name() == "message" {
            self.message.push_str(&text);
        } else {
            let _ = write!(self.fields, " {}={text}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts writes, so a batch is seen as one.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl std::io::Write for Writes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn batched_lines_are_written_whole_and_together_never_more_than_a_batch_a_write() {
        let mut out = Writes::default();
        keep(None, b"at once\n", &mut out);
        assert_eq!(out.0, [b"at once\n".to_vec()]);
        let mut kept = Vec::new();
        let line = [b'x'; 1000];
        for _ in 0..5 {
            keep(Some(&mut kept), &line, &mut out);
        }
        // Four lines fit in 4096 bytes; the fifth made the first four go out in one write.
        assert_eq!(out.0.len(), 2);
        assert_eq!(out.0[1].len(), 4000);
        assert_eq!(kept.len(), 1000);
        // A line longer than a batch: what is kept first, then the line, each in one write.
        let long = vec![b'y'; BATCH + 1];
        keep(Some(&mut kept), &long, &mut out);
        assert_eq!(out.0.len(), 4);
        assert_eq!(out.0[2].len(), 1000);
        assert_eq!(out.0[3].len(), BATCH + 1);
        assert!(kept.is_empty());
    }

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

    /// What a task, a program's path or a process's own slot name holds is escaped, in the
    /// message and in every field, however it is recorded: one line, no escape sequence.
    #[test]
    fn control_characters_in_messages_and_fields_are_escaped() {
        let program = "/tmp/pr\x1b[31mog";
        let name = "svc\nFAKE  INFO started";
        let line = line_of(|| {
            tracing::error!(task = %name, slot = name, path = ?program, "cannot start {program}: x\u{7}");
        });
        assert_eq!(
            line,
            "cannot start /tmp/pr\\u{1b}[31mog: x\\u{7} task=svc\\nFAKE  INFO started \
             slot=\"svc\\nFAKE  INFO started\" path=\"/tmp/pr\\u{1b}[31mog\""
        );
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
