//! The little JSON the control socket writes: strings escaped per RFC 8259, and an object
//! builder that places the commas. (The supervisor links no JSON library: it writes JSON and
//! never reads it.)

use std::fmt::Write;

/// Appends `s` to `out` as a JSON string.
pub(super) fn string(out: &mut String, s: &str) {
    out.push('"');
    // Most strings (names, states, paths) need no escape at all: one scan, one copy.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    // Runs of characters that need no escape are copied whole (a metrics text is ~500 KB).
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            b if b < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escaped);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// A JSON object being written into a `String`: `{` on creation, `}` on [`Object::end`].
pub(super) struct Object<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Object<'a> {
    pub(super) fn new(out: &'a mut String) -> Object<'a> {
        out.push('{');
        Object { out, first: true }
    }

    fn key(&mut self, key: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        string(self.out, key);
        self.out.push(':');
        self.out
    }

    pub(super) fn str(&mut self, key: &str, value: &str) -> &mut Self {
        let out = self.key(key);
        string(out, value);
        self
    }

    /// A path, as text (lossily, in the rare path that is not UTF-8).
    pub(super) fn path(&mut self, key: &str, value: &std::path::Path) -> &mut Self {
        match value.to_str() {
            Some(s) => self.str(key, s),
            None => self.str(key, &value.to_string_lossy()),
        }
    }

    pub(super) fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.str(key, v),
            None => self.raw(key, "null"),
        }
    }

    pub(super) fn num(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        let out = self.key(key);
        let _ = write!(out, "{value}");
        self
    }

    pub(super) fn opt_num(
        &mut self,
        key: &str,
        value: Option<impl std::fmt::Display>,
    ) -> &mut Self {
        match value {
            Some(v) => self.num(key, v),
            None => self.raw(key, "null"),
        }
    }

    /// Seconds with millisecond precision.
    pub(super) fn secs(&mut self, key: &str, value: std::time::Duration) -> &mut Self {
        let out = self.key(key);
        let _ = write!(out, "{:.3}", value.as_secs_f64());
        self
    }

    pub(super) fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.raw(key, if value { "true" } else { "false" })
    }

    /// `value` written as is: already JSON.
    pub(super) fn raw(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key).push_str(value);
        self
    }

    /// A nested value written by `f` into the same buffer.
    pub(super) fn with(&mut self, key: &str, f: impl FnOnce(&mut String)) -> &mut Self {
        f(self.key(key));
        self
    }

    pub(super) fn end(&mut self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_and_objects_are_comma_separated() {
        let mut out = String::new();
        let mut o = Object::new(&mut out);
        o.str("a\"b", "line\nnext\t\u{1}é\\")
            .num("n", 3)
            .opt_num("none", None::<u32>)
            .bool("t", true)
            .secs("s", std::time::Duration::from_millis(1500))
            .with("list", |out| out.push_str("[1,2]"));
        o.end();
        assert_eq!(
            out,
            r#"{"a\"b":"line\nnext\t\u0001é\\","n":3,"none":null,"t":true,"s":1.500,"list":[1,2]}"#
        );
    }
}
