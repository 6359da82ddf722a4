//! Commands, typed: what a `POST /api/gateway/commands` asks for. On the wire a command is
//! the `type` and `payload` of a [`CommandRequest`] (AbstractGateway's shape, kept for
//! its clients); here it is a tagged enum that clients build and the gateway parses, so
//! the two agree on every field and every refusal names the field.

use serde_json::{Value, json};

use crate::types::CommandRequest;

/// Where an emitted event travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventScope {
    /// The run the command names.
    Run,
    /// Every run in a session (the run's own, or `session_id`).
    Session,
    /// Every run waiting for the event.
    Global,
}

impl EventScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Session => "session",
            Self::Global => "global",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "run" => Some(Self::Run),
            "session" => Some(Self::Session),
            "global" => Some(Self::Global),
            _ => None,
        }
    }
}

/// A command's kind and payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Pause,
    /// `resume` without a `wait_key`: continue a paused run.
    Unpause,
    /// `resume` with a `wait_key`: answer what the run waits on.
    Answer {
        wait_key: String,
        response: Value,
    },
    Cancel,
    EmitEvent {
        name: String,
        scope: EventScope,
        payload: Value,
        session_id: Option<String>,
    },
    /// `update_schedule`: new timing fields (`interval`, `cron`, `timezone`, `mode`,
    /// `repeat_count`, `repeat_until`, `apply`), checked against the schedule by the gateway.
    UpdateSchedule(serde_json::Map<String, Value>),
    CompactMemory {
        keep_last: u32,
    },
}

/// The command types a gateway accepts.
pub const COMMAND_TYPES: &[&str] = &[
    "pause",
    "resume",
    "cancel",
    "emit_event",
    "update_schedule",
    "compact_memory",
];

fn str_field<'a>(payload: &'a Value, field: &str) -> Result<Option<&'a str>, String> {
    match payload.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("payload.{field} must be a string")),
    }
}

impl Command {
    /// The wire `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Unpause | Self::Answer { .. } => "resume",
            Self::Cancel => "cancel",
            Self::EmitEvent { .. } => "emit_event",
            Self::UpdateSchedule(_) => "update_schedule",
            Self::CompactMemory { .. } => "compact_memory",
        }
    }

    /// The wire `payload`.
    pub fn payload(&self) -> Value {
        match self {
            Self::Pause | Self::Unpause | Self::Cancel => json!({}),
            Self::Answer { wait_key, response } => {
                json!({"wait_key": wait_key, "payload": {"response": response}})
            }
            Self::EmitEvent {
                name,
                scope,
                payload,
                session_id,
            } => {
                let mut p = json!({"name": name, "scope": scope.as_str(), "payload": payload});
                if let Some(s) = session_id {
                    p["session_id"] = json!(s);
                }
                p
            }
            Self::UpdateSchedule(fields) => Value::Object(fields.clone()),
            Self::CompactMemory { keep_last } => json!({ "keep_last": keep_last }),
        }
    }

    /// Reads `type` + `payload`; the error names the field that is wrong.
    pub fn parse(kind: &str, payload: &Value) -> Result<Self, String> {
        if !(payload.is_object() || payload.is_null()) {
            return Err("payload must be a JSON object".into());
        }
        Ok(match kind {
            "pause" => Self::Pause,
            "cancel" => Self::Cancel,
            "resume" => match str_field(payload, "wait_key")? {
                None => Self::Unpause,
                Some(k) => Self::Answer {
                    wait_key: k.to_owned(),
                    response: payload
                        .pointer("/payload/response")
                        .or_else(|| payload.get("response"))
                        .cloned()
                        .ok_or("payload.payload.response is required to answer a wait_key")?,
                },
            },
            "emit_event" => Self::EmitEvent {
                name: str_field(payload, "name")?
                    .filter(|n| !n.is_empty())
                    .ok_or("payload.name (the event's name) is required")?
                    .to_owned(),
                scope: match str_field(payload, "scope")? {
                    None => EventScope::Session,
                    Some(s) => EventScope::parse(s)
                        .ok_or("payload.scope must be run, session or global")?,
                },
                payload: payload.get("payload").cloned().unwrap_or(Value::Null),
                session_id: str_field(payload, "session_id")?.map(str::to_owned),
            },
            "update_schedule" => {
                Self::UpdateSchedule(payload.as_object().cloned().unwrap_or_default())
            }
            "compact_memory" => Self::CompactMemory {
                keep_last: match payload.get("keep_last") {
                    None | Some(Value::Null) => 0,
                    Some(v) => v
                        .as_u64()
                        .filter(|n| *n <= 100_000)
                        .ok_or("payload.keep_last must be a whole number from 0 to 100000")?
                        as u32,
                },
            },
            other => {
                return Err(format!(
                    "type `{other}` must be one of {}",
                    COMMAND_TYPES.join(", ")
                ));
            }
        })
    }
}

impl CommandRequest {
    /// A request for `command` on `run_id`, idempotent by `command_id`.
    pub fn new(
        command_id: impl Into<String>,
        run_id: impl Into<String>,
        command: &Command,
    ) -> Self {
        Self {
            command_id: command_id.into(),
            run_id: run_id.into(),
            kind: command.type_name().into(),
            payload: command.payload(),
            client_id: None,
            channel: None,
        }
    }

    /// Says who sends it: the client (`telegram:<user>`, `web`…) and its channel.
    pub fn from_client(mut self, client_id: Option<&str>, channel: &str) -> Self {
        self.client_id = client_id.map(str::to_owned);
        self.channel = Some(channel.to_owned());
        self
    }

    /// The typed command; the error names the field that is wrong.
    pub fn command(&self) -> Result<Command, String> {
        Command::parse(&self.kind, &self.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_round_trips_through_the_wire_shape() {
        let mut fields = serde_json::Map::new();
        fields.insert("interval".into(), json!("1h"));
        for c in [
            Command::Pause,
            Command::Unpause,
            Command::Answer {
                wait_key: "ask.1".into(),
                response: json!("yes"),
            },
            Command::Cancel,
            Command::EmitEvent {
                name: "go".into(),
                scope: EventScope::Global,
                payload: json!({"n": 1}),
                session_id: Some("s".into()),
            },
            Command::UpdateSchedule(fields),
            Command::CompactMemory { keep_last: 5 },
        ] {
            let req = CommandRequest::new("c", "r", &c);
            assert_eq!(req.command(), Ok(c));
        }
    }

    #[test]
    fn bad_payloads_name_their_field() {
        let e = |kind: &str, p: Value| Command::parse(kind, &p).unwrap_err();
        assert!(e("resume", json!({"wait_key": 3})).contains("payload.wait_key"));
        assert!(e("resume", json!({"wait_key": "k"})).contains("payload.payload.response"));
        assert!(e("emit_event", json!({})).contains("payload.name"));
        assert!(e("emit_event", json!({"name": "x", "scope": "world"})).contains("payload.scope"));
        assert!(e("compact_memory", json!({"keep_last": -1})).contains("payload.keep_last"));
        assert!(e("reboot", json!({})).contains("must be one of"));
        assert!(e("pause", json!([1])).contains("JSON object"));
    }
}
