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
}

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
    ) -> Result<String, LlmError> {
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
        let url = format!("{}/chat/completions", base.trim_end_matches('/'));
        let mut rb = self
            .http
            .post(url)
            .json(&body)
            .header("Idempotency-Key", req.idempotency_key);
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
            let text = v
                .pointer("/choices/0/message/content")
                .and_then(Value::as_str)
                .ok_or_else(|| LlmError::Format("no choices[0].message.content".into()))?;
            on_delta(text);
            return Ok(text.to_owned());
        }
        read_stream(resp, &mut on_delta).await
    }
}

async fn read_stream(
    resp: reqwest::Response,
    on_delta: &mut impl FnMut(&str),
) -> Result<String, LlmError> {
    use eventsource_stream::Eventsource;
    let mut events = Box::pin(resp.bytes_stream().eventsource());
    let mut text = String::new();
    while let Some(ev) = events.next().await {
        let ev = ev.map_err(|e| LlmError::Transport(e.to_string()))?;
        if ev.data.trim() == "[DONE]" {
            return Ok(text);
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
    }
    Err(LlmError::Transport("the stream ended before [DONE]".into()))
}
