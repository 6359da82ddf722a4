//! Switchboard's gateway core.
//!
//! - [`flows`]: flow YAML → compiled program (line/column errors), templates, registry.
//! - [`engine`]: the deterministic interpreter (flow + state + input → transition). No I/O.
//! - [`store`]: SQLite (WAL, `synchronous=FULL`, one group-committing writer). Only SQL here.
//! - [`runner`]: drives runs, performs effects (LLM, HTTP), fires timers.
//! - [`schedule`]: schedule requests and fire-time planning (interval, cron + time zone). No I/O.
//! - [`llm`]: OpenAI-compatible chat completions client (streaming, tool calls).
//! - [`mcp`]: the MCP servers `llm` steps call tools on (started lazily, supervised).
//! - [`http`]: the axum API, request gates, SSE, and the OpenAI-compatible `/v1` surface.
//! - [`auth`]: credentials (admin token, devices, scoped keys, pairing) and request limits.
//! - [`telemetry`]: Prometheus metrics; [`trace`]: runs as OpenTelemetry traces (OTLP).
//! - [`triggers`], [`signing`]: inbound triggers and their HMAC signatures.
//! - [`webhooks`]: the outbound webhook dispatcher and sender (durable outbox).
//! - [`net`]: outbound HTTP for flows and webhooks (public addresses only, capped replies).
//! - [`bus`]: committed records and LLM deltas fanned out to streams.
//! - [`retention`]: pruning ended runs (periodic and `switchboard prune`).
//! - [`follow`]: split mode (API and runner processes on one data dir) and the runner lease.
//! - [`channels`]: settings and in-process hosting of the channel bridges (Telegram).
//! - [`config`], [`app`]: configuration and wiring for `switchboard serve`.
//!
//! See ARCHITECTURE.md for the invariants these modules keep.

pub mod admin_cli;
pub mod app;
pub mod auth;
pub mod backup;
pub mod bus;
pub mod channels;
pub mod config;
pub mod doctor;
pub mod engine;
pub mod flows;
pub mod follow;
pub mod http;
pub mod llm;
pub mod mcp;
pub mod net;
pub mod push;
pub mod retention;
pub mod runner;
pub mod schedule;
pub mod service;
pub mod signing;
pub mod store;
pub mod telemetry;
pub mod trace;
pub mod triggers;
pub mod webhooks;
