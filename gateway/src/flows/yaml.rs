//! A small YAML tree with a line and column on every node, built from saphyr's parser
//! events.
//!
//! Owns only the conversion from YAML text to [`Node`]; it knows nothing of flows. The
//! tree is built here, event by event, rather than by a YAML loader, because a loader
//! expands aliases before anything can check them: a 1 KB file of nested anchors and
//! aliases (a "billion laughs") becomes gigabytes. Here every bound holds while events are
//! read, before anything is built: the file size ([`MAX_FLOW_BYTES`]), aliases (refused at
//! the first one), anchors, nesting depth and the number of nodes. Keys of a mapping must
//! be strings (flows never need others).

use std::borrow::Cow;

use saphyr::Scalar;
use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use serde_json::Value;

/// The largest flow file read (uploads and the flows directory alike).
pub(crate) const MAX_FLOW_BYTES: usize = 1024 * 1024;
/// Nesting deeper than this is refused.
const MAX_DEPTH: usize = 64;
/// Nodes (scalars, lists, mappings) in one flow; real flows have hundreds.
const MAX_NODES: usize = 100_000;
/// Anchors (`&name`) in one flow. They are useless without aliases, which are refused,
/// but each costs the parser a table entry.
const MAX_ANCHORS: usize = 1_000;

/// A position in the source: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) pos: Pos,
    pub(crate) kind: Kind,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Pos, Node)>),
}

/// A YAML error: where and what.
#[derive(Debug, Clone)]
pub(crate) struct YamlError {
    pub(crate) pos: Pos,
    pub(crate) message: String,
}

fn at(pos: Pos, message: impl Into<String>) -> YamlError {
    YamlError {
        pos,
        message: message.into(),
    }
}

fn pos_of(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

pub(crate) fn parse(src: &str) -> Result<Node, YamlError> {
    let start = Pos { line: 1, column: 1 };
    if src.len() > MAX_FLOW_BYTES {
        return Err(at(
            start,
            format!(
                "the file is {} bytes; a flow file is at most {MAX_FLOW_BYTES} bytes",
                src.len()
            ),
        ));
    }
    let mut b = Builder::default();
    for event in Parser::new_from_str(src) {
        let (event, span) = event.map_err(|e| {
            at(
                Pos {
                    line: e.marker().line(),
                    column: e.marker().col() + 1,
                },
                e.info(),
            )
        })?;
        b.event(event, &span)?;
    }
    b.root.ok_or_else(|| {
        at(
            start,
            "the file is empty; a flow is a YAML mapping with `steps:`",
        )
    })
}

/// A collection being built.
enum Frame {
    Seq(Pos, Vec<Node>),
    /// Entries so far, and the key waiting for its value.
    Map(Pos, Vec<(String, Pos, Node)>, Option<(String, Pos)>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    documents: usize,
    nodes: usize,
    anchors: usize,
}

impl Builder {
    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<(), YamlError> {
        let pos = pos_of(span);
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(at(
                        pos,
                        "a flow file holds one YAML document; remove the `---` and what follows",
                    ));
                }
            }
            Event::Alias(_) => {
                return Err(at(pos, "YAML aliases (`*name`) are not supported in flows"));
            }
            Event::Scalar(value, style, anchor, tag) => {
                self.count(pos, anchor)?;
                let kind = scalar(value, style, tag.as_ref())
                    .ok_or_else(|| at(pos, "this value cannot be read"))?;
                self.complete(Node { pos, kind })?;
            }
            Event::SequenceStart(anchor, _) => {
                self.count(pos, anchor)?;
                self.open(pos)?;
                self.stack.push(Frame::Seq(pos, Vec::new()));
            }
            Event::MappingStart(anchor, _) => {
                self.count(pos, anchor)?;
                self.open(pos)?;
                self.stack.push(Frame::Map(pos, Vec::new(), None));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Frame::Seq(pos, items)) => Node {
                        pos,
                        kind: Kind::Seq(items),
                    },
                    Some(Frame::Map(pos, entries, _)) => Node {
                        pos,
                        kind: Kind::Map(entries),
                    },
                    None => return Err(at(pos, "unbalanced YAML collection")),
                };
                self.complete(node)?;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        Ok(())
    }

    /// Counts a node (and its anchor) against the bounds.
    fn count(&mut self, pos: Pos, anchor: usize) -> Result<(), YamlError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(at(
                pos,
                format!("the flow has more than {MAX_NODES} YAML nodes"),
            ));
        }
        if anchor != 0 {
            self.anchors += 1;
            if self.anchors > MAX_ANCHORS {
                return Err(at(
                    pos,
                    format!("the flow has more than {MAX_ANCHORS} YAML anchors"),
                ));
            }
        }
        Ok(())
    }

    fn open(&self, pos: Pos) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(at(
                pos,
                format!("nesting is deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    /// A finished node goes into its parent (as a key, a value or an item), or is the root.
    fn complete(&mut self, mut node: Node) -> Result<(), YamlError> {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, entries, pending)) => match pending.take() {
                None => {
                    let key = match node.kind {
                        Kind::Str(s) => s,
                        Kind::Int(i) => i.to_string(),
                        Kind::Bool(b) => b.to_string(),
                        _ => return Err(at(node.pos, "mapping keys must be plain strings")),
                    };
                    // Two readers of one mapping (the engine, a schema) must not see
                    // different values for a key.
                    if entries.iter().any(|(k, _, _)| *k == key) {
                        return Err(at(node.pos, format!("duplicate key `{key}`")));
                    }
                    *pending = Some((key, node.pos));
                }
                Some((key, kpos)) => {
                    if node.pos.line == 0 {
                        // Flow collections (`{a: 1}`) may come without a start marker.
                        node.pos = kpos;
                    }
                    entries.push((key, kpos, node));
                }
            },
        }
        Ok(())
    }
}

/// A scalar's value under YAML's core schema (quoted scalars are strings); `None` when a
/// core-schema tag does not fit the text (`!!int abc`).
fn scalar(value: Cow<'_, str>, style: ScalarStyle, tag: Option<&Cow<'_, Tag>>) -> Option<Kind> {
    Some(
        match Scalar::parse_from_cow_and_metadata(value, style, tag)? {
            Scalar::Null => Kind::Null,
            Scalar::Boolean(b) => Kind::Bool(b),
            Scalar::Integer(i) => Kind::Int(i),
            Scalar::FloatingPoint(f) => Kind::Float(f.into_inner()),
            Scalar::String(s) => Kind::Str(s.into_owned()),
        },
    )
}

impl Node {
    /// Plain JSON (positions dropped).
    pub(crate) fn to_json(&self) -> Value {
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::from(*i),
            Kind::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Kind::Str(s) => Value::String(s.clone()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(m) => {
                Value::Object(m.iter().map(|(k, _, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }

    pub(crate) fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let n = parse("a: 1\nb:\n  - x\n").unwrap();
        let Kind::Map(m) = n.kind else { panic!("map") };
        assert_eq!(m[1].1, Pos { line: 2, column: 1 });
        let Kind::Seq(s) = &m[1].2.kind else {
            panic!("seq")
        };
        assert_eq!(s[0].pos, Pos { line: 3, column: 5 });
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.pos.line >= 2, "{e:?}");
    }

    /// Nine levels of ten aliases each: 10^9 nodes once expanded, about 1 KB of text.
    fn alias_bomb() -> String {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..=9 {
            let prev = format!("*a{}", i - 1);
            let items = [prev.as_str(); 10].join(", ");
            s.push_str(&format!("a{i}: &a{i} [{items}]\n"));
        }
        s
    }

    #[test]
    fn an_alias_bomb_is_refused_at_its_first_alias() {
        let src = alias_bomb();
        assert!(src.len() < 1500, "{}", src.len());
        let e = parse(&src).unwrap_err();
        assert!(e.message.contains("aliases"), "{e:?}");
        assert_eq!(e.pos.line, 2);
    }

    #[test]
    fn depth_nodes_and_size_are_bounded() {
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(parse(&deep).unwrap_err().message.contains("deeper"));
        let wide = format!("[{}]", vec!["1"; 100_001].join(","));
        assert!(parse(&wide).unwrap_err().message.contains("nodes"));
        let big = format!("a: \"{}\"", "x".repeat(MAX_FLOW_BYTES));
        assert!(parse(&big).unwrap_err().message.contains("at most"));
        let anchors: String = (0..1001).map(|i| format!("k{i}: &n{i} 1\n")).collect();
        assert!(parse(&anchors).unwrap_err().message.contains("anchors"));
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let n = parse("a: 1\nb: '1'\nc: true\nd: ~\ne: 1.5\nf: !!str 2\n").unwrap();
        let Kind::Map(m) = n.kind else { panic!("map") };
        let kinds: Vec<&str> = m.iter().map(|(_, _, v)| v.type_name()).collect();
        assert_eq!(
            kinds,
            [
                "an integer",
                "a string",
                "a boolean",
                "null",
                "a number",
                "a string"
            ]
        );
        assert!(parse("a: !!int abc\n").is_err());
        let dup = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert!(dup.message.contains("duplicate key `a`"), "{dup:?}");
        assert_eq!(dup.pos, Pos { line: 3, column: 1 });
        assert!(parse("[1]: x\n").unwrap_err().message.contains("keys"));
    }
}
