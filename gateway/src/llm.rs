//! The LLM provider: an OpenAI-compatible `/chat/completions` client with streaming.
//!
//! Owns the request shape, SSE chunk parsing and error messages that say what to configure.
//! It does not retry (the flow's `retries` decides, through the engine) and records nothing.

use futures::StreamExt;
use serde_json::{Value, json};

use crate::engine::ChatMessage;

#[derive(Debug, Clone, Default)]
pub(crate) struct LlmConfig {
    /// e.g. `http://127.0.0.1:11434/v1`; requests go to `{base_url}/chat/completions`.
    pub(crate) base_url: Option<String>,
    pub(crate) api_key: Option<String>,
    pub(crate) model: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LlmError {
    #[error(
        "no LLM provider configured: set SWITCHBOARD_LLM_BASE_URL (and SWITCHBOARD_LLM_MODEL, SWITCHBOARD_LLM_API_KEY if needed)"
    )]
    NotConfigured,
    #[error("no LLM model: set SWITCHBOARD_LLM_MODEL or `model:` in the llm step")]
    NoModel,
    #[error("LLM provider answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("cannot reach the LLM provider: {0}")]
    Transport(String),
    #[error("the LLM provider sent a reply that is not OpenAI chat-completions JSON: {0}")]
    Format(String),
}

pub(crate) struct Request<'a> {
    pub(crate) messages: &'a [ChatMessage],
    pub(crate) model: Option<&'a str>,
    pub(crate) temperature: Option<f64>,
    pub(crate) max_tokens: Option<u32>,
    pub(crate) idempotency_key: &'a str,
    /// The call's W3C trace context (when traces are on).
    pub(crate) traceparent: Option<&'a str>,
    /// Tool definitions in OpenAI's format (`{"type": "function", "function": {...}}`).
    pub(crate) tools: &'a [Value],
}

/// The model's answer: its text and the tools it called (the arguments as it wrote them).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Reply {
    pub(crate) text: String,
    pub(crate) calls: Vec<Call>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Call {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) arguments: String,
}

/// Most tool calls one reply may carry (a bound on what a provider can make us run).
const MAX_CALLS: usize = 32;
/// Longest arguments text of one call.
const MAX_ARGUMENTS: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct Llm {
    cfg: LlmConfig,
    http: reqwest::Client,
}

impl Llm {
    pub(crate) fn new(cfg: LlmConfig, http: reqwest::Client) -> Self {
        Self { cfg, http }
    }

    /// Sends a streamed chat completion; `on_delta` sees each piece of text as it arrives.
    pub(crate) async fn chat(
        &self,
        req: Request<'_>,
        mut on_delta: impl FnMut(&str),
    ) -> Result<Reply, LlmError> {
        let base = self
            .cfg
            .base_url
            .as_deref()
            .ok_or(LlmError::NotConfigured)?;
        let model = req
            .model
            .or(self.cfg.model.as_deref())
            .ok_or(LlmError::NoModel)?;
        let mut body = json!({"model": model, "messages": req.messages, "stream": true});
        if let Some(t) = req.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(m) = req.max_tokens {
            body["max_tokens"] = json!(m);
        }
        if !req.tools.is_empty() {
            body["tools"] = json!(req.tools);
        }
        let url = format!("{}/chat/completions", base.trim_end_matches('/'));
        let mut rb = self
            .http
            .post(url)
            .json(&body)
            .header("Idempotency-Key", req.idempotency_key);
        if let Some(tp) = req.traceparent {
            rb = rb.header("traceparent", tp);
        }
        if let Some(k) = &self.cfg.api_key {
            rb = rb.bearer_auth(k);
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| LlmError::Transport(e.to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| {
                    v.pointer("/error/message")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or(text);
            return Err(LlmError::Status {
                status: status.as_u16(),
                message,
            });
        }
        let is_sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            let v: Value = resp
                .json()
                .await
                .map_err(|e| LlmError::Format(e.to_string()))?;
            let msg = v
                .pointer("/choices/0/message")
                .ok_or_else(|| LlmError::Format("no choices[0].message".into()))?;
            let mut calls = Calls::default();
            for (i, c) in msg["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                calls.add(i, c)?;
            }
            // `content` may be null beside tool calls; an empty string is an empty answer.
            let text = match msg["content"].as_str() {
                Some(t) => t,
                None if !calls.0.is_empty() => "",
                None => {
                    return Err(LlmError::Format(
                        "choices[0].message has neither content nor tool_calls".into(),
                    ));
                }
            };
            if !text.is_empty() {
                on_delta(text);
            }
            return Ok(Reply {
                text: text.to_owned(),
                calls: calls.finish()?,
            });
        }
        read_stream(resp, &mut on_delta).await
    }
}

/// Tool calls as they arrive: whole (a JSON reply) or in pieces keyed by `index` (a
/// stream: the id and name first, the arguments split across chunks).
#[derive(Default)]
struct Calls(Vec<Call>);

impl Calls {
    fn add(&mut self, fallback_index: usize, c: &Value) -> Result<(), LlmError> {
        let i = c["index"].as_u64().map_or(fallback_index, |i| i as usize);
        if i >= MAX_CALLS {
            return Err(LlmError::Format(format!(
                "more than {MAX_CALLS} tool calls in one reply"
            )));
        }
        if self.0.len() <= i {
            self.0.resize(i + 1, Call::default());
        }
        let call = &mut self.0[i];
        if let Some(id) = c["id"].as_str() {
            call.id = id.to_owned();
        }
        if let Some(name) = c.pointer("/function/name").and_then(Value::as_str) {
            call.name.push_str(name);
        }
        if let Some(a) = c.pointer("/function/arguments").and_then(Value::as_str) {
            call.arguments.push_str(a);
        }
        if call.arguments.len() > MAX_ARGUMENTS || call.name.len() > 256 || call.id.len() > 256 {
            return Err(LlmError::Format(
                "a tool call is larger than the gateway accepts".into(),
            ));
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<Call>, LlmError> {
        self.0
            .into_iter()
            .enumerate()
            .map(|(i, mut c)| {
                if c.name.is_empty() {
                    return Err(LlmError::Format(format!(
                        "tool call {i} has no function name"
                    )));
                }
                if c.id.is_empty() {
                    c.id = format!("call_{i}");
                }
                Ok(c)
            })
            .collect()
    }
}

async fn read_stream(
    resp: reqwest::Response,
    on_delta: &mut impl FnMut(&str),
) -> Result<Reply, LlmError> {
    use eventsource_stream::Eventsource;
    let mut events = Box::pin(resp.bytes_stream().eventsource());
    let mut text = String::new();
    let mut calls = Calls::default();
    while let Some(ev) = events.next().await {
        let ev = ev.map_err(|e| LlmError::Transport(e.to_string()))?;
        if ev.data.trim() == "[DONE]" {
            return Ok(Reply {
                text,
                calls: calls.finish()?,
            });
        }
        let chunk: Value =
            serde_json::from_str(&ev.data).map_err(|e| LlmError::Format(e.to_string()))?;
        if let Some(msg) = chunk.pointer("/error/message").and_then(Value::as_str) {
            return Err(LlmError::Status {
                status: 200,
                message: msg.to_owned(),
            });
        }
        if let Some(d) = chunk
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
            && !d.is_empty()
        {
            on_delta(d);
            text.push_str(d);
        }
        let pieces = chunk.pointer("/choices/0/delta/tool_calls");
        for (i, c) in pieces
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            calls.add(i, c)?;
        }
    }
    Err(LlmError::Transport("the stream ended before [DONE]".into()))
}
