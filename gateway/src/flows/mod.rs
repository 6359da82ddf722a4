//! Flows: YAML files that describe a workflow, compiled into a small program.
//!
//! Owns parsing and validation (`parse`, with line/column errors), the compiled model
//! (`model`), template rendering over a run's context (this file) and the set of known
//! flows (`registry`). It performs no I/O except reading flow files in `registry`, and it
//! never touches the store: persisting flow versions is the caller's job.

pub(crate) mod model;
pub(crate) mod parse;
pub mod registry;
pub(crate) mod tools;
mod yaml;

use std::fmt;

use serde_json::Value;

pub(crate) use model::*;
pub(crate) use registry::Registry;
pub(crate) use tools::{AgentSpec, ToolRef};

/// A compiled flow, pinned by the SHA-256 of its source.
pub struct Flow {
    pub(crate) bundle_id: String,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) input_schema: Option<Value>,
    validator: Option<jsonschema::Validator>,
    pub(crate) program: Vec<Instr>,
    env: minijinja::Environment<'static>,
    /// Runs of this flow need the session's history (the runner loads it only then).
    pub(crate) uses_history: bool,
    /// The tools its `llm` steps name, with their positions (see `tools::ToolCatalog`).
    pub(crate) tool_refs: Vec<tools::RefAt>,
    /// The file it was compiled from (for errors found after compiling).
    pub(crate) file: String,
    /// Trigger names that start this flow (`triggers:`).
    pub(crate) triggers: Vec<String>,
    pub hash: String,
    pub(crate) source: String,
}

impl fmt::Debug for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flow")
            .field("bundle_id", &self.bundle_id)
            .field("hash", &self.hash)
            .field("program", &self.program.len())
            .finish()
    }
}

/// A broken flow: file, line, column and what is wrong.
#[derive(Debug, Clone, thiserror::Error, serde::Serialize)]
#[error("{file}:{line}:{column}: {message}")]
pub struct FlowError {
    pub(crate) file: String,
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) message: String,
}

impl FlowError {
    pub(crate) fn at(file: &str, pos: yaml::Pos, message: String) -> Self {
        Self {
            file: file.to_owned(),
            line: pos.line,
            column: pos.column,
            message,
        }
    }
}

/// A template that failed while a run rendered it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct RenderError(pub String);

impl From<minijinja::Error> for RenderError {
    fn from(e: minijinja::Error) -> Self {
        let mut msg = e
            .detail()
            .map(str::to_owned)
            .unwrap_or_else(|| e.kind().to_string());
        if let Some(line) = e.line() {
            msg.push_str(&format!(" (template line {line})"));
        }
        Self(msg)
    }
}

impl Flow {
    /// Checks `input` against the flow's `input_schema`; every violation, with its JSON path.
    pub(crate) fn validate_input(&self, input: &Value) -> Result<(), Vec<String>> {
        let Some(v) = &self.validator else {
            return Ok(());
        };
        let errors: Vec<String> = v
            .iter_errors(input)
            .map(|e| {
                let path = e.instance_path().to_string();
                let at = if path.is_empty() {
                    "input_data".to_owned()
                } else {
                    format!("input_data{path}")
                };
                format!("{at}: {e}")
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    pub(crate) fn render(&self, id: TplId, ctx: &minijinja::Value) -> Result<String, RenderError> {
        Ok(self.env.get_template(&id.name())?.render(ctx)?)
    }

    /// Whether a condition holds (Jinja truthiness).
    pub(crate) fn test(&self, id: TplId, ctx: &minijinja::Value) -> Result<bool, RenderError> {
        Ok(!self.render(id, ctx)?.is_empty())
    }

    pub(crate) fn eval(&self, v: &ValueTpl, ctx: &minijinja::Value) -> Result<Value, RenderError> {
        Ok(match v {
            ValueTpl::Lit(v) => v.clone(),
            ValueTpl::Text(id) => Value::String(self.render(*id, ctx)?),
            ValueTpl::Expr(id) => {
                let json = self.render(*id, ctx)?;
                serde_json::from_str(&json)
                    .map_err(|e| RenderError(format!("expression gave no JSON value: {e}")))?
            }
            ValueTpl::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| self.eval(i, ctx))
                    .collect::<Result<_, _>>()?,
            ),
            ValueTpl::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| Ok((k.clone(), self.eval(v, ctx)?)))
                    .collect::<Result<_, RenderError>>()?,
            ),
        })
    }

    /// What a model or an MCP client is told of this flow as a tool: its description (or
    /// a line naming it) and its input schema (an open object without one).
    pub(crate) fn as_tool(&self) -> (String, Value) {
        let about = if self.description.is_empty() {
            format!("Runs the workflow `{}`.", self.name)
        } else {
            self.description.clone()
        };
        let schema = self
            .input_schema
            .clone()
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}}));
        (about, schema)
    }

    /// Steps of the program, for listing.
    /// How many steps the flow has.
    pub fn step_count(&self) -> usize {
        self.steps().count()
    }

    pub(crate) fn steps(&self) -> impl Iterator<Item = &Step> {
        self.program.iter().filter_map(|i| match i {
            Instr::Step(s) => Some(s),
            _ => None,
        })
    }
}
