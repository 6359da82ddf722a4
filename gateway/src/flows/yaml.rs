//! A small YAML tree with a line and column on every node, built with saphyr.
//!
//! Owns only the conversion from YAML text to [`Node`]; it knows nothing of flows. Keys of a
//! mapping must be strings (flows never need others), and aliases are refused so that a
//! flow cannot expand into a "billion laughs".

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};
use serde_json::Value;

/// A position in the source: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
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
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

pub fn parse(src: &str) -> Result<Node, YamlError> {
    let docs = MarkedYamlOwned::load_from_str(src).map_err(|e| YamlError {
        pos: Pos {
            line: e.marker().line(),
            column: e.marker().col() + 1,
        },
        message: e.info().to_owned(),
    })?;
    let mut docs = docs.into_iter();
    let Some(doc) = docs.next() else {
        return Err(YamlError {
            pos: Pos { line: 1, column: 1 },
            message: "the file is empty; a flow is a YAML mapping with `steps:`".into(),
        });
    };
    if let Some(extra) = docs.next() {
        return Err(YamlError {
            pos: pos_of(&extra),
            message: "a flow file holds one YAML document; remove the `---` and what follows"
                .into(),
        });
    }
    convert(doc, 0)
}

fn pos_of(n: &MarkedYamlOwned) -> Pos {
    Pos {
        line: n.span.start.line(),
        column: n.span.start.col() + 1,
    }
}

const MAX_DEPTH: usize = 64;

fn convert(n: MarkedYamlOwned, depth: usize) -> Result<Node, YamlError> {
    let pos = pos_of(&n);
    let err = |message: &str| YamlError {
        pos,
        message: message.to_owned(),
    };
    if depth > MAX_DEPTH {
        return Err(err("nesting is deeper than 64 levels"));
    }
    let kind = match n.data {
        YamlDataOwned::Value(s) => match s {
            ScalarOwned::Null => Kind::Null,
            ScalarOwned::Boolean(b) => Kind::Bool(b),
            ScalarOwned::Integer(i) => Kind::Int(i),
            ScalarOwned::FloatingPoint(f) => Kind::Float(f.into_inner()),
            ScalarOwned::String(s) => Kind::Str(s),
        },
        YamlDataOwned::Representation(s, _, _) => Kind::Str(s),
        YamlDataOwned::Sequence(items) => Kind::Seq(
            items
                .into_iter()
                .map(|i| convert(i, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        YamlDataOwned::Mapping(map) => {
            let mut out: Vec<(String, Pos, Node)> = Vec::with_capacity(map.len());
            for (k, v) in map {
                let kpos = pos_of(&k);
                let key = match k.data {
                    YamlDataOwned::Value(ScalarOwned::String(s)) => s,
                    YamlDataOwned::Value(ScalarOwned::Integer(i)) => i.to_string(),
                    YamlDataOwned::Value(ScalarOwned::Boolean(b)) => b.to_string(),
                    _ => {
                        return Err(YamlError {
                            pos: kpos,
                            message: "mapping keys must be plain strings".into(),
                        });
                    }
                };
                let mut node = convert(v, depth + 1)?;
                if node.pos.line == 0 {
                    // saphyr leaves flow collections (`{a: 1}`) without a start marker.
                    node.pos = kpos;
                }
                out.push((key, kpos, node));
            }
            Kind::Map(out)
        }
        YamlDataOwned::Tagged(_, inner) => return convert(*inner, depth),
        YamlDataOwned::Alias(_) => {
            return Err(err("YAML aliases (`*name`) are not supported in flows"));
        }
        YamlDataOwned::BadValue => return Err(err("this value cannot be read")),
    };
    Ok(Node { pos, kind })
}

impl Node {
    /// Plain JSON (positions dropped).
    pub fn to_json(&self) -> Value {
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

    pub fn type_name(&self) -> &'static str {
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
}
