//! The chat view of a run: its ledger read as a conversation. The person's messages (the
//! run's input text, answers), the assistant's (LLM replies, says), tool calls inline (a
//! compact line that opens on its arguments and result), approvals and the run's end as
//! small notes. Pure: records in, bubbles out.

use protocol::{LedgerRecord, RecordStatus, RunStatus, ToolCall};
use serde_json::Value;

use crate::view;

/// One bubble of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Bubble {
    /// `user`, `bot`, `tool` or `note`.
    pub side: &'static str,
    pub text: String,
    /// What opens under a tool call: its arguments and result, as JSON.
    pub detail: Option<String>,
    /// Who gave an answer ("alice via telegram").
    pub who: Option<String>,
}

impl Bubble {
    fn new(side: &'static str, text: impl Into<String>) -> Self {
        Self {
            side,
            text: text.into(),
            detail: None,
            who: None,
        }
    }
}

/// The conversation a run's records hold; `input` (the run's input) opens it when it has
/// a `text`.
pub fn bubbles(input: &Value, records: &[LedgerRecord]) -> Vec<Bubble> {
    let mut out: Vec<Bubble> = Vec::new();
    if let Some(t) = input["text"].as_str().filter(|t| !t.trim().is_empty()) {
        out.push(Bubble::new("user", t));
    }
    for r in records {
        if let Some(b) = bubble(r) {
            // Chat flows `say` the reply their `llm` step just gave: show it once.
            let repeated = b.side == "bot"
                && out
                    .iter()
                    .rev()
                    .find(|p| p.side != "note")
                    .is_some_and(|p| p.side == "bot" && p.text == b.text);
            if !repeated {
                out.push(b);
            }
        }
    }
    out
}

fn bubble(r: &LedgerRecord) -> Option<Bubble> {
    if let Some(call) = ToolCall::of(r) {
        let detail = serde_json::json!({
            "tool": call.tool, "arguments": call.arguments,
            "output": call.output, "error": call.error,
        });
        let mut b = Bubble::new("tool", call.line());
        b.detail = Some(serde_json::to_string_pretty(&detail).unwrap_or_default());
        return Some(b);
    }
    let result = r.result.as_ref();
    match (r.status, r.effect_kind(), r.run_end()) {
        (_, _, Some(RunStatus::Failed)) => Some(Bubble::new(
            "note",
            format!("Failed: {}", r.error.as_deref().unwrap_or("unknown error")),
        )),
        (_, _, Some(RunStatus::Cancelled)) => Some(Bubble::new("note", "Cancelled")),
        (_, _, Some(_)) => Some(Bubble::new("note", "Done")),
        (RecordStatus::Completed, "say", _) => {
            text(&r.effect_payload()["text"]).map(|t| Bubble::new("bot", t))
        }
        (RecordStatus::Completed, "", _) => {
            let v = result?;
            if let Some(approval) = v.get("approval") {
                let name = approval["tool"].as_str().unwrap_or("a tool");
                let answer = text(&v["response"]).unwrap_or_default();
                let mut b = Bubble::new("note", format!("{answer}: {name}"));
                b.who = view::who(r);
                return Some(b);
            }
            if let Some(resp) = v.get("response") {
                let mut b = Bubble::new("user", text(resp)?);
                b.who = view::who(r);
                return Some(b);
            }
            if r.idempotency_key.is_some() {
                return text(&v["text"]).map(|t| Bubble::new("bot", t));
            }
            None
        }
        _ => None,
    }
}

/// A value as text; `None` for nothing to show.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::String(_) | Value::Null => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
#[path = "chat_tests.rs"]
mod tests;
