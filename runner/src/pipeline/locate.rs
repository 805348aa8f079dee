//! Where each node of a YAML document is, by field path (`tasks.server.restart`,
//! `tasks.server.command[0]`, the same spelling as `serde_path_to_error`), so that every error,
//! also the ones found after deserializing, names a line and column.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, col: 1 };

    fn of(mark: Marker) -> Pos {
        // yaml-rust2 counts lines from 1 and columns from 0.
        Pos {
            line: mark.line(),
            col: mark.col() + 1,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Node {
    key: Option<Pos>,
    value: Pos,
    scalar: bool,
}

/// Positions of the nodes of one document.
#[derive(Debug, Default)]
pub struct Positions {
    nodes: HashMap<String, Node>,
}

impl Positions {
    /// Indexes `text`; a syntax error stops the index where it is (serde reports it).
    pub fn of(text: &str) -> Positions {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut builder, false).is_err() && text.contains('\t') {
            // yaml-rust2 refuses some tabs that YAML (and the deserializer) allow as
            // separation (`foo:\t1`). Only positions are wanted here: with each tab a space,
            // every line and column stays where it was.
            let mut spaced = Builder::default();
            let text = text.replace('\t', " ");
            let mut parser = Parser::new_from_str(&text);
            if parser.load(&mut spaced, false).is_ok() {
                builder = spaced;
            }
        }
        Positions {
            nodes: builder.nodes,
        }
    }

    /// Where to point for an error about `path`: a scalar's value, or the key of a
    /// collection; the nearest indexed ancestor if `path` itself is not in the document.
    pub fn find(&self, path: &str) -> Pos {
        let mut path = path;
        loop {
            // The document as a whole: its start (the root's own mark is where the first
            // key ends, which points at nothing useful).
            if path.is_empty() {
                return Pos::START;
            }
            if let Some(node) = self.nodes.get(path) {
                return match (node.scalar, node.key) {
                    (false, Some(key)) => key,
                    _ => node.value,
                };
            }
            match parent(path) {
                Some(p) => path = p,
                None => return Pos::START,
            }
        }
    }

    /// Whether the document has a node at `path`.
    pub fn has(&self, path: &str) -> bool {
        self.nodes.contains_key(path)
    }

    /// The path of the node whose key is at `pos`, if one is.
    pub fn key_at(&self, pos: Pos) -> Option<&str> {
        self.nodes
            .iter()
            .find(|(_, node)| node.key == Some(pos))
            .map(|(path, _)| path.as_str())
    }

    /// Where the key of `path` is (for "unknown field" errors); else as [`Positions::find`].
    pub fn find_key(&self, path: &str) -> Pos {
        match self.nodes.get(path).and_then(|n| n.key) {
            Some(key) => key,
            None => self.find(path),
        }
    }
}

/// `a.b[2]` → `a.b`, `a.b` → `a`, `a` → ``, `` → none.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    Some(match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    })
}

enum Frame {
    Map {
        path: String,
        key: Option<(String, Pos)>,
    },
    Seq {
        path: String,
        index: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    nodes: HashMap<String, Node>,
}

impl Builder {
    /// The path of the value about to start, and its key's position.
    fn next_path(&self) -> (String, Option<Pos>) {
        match self.stack.last() {
            None => (String::new(), None),
            Some(Frame::Map { path, key }) => {
                let (name, pos) = match key {
                    Some((name, pos)) => (name.clone(), Some(*pos)),
                    None => (String::new(), None),
                };
                let full = if path.is_empty() {
                    name
                } else {
                    format!("{path}.{name}")
                };
                (full, pos)
            }
            Some(Frame::Seq { path, index }) => (format!("{path}[{index}]"), None),
        }
    }

    /// A value ended: the parent moves on to its next key or item.
    fn advance(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let pos = Pos::of(mark);
        match event {
            Event::Scalar(..) | Event::Alias(_) => {
                if self.expecting_key() {
                    // A key: remember it (an alias as a key names nothing we look up).
                    if let (Event::Scalar(value, ..), Some(Frame::Map { key, .. })) =
                        (event, self.stack.last_mut())
                    {
                        *key = Some((value, pos));
                    }
                    return;
                }
                let (path, key) = self.next_path();
                self.nodes.insert(
                    path,
                    Node {
                        key,
                        value: pos,
                        scalar: true,
                    },
                );
                self.advance();
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let (path, key) = self.next_path();
                self.nodes.insert(
                    path.clone(),
                    Node {
                        key,
                        value: pos,
                        scalar: false,
                    },
                );
                self.stack.push(match event {
                    Event::MappingStart(..) => Frame::Map { path, key: None },
                    _ => Frame::Seq { path, index: 0 },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.advance();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_keys_and_items() {
        let text = "\
tasks:
  server:
    command: [./server, --port, \"5005\"]
    restart: allways
    backoff: { initial: 1s }
    env:
      A: b
";
        let p = Positions::of(text);
        assert_eq!(p.find("tasks.server.restart"), Pos { line: 4, col: 14 });
        assert_eq!(p.find_key("tasks.server.restart"), Pos { line: 4, col: 5 });
        assert_eq!(p.find("tasks.server.command[1]"), Pos { line: 3, col: 25 });
        assert_eq!(
            p.find("tasks.server.backoff.initial"),
            Pos { line: 5, col: 25 }
        );
        // A collection points at its key.
        assert_eq!(p.find("tasks.server"), Pos { line: 2, col: 3 });
        assert_eq!(p.find("tasks.server.env.A"), Pos { line: 7, col: 10 });
        // Missing: the nearest ancestor.
        assert_eq!(p.find("tasks.server.stop.grace"), Pos { line: 2, col: 3 });
        assert_eq!(p.find("nowhere"), Pos::START);
    }
}
