//! The LLM fake's tool calls (OpenAI's `tools` / `tool_calls` format), scripted by the
//! last user message of a request that offers tools:
//!
//! - `CALL <name> <json>` (one or more, separated by ` ; `): round *n* calls the *n*-th
//!   one. `<name>` is matched against the offered functions' names (exactly, or as a
//!   `_<name>` suffix: `add` finds `calc_add`); a name no function has is called as written.
//! - `TWICE` in the message: each round calls its tool two times at once (ids `…a`, `…b`).
//! - After the last call the model answers `done: ` and every tool result it got, joined
//!   with ` | `.
//! - Replies stream (the arguments split into 4-character pieces across chunks) when the
//!   request asks for it, unless the message says `NOSTREAM`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The reply to a request with `tools`, or `None` for a plain one.
pub(crate) fn reply(body: &Value, last_user: &str) -> Option<Response> {
    let offered: Vec<&str> = body["tools"]
        .as_array()?
        .iter()
        .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
        .collect();
    if offered.is_empty() {
        return None;
    }
    let msgs = body["messages"].as_array()?;
    let since_user = msgs
        .iter()
        .rposition(|m| m["role"] == "user")
        .map_or(&msgs[..], |i| &msgs[i + 1..]);
    let round = since_user
        .iter()
        .filter(|m| m["role"] == "assistant" && m["tool_calls"].is_array())
        .count();
    let script: Vec<&str> = last_user
        .split(" ; ")
        .filter_map(|part| part.find("CALL ").map(|i| &part[i + 5..]))
        .collect();
    let stream = body["stream"] == true && !last_user.contains("NOSTREAM");
    let Some(directive) = script.get(round) else {
        let results: Vec<&str> = since_user
            .iter()
            .filter(|m| m["role"] == "tool")
            .filter_map(|m| m["content"].as_str())
            .collect();
        return Some(text_reply(
            &format!("done: {}", results.join(" | ")),
            stream,
        ));
    };
    let (name, args) = directive
        .trim()
        .split_once(' ')
        .unwrap_or((directive, "{}"));
    let function = offered
        .iter()
        .find(|o| **o == name || o.ends_with(&format!("_{name}")))
        .copied()
        .unwrap_or(name);
    let ids: Vec<String> = if last_user.contains("TWICE") {
        vec![format!("call_{round}a"), format!("call_{round}b")]
    } else {
        vec![format!("call_{round}")]
    };
    Some(calls_reply(&ids, function, args.trim(), stream))
}

fn text_reply(text: &str, stream: bool) -> Response {
    if !stream {
        return Json(json!({"choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": text}}]}))
        .into_response();
    }
    let chunk = json!({"choices": [{"index": 0, "delta": {"content": text}}]});
    sse(vec![chunk])
}

fn calls_reply(ids: &[String], function: &str, args: &str, stream: bool) -> Response {
    if !stream {
        let calls: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "type": "function", "function": {"name": function, "arguments": args}}))
            .collect();
        return Json(
            json!({"choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": null, "tool_calls": calls}}]}),
        )
        .into_response();
    }
    let mut chunks = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        chunks.push(json!({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": i, "id": id, "type": "function", "function": {"name": function, "arguments": ""}}
        ]}}]}));
        let chars: Vec<char> = args.chars().collect();
        for piece in chars.chunks(4) {
            let piece: String = piece.iter().collect();
            chunks.push(json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": i, "function": {"arguments": piece}}
            ]}}]}));
        }
    }
    chunks.push(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}));
    sse(chunks)
}

fn sse(chunks: Vec<Value>) -> Response {
    let mut out: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    out.push_str("data: [DONE]\n\n");
    ([("content-type", "text/event-stream")], out).into_response()
}
