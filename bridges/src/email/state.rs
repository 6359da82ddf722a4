//! The email bridge's own state, in a small SQLite file (WAL, `synchronous=FULL`): the
//! IMAP mailbox's UIDVALIDITY and last UID handled, the gateway ledger cursor, which address
//! each run mails, the prompts sent (for reply tokens), the outbox of mail to send (one row
//! per mail, keyed so a record replayed after a crash enqueues nothing twice) and the
//! Message-IDs of replies already handled. It never talks to IMAP, SMTP or the gateway.

use protocol::RunStatus;
use rusqlite::{Connection, OptionalExtension, params};

use super::EmailError;

type Result<T> = std::result::Result<T, EmailError>;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT NOT NULL,
    address TEXT NOT NULL,
    flow TEXT NOT NULL,
    mode TEXT NOT NULL,
    thread_id TEXT,
    thread_subject TEXT,
    last_message_id TEXT,
    pending TEXT,
    status TEXT NOT NULL DEFAULT 'running',
    PRIMARY KEY (run_id, address)
);
CREATE TABLE IF NOT EXISTS prompts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    wait_key TEXT NOT NULL,
    address TEXT NOT NULL,
    question TEXT NOT NULL,
    choices TEXT NOT NULL,
    allow_free_text INTEGER NOT NULL,
    message_id TEXT,
    answered INTEGER NOT NULL DEFAULT 0,
    UNIQUE (run_id, wait_key, address)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    to_addr TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    message_id TEXT NOT NULL,
    in_reply_to TEXT,
    refs TEXT NOT NULL DEFAULT '[]',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL DEFAULT 0,
    sent_at TEXT,
    failed_at TEXT,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (sent_at, failed_at, next_at);
CREATE TABLE IF NOT EXISTS handled (
    message_id TEXT PRIMARY KEY,
    outcome TEXT NOT NULL,
    at TEXT NOT NULL
);
"#;

/// A mail to send. `key` makes enqueueing idempotent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OutMail {
    pub key: String,
    pub to: String,
    pub subject: String,
    pub body: String,
    /// Without angle brackets.
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
}

/// A queued mail with its delivery bookkeeping.
#[derive(Debug, Clone)]
pub struct Queued {
    pub id: i64,
    pub mail: OutMail,
    pub attempts: u32,
}

/// A run that mails an address.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailRun {
    pub run_id: String,
    pub address: String,
    pub flow: String,
    /// `all` or `asks_only`.
    pub mode: String,
    /// The Message-ID of the mail that started the run (its replies stay in that thread).
    pub thread_id: Option<String>,
    pub thread_subject: Option<String>,
    /// The Message-ID of the last mail the bridge sent about this run.
    pub last_message_id: Option<String>,
    /// What the run said since its last mail (sent with the next question or its end).
    pub pending: Option<String>,
}

impl EmailRun {
    /// A run newly bound to `address`: no thread yet, nothing sent or pending.
    pub fn new(run_id: &str, address: &str, flow: &str, mode: &str) -> Self {
        Self {
            run_id: run_id.into(),
            address: address.into(),
            flow: flow.into(),
            mode: mode.into(),
            thread_id: None,
            thread_subject: None,
            last_message_id: None,
            pending: None,
        }
    }
}

/// A question sent by mail.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub id: i64,
    pub run_id: String,
    pub wait_key: String,
    pub address: String,
    pub question: String,
    pub choices: Vec<String>,
    pub allow_free_text: bool,
    pub message_id: Option<String>,
    pub answered: bool,
}

/// Builds a prompt's mail once its id (and so its token) is known.
pub type ComposePrompt = Box<dyn FnOnce(i64) -> OutMail + Send>;

/// What one ledger record changes; applied with the cursor in one transaction.
pub enum Change {
    Bind(EmailRun),
    Prompt(Prompt, ComposePrompt),
    /// A reminder of the prompt on `wait_key` to `address`, if it is still unanswered
    /// there: the mail is built from that prompt (its id, so its reply token).
    Remind {
        run_id: String,
        wait_key: String,
        address: String,
        compose: ComposePrompt,
    },
    /// A mail about a run, to one of its addresses.
    Mail {
        run_id: String,
        address: String,
        mail: OutMail,
    },
    Answered {
        run_id: String,
        wait_key: Option<String>,
    },
    Status {
        run_id: String,
        status: RunStatus,
    },
    /// The run ended with `status`: nothing of it is waiting any more.
    Ended {
        run_id: String,
        status: RunStatus,
    },
    /// What the run said since its last mail to `address`.
    Pending {
        run_id: String,
        address: String,
        text: Option<String>,
    },
}

/// The email bridge's tables.
pub struct MailTables;

impl crate::db::Tables for MailTables {
    const SCHEMA: &'static str = SCHEMA;
    type Change = Change;
    type Error = EmailError;

    fn apply(c: &Connection, change: Change) -> Result<()> {
        apply(c, change)
    }
}

/// Handle to the state file; cheap to clone. Every call runs on the blocking pool.
pub type State = crate::db::State<MailTables>;

impl State {
    /// The addresses a run mails, one row each (in the order they were bound).
    pub async fn runs(&self, run_id: String) -> Result<Vec<EmailRun>> {
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT run_id, address, flow, mode, thread_id, thread_subject, last_message_id,
                        pending FROM runs WHERE run_id = ?1 ORDER BY rowid",
            )?;
            let rows = stmt.query_map([run_id], |r| {
                Ok(EmailRun {
                    run_id: r.get(0)?,
                    address: r.get(1)?,
                    flow: r.get(2)?,
                    mode: r.get(3)?,
                    thread_id: r.get(4)?,
                    thread_subject: r.get(5)?,
                    last_message_id: r.get(6)?,
                    pending: r.get(7)?,
                })
            })?;
            Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
        })
        .await
    }

    pub async fn prompt(&self, id: i64) -> Result<Option<Prompt>> {
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT id, run_id, wait_key, address, question, choices, allow_free_text,
                        message_id, answered FROM prompts WHERE id = ?1",
                [id],
                |r| {
                    let choices: String = r.get(5)?;
                    Ok(Prompt {
                        id: r.get(0)?,
                        run_id: r.get(1)?,
                        wait_key: r.get(2)?,
                        address: r.get(3)?,
                        question: r.get(4)?,
                        choices: serde_json::from_str(&choices).unwrap_or_default(),
                        allow_free_text: r.get(6)?,
                        message_id: r.get(7)?,
                        answered: r.get(8)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    /// How a reply with this Message-ID was handled before, if it was.
    pub async fn handled(&self, message_id: String) -> Result<Option<String>> {
        let sql = "SELECT outcome FROM handled WHERE message_id = ?1";
        Ok(self.value(sql, (message_id,)).await?)
    }

    /// Records how a mail was handled and enqueues the answer to it, together.
    pub async fn set_handled(
        &self,
        message_id: String,
        outcome: String,
        answer: Option<OutMail>,
    ) -> Result<()> {
        self.call(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT OR IGNORE INTO handled (message_id, outcome, at) VALUES (?1, ?2, ?3)",
                params![message_id, outcome, chrono::Utc::now().to_rfc3339()],
            )?;
            if let Some(m) = answer {
                enqueue(&tx, &m)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Mail due for sending at `now_ms`, oldest first.
    pub async fn due(&self, now_ms: i64, limit: u32) -> Result<Vec<Queued>> {
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, key, to_addr, subject, body, message_id, in_reply_to, refs, attempts
                 FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL AND next_at <= ?1
                 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![now_ms, limit], |r| {
                let refs: String = r.get(7)?;
                Ok(Queued {
                    id: r.get(0)?,
                    mail: OutMail {
                        key: r.get(1)?,
                        to: r.get(2)?,
                        subject: r.get(3)?,
                        body: r.get(4)?,
                        message_id: r.get(5)?,
                        in_reply_to: r.get(6)?,
                        references: serde_json::from_str(&refs).unwrap_or_default(),
                    },
                    attempts: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// When the next unsent mail is due (unix ms), if any.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        self.call(|c| {
            Ok(c.query_row(
                "SELECT MIN(next_at) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    pub async fn mark_sent(&self, id: i64) -> Result<()> {
        self.call(move |c| {
            c.execute(
                "UPDATE outbox SET sent_at = ?2, attempts = attempts + 1 WHERE id = ?1",
                params![id, chrono::Utc::now().to_rfc3339()],
            )?;
            Ok(())
        })
        .await
    }

    /// Records a failed attempt: retried at `next_at`, or given up when `None`.
    pub async fn mark_failed(&self, id: i64, error: String, next_at: Option<i64>) -> Result<()> {
        self.call(move |c| {
            let now = chrono::Utc::now().to_rfc3339();
            c.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?2,
                   next_at = COALESCE(?3, next_at),
                   failed_at = CASE WHEN ?3 IS NULL THEN ?4 ELSE NULL END
                 WHERE id = ?1",
                params![id, error, next_at, now],
            )?;
            Ok(())
        })
        .await
    }
}

fn enqueue(tx: &Connection, m: &OutMail) -> Result<bool> {
    let n = tx.execute(
        "INSERT OR IGNORE INTO outbox (key, to_addr, subject, body, message_id, in_reply_to, refs)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            m.key,
            m.to,
            m.subject,
            m.body,
            m.message_id,
            m.in_reply_to,
            serde_json::to_string(&m.references)?
        ],
    )?;
    Ok(n == 1)
}

fn set_last_message(tx: &Connection, run_id: &str, address: &str, id: &str) -> Result<()> {
    tx.execute(
        "UPDATE runs SET last_message_id = ?3 WHERE run_id = ?1 AND address = ?2",
        params![run_id, address, id],
    )?;
    Ok(())
}

fn apply(tx: &Connection, ch: Change) -> Result<()> {
    match ch {
        Change::Bind(r) => {
            tx.execute(
                "INSERT OR IGNORE INTO runs (run_id, address, flow, mode, thread_id, thread_subject, last_message_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?5)",
                params![r.run_id, r.address, r.flow, r.mode, r.thread_id, r.thread_subject],
            )?;
        }
        Change::Prompt(p, compose) => {
            let inserted = tx.execute(
                "INSERT OR IGNORE INTO prompts (run_id, wait_key, address, question, choices, allow_free_text)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    p.run_id,
                    p.wait_key,
                    p.address,
                    p.question,
                    serde_json::to_string(&p.choices)?,
                    p.allow_free_text
                ],
            )?;
            if inserted == 1 {
                let id = tx.last_insert_rowid();
                let mail = compose(id);
                tx.execute(
                    "UPDATE prompts SET message_id = ?2 WHERE id = ?1",
                    params![id, mail.message_id],
                )?;
                enqueue(tx, &mail)?;
                set_last_message(tx, &p.run_id, &p.address, &mail.message_id)?;
            }
        }
        Change::Remind {
            run_id,
            wait_key,
            address,
            compose,
        } => {
            let id: Option<i64> = tx
                .query_row(
                    "SELECT id FROM prompts WHERE run_id = ?1 AND wait_key = ?2 AND address = ?3 AND answered = 0",
                    params![run_id, wait_key, address],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(id) = id {
                enqueue(tx, &compose(id))?;
            }
        }
        Change::Mail {
            run_id,
            address,
            mail,
        } => {
            if enqueue(tx, &mail)? {
                set_last_message(tx, &run_id, &address, &mail.message_id)?;
            }
        }
        Change::Answered { run_id, wait_key } => {
            tx.execute(
                "UPDATE prompts SET answered = 1 WHERE run_id = ?1 AND (?2 IS NULL OR wait_key = ?2)",
                params![run_id, wait_key],
            )?;
        }
        Change::Pending {
            run_id,
            address,
            text,
        } => {
            tx.execute(
                "UPDATE runs SET pending = ?3 WHERE run_id = ?1 AND address = ?2",
                params![run_id, address, text],
            )?;
        }
        Change::Status { run_id, status } => {
            tx.execute(
                "UPDATE runs SET status = ?2 WHERE run_id = ?1",
                params![run_id, status.as_str()],
            )?;
        }
        Change::Ended { run_id, status } => {
            let wait_key = None;
            apply(
                tx,
                Change::Answered {
                    run_id: run_id.clone(),
                    wait_key,
                },
            )?;
            apply(tx, Change::Status { run_id, status })?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
