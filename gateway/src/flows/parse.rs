//! Compiles flow YAML into a [`Flow`]: checks every key, compiles every template, and
//! reports the first problem with its line and column. Pure: text in, flow or error out.

use std::collections::HashSet;
use std::time::Duration;

use minijinja::AutoEscape;
use sha2::{Digest, Sha256};

use super::model::*;
use super::yaml::{self, Kind, Node, Pos};
use super::{Flow, FlowError};

/// The step types a flow may use (also reported by the capabilities endpoint).
pub(crate) const STEP_KINDS: &[&str] = &[
    "say",
    "ask",
    "llm",
    "wait",
    "wait_event",
    "emit",
    "set",
    "if",
    "loop",
    "call",
    "http",
    "output",
];
/// Upper bound of `loop.max`: loops are bounded by design.
pub(crate) const MAX_LOOP: i64 = 10_000;
const MAX_RETRIES: i64 = 10;
/// Template execution budget (minijinja fuel), so an uploaded flow cannot spin forever.
const TEMPLATE_FUEL: u64 = 200_000;

/// Parses and compiles one flow. `file` is used in error messages; `default_id` is the
/// bundle id when the YAML has no `id:` (the file name without `.yaml`).
pub(crate) fn compile(file: &str, default_id: &str, src: &str) -> Result<Flow, FlowError> {
    let err = |pos: Pos, message: String| FlowError::at(file, pos, message);
    let root = yaml::parse(src).map_err(|e| err(e.pos, e.message))?;
    let mut cx = Cx::new(file);
    let Kind::Map(top) = &root.kind else {
        return Err(err(
            root.pos,
            format!(
                "a flow is a mapping with `steps:`, found {}",
                root.type_name()
            ),
        ));
    };
    let mut id = default_id.to_owned();
    let (mut name, mut description) = (None, String::new());
    let (mut input_schema, mut steps) = (None, None);
    let mut triggers = Vec::new();
    for (key, kpos, value) in top {
        match key.as_str() {
            "id" => id = cx.string(value)?,
            "name" => name = Some(cx.string(value)?),
            "description" => description = cx.string(value)?,
            "input_schema" => input_schema = Some((value.to_json(), value.pos)),
            "steps" => steps = Some(value),
            "triggers" => triggers = trigger_names(&cx, value)?,
            other => {
                return Err(err(
                    *kpos,
                    format!(
                        "unknown key `{other}`; a flow has id, name, description, input_schema, triggers, steps"
                    ),
                ));
            }
        }
    }
    check_id(&cx, &id, root.pos, "flow id")?;
    let Some(steps) = steps else {
        return Err(err(root.pos, "missing `steps:` (a list of steps)".into()));
    };
    cx.block(steps)?;
    let validator = match &input_schema {
        Some((schema, pos)) => Some(jsonschema::validator_for(schema).map_err(|e| {
            err(
                *pos,
                format!("input_schema is not a valid JSON schema: {e}"),
            )
        })?),
        None => None,
    };
    let hash = hex::encode(Sha256::digest(src.as_bytes()));
    Ok(Flow {
        name: name.unwrap_or_else(|| id.clone()),
        bundle_id: id,
        description,
        input_schema: input_schema.map(|(s, _)| s),
        validator,
        program: cx.program,
        env: cx.env,
        uses_history: cx.uses_history,
        tool_refs: cx.tool_refs,
        file: file.to_owned(),
        triggers,
        hash,
        source: src.to_owned(),
    })
}

/// `triggers: [name, ...]`: names of `POST /api/gateway/triggers/{name}` that start this flow.
fn trigger_names(cx: &Cx, n: &Node) -> Result<Vec<String>, FlowError> {
    let Kind::Seq(items) = &n.kind else {
        return Err(cx.err(
            n.pos,
            format!("`triggers` is a list of names, found {}", n.type_name()),
        ));
    };
    items
        .iter()
        .map(|item| {
            let name = cx.string(item)?;
            check_id(cx, &name, item.pos, "trigger name")?;
            Ok(name)
        })
        .collect()
}

fn check_id(cx: &Cx, id: &str, pos: Pos, what: &str) -> Result<(), FlowError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(cx.err(
            pos,
            format!("{what} `{id}` must be 1-64 letters, digits, `_` or `-`"),
        ))
    }
}

struct Cx<'f> {
    file: &'f str,
    env: minijinja::Environment<'static>,
    templates: usize,
    program: Vec<Instr>,
    loop_slots: usize,
    ids: HashSet<String>,
    counter: usize,
    /// A template reads `history`, or an `llm` step sends it.
    uses_history: bool,
    /// Every tool the flow's `llm` steps name, checked when the flow is loaded.
    tool_refs: Vec<crate::flows::tools::RefAt>,
}

impl<'f> Cx<'f> {
    fn new(file: &'f str) -> Self {
        let mut env = minijinja::Environment::new();
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_keep_trailing_newline(true);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(URL_TEMPLATE_SUFFIX) {
                AutoEscape::Custom(URL_ESCAPE)
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(url_formatter);
        Self {
            file,
            env,
            templates: 0,
            program: Vec::new(),
            loop_slots: 0,
            ids: HashSet::new(),
            counter: 0,
            uses_history: false,
            tool_refs: Vec::new(),
        }
    }

    fn err(&self, pos: Pos, message: String) -> FlowError {
        FlowError::at(self.file, pos, message)
    }

    fn string(&self, n: &Node) -> Result<String, FlowError> {
        match &n.kind {
            Kind::Str(s) => Ok(s.clone()),
            Kind::Int(i) => Ok(i.to_string()),
            Kind::Float(f) => Ok(f.to_string()),
            Kind::Bool(b) => Ok(b.to_string()),
            _ => Err(self.err(n.pos, format!("expected a string, found {}", n.type_name()))),
        }
    }

    fn int(&self, n: &Node, min: i64, max: i64, what: &str) -> Result<i64, FlowError> {
        match n.kind {
            Kind::Int(i) if (min..=max).contains(&i) => Ok(i),
            _ => Err(self.err(
                n.pos,
                format!("{what} must be a whole number from {min} to {max}"),
            )),
        }
    }

    fn boolean(&self, n: &Node, what: &str) -> Result<bool, FlowError> {
        match n.kind {
            Kind::Bool(b) => Ok(b),
            _ => Err(self.err(n.pos, format!("{what} must be true or false"))),
        }
    }

    fn duration(&self, n: &Node, what: &str) -> Result<Duration, FlowError> {
        let s = self.string(n)?;
        humantime::parse_duration(s.trim()).map_err(|e| {
            self.err(
                n.pos,
                format!("{what} `{s}` is not a duration like 30s, 5m, 2h: {e}"),
            )
        })
    }

    fn add_template(&mut self, pos: Pos, source: String) -> Result<TplId, FlowError> {
        self.add_template_as(pos, source, false)
    }

    fn add_template_as(&mut self, pos: Pos, source: String, url: bool) -> Result<TplId, FlowError> {
        self.uses_history |= source.contains("history");
        let id = TplId {
            index: self.templates,
            url,
        };
        self.templates += 1;
        self.env
            .add_template_owned(id.name(), source)
            .map_err(|e| {
                let line = pos.line + e.line().unwrap_or(1).saturating_sub(1);
                let detail = e
                    .detail()
                    .map(str::to_owned)
                    .unwrap_or_else(|| e.kind().to_string());
                self.err(
                    Pos {
                        line,
                        column: pos.column,
                    },
                    format!("template error: {detail}"),
                )
            })?;
        Ok(id)
    }

    fn text(&mut self, n: &Node) -> Result<TplId, FlowError> {
        let s = self.string(n)?;
        self.add_template(n.pos, s)
    }

    /// A URL template. Values substituted into it are percent-encoded as URL components
    /// (`{{ input.q }}` cannot add a path, a query parameter or a host), unless the whole
    /// URL is one expression (`url: "{{ input.url }}"`: the value is the URL) or a value
    /// is marked `| safe`.
    fn url(&mut self, n: &Node) -> Result<TplId, FlowError> {
        let s = self.string(n)?;
        let whole = single_expression(&s).is_some();
        self.add_template_as(n.pos, s, !whole)
    }

    /// A condition: a bare expression (`input.n > 3`) or one wrapped in `{{ }}`.
    fn condition(&mut self, n: &Node) -> Result<TplId, FlowError> {
        let s = self.string(n)?;
        let expr = single_expression(&s).unwrap_or(s.trim()).to_owned();
        self.add_template(n.pos, format!("{{% if ({expr}) %}}1{{% endif %}}"))
    }

    fn value(&mut self, n: &Node) -> Result<ValueTpl, FlowError> {
        Ok(match &n.kind {
            Kind::Str(s) if s.contains("{{") || s.contains("{%") => match single_expression(s) {
                Some(expr) => {
                    let src = format!("{{{{ ({expr}) | tojson }}}}");
                    ValueTpl::Expr(self.add_template(n.pos, src)?)
                }
                None => ValueTpl::Text(self.add_template(n.pos, s.clone())?),
            },
            Kind::Seq(items) => ValueTpl::Array(
                items
                    .iter()
                    .map(|i| self.value(i))
                    .collect::<Result<_, _>>()?,
            ),
            Kind::Map(m) => ValueTpl::Object(
                m.iter()
                    .map(|(k, _, v)| Ok((k.clone(), self.value(v)?)))
                    .collect::<Result<_, FlowError>>()?,
            ),
            _ => ValueTpl::Lit(n.to_json()),
        })
    }

    fn block(&mut self, n: &Node) -> Result<(), FlowError> {
        let Kind::Seq(items) = &n.kind else {
            return Err(self.err(
                n.pos,
                format!("steps must be a list, found {}", n.type_name()),
            ));
        };
        if items.is_empty() {
            return Err(self.err(n.pos, "a list of steps cannot be empty".into()));
        }
        items.iter().try_for_each(|s| self.step(s))
    }

    fn step(&mut self, n: &Node) -> Result<(), FlowError> {
        let Kind::Map(m) = &n.kind else {
            return Err(self.err(
                n.pos,
                format!(
                    "a step is a mapping like `say: hello`, found {}",
                    n.type_name()
                ),
            ));
        };
        let kinds: Vec<_> = m
            .iter()
            .filter(|(k, _, _)| STEP_KINDS.contains(&k.as_str()))
            .collect();
        let (kind, kpos, body) = match kinds.as_slice() {
            [one] => (one.0.as_str(), one.1, &one.2),
            [] => {
                let (k, p, _) = &m[0];
                return Err(self.err(
                    *p,
                    format!(
                        "unknown step `{k}`; a step is one of {}",
                        STEP_KINDS.join(", ")
                    ),
                ));
            }
            [_, second, ..] => {
                return Err(self.err(
                    second.1,
                    format!("a step has one kind; `{}` is a second one", second.0),
                ));
            }
        };
        self.counter += 1;
        let opts = StepOpts { map: m, kind };
        let node = match opts.get("id") {
            Some(v) => {
                let id = self.string(v)?;
                check_id(self, &id, v.pos, "step id")?;
                id
            }
            None => format!("{kind}_{}", self.counter),
        };
        if !self.ids.insert(node.clone()) {
            return Err(self.err(kpos, format!("step id `{node}` is used twice")));
        }
        match kind {
            "if" => self.compile_if(&opts, body),
            "loop" => self.compile_loop(body),
            _ => {
                let step = self.simple_step(&opts, node, kpos, body)?;
                self.program.push(Instr::Step(step));
                Ok(())
            }
        }
    }

    fn compile_if(&mut self, opts: &StepOpts, cond: &Node) -> Result<(), FlowError> {
        opts.only(self, &["id", "then", "else"])?;
        let cond = self.condition(cond)?;
        let Some(then) = opts.get("then") else {
            return Err(self.err(
                cond_pos(opts),
                "`if` needs `then:` (a list of steps)".into(),
            ));
        };
        let branch = self.program.len();
        self.program.push(Instr::JumpUnless { cond, target: 0 });
        self.block(then)?;
        let target = if let Some(other) = opts.get("else") {
            let jump = self.program.len();
            self.program.push(Instr::Jump { target: 0 });
            let start_else = self.program.len();
            self.block(other)?;
            let end = self.program.len();
            self.program[jump] = Instr::Jump { target: end };
            start_else
        } else {
            self.program.len()
        };
        self.program[branch] = Instr::JumpUnless { cond, target };
        Ok(())
    }

    fn compile_loop(&mut self, body: &Node) -> Result<(), FlowError> {
        let Kind::Map(m) = &body.kind else {
            return Err(self.err(
                body.pos,
                "`loop` is a mapping with `max:` and `steps:`".into(),
            ));
        };
        let opts = StepOpts {
            map: m,
            kind: "loop",
        };
        opts.only(self, &["max", "while", "steps"])?;
        let max = match opts.get("max") {
            Some(v) => self.int(v, 1, MAX_LOOP, "loop max")? as u32,
            None => {
                return Err(self.err(
                    body.pos,
                    format!("`loop` needs `max:` (1 to {MAX_LOOP}): loops are bounded"),
                ));
            }
        };
        let cond = opts.get("while").map(|c| self.condition(c)).transpose()?;
        let Some(steps) = opts.get("steps") else {
            return Err(self.err(body.pos, "`loop` needs `steps:`".into()));
        };
        let slot = self.loop_slots;
        self.loop_slots += 1;
        self.program.push(Instr::LoopEnter { slot });
        let head = self.program.len();
        self.program.push(Instr::LoopNext {
            slot,
            max,
            cond,
            exit: 0,
        });
        self.block(steps)?;
        self.program.push(Instr::Jump { target: head });
        let exit = self.program.len();
        self.program[head] = Instr::LoopNext {
            slot,
            max,
            cond,
            exit,
        };
        Ok(())
    }
}

fn cond_pos(opts: &StepOpts) -> Pos {
    opts.map.first().map(|(_, p, _)| *p).unwrap_or_default()
}

/// The options of one step (the keys beside its kind).
struct StepOpts<'a> {
    map: &'a [(String, Pos, Node)],
    kind: &'a str,
}

impl StepOpts<'_> {
    fn get(&self, key: &str) -> Option<&Node> {
        self.map
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, v)| v)
    }

    fn only(&self, cx: &Cx, allowed: &[&str]) -> Result<(), FlowError> {
        for (k, p, _) in self.map {
            if k != self.kind && !allowed.contains(&k.as_str()) {
                let list = if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                };
                return Err(cx.err(
                    *p,
                    format!("`{}` has no option `{k}`; its options: {list}", self.kind),
                ));
            }
        }
        Ok(())
    }
}

const URL_ESCAPE: &str = "url-component";

/// What a URL component keeps as it is (RFC 3986 unreserved); everything else is encoded.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Writes a value into a URL template percent-encoded (unless it is marked safe: `| safe`,
/// or a filter whose output is marked so, such as `tojson`); other templates get
/// minijinja's default output.
fn url_formatter(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    if state.auto_escape() != AutoEscape::Custom(URL_ESCAPE) {
        return minijinja::escape_formatter(out, state, value);
    }
    if value.is_safe() || value.is_undefined() {
        return write!(out, "{value}").map_err(minijinja::Error::from);
    }
    let text = value.to_string();
    // `.` and `..` survive encoding and would move the path (`/users/../orders`).
    if text == "." || text == ".." {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("a value in a URL cannot be `{text}`: it would change the path"),
        ));
    }
    write!(
        out,
        "{}",
        percent_encoding::utf8_percent_encode(&text, COMPONENT)
    )
    .map_err(minijinja::Error::from)
}

/// `{{ expr }}` alone (with nothing else around it) → `Some("expr")`.
fn single_expression(s: &str) -> Option<&str> {
    let t = s.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")).then(|| inner.trim())
}

#[path = "steps.rs"]
mod steps;
#[path = "parse_team.rs"]
mod team;
#[path = "parse_tools.rs"]
mod tools;
pub(crate) use team::approver_ok;

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
