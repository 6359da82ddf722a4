//! Performing effects: LLM chat completions (streamed, deltas published on the bus, tools
//! offered), MCP tool calls and HTTP calls. Results go back to the engine as data; errors become step errors.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::Runner;
use crate::bus::BusEvent;
use crate::engine::EffectRequest;
use crate::llm;

impl Runner {
    /// The `traceparent` of an effect's call when traces are on (`crate::trace`).
    pub(super) async fn traceparent(
        &self,
        run_id: &str,
        key: &str,
        attempt: u32,
    ) -> Option<String> {
        if !crate::trace::enabled() {
            return None;
        }
        let stored = match self.inner.store.traced_run(run_id).await {
            Ok(t) => t.and_then(|t| t.trace),
            Err(e) => {
                tracing::warn!(error = %e, run_id, "cannot read the run's trace");
                None
            }
        };
        crate::trace::traceparent(stored.as_deref(), run_id, key, attempt)
    }

    pub(super) async fn perform(
        &self,
        run_id: &str,
        step_id: &str,
        key: &str,
        traceparent: Option<&str>,
        req: &EffectRequest,
    ) -> Result<Value, String> {
        match req {
            EffectRequest::Llm {
                messages,
                model,
                temperature,
                max_tokens,
                tools,
                ..
            } => {
                let bus = self.inner.store.bus().clone();
                let offered = self.offered(tools).await?;
                let defs: Vec<Value> = offered.iter().map(|o| o.def.clone()).collect();
                let request = llm::Request {
                    messages,
                    model: model.as_deref(),
                    temperature: *temperature,
                    max_tokens: *max_tokens,
                    idempotency_key: key,
                    traceparent,
                    tools: &defs,
                };
                let on_delta = |d: &str| {
                    bus.publish(BusEvent::Delta(Arc::new(protocol::LlmDelta {
                        run_id: run_id.to_owned(),
                        step_id: step_id.to_owned(),
                        delta: d.to_owned(),
                    })))
                };
                let reply = self
                    .inner
                    .llm
                    .chat(request, on_delta)
                    .await
                    .map_err(|e| e.to_string())?;
                if reply.calls.is_empty() {
                    return Ok(json!({"text": reply.text}));
                }
                let calls: Vec<Value> = reply
                    .calls
                    .iter()
                    .map(|c| {
                        let tool = offered
                            .iter()
                            .find(|o| o.name == c.name)
                            .map(|o| o.tool.to_string());
                        json!({"id": c.id, "name": c.name, "tool": tool, "arguments": c.arguments})
                    })
                    .collect();
                Ok(json!({"text": reply.text, "tool_calls": calls}))
            }
            EffectRequest::Tool {
                tool, arguments, ..
            } => self.call_tool(tool, arguments, key, traceparent).await,
            EffectRequest::Http {
                method,
                url,
                headers,
                body,
                timeout_ms,
            } => {
                let call = crate::net::StepRequest {
                    method: reqwest::Method::from_bytes(method.as_bytes())
                        .map_err(|e| e.to_string())?,
                    url: url::Url::parse(url).map_err(|e| {
                        format!("`{url}` is not a URL ({e}); a value that is only part of a URL is encoded, mark a trusted one `| safe`")
                    })?,
                    headers,
                    body: body.as_ref(),
                    timeout: Duration::from_millis(*timeout_ms),
                    idempotency_key: key,
                    traceparent,
                };
                self.http_call(call).await
            }
        }
    }

    async fn http_call(&self, call: crate::net::StepRequest<'_>) -> Result<Value, String> {
        let out = &self.inner.http;
        let url = call.url.to_string();
        let resp = out.send(call).await?;
        let status = resp.status().as_u16();
        let bytes = out.policy.read_body(resp).await?;
        let body = match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => v,
            Err(_) => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
        };
        if status >= 400 {
            let snippet: String = body.to_string().chars().take(300).collect();
            return Err(format!("HTTP {status} from {url}: {snippet}"));
        }
        Ok(json!({"status": status, "body": body}))
    }
}
