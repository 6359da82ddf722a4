//! The one test harness of the workspace, used by every integration and end-to-end test
//! (the gateway's, the web app's, the tray's, and `tests/tests/*.rs`): the real
//! `switchboard` binary started as a process on a temporary data dir ([`app`], with
//! standalone bridges in [`process`]), loopback fakes for what this machine cannot reach
//! (Telegram's Bot API: [`telegram_fake`]; an OpenAI-compatible LLM: [`llm_fake`]; a Web
//! Push service: [`push_fake`]; an OpenTelemetry collector: [`otlp_sink`]), real
//! parts started for a test (Postfix + Dovecot: [`mail_server`]), and the architecture's
//! invariants as checks ([`tidy`]).

pub mod app;
pub mod call;
pub mod cluster;
pub mod llm_fake;
mod llm_tools;
pub mod mail_server;
pub mod mcp;
pub mod otlp_sink;
pub mod peek;
pub mod pg;
pub mod process;
pub mod push_fake;
pub mod telegram_fake;
pub mod tidy;
pub mod wait;
