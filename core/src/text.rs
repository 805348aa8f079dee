//! [`printable`]: text from a pipeline, a table or a task, made safe to show on a terminal or
//! in a one-line log.

use std::borrow::Cow;

/// `text` with what a terminal would not show as itself escaped as Rust does (`\0`, `\n`,
/// `\u{1b}`, `\u{7f}`, `\u{202e}`), quotes and backslashes as they are: one line of printable
/// text, whatever `text` holds (an escape sequence that would recolour the terminal or set its
/// title, a newline that would start a line of its own). Text that needs no escape is
/// returned as it is, without a copy.
///
/// ```
/// assert_eq!(nonstop_core::printable("web"), "web");
/// assert_eq!(nonstop_core::printable("a\nb\x1b[31m"), "a\\nb\\u{1b}[31m");
/// ```
pub fn printable(text: &str) -> Cow<'_, str> {
    let plain = |c: char| matches!(c, '"' | '\'' | '\\') || c.escape_debug().len() == 1;
    if text.chars().all(plain) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if plain(c) {
            out.push(c);
        } else {
            out.extend(c.escape_debug());
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_terminal_would_not_show_is_escaped() {
        assert_eq!(
            printable("plain \"quoted\" 'x' a\\b é"),
            "plain \"quoted\" 'x' a\\b é"
        );
        assert_eq!(
            printable("a\0b\x1b[2J\r\n\t\u{202e}\u{7f}\u{9b}"),
            "a\\0b\\u{1b}[2J\\r\\n\\t\\u{202e}\\u{7f}\\u{9b}"
        );
        assert!(matches!(printable("web.0"), Cow::Borrowed(_)));
    }
}
