//! What the bridge says, as pure functions: splitting long texts at Telegram's limit, the
//! texts of prompts, answers and run ends, the commands a user types, and the callback data
//! carried by inline buttons (≤ 64 bytes, signed for their chat). No I/O.

use protocol::RunStatus;
use serde_json::Value;

use crate::keys::MacKey;

/// Telegram's limit on a message's text, in characters.
pub const MAX_TEXT: usize = 4096;
/// Telegram's limit on a button's callback data, in bytes.
pub const MAX_CALLBACK: usize = 64;

/// Splits a text into messages of at most `max` characters, preferring to break after a
/// newline, then after a space, in the last quarter of a chunk.
pub fn split(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.chars().count() > max {
        let hard = rest
            .char_indices()
            .nth(max)
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let window = &rest[..hard];
        let floor = window
            .char_indices()
            .nth(max * 3 / 4)
            .map(|(i, _)| i)
            .unwrap_or(0);
        let cut = window
            .rfind('\n')
            .filter(|&i| i >= floor)
            .or_else(|| window.rfind(' ').filter(|&i| i >= floor))
            .map(|i| i + 1)
            .unwrap_or(hard);
        out.push(rest[..cut].to_owned());
        rest = &rest[cut..];
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest.to_owned());
    }
    out
}

/// What an inline button asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    /// Answer prompt `prompt` with its choice number `choice`.
    Answer { prompt: i64, choice: usize },
    /// Start a flow.
    Start { flow: String },
    /// Pause, resume or cancel a chosen run.
    Control { action: Control, run_id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Cancel,
}

impl Control {
    /// The command the control sends.
    pub fn command(self) -> protocol::Command {
        match self {
            Self::Pause => protocol::Command::Pause,
            Self::Resume => protocol::Command::Unpause,
            Self::Cancel => protocol::Command::Cancel,
        }
    }

    pub fn command_type(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Cancel => "cancel",
        }
    }

    fn tag(self) -> char {
        match self {
            Self::Pause => 'p',
            Self::Resume => 'u',
            Self::Cancel => 'c',
        }
    }

    pub fn past(self) -> &'static str {
        match self {
            Self::Pause => "paused",
            Self::Resume => "resumed",
            Self::Cancel => "cancelled",
        }
    }
}

/// Hex digits of the MAC that ends every button's data (64 bits).
const CALLBACK_MAC: usize = 16;

impl Callback {
    /// The callback data for a button shown in `chat`, or None when it would not fit in
    /// 64 bytes. It ends with a MAC over the chat and the data: Telegram lets a client send
    /// any data with a button press, so the bridge acts only on data it made for that chat.
    pub fn encode(&self, chat: i64, key: &MacKey) -> Option<String> {
        let body = match self {
            Self::Answer { prompt, choice } => format!("a:{prompt}:{choice}"),
            Self::Start { flow } => format!("f:{flow}"),
            Self::Control { action, run_id } => format!("{}:{run_id}", action.tag()),
        };
        let mac = key.sign(&[&chat.to_string(), &body], CALLBACK_MAC);
        let s = format!("{body}:{mac}");
        (s.len() <= MAX_CALLBACK).then_some(s)
    }

    /// The button pressed in `chat`, if its data was made for that chat by this key.
    pub fn decode(data: &str, chat: i64, key: &MacKey) -> Option<Self> {
        let (body, mac) = data.rsplit_once(':')?;
        if !key.verify(&[&chat.to_string(), body], mac, CALLBACK_MAC) {
            return None;
        }
        Self::parse(body)
    }

    fn parse(data: &str) -> Option<Self> {
        let (tag, rest) = data.split_once(':')?;
        Some(match tag {
            "a" => {
                let (p, c) = rest.split_once(':')?;
                Self::Answer {
                    prompt: p.parse().ok()?,
                    choice: c.parse().ok()?,
                }
            }
            "f" if !rest.is_empty() => Self::Start { flow: rest.into() },
            "p" | "u" | "c" if !rest.is_empty() => Self::Control {
                action: match tag {
                    "p" => Control::Pause,
                    "u" => Control::Resume,
                    _ => Control::Cancel,
                },
                run_id: rest.into(),
            },
            _ => return None,
        })
    }
}

/// A command typed in the chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Flows,
    Run {
        flow: String,
        rest: String,
    },
    Runs,
    Control {
        action: Control,
        target: Option<String>,
    },
    Pair {
        code: String,
    },
    Unknown(String),
}

/// Parses `/cmd[@bot] args`; None for text that is not a command.
pub fn parse_command(text: &str) -> Option<Command> {
    let text = text.trim();
    let body = text.strip_prefix('/')?;
    let (head, rest) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
    let name = head.split('@').next().unwrap_or(head).to_ascii_lowercase();
    let rest = rest.trim().to_owned();
    let target = (!rest.is_empty()).then(|| rest.clone());
    Some(match name.as_str() {
        "start" | "help" => Command::Help,
        "flows" => Command::Flows,
        "run" => {
            let (flow, rest) = rest.split_once(char::is_whitespace).unwrap_or((&rest, ""));
            Command::Run {
                flow: flow.to_owned(),
                rest: rest.trim().to_owned(),
            }
        }
        "runs" => Command::Runs,
        "pause" => Command::Control {
            action: Control::Pause,
            target,
        },
        "resume" => Command::Control {
            action: Control::Resume,
            target,
        },
        "cancel" => Command::Control {
            action: Control::Cancel,
            target,
        },
        "pair" => Command::Pair { code: rest },
        other => Command::Unknown(other.to_owned()),
    })
}

/// The input of `/run FLOW …`: a JSON object as is, other text as `{"text": …}`, nothing
/// as `{}`.
pub fn run_input(rest: &str) -> Value {
    let rest = rest.trim();
    if rest.is_empty() {
        return Value::Object(Default::default());
    }
    match serde_json::from_str::<Value>(rest) {
        Ok(v @ Value::Object(_)) => v,
        _ => serde_json::json!({ "text": rest }),
    }
}

/// Matches a typed reply to a prompt's choices: the choice itself (any case) or its number.
pub fn match_choice(choices: &[String], text: &str) -> Option<String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<usize>()
        && (1..=choices.len()).contains(&n)
    {
        return Some(choices[n - 1].clone());
    }
    choices.iter().find(|c| c.eq_ignore_ascii_case(t)).cloned()
}

pub const HELP: &str = "I connect this chat to Switchboard workflows.\n\n\
Send a message to talk to the default workflow, or answer the question a run asks.\n\
/flows: the workflows you can start\n\
/run FLOW [text or JSON]: start one\n\
/runs: this chat's runs\n\
/pause, /resume, /cancel [run]: control this chat's current run (or a chosen one)\n\
/pair CODE: pair your account with a gateway pairing code";

pub const REFUSAL: &str = "Sorry, this bot is private. If you have a pairing code from the \
gateway's owner, send /pair CODE.";

/// The prompt message once answered.
pub fn answered(prompt: &str, response: &str, by: &str) -> String {
    format!("{prompt}\n\n✅ {response} (answered by {by})")
}

/// A prompt that names its approvers says who may answer (and how many must agree).
pub fn with_approvers(prompt: &str, payload: &serde_json::Value) -> String {
    let names: Vec<&str> = payload["approvers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .collect();
    if names.is_empty() {
        return prompt.to_owned();
    }
    let quorum = payload["quorum"].as_u64().unwrap_or(1);
    format!(
        "{prompt}

👥 {quorum} of: {}",
        names.join(", ")
    )
}

/// The prompt message with the votes so far under it: `🗳 approve 1/2 · reject 0 — last:
/// alice (approve)`.
pub fn tallied(prompt: &str, vote: &serde_json::Value, by: &str) -> String {
    let quorum = vote["quorum"].as_u64().unwrap_or(1);
    let counts: Vec<String> = vote["tally"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(choice, n)| format!("{choice} {}/{quorum}", n.as_u64().unwrap_or(0)))
        .collect();
    let last = vote["vote"].as_str().unwrap_or("?");
    format!(
        "{prompt}

🗳 {} — last: {by} ({last})",
        counts.join(" · ")
    )
}

/// The prompt message when it was answered somewhere else before this tap or message.
pub fn answered_elsewhere(prompt: &str) -> String {
    format!("{prompt}\n\n☑️ Already answered elsewhere.")
}

/// The prompt message once its run ended without an answer.
pub fn prompt_closed(prompt: &str, status: &str) -> String {
    format!("{prompt}\n\n(the run is {status}; no answer needed)")
}

/// Who gave an answer, from the ledger record's actor (`name` is the Telegram user's name
/// when the answer came through this bridge).
pub fn answerer(channel: Option<&str>, name: Option<&str>) -> String {
    match (channel, name) {
        (_, Some(n)) => n.to_owned(),
        (Some(ch), None) => format!("someone via {ch}"),
        (None, None) => "someone else".into(),
    }
}

/// A short run id for messages.
pub fn short(run_id: &str) -> &str {
    run_id.get(..8).unwrap_or(run_id)
}

/// The brief report of a run's end; `output_text` is shown when the run showed nothing.
pub fn run_end(
    flow: &str,
    status: RunStatus,
    error: Option<&str>,
    output_text: Option<&str>,
) -> String {
    match status {
        RunStatus::Failed => format!("❌ {flow} failed: {}", error.unwrap_or("no reason given")),
        RunStatus::Cancelled => format!("⏹ {flow} was cancelled."),
        _ => match output_text {
            Some(t) if !t.is_empty() => format!("✅ {flow} finished: {t}"),
            _ => format!("✅ {flow} finished."),
        },
    }
}

/// A run's output as a line of text: its `text`/`answer`/`reply`/`decision` field, a string,
/// or compact JSON.
pub fn output_text(output: Option<&Value>) -> Option<String> {
    let o = output?;
    if let Some(s) = ["text", "answer", "reply", "decision"]
        .iter()
        .find_map(|k| o.get(k).and_then(Value::as_str))
    {
        return Some(s.to_owned());
    }
    match o {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Object(m) if m.is_empty() => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_split_at_the_limit_on_line_breaks() {
        let line = "x".repeat(1000);
        let text = [line.as_str(); 9].join("\n");
        let parts = split(&text, MAX_TEXT);
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_TEXT));
        assert_eq!(parts.concat(), text);
        assert!(parts[0].ends_with('\n'));
    }

    #[test]
    fn a_text_without_breaks_splits_on_characters_not_bytes() {
        let text = "é".repeat(10);
        let parts = split(&text, 4);
        assert_eq!(parts, vec!["éééé", "éééé", "éé"]);
        assert_eq!(split("", 4), vec![""]);
    }

    #[test]
    fn callback_data_round_trips_and_stays_within_64_bytes() {
        let key = MacKey::new(vec![7; 32]);
        let run = "14794dc7-4275-4554-a50c-ea4164b88182".to_owned();
        for cb in [
            Callback::Answer {
                prompt: 12,
                choice: 1,
            },
            Callback::Start {
                flow: "approval".into(),
            },
            Callback::Control {
                action: Control::Cancel,
                run_id: run,
            },
        ] {
            let data = cb.encode(-100123, &key).unwrap_or_default();
            assert!(data.len() <= MAX_CALLBACK, "{data}");
            assert_eq!(Callback::decode(&data, -100123, &key), Some(cb));
            // The same data pressed in another chat, or signed by another key, is nothing.
            assert_eq!(Callback::decode(&data, 42, &key), None);
            assert_eq!(
                Callback::decode(&data, -100123, &MacKey::new(vec![8; 32])),
                None
            );
        }
        assert_eq!(
            Callback::Start {
                flow: "f".repeat(50)
            }
            .encode(1, &key),
            None
        );
        // Forged data: unsigned, or a signature moved to other data.
        assert_eq!(Callback::decode("a:7:0", 1, &key), None);
        let signed = Callback::Answer {
            prompt: 7,
            choice: 0,
        }
        .encode(1, &key)
        .unwrap_or_default();
        let mac = signed.rsplit_once(':').map(|(_, m)| m).unwrap_or_default();
        assert_eq!(Callback::decode(&format!("a:8:0:{mac}"), 1, &key), None);
        assert_eq!(Callback::decode("zz", 1, &key), None);
    }

    #[test]
    fn commands_parse_with_arguments_and_bot_suffix() {
        assert_eq!(parse_command("hello"), None);
        assert_eq!(parse_command("/start"), Some(Command::Help));
        assert_eq!(
            parse_command("/run@sb_bot approval ship it"),
            Some(Command::Run {
                flow: "approval".into(),
                rest: "ship it".into()
            })
        );
        assert_eq!(
            parse_command("/cancel 1234"),
            Some(Command::Control {
                action: Control::Cancel,
                target: Some("1234".into())
            })
        );
        assert_eq!(
            parse_command("/pair AB-CD"),
            Some(Command::Pair {
                code: "AB-CD".into()
            })
        );
        assert_eq!(
            parse_command("/nope"),
            Some(Command::Unknown("nope".into()))
        );
    }

    #[test]
    fn run_input_takes_json_objects_or_text() {
        assert_eq!(run_input(""), serde_json::json!({}));
        assert_eq!(run_input("{\"a\": 1}"), serde_json::json!({"a": 1}));
        assert_eq!(run_input("ship it"), serde_json::json!({"text": "ship it"}));
        assert_eq!(run_input("[1]"), serde_json::json!({"text": "[1]"}));
    }

    #[test]
    fn typed_replies_match_choices_by_name_or_number() {
        let c = vec!["approve".to_owned(), "reject".to_owned()];
        assert_eq!(match_choice(&c, "2"), Some("reject".into()));
        assert_eq!(match_choice(&c, " Approve "), Some("approve".into()));
        assert_eq!(match_choice(&c, "3"), None);
        assert_eq!(match_choice(&c, "maybe"), None);
    }

    #[test]
    fn run_ends_are_brief_and_failures_say_why() {
        assert_eq!(
            run_end("x", RunStatus::Failed, Some("boom"), None),
            "❌ x failed: boom"
        );
        assert_eq!(
            run_end("x", RunStatus::Completed, None, Some("ok")),
            "✅ x finished: ok"
        );
        let out = serde_json::json!({"decision": "approve"});
        assert_eq!(output_text(Some(&out)), Some("approve".into()));
        assert_eq!(output_text(Some(&serde_json::json!({}))), None);
    }
}
