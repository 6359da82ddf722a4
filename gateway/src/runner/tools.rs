//! The tool side of `llm` steps: the OpenAI tool definitions a turn offers (from the MCP
//! servers' lists and the flows' input schemas), the names the model calls them by, and
//! performing an MCP call. Flow tools run as child runs (the engine spawns them).

use serde_json::{Map, Value, json};

use super::Runner;
use crate::flows::ToolRef;
use crate::mcp::Outcome;

/// A tool offered to the model: the function name it calls it by, what it stands for, and
/// its definition.
pub(super) struct Offered {
    pub(super) name: String,
    pub(super) tool: ToolRef,
    pub(super) def: Value,
}

impl Runner {
    /// The tools `patterns` (an `llm` step's `tools:`) stand for now. A server that cannot
    /// be listed, or a named tool it lacks, fails the turn with a message naming it.
    pub(super) async fn offered(&self, patterns: &[String]) -> Result<Vec<Offered>, String> {
        let mut out: Vec<Offered> = Vec::new();
        for p in patterns {
            match ToolRef::parse(p)? {
                ToolRef::Mcp { server, tool } => {
                    let listed = self
                        .inner
                        .mcp
                        .tools(&server)
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut found = false;
                    for t in listed.iter() {
                        if tool.as_ref().is_some_and(|want| *want != t.name) {
                            continue;
                        }
                        found = true;
                        let r = ToolRef::Mcp {
                            server: server.clone(),
                            tool: Some(t.name.clone()),
                        };
                        let name = unique(&out, &format!("{server}_{}", t.name));
                        let def = definition(&name, &t.description, &t.input_schema);
                        out.push(Offered { name, tool: r, def });
                    }
                    if let (Some(want), false) = (&tool, found) {
                        return Err(format!("MCP server `{server}` has no tool `{want}`"));
                    }
                }
                ToolRef::Flow(bundle) => {
                    let Some(v) = self.inner.registry.current(&bundle) else {
                        return Err(format!("no flow `{bundle}` to offer as a tool"));
                    };
                    let (about, schema) = v.flow.as_tool();
                    let name = unique(&out, &bundle);
                    let def = definition(&name, &about, &schema);
                    out.push(Offered {
                        name,
                        tool: ToolRef::Flow(bundle),
                        def,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Calls an MCP tool (`tool` is `mcp:<server>/<name>`). A tool's own error is a result
    /// the model reads (`{"error"}`); a server that cannot answer is the step's error.
    pub(super) async fn call_tool(
        &self,
        tool: &str,
        arguments: &Value,
        key: &str,
        traceparent: Option<&str>,
    ) -> Result<Value, String> {
        let Ok(ToolRef::Mcp {
            server,
            tool: Some(name),
        }) = ToolRef::parse(tool)
        else {
            return Err(format!("`{tool}` is not an MCP tool"));
        };
        let args = match arguments {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        match self
            .inner
            .mcp
            .call(&server, &name, args, key, traceparent)
            .await
        {
            Ok(Outcome::Output(v)) => Ok(json!({"output": capped(v)})),
            Ok(Outcome::ToolError(e)) => Ok(json!({"error": cut(&e)})),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Most bytes of a tool's result kept (in the ledger, the run's state and the next turns):
/// a tool that returns a whole web page must not grow every later record with it.
const MAX_OUTPUT: usize = 64 * 1024;

/// `v` as it is when small; else its text cut at [`MAX_OUTPUT`] with a note of the size.
fn capped(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(cut(&s)),
        other => {
            let text = other.to_string();
            if text.len() <= MAX_OUTPUT {
                other
            } else {
                Value::String(cut(&text))
            }
        }
    }
}

fn cut(s: &str) -> String {
    if s.len() <= MAX_OUTPUT {
        return s.to_owned();
    }
    let mut end = MAX_OUTPUT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [cut: the tool returned {} bytes; {MAX_OUTPUT} kept]",
        &s[..end],
        s.len()
    )
}

/// `base`, or `base_2`, `base_3`… if an earlier tool took it; only the characters OpenAI
/// allows in a function name, at most 64 of them.
fn unique(taken: &[Offered], base: &str) -> String {
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    let mut name = clean.clone();
    let mut n = 1;
    while taken.iter().any(|o| o.name == name) {
        n += 1;
        name = format!("{clean}_{n}");
    }
    name
}

fn definition(name: &str, description: &str, schema: &Value) -> Value {
    json!({"type": "function", "function": {
        "name": name, "description": description, "parameters": schema,
    }})
}
