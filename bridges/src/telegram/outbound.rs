//! Gateway → Telegram: follows the global ledger stream from the cursor in the state file
//! and shows each chat's runs. A record's messages are sent first, then what it changed and
//! the cursor past it commit in one transaction: after a restart the bridge neither misses
//! a record nor repeats one (a crash between a send and its commit can repeat that one
//! record's messages; nothing else). LLM deltas are live only: they grow one message,
//! edited at most every `edit_every`, and the final reply record settles its text.
//! It never sends commands to the gateway.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use protocol::{LedgerRecord, LlmDelta, RecordStatus, RunStatus, StepEvent};
use serde_json::Value;

use super::state::{Change, ChatRun, ChatTables, Prompt};
use super::{BridgeError, Ctx, api, render};

/// A streamed LLM reply being shown.
struct Live {
    text: String,
    chats: Vec<i64>,
    messages: Vec<(i64, i32)>,
    last_edit: Instant,
}

struct Follower {
    ctx: Arc<Ctx>,
    live: HashMap<(String, String), Live>,
}

/// Follows the ledger forever, reconnecting with back-off when the stream or Telegram fails.
pub(crate) async fn follow(ctx: Arc<Ctx>) {
    let (client, state) = (ctx.client.clone(), ctx.state.clone());
    let mut f = Follower {
        ctx,
        live: HashMap::new(),
    };
    crate::reconnect::follow_ledger("telegram bridge: ledger follower", &client, &state, &mut f)
        .await
}

/// A record's messages are sent first; what it changed commits after.
impl crate::reconnect::LedgerFollower for Follower {
    type Tables = ChatTables;

    async fn on_record(&mut self, ev: &StepEvent) -> Result<Option<Vec<Change>>, BridgeError> {
        let r = &ev.record;
        if r.effect_kind() == "run_started" {
            return Ok(Some(self.bind(r).await?));
        }
        if r.effect_kind() == "escalate" {
            return Ok(Some(self.escalate(r).await?));
        }
        let chats = self.ctx.state.chat_runs(r.run_id.clone()).await?;
        if chats.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.show(r, &chats).await?))
    }

    async fn on_delta(&mut self, d: LlmDelta) -> Result<(), BridgeError> {
        self.delta(d).await
    }
}

impl Follower {
    /// A new run: binds it to the chats of its session, its `notify` list and its parent.
    async fn bind(&mut self, r: &LedgerRecord) -> Result<Vec<Change>, BridgeError> {
        let p = r.effect_payload();
        let flow = p["bundle_id"].as_str().unwrap_or("run").to_owned();
        let mut chats: Vec<(i64, bool)> = Vec::new();
        if let Some(c) = p["session_id"].as_str().and_then(chat_of) {
            chats.push((c, true));
        }
        for n in p["notify"].as_array().into_iter().flatten() {
            if let Some(c) = n.as_str().and_then(chat_of) {
                chats.push((c, false));
            }
        }
        if let Some(parent) = p["parent_run_id"].as_str() {
            for c in self.ctx.state.chat_runs(parent.to_owned()).await? {
                chats.push((c.chat_id, c.via_session));
            }
        }
        chats.sort_by_key(|c| (c.0, !c.1));
        chats.dedup_by_key(|c| c.0);
        let mut changes = Vec::new();
        for (chat, via_session) in chats {
            if !via_session {
                let text = format!("▶️ {flow} started (run {})", render::short(&r.run_id));
                self.send(chat, &text, None).await?;
            }
            changes.push(Change::Bind {
                run_id: r.run_id.clone(),
                chat_id: chat,
                flow: flow.clone(),
                via_session,
            });
        }
        Ok(changes)
    }

    /// Shows one record of a run bound to `chats`.
    async fn show(
        &mut self,
        r: &LedgerRecord,
        chats: &[ChatRun],
    ) -> Result<Vec<Change>, BridgeError> {
        let run = r.run_id.clone();
        let status = |status: RunStatus| Change::Status {
            run_id: run.clone(),
            status,
        };
        match (r.status, r.effect_kind()) {
            (RecordStatus::Completed, "say") => {
                let text = r.effect_payload()["text"].as_str().unwrap_or("");
                self.say(r, chats, text).await
            }
            (RecordStatus::Completed, "") if r.idempotency_key.is_some() => {
                // A turn that only called tools has no text to show.
                match r.result.as_ref().and_then(|v| v["text"].as_str()) {
                    Some(text) if !text.is_empty() => self.llm_reply(r, chats, text).await,
                    _ => Ok(Vec::new()),
                }
            }
            (RecordStatus::Completed, "") if protocol::ToolCall::of(r).is_some() => {
                let line = protocol::ToolCall::of(r)
                    .map(|c| c.line())
                    .unwrap_or_default();
                self.tool_line(r, chats, &line).await
            }
            (RecordStatus::Waiting, "ask") => self.ask(r, chats).await,
            (RecordStatus::Completed, "") if r.step_id.contains("/vote") => self.voted(r).await,
            (RecordStatus::Completed, "remind") => self.remind(r).await,
            (RecordStatus::Completed, "") => self.answered(r).await,
            (RecordStatus::Completed, "pause") => {
                self.notice(chats, "⏸", "paused").await?;
                Ok(vec![status(RunStatus::Paused)])
            }
            (RecordStatus::Completed, "resume") => {
                self.notice(chats, "▶️", "resumed").await?;
                Ok(vec![status(RunStatus::Running)])
            }
            _ if r.run_end().is_some() => self.ended(r, chats).await,
            _ => Ok(Vec::new()),
        }
    }

    async fn say(
        &mut self,
        r: &LedgerRecord,
        chats: &[ChatRun],
        text: &str,
    ) -> Result<Vec<Change>, BridgeError> {
        let mut changes = Vec::new();
        // A `say` that repeats the LLM reply just shown is not shown twice.
        let echo = chats.iter().any(|c| c.last_llm.as_deref() == Some(text));
        if echo || text.is_empty() {
            changes.push(Change::LastLlm {
                run_id: r.run_id.clone(),
                text: None,
            });
            return Ok(changes);
        }
        for c in chats {
            self.send(c.chat_id, text, None).await?;
            changes.push(Change::Shown {
                run_id: r.run_id.clone(),
                chat_id: c.chat_id,
            });
        }
        Ok(changes)
    }

    /// A tool call and its result, as one line (`🔧 add(2, 3) → 5`).
    async fn tool_line(
        &mut self,
        r: &LedgerRecord,
        chats: &[ChatRun],
        line: &str,
    ) -> Result<Vec<Change>, BridgeError> {
        let mut changes = Vec::new();
        for c in chats {
            self.send(c.chat_id, line, None).await?;
            changes.push(Change::Shown {
                run_id: r.run_id.clone(),
                chat_id: c.chat_id,
            });
        }
        Ok(changes)
    }

    async fn llm_reply(
        &mut self,
        r: &LedgerRecord,
        chats: &[ChatRun],
        text: &str,
    ) -> Result<Vec<Change>, BridgeError> {
        let live = self.live.remove(&(r.run_id.clone(), r.step_id.clone()));
        let mut changes = Vec::new();
        for c in chats {
            let streamed = match live
                .as_ref()
                .and_then(|l| l.messages.iter().find(|m| m.0 == c.chat_id))
            {
                Some(m) => Some(m.1),
                None => {
                    let s = &self.ctx.state;
                    s.stream_message(r.run_id.clone(), r.step_id.clone(), c.chat_id)
                        .await?
                }
            };
            match streamed {
                Some(msg) => {
                    let parts = render::split(text, render::MAX_TEXT);
                    api::edit(&self.ctx.bot, c.chat_id, msg, &parts[0], None).await?;
                    for part in &parts[1..] {
                        self.send(c.chat_id, part, None).await?;
                    }
                }
                None => {
                    self.send(c.chat_id, text, None).await?;
                }
            }
            changes.push(Change::Shown {
                run_id: r.run_id.clone(),
                chat_id: c.chat_id,
            });
        }
        changes.push(Change::LastLlm {
            run_id: r.run_id.clone(),
            text: Some(text.to_owned()),
        });
        changes.push(Change::StreamDone {
            run_id: r.run_id.clone(),
            step_id: r.step_id.clone(),
        });
        Ok(changes)
    }

    /// An `ask`: a prompt with a button per choice. A free-text question without choices
    /// that follows something the run showed (a chat's "Your message?") is not shown: the
    /// next message answers it.
    async fn ask(
        &mut self,
        r: &LedgerRecord,
        chats: &[ChatRun],
    ) -> Result<Vec<Change>, BridgeError> {
        let Some(q) = r.question() else {
            return Ok(Vec::new());
        };
        let (choices, allow_free_text, wait_key) = (q.choices, q.allow_free_text, q.wait_key);
        let text = q.prompt.unwrap_or_else(|| "Your answer?".into());
        let text = render::with_approvers(&text, r.effect_payload());
        let mut changes = vec![Change::Status {
            run_id: r.run_id.clone(),
            status: RunStatus::Waiting,
        }];
        for c in chats {
            let prompt = Prompt {
                id: 0,
                run_id: r.run_id.clone(),
                wait_key: wait_key.clone(),
                chat_id: c.chat_id,
                message_id: None,
                text: text.clone(),
                choices: choices.clone(),
                allow_free_text,
                answered: false,
            };
            let id = self.ctx.state.add_prompt(prompt).await?;
            if choices.is_empty() && c.shown {
                continue;
            }
            let buttons = self.buttons(id, c.chat_id, &choices);
            let msg = self.send(c.chat_id, &text, api::keyboard(buttons)).await?;
            changes.push(Change::PromptSent {
                id,
                message_id: msg,
            });
        }
        Ok(changes)
    }

    /// A button per choice, its data MACed for `chat`.
    fn buttons(&self, prompt: i64, chat: i64, choices: &[String]) -> Vec<(String, String)> {
        choices
            .iter()
            .enumerate()
            .filter_map(|(i, label)| {
                let data =
                    render::Callback::Answer { prompt, choice: i }.encode(chat, &self.ctx.key)?;
                Some((label.clone(), data))
            })
            .collect()
    }

    /// An escalation: the chats it names (users this bridge allows) get the run and its
    /// prompt, with buttons.
    async fn escalate(&mut self, r: &LedgerRecord) -> Result<Vec<Change>, BridgeError> {
        let p = r.effect_payload();
        let bound: Vec<i64> = self
            .ctx
            .state
            .chat_runs(r.run_id.clone())
            .await?
            .iter()
            .map(|c| c.chat_id)
            .collect();
        let mut chats = Vec::new();
        for chat in p["notify"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().and_then(chat_of))
        {
            if chat > 0 && !bound.contains(&chat) && self.ctx.allowed(chat as u64).await? {
                chats.push(ChatRun {
                    run_id: r.run_id.clone(),
                    chat_id: chat,
                    flow: "run".into(),
                    status: RunStatus::Waiting.as_str().into(),
                    via_session: false,
                    shown: false,
                    last_llm: None,
                });
            }
        }
        let mut changes: Vec<Change> = chats
            .iter()
            .map(|c| Change::Bind {
                run_id: c.run_id.clone(),
                chat_id: c.chat_id,
                flow: c.flow.clone(),
                via_session: false,
            })
            .collect();
        if chats.is_empty() {
            return Ok(changes);
        }
        // The prompt, as its `ask` record showed it elsewhere.
        let mut ask = r.clone();
        ask.status = RecordStatus::Waiting;
        ask.step_id = p["wait_key"].as_str().unwrap_or_default().to_owned();
        ask.effect = Some(protocol::Effect {
            kind: "ask".into(),
            payload: serde_json::json!({
                "wait_key": p["wait_key"], "prompt": format!("⏫ {}", p["prompt"].as_str().unwrap_or_default()),
                "choices": p["choices"], "allow_free_text": false,
                "approvers": p["approvers"], "quorum": p["quorum"],
            }),
        });
        changes.extend(self.ask(&ask, &chats).await?);
        Ok(changes)
    }

    /// A reminder: the unanswered prompt again, with its buttons, in each of its chats.
    async fn remind(&mut self, r: &LedgerRecord) -> Result<Vec<Change>, BridgeError> {
        let wait_key = r.effect_payload()["wait_key"].as_str().unwrap_or_default();
        let prompts = self
            .ctx
            .state
            .prompts_of(r.run_id.clone(), Some(wait_key.to_owned()))
            .await?;
        for p in prompts
            .iter()
            .filter(|p| !p.answered && p.message_id.is_some())
        {
            let text = format!("⏰ Reminder: {}", p.text);
            let kb = api::keyboard(self.buttons(p.id, p.chat_id, &p.choices));
            self.send(p.chat_id, &text, kb).await?;
        }
        Ok(Vec::new())
    }

    /// A vote on a team prompt: the prompt shows the tally under it and keeps its buttons.
    async fn voted(&mut self, r: &LedgerRecord) -> Result<Vec<Change>, BridgeError> {
        let Some(vote) = r.result.as_ref().filter(|v| v.get("vote").is_some()) else {
            return Ok(Vec::new());
        };
        let wait_key = r.step_id.rsplit_once("/vote").map_or("", |(k, _)| k);
        let who = self.answerer(r).await?;
        let prompts = self
            .ctx
            .state
            .prompts_of(r.run_id.clone(), Some(wait_key.to_owned()))
            .await?;
        for p in prompts.iter().filter(|p| !p.answered) {
            if let Some(msg) = p.message_id {
                let text = render::tallied(&p.text, vote, &who);
                let kb = api::keyboard(self.buttons(p.id, p.chat_id, &p.choices));
                api::edit(&self.ctx.bot, p.chat_id, msg, &text, kb).await?;
            }
        }
        Ok(Vec::new())
    }

    /// An answer to a prompt (from any channel): the prompt shows it and who gave it.
    async fn answered(&mut self, r: &LedgerRecord) -> Result<Vec<Change>, BridgeError> {
        let Some(response) = r.result.as_ref().and_then(|v| v.get("response")) else {
            return Ok(Vec::new());
        };
        let response = match response {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let who = self.answerer(r).await?;
        let prompts = self
            .ctx
            .state
            .prompts_of(r.run_id.clone(), Some(r.step_id.clone()))
            .await?;
        for p in &prompts {
            if let Some(msg) = p.message_id {
                let text = render::answered(&p.text, &response, &who);
                api::edit(&self.ctx.bot, p.chat_id, msg, &text, None).await?;
            }
        }
        Ok(vec![
            Change::Answered {
                run_id: r.run_id.clone(),
                wait_key: Some(r.step_id.clone()),
            },
            Change::Status {
                run_id: r.run_id.clone(),
                status: RunStatus::Running,
            },
        ])
    }

    async fn answerer(&self, r: &LedgerRecord) -> Result<String, BridgeError> {
        let user = r
            .actor
            .client_id
            .as_deref()
            .and_then(|c| c.strip_prefix("telegram:"))
            .and_then(|u| u.parse::<u64>().ok());
        let name = match (r.actor.channel.as_deref(), user) {
            (Some("telegram"), Some(u)) => {
                self.ctx.state.user_name(u).await?.filter(|n| !n.is_empty())
            }
            _ => None,
        };
        Ok(render::answerer(
            r.actor.channel.as_deref(),
            name.as_deref(),
        ))
    }

    async fn ended(
        &mut self,
        r: &LedgerRecord,
        chats: &[ChatRun],
    ) -> Result<Vec<Change>, BridgeError> {
        let status = r.run_end().unwrap_or(RunStatus::Completed);
        for p in self.ctx.state.prompts_of(r.run_id.clone(), None).await? {
            if let Some(msg) = p.message_id {
                let text = render::prompt_closed(&p.text, status.as_str());
                api::edit(&self.ctx.bot, p.chat_id, msg, &text, None).await?;
            }
        }
        let error = r.error.as_deref();
        for c in chats {
            let out = if c.shown {
                None
            } else {
                render::output_text(r.result.as_ref())
            };
            let text = render::run_end(&c.flow, status, error, out.as_deref());
            self.send(c.chat_id, &text, None).await?;
        }
        let run_id = r.run_id.clone();
        Ok(vec![Change::Ended { run_id, status }])
    }

    async fn notice(
        &mut self,
        chats: &[ChatRun],
        icon: &str,
        what: &str,
    ) -> Result<(), BridgeError> {
        for c in chats {
            let text = format!(
                "{icon} {} {what} (run {})",
                c.flow,
                render::short(&c.run_id)
            );
            self.send(c.chat_id, &text, None).await?;
        }
        Ok(())
    }

    /// A live LLM token: grows one message per chat, edited at most every `edit_every`.
    async fn delta(&mut self, d: LlmDelta) -> Result<(), BridgeError> {
        let key = (d.run_id.clone(), d.step_id.clone());
        if !self.live.contains_key(&key) {
            let chats = self.ctx.state.chat_runs(d.run_id.clone()).await?;
            let live = Live {
                text: String::new(),
                chats: chats.iter().map(|c| c.chat_id).collect(),
                messages: Vec::new(),
                last_edit: Instant::now(),
            };
            self.live.insert(key.clone(), live);
        }
        let every = self.ctx.cfg.edit_every;
        let Some(live) = self.live.get_mut(&key) else {
            return Ok(());
        };
        if live.chats.is_empty() {
            return Ok(());
        }
        live.text.push_str(&d.delta);
        let shown: String = format!("{} …", live.text.trim_end())
            .chars()
            .take(render::MAX_TEXT)
            .collect();
        if live.messages.is_empty() {
            for chat in live.chats.clone() {
                let msg = api::send(&self.ctx.bot, chat, &shown, None).await?;
                live.messages.push((chat, msg));
                let s = &self.ctx.state;
                s.set_stream_message(d.run_id.clone(), d.step_id.clone(), chat, msg)
                    .await?;
            }
            live.last_edit = Instant::now();
        } else if live.last_edit.elapsed() >= every {
            for (chat, msg) in live.messages.clone() {
                api::edit(&self.ctx.bot, chat, msg, &shown, None).await?;
            }
            live.last_edit = Instant::now();
        }
        Ok(())
    }

    /// Sends a message; a permanent refusal (blocked bot, unknown chat) is logged and
    /// skipped so one chat cannot stall the others.
    async fn send(
        &self,
        chat: i64,
        text: &str,
        kb: Option<teloxide::types::InlineKeyboardMarkup>,
    ) -> Result<i32, BridgeError> {
        match api::send(&self.ctx.bot, chat, text, kb).await {
            Ok(id) => Ok(id),
            Err(e) if api::is_permanent(&e) => {
                tracing::warn!(chat, error = %e, "telegram refused a message; skipped");
                Ok(0)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The chat id of `telegram:<chat_id>`.
fn chat_of(s: &str) -> Option<i64> {
    s.strip_prefix("telegram:")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::chat_of;

    #[test]
    fn channels_name_telegram_chats() {
        assert_eq!(chat_of("telegram:-1001"), Some(-1001));
        assert_eq!(chat_of("telegram:42"), Some(42));
        assert_eq!(chat_of("email:a@b"), None);
        assert_eq!(chat_of("telegram:x"), None);
    }
}
