//! Gateway → mail: follows the global ledger stream from the cursor in the state file and
//! turns the records of runs bound to an address into outbox rows. A run is bound by
//! `notify: ["email:<addr>"]` (optionally `email:<addr>?all` or `?asks_only`), by its
//! session `email:<addr>` (started by mail: it answers in that mail's thread and mails
//! everything), or through its parent. Each `ask` becomes a prompt mail with a signed reply
//! token; with mode `all`, what the run says rides along with its next question or end.
//! A record's outbox rows, state changes and the cursor past it commit in one transaction,
//! so a restart neither loses nor repeats a mail. It never sends mail or commands.

use std::sync::Arc;

use protocol::{LedgerRecord, RecordStatus, RunStatus, StepEvent};
use serde_json::Value;

use super::state::{Change, EmailRun, MailTables, Prompt};
use super::{Ctx, EmailError, Mode, compose, inbound};

struct Follower {
    ctx: Arc<Ctx>,
}

/// Follows the ledger forever, reconnecting with back-off when the stream fails.
pub(crate) async fn follow(ctx: Arc<Ctx>) {
    let (client, state) = (ctx.client.clone(), ctx.state.clone());
    let mut f = Follower { ctx };
    crate::reconnect::follow_ledger("email bridge: ledger follower", &client, &state, &mut f).await
}

/// A record's mails are outbox rows, committed with the cursor; the sender is woken after.
impl crate::reconnect::LedgerFollower for Follower {
    type Tables = MailTables;

    async fn on_record(&mut self, ev: &StepEvent) -> Result<Option<Vec<Change>>, EmailError> {
        let r = &ev.record;
        let changes: Vec<Change> = if r.effect_kind() == "run_started" {
            self.bind(r).await?
        } else if r.effect_kind() == "escalate" {
            self.escalate(r).await?
        } else {
            let runs = self.ctx.state.runs(r.run_id.clone()).await?;
            let mut changes = Vec::new();
            for run in runs {
                let link = self.answer_link(r, &run).await;
                changes.extend(self.show(r, run, link));
            }
            changes
        };
        Ok((!changes.is_empty()).then_some(changes))
    }

    fn committed(&mut self) {
        self.ctx.outbox.notify_one();
    }
}

impl Follower {
    /// A new run: binds it to each address of its `notify`, to the address of its session
    /// (a run started by mail), or to its parent's addresses.
    async fn bind(&self, r: &LedgerRecord) -> Result<Vec<Change>, EmailError> {
        let p = r.effect_payload();
        let flow = p["bundle_id"].as_str().unwrap_or("run").to_owned();
        let base = EmailRun::new(&r.run_id, "", &flow, self.ctx.cfg.mode_of(&flow).as_str());
        let mut runs: Vec<EmailRun> = Vec::new();
        let notified = p["notify"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        for (address, mode) in notified.filter_map(address_of) {
            if runs.iter().any(|r| r.address == address) {
                continue;
            }
            let mode = mode
                .map(|m| m.as_str().to_owned())
                .unwrap_or_else(|| base.mode.clone());
            runs.push(EmailRun {
                address,
                mode,
                ..base.clone()
            });
        }
        let session = p["session_id"]
            .as_str()
            .and_then(|s| s.strip_prefix("email:"));
        if let Some(address) = session
            .filter(|a| a.contains('@'))
            .map(str::to_ascii_lowercase)
            && !runs.iter().any(|r| r.address == address)
        {
            let (thread_id, thread_subject) = match self.thread(&r.run_id, &address).await? {
                Some((id, subject)) => (Some(id), Some(subject)),
                None => (None, None),
            };
            let mode = Mode::All.as_str().into();
            runs.push(EmailRun {
                address,
                mode,
                thread_id,
                thread_subject,
                ..base.clone()
            });
        }
        if runs.is_empty()
            && let Some(parent) = p["parent_run_id"].as_str()
        {
            for pr in self.ctx.state.runs(parent.to_owned()).await? {
                runs.push(EmailRun {
                    address: pr.address,
                    mode: pr.mode,
                    thread_id: pr.thread_id,
                    thread_subject: pr.thread_subject,
                    ..base.clone()
                });
            }
        }
        Ok(runs.into_iter().map(Change::Bind).collect())
    }

    /// The mail that started a run (from its input), if this bridge started it by mail
    /// from `address`.
    async fn thread(
        &self,
        run_id: &str,
        address: &str,
    ) -> Result<Option<(String, String)>, EmailError> {
        match self.ctx.client.input_data(run_id).await {
            Ok(v) => Ok(inbound::thread_of(&v.input_data, &self.ctx.signer, address)),
            Err(e) if e.is_transient() => Err(e.into()),
            Err(e) => {
                tracing::warn!(run = run_id, error = %e, "cannot read a run's input");
                Ok(None)
            }
        }
    }

    /// An escalation: the addresses it names (ones this bridge may mail) get the run and
    /// its prompt.
    async fn escalate(&self, r: &LedgerRecord) -> Result<Vec<Change>, EmailError> {
        let p = r.effect_payload();
        let existing = self.ctx.state.runs(r.run_id.clone()).await?;
        let base = existing.first().cloned().unwrap_or_else(|| {
            EmailRun::new(&r.run_id, "", "run", self.ctx.cfg.mode_of("run").as_str())
        });
        let notified = p["notify"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        let mut ask = r.clone();
        ask.status = RecordStatus::Waiting;
        ask.step_id = p["wait_key"].as_str().unwrap_or_default().to_owned();
        ask.effect = Some(protocol::Effect {
            kind: "ask".into(),
            payload: serde_json::json!({
                "wait_key": p["wait_key"], "prompt": p["prompt"], "choices": p["choices"],
                "allow_free_text": false,
            }),
        });
        let mut changes = Vec::new();
        for (address, _) in notified.filter_map(address_of) {
            if existing.iter().any(|e| e.address == address)
                || !self.ctx.cfg.sender_allowed(&address)
            {
                continue;
            }
            let run = EmailRun {
                address,
                thread_id: None,
                thread_subject: None,
                last_message_id: None,
                pending: None,
                ..base.clone()
            };
            changes.push(Change::Bind(run.clone()));
            let link = self.answer_link(&ask, &run).await;
            changes.extend(self.ask(&ask, run, link));
        }
        Ok(changes)
    }

    /// A one-click answer link for a prompt with choices (when the gateway has a public
    /// URL to send people to); the prompt goes without one if it cannot be made.
    async fn answer_link(&self, r: &LedgerRecord, run: &EmailRun) -> Option<String> {
        self.ctx.style.public_url.as_ref()?;
        let q = r
            .question()
            .filter(|q| !q.choices.is_empty() && r.status == RecordStatus::Waiting)?;
        let req = protocol::LinkRequest {
            run_id: r.run_id.clone(),
            wait_key: q.wait_key,
            recipient: format!("email:{}", run.address),
            ttl_secs: None,
        };
        match self.ctx.client.answer_link(&req).await {
            Ok(l) => Some(l.token),
            Err(e) => {
                tracing::warn!(error = %e, "email: no one-click link for this prompt");
                None
            }
        }
    }

    /// What one record of a bound run changes.
    fn show(&self, r: &LedgerRecord, run: EmailRun, link: Option<String>) -> Vec<Change> {
        let all = run.mode == Mode::All.as_str();
        let run_id = r.run_id.clone();
        match (r.status, r.effect_kind()) {
            (RecordStatus::Completed, "say") if all => {
                let text = r.effect_payload()["text"]
                    .as_str()
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                if text.is_empty() {
                    return Vec::new();
                }
                let joined = match &run.pending {
                    Some(p) => format!("{p}\n\n{text}"),
                    None => text,
                };
                vec![Change::Pending {
                    run_id,
                    address: run.address.clone(),
                    text: Some(joined),
                }]
            }
            (RecordStatus::Waiting, "ask") => self.ask(r, run, link),
            (RecordStatus::Completed, "remind") => self.remind(r, run),
            (RecordStatus::Waiting, _) => match &run.pending {
                Some(text) => {
                    let key = format!("say:{}:{}:{}", run.run_id, r.seq, run.address);
                    let mail = compose::say(&self.ctx.style, &run, &key, text);
                    let address = run.address.clone();
                    vec![
                        Change::Mail {
                            run_id: run_id.clone(),
                            address: address.clone(),
                            mail,
                        },
                        Change::Pending {
                            run_id,
                            address,
                            text: None,
                        },
                    ]
                }
                None => Vec::new(),
            },
            (RecordStatus::Completed, "") if answer_of(r) => vec![
                Change::Answered {
                    run_id: run_id.clone(),
                    wait_key: Some(r.step_id.clone()),
                },
                Change::Status {
                    run_id,
                    status: RunStatus::Running,
                },
            ],
            _ if r.run_end().is_some() => self.ended(r, run, all),
            _ => Vec::new(),
        }
    }

    fn ask(&self, r: &LedgerRecord, run: EmailRun, link: Option<String>) -> Vec<Change> {
        let Some(q) = r.question() else {
            return Vec::new();
        };
        let prompt = Prompt {
            id: 0,
            run_id: r.run_id.clone(),
            wait_key: q.wait_key,
            address: run.address.clone(),
            question: q.prompt.unwrap_or_else(|| "Your answer?".into()),
            allow_free_text: q.allow_free_text,
            choices: q.choices,
            message_id: None,
            answered: false,
        };
        let (style, signer) = (self.ctx.style.clone(), self.ctx.signer.clone());
        let asked = prompt.clone();
        let snapshot = run.clone();
        let compose = Box::new(move |id: i64| {
            let p = Prompt { id, ..asked };
            let t = signer.token(id, &p.run_id, &p.wait_key);
            let mut mail = compose::prompt(&style, &snapshot, &p, &t);
            if let Some(links) = link.and_then(|l| compose::answer_links(&style, &l, &p.choices)) {
                mail.body = format!("{}\n{links}", mail.body);
            }
            if let Some(said) = &snapshot.pending {
                mail.body = format!("{said}\n\n{}", mail.body);
            }
            mail
        });
        vec![
            Change::Prompt(prompt, compose),
            Change::Pending {
                run_id: r.run_id.clone(),
                address: run.address.clone(),
                text: None,
            },
            Change::Status {
                run_id: r.run_id.clone(),
                status: RunStatus::Waiting,
            },
        ]
    }

    /// A reminder of a prompt still unanswered: the prompt's mail again (same reply
    /// token), marked as a reminder, in the prompt's thread.
    fn remind(&self, r: &LedgerRecord, run: EmailRun) -> Vec<Change> {
        let p = r.effect_payload();
        let n = p["reminder"].as_u64().unwrap_or(1);
        let prompt = Prompt {
            id: 0,
            run_id: r.run_id.clone(),
            wait_key: p["wait_key"].as_str().unwrap_or_default().to_owned(),
            address: run.address.clone(),
            question: p["prompt"].as_str().unwrap_or("Your answer?").to_owned(),
            allow_free_text: false,
            choices: p["choices"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect(),
            message_id: None,
            answered: false,
        };
        let (style, signer) = (self.ctx.style.clone(), self.ctx.signer.clone());
        let snapshot = run.clone();
        let wait_key = prompt.wait_key.clone();
        let compose = Box::new(move |id: i64| {
            let p = Prompt { id, ..prompt };
            let t = signer.token(id, &p.run_id, &p.wait_key);
            compose::reminder(&style, &snapshot, &p, &t, n)
        });
        vec![Change::Remind {
            run_id: r.run_id.clone(),
            wait_key,
            address: run.address,
            compose,
        }]
    }

    fn ended(&self, r: &LedgerRecord, run: EmailRun, all: bool) -> Vec<Change> {
        let status = r.run_end().unwrap_or(RunStatus::Completed);
        let run_id = r.run_id.clone();
        let mut changes = vec![Change::Ended { run_id, status }];
        if all {
            let output = match &run.pending {
                Some(said) => Some(said.clone()),
                None => output_text(r.result.as_ref()),
            };
            let mail = compose::ended(
                &self.ctx.style,
                &run,
                status,
                r.error.as_deref(),
                output.as_deref(),
            );
            changes.push(Change::Mail {
                run_id: r.run_id.clone(),
                address: run.address.clone(),
                mail,
            });
            changes.push(Change::Pending {
                run_id: r.run_id.clone(),
                address: run.address.clone(),
                text: None,
            });
        }
        changes
    }
}

fn answer_of(r: &LedgerRecord) -> bool {
    r.result
        .as_ref()
        .is_some_and(|v| v.get("response").is_some())
}

/// `email:alice@x` or `email:alice@x?all` → (address, mode).
fn address_of(target: &str) -> Option<(String, Option<Mode>)> {
    let rest = target.strip_prefix("email:")?;
    let (address, mode) = match rest.split_once('?') {
        Some((a, m)) => (a, Mode::parse(m)),
        None => (rest, None),
    };
    address
        .contains('@')
        .then(|| (address.trim().to_ascii_lowercase(), mode))
}

/// A run's output as text: an object's fields one per line, a string as it is.
fn output_text(out: Option<&Value>) -> Option<String> {
    match out? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Object(m) if !m.is_empty() => Some(
            m.iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}: {s}"),
                    other => format!("{k}: {other}"),
                })
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn notify_targets_name_an_address_and_maybe_a_mode() {
        assert_eq!(
            address_of("email:Alice@Example.test"),
            Some(("alice@example.test".into(), None))
        );
        assert_eq!(
            address_of("email:a@x?all"),
            Some(("a@x".into(), Some(Mode::All)))
        );
        assert_eq!(address_of("telegram:42"), None);
        assert_eq!(address_of("email:nobody"), None);
    }

    #[test]
    fn outputs_read_as_lines() {
        let out = json!({"decision": "approve", "n": 2});
        assert_eq!(
            output_text(Some(&out)).as_deref(),
            Some("decision: approve\nn: 2")
        );
        assert_eq!(output_text(Some(&Value::Null)), None);
        assert_eq!(output_text(Some(&json!("done"))).as_deref(), Some("done"));
    }
}
