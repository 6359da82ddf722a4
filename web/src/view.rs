//! What the pages show, computed from `protocol` types: a run's ledger as a readable
//! timeline (messages, questions, answers with who gave them and from which channel, LLM
//! output, timers, errors) and a form generated from a flow's input schema, with the
//! submitted form turned back into `input_data`. Pure: no I/O.

use protocol::{LedgerRecord, RecordStatus, RunStatus};
use serde_json::{Map, Value};

/// One line of a run's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `say`, `ask`, `answer`, `llm`, `tool`, `timer`, `error`, `status`.
    pub kind: &'static str,
    pub text: String,
    /// Who caused it ("alice via telegram"), for answers and commands.
    pub who: Option<String>,
    /// `HH:MM:SS` (UTC).
    pub at: String,
    /// What a `tool` entry opens on: the call's arguments and result, as JSON.
    pub detail: Option<String>,
}

fn time_of(ts: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(ts)
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_default()
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Who sent a command: its client and channel.
pub fn who(r: &LedgerRecord) -> Option<String> {
    let a = &r.actor;
    match (a.client_id.as_deref(), a.channel.as_deref()) {
        _ if a.kind == "runner" => None,
        (Some(c), Some(ch)) => Some(format!("{c} via {ch}")),
        (None, Some(ch)) => Some(format!("someone via {ch}")),
        (Some(c), None) => Some(c.to_owned()),
        (None, None) => a.principal.clone(),
    }
}

/// The timeline entry of a record, if it shows anything.
pub fn entry(r: &LedgerRecord) -> Option<Entry> {
    if let Some(call) = protocol::ToolCall::of(r) {
        let detail = serde_json::json!({
            "tool": call.tool, "arguments": call.arguments,
            "output": call.output, "error": call.error,
        });
        return Some(Entry {
            kind: "tool",
            text: call.line(),
            who: None,
            at: time_of(r.ended_at.as_deref().unwrap_or(&r.started_at)),
            detail: Some(serde_json::to_string_pretty(&detail).unwrap_or_default()),
        });
    }
    let p = r.effect_payload();
    let (kind, text) = match (r.status, r.effect_kind(), r.run_end()) {
        (_, "run_started", _) => ("status", "Started".to_owned()),
        (_, _, Some(RunStatus::Failed)) => (
            "error",
            format!("Failed: {}", r.error.as_deref().unwrap_or("unknown error")),
        ),
        (_, _, Some(RunStatus::Cancelled)) => ("status", "Cancelled".to_owned()),
        (_, _, Some(_)) => ("status", "Completed".to_owned()),
        (RecordStatus::Completed, "say", _) => ("say", text_of(&p["text"])),
        (RecordStatus::Waiting, "ask", _) => {
            let q = r.question().and_then(|q| q.prompt).unwrap_or_default();
            ("ask", q)
        }
        (RecordStatus::Waiting, "wait", _) => {
            ("timer", format!("Waiting until {}", text_of(&p["until"])))
        }
        (RecordStatus::Waiting, "wait_event", _) => (
            "timer",
            format!("Waiting for event {}", text_of(&p["event"])),
        ),
        (RecordStatus::Completed, "pause", _) => ("status", "Paused".to_owned()),
        (RecordStatus::Completed, "resume", _) => ("status", "Resumed".to_owned()),
        (RecordStatus::Completed, "", _) => match r.result.as_ref() {
            Some(v) if v.get("response").is_some() => ("answer", text_of(&v["response"])),
            Some(v) if r.idempotency_key.is_some() && !text_of(&v["text"]).is_empty() => {
                ("llm", text_of(&v["text"]))
            }
            _ => return None,
        },
        (RecordStatus::Failed, _, _) => (
            "error",
            r.error.clone().unwrap_or_else(|| "A step failed".into()),
        ),
        _ => return None,
    };
    Some(Entry {
        kind,
        text,
        who: who(r),
        at: time_of(r.ended_at.as_deref().unwrap_or(&r.started_at)),
        detail: None,
    })
}

/// A field of a start form.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub label: String,
    pub help: String,
    /// `text`, `textarea`, `number`, `integer`, `checkbox`, `select`, `json`.
    pub kind: &'static str,
    pub options: Vec<String>,
    pub required: bool,
    pub default: String,
}

fn label_of(name: &str) -> String {
    let spaced = name.replace(['_', '-'], " ");
    let mut c = spaced.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The form fields of a JSON schema's top-level properties.
pub fn fields(schema: &Value) -> Vec<Field> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let Some(props) = schema["properties"].as_object() else {
        return Vec::new();
    };
    props
        .iter()
        .map(|(name, p)| {
            let options: Vec<String> = p["enum"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text_of)
                .collect();
            let kind = match (p["type"].as_str(), options.is_empty()) {
                (_, false) => "select",
                (Some("string"), _) if p["format"] == "textarea" || name == "text" => "textarea",
                (Some("string"), _) => "text",
                (Some("number"), _) => "number",
                (Some("integer"), _) => "integer",
                (Some("boolean"), _) => "checkbox",
                _ => "json",
            };
            Field {
                name: name.clone(),
                label: p["title"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| label_of(name)),
                help: p["description"].as_str().unwrap_or("").to_owned(),
                kind,
                options,
                required: required.contains(&name.as_str()),
                default: p.get("default").map(text_of).unwrap_or_default(),
            }
        })
        .collect()
}

/// `input_data` from a submitted start form; problems name the field.
pub fn input(fields: &[Field], form: &[(String, String)]) -> Result<Value, Vec<String>> {
    let get = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim());
    let mut out = Map::new();
    let mut problems = Vec::new();
    for f in fields {
        let raw = get(&f.name).unwrap_or("");
        if f.kind == "checkbox" {
            out.insert(f.name.clone(), Value::Bool(get(&f.name).is_some()));
            continue;
        }
        if raw.is_empty() {
            if f.required {
                problems.push(format!("{} is required", f.label));
            }
            continue;
        }
        let value = match f.kind {
            "number" => raw
                .parse::<f64>()
                .ok()
                .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number)),
            "integer" => raw.parse::<i64>().ok().map(Value::from),
            "json" => serde_json::from_str(raw).ok(),
            _ => Some(Value::String(raw.to_owned())),
        };
        match value {
            Some(v) => {
                out.insert(f.name.clone(), v);
            }
            None => problems.push(format!(
                "{} must be {}",
                f.label,
                match f.kind {
                    "number" => "a number",
                    "integer" => "a whole number",
                    _ => "valid JSON",
                }
            )),
        }
    }
    if problems.is_empty() {
        Ok(Value::Object(out))
    } else {
        Err(problems)
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
