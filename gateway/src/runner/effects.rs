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
    pub(super) async fn perform(
        &self,
        run_id: &str,
        step_id: &str,
        key: &str,
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
            } => self.call_tool(tool, arguments, key).await,
            EffectRequest::Http {
                method,
                url,
                headers,
                body,
                timeout_ms,
            } => {
                self.http_call(method, url, headers, body.as_ref(), *timeout_ms, key)
                    .await
            }
        }
    }

    async fn http_call(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Option<&Value>,
        timeout_ms: u64,
        key: &str,
    ) -> Result<Value, String> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let out = &self.inner.http;
        let parsed = url::Url::parse(url).map_err(|e| {
            format!("`{url}` is not a URL ({e}); a value that is only part of a URL is encoded, mark a trusted one `| safe`")
        })?;
        let resp = out
            .send(crate::net::StepRequest {
                method,
                url: parsed,
                headers,
                body,
                timeout: Duration::from_millis(timeout_ms),
                idempotency_key: key,
            })
            .await?;
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
