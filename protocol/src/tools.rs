//! Tool calls of `llm` steps as clients show them: a call's result record (`completed`,
//! with `call_id`, `name`, `tool`, `arguments`, and `output` or `error`) read into a
//! [`ToolCall`], and the compact one-line form chat clients print (`🔧 add(2, 3) → 5`).

use serde_json::Value;

use crate::{LedgerRecord, RecordStatus};

/// Longest argument list or result a compact line shows before it is cut with `…`.
const SHOWN: usize = 120;

/// One answered tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The tool's own name (`add`, or the flow's id).
    pub name: String,
    /// `mcp:<server>/<tool>` or `flow:<id>`; empty when the model named no known tool.
    pub tool: String,
    pub arguments: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
}

impl ToolCall {
    /// The call a ledger record answers, if it is a tool call's result.
    pub fn of(r: &LedgerRecord) -> Option<Self> {
        if r.status != RecordStatus::Completed || !r.effect_kind().is_empty() {
            return None;
        }
        let v = r.result.as_ref()?;
        v.get("call_id")?;
        let tool = v["tool"].as_str().unwrap_or_default().to_owned();
        let name = tool
            .rsplit(['/', ':'])
            .next()
            .filter(|n| !n.is_empty())
            .or(v["name"].as_str())
            .unwrap_or("tool")
            .to_owned();
        Some(Self {
            name,
            tool,
            arguments: v.get("arguments").cloned().unwrap_or(Value::Null),
            output: v.get("output").cloned(),
            error: v["error"].as_str().map(str::to_owned),
        })
    }

    /// The arguments as a call reads: values in order (`2, 3`), strings quoted.
    pub fn shown_arguments(&self) -> String {
        let s = match &self.arguments {
            Value::Object(m) => m
                .values()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        cut(&s)
    }

    /// The result as text: a string as it is, anything else as JSON.
    pub fn shown_result(&self) -> String {
        match (&self.output, &self.error) {
            (_, Some(e)) => cut(e),
            (Some(Value::String(s)), _) => cut(s),
            (Some(v), _) => cut(&v.to_string()),
            (None, None) => String::new(),
        }
    }

    /// `🔧 add(2, 3) → 5`, or `🔧 add(2, 3) ✗ <error>`.
    pub fn line(&self) -> String {
        let arrow = if self.error.is_some() { "✗" } else { "→" };
        format!(
            "🔧 {}({}) {arrow} {}",
            self.name,
            self.shown_arguments(),
            self.shown_result()
        )
    }
}

fn cut(s: &str) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= SHOWN {
        return one_line;
    }
    let mut out: String = one_line.chars().take(SHOWN).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(result: Value) -> LedgerRecord {
        serde_json::from_value(json!({
            "run_id": "r", "seq": 5, "step_id": "think.1/tool1.1", "node_id": "think",
            "status": "completed", "started_at": "2026-11-30T10:00:00.000Z",
            "result": result, "actor": {"kind": "runner"}, "attempt": 1,
            "prev_hash": "", "record_hash": "",
        }))
        .unwrap()
    }

    #[test]
    fn a_result_reads_as_one_compact_line() {
        let r = record(
            json!({"call_id": "c1", "name": "calc_add", "tool": "mcp:calc/add",
            "arguments": {"a": 2, "b": 3}, "output": "5"}),
        );
        assert_eq!(ToolCall::of(&r).unwrap().line(), "🔧 add(2, 3) → 5");
        let r = record(json!({"call_id": "c1", "name": "echo", "tool": "flow:echo",
            "arguments": {"text": "hi"}, "error": "denied by ann"}));
        assert_eq!(
            ToolCall::of(&r).unwrap().line(),
            "🔧 echo(\"hi\") ✗ denied by ann"
        );
        let long = "x".repeat(500);
        let r = record(
            json!({"call_id": "c", "name": "n", "tool": null, "arguments": {}, "output": long}),
        );
        let line = ToolCall::of(&r).unwrap().line();
        assert!(
            line.starts_with("🔧 n() → xxx") && line.ends_with('…'),
            "{line}"
        );
    }

    #[test]
    fn other_records_are_not_tool_calls() {
        assert!(ToolCall::of(&record(json!({"response": "allow"}))).is_none());
        assert!(ToolCall::of(&record(json!({"text": "hi"}))).is_none());
    }
}
