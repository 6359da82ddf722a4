//! Switchboard's client contract: the JSON shapes of the HTTP API, an async client for it,
//! and a reader for its Server-Sent Event streams.
//!
//! Every thin client (bridges, tray, the web app's browser side, the CLI) depends on this
//! crate only. It knows nothing of SQLite, flows or the engine; it must stay light (serde,
//! reqwest, futures) so a client build does not drag in the gateway.

pub mod admin;
pub mod approvals;
pub mod backoff;
pub mod client;
pub mod command;
pub mod integrations;
pub mod push;
pub mod secret_file;
pub mod sse;
pub mod tools;
pub mod types;

pub use client::{Client, ClientError};
pub use command::{COMMAND_TYPES, Command, EventScope};

/// The header in which the gateway's own web app tells the API whom it calls for (a note
/// the gateway signs; anything a visitor sends under this name is replaced).
pub const VISITOR_HEADER: &str = "x-switchboard-visitor";
pub use admin::*;
pub use approvals::*;
pub use integrations::*;
pub use push::*;
pub use sse::{SseEvent, StreamItem};
pub use tools::ToolCall;
pub use types::*;
