//! The Telegram bridge's own state, in a small SQLite file (WAL, `synchronous=FULL`): the
//! Telegram update offset, the gateway ledger cursor, who may use the bot, which chats each
//! run is shown in, the prompts sent (for buttons and edits) and the messages that show a
//! streamed LLM reply growing. It never talks to Telegram or the gateway.

use protocol::RunStatus;
use rusqlite::{Connection, OptionalExtension, params};

use super::BridgeError;

type Result<T> = std::result::Result<T, BridgeError>;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    user_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    paired_at TEXT,
    refused_at TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT NOT NULL,
    chat_id INTEGER NOT NULL,
    flow TEXT NOT NULL,
    status TEXT NOT NULL,
    via_session INTEGER NOT NULL,
    shown INTEGER NOT NULL DEFAULT 0,
    last_llm TEXT,
    PRIMARY KEY (run_id, chat_id)
);
CREATE INDEX IF NOT EXISTS runs_by_chat ON runs (chat_id, status);
CREATE TABLE IF NOT EXISTS prompts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    wait_key TEXT NOT NULL,
    chat_id INTEGER NOT NULL,
    message_id INTEGER,
    text TEXT NOT NULL,
    choices TEXT NOT NULL,
    allow_free_text INTEGER NOT NULL,
    answered INTEGER NOT NULL DEFAULT 0,
    UNIQUE (run_id, wait_key, chat_id)
);
CREATE TABLE IF NOT EXISTS streams (
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    chat_id INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    PRIMARY KEY (run_id, step_id, chat_id)
);
"#;

/// A question a run asked, as sent to one chat.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub id: i64,
    pub run_id: String,
    pub wait_key: String,
    pub chat_id: i64,
    pub message_id: Option<i32>,
    pub text: String,
    pub choices: Vec<String>,
    pub allow_free_text: bool,
    pub answered: bool,
}

/// A run as one chat sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRun {
    pub run_id: String,
    pub chat_id: i64,
    pub flow: String,
    pub status: String,
    /// Bound through the chat's session (started from the chat), not only by `notify`.
    pub via_session: bool,
    /// Whether a message of this run was shown in the chat.
    pub shown: bool,
    pub last_llm: Option<String>,
}

/// The Telegram bridge's tables.
pub struct ChatTables;

impl crate::db::Tables for ChatTables {
    const SCHEMA: &'static str = SCHEMA;
    type Change = Change;
    type Error = BridgeError;

    fn apply(c: &Connection, change: Change) -> Result<()> {
        apply(c, change)?;
        Ok(())
    }
}

/// Handle to the state file; cheap to clone. Every call runs on the blocking pool.
pub type State = crate::db::State<ChatTables>;

impl State {
    /// Whether the user may use the bot: allowlisted by config, or paired.
    pub async fn is_paired(&self, user_id: u64) -> Result<bool> {
        let sql = "SELECT paired_at IS NOT NULL FROM users WHERE user_id = ?1";
        Ok(self.value(sql, (user_id as i64,)).await?.unwrap_or(false))
    }

    /// Every paired user's id.
    pub async fn paired_users(&self) -> Result<Vec<u64>> {
        self.call(|c| {
            let mut st = c.prepare("SELECT user_id FROM users WHERE paired_at IS NOT NULL")?;
            let ids = st
                .query_map([], |r| r.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(ids.into_iter().map(|i| i as u64).collect())
        })
        .await
    }

    pub async fn set_paired(&self, user_id: u64, name: String) -> Result<()> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO users (user_id, name, paired_at) VALUES (?1, ?2, datetime('now'))
                 ON CONFLICT (user_id) DO UPDATE SET name = ?2, paired_at = datetime('now')",
                params![user_id as i64, name],
            )?;
            Ok(())
        })
        .await
    }

    /// Remembers a user's display name (shown as who answered a prompt).
    pub async fn remember_user(&self, user_id: u64, name: String) -> Result<()> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO users (user_id, name) VALUES (?1, ?2)
                 ON CONFLICT (user_id) DO UPDATE SET name = ?2",
                params![user_id as i64, name],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn user_name(&self, user_id: u64) -> Result<Option<String>> {
        let sql = "SELECT name FROM users WHERE user_id = ?1";
        Ok(self.value(sql, (user_id as i64,)).await?)
    }

    /// Records a refusal; true only the first time (so a stranger is told once).
    pub async fn first_refusal(&self, user_id: u64) -> Result<bool> {
        self.call(move |c| {
            let n = c.execute(
                "INSERT INTO users (user_id, refused_at) VALUES (?1, datetime('now'))
                 ON CONFLICT (user_id) DO UPDATE SET refused_at = datetime('now')
                 WHERE refused_at IS NULL",
                [user_id as i64],
            )?;
            Ok(n == 1)
        })
        .await
    }

    pub async fn chat_runs(&self, run_id: String) -> Result<Vec<ChatRun>> {
        self.call(move |c| {
            let mut st = c.prepare_cached(&format!("{RUN_COLS} WHERE run_id = ?1"))?;
            let rows = st.query_map([run_id], chat_run)?;
            Ok(rows.collect::<std::result::Result<_, _>>()?)
        })
        .await
    }

    /// The chat's runs that have not ended, newest first.
    pub async fn active_runs(&self, chat_id: i64) -> Result<Vec<ChatRun>> {
        self.call(move |c| {
            let mut st = c.prepare_cached(&format!(
                "{RUN_COLS} WHERE chat_id = ?1 AND status NOT IN ('completed','failed','cancelled')
                 ORDER BY rowid DESC"
            ))?;
            let rows = st.query_map([chat_id], chat_run)?;
            Ok(rows.collect::<std::result::Result<_, _>>()?)
        })
        .await
    }

    pub async fn prompt(&self, id: i64) -> Result<Option<Prompt>> {
        self.call(move |c| {
            Ok(
                c.query_row(&format!("{PROMPT_COLS} WHERE id = ?1"), [id], prompt_row)
                    .optional()?,
            )
        })
        .await
    }

    /// The newest unanswered prompt of a chat (what a free-text message answers).
    pub async fn open_prompt(&self, chat_id: i64) -> Result<Option<Prompt>> {
        self.call(move |c| {
            Ok(c.query_row(
                &format!(
                    "{PROMPT_COLS} WHERE chat_id = ?1 AND answered = 0 ORDER BY id DESC LIMIT 1"
                ),
                [chat_id],
                prompt_row,
            )
            .optional()?)
        })
        .await
    }

    pub async fn prompts_of(
        &self,
        run_id: String,
        wait_key: Option<String>,
    ) -> Result<Vec<Prompt>> {
        self.call(move |c| {
            let mut st = c.prepare_cached(&format!(
                "{PROMPT_COLS} WHERE run_id = ?1 AND answered = 0 AND (?2 IS NULL OR wait_key = ?2)"
            ))?;
            let rows = st.query_map(params![run_id, wait_key], prompt_row)?;
            Ok(rows.collect::<std::result::Result<_, _>>()?)
        })
        .await
    }

    /// Reserves a prompt row (its id goes into the buttons' callback data) before sending.
    pub async fn add_prompt(&self, p: Prompt) -> Result<i64> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO prompts (run_id, wait_key, chat_id, text, choices, allow_free_text)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (run_id, wait_key, chat_id) DO UPDATE SET text = ?4",
                params![
                    p.run_id,
                    p.wait_key,
                    p.chat_id,
                    p.text,
                    serde_json::to_string(&p.choices)?,
                    p.allow_free_text
                ],
            )?;
            Ok(c.query_row(
                "SELECT id FROM prompts WHERE run_id = ?1 AND wait_key = ?2 AND chat_id = ?3",
                params![p.run_id, p.wait_key, p.chat_id],
                |r| r.get(0),
            )?)
        })
        .await
    }

    pub async fn stream_message(
        &self,
        run_id: String,
        step_id: String,
        chat_id: i64,
    ) -> Result<Option<i32>> {
        let sql =
            "SELECT message_id FROM streams WHERE run_id = ?1 AND step_id = ?2 AND chat_id = ?3";
        Ok(self.value(sql, (run_id, step_id, chat_id)).await?)
    }

    pub async fn set_stream_message(
        &self,
        run_id: String,
        step_id: String,
        chat_id: i64,
        message_id: i32,
    ) -> Result<()> {
        self.call(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO streams (run_id, step_id, chat_id, message_id) VALUES (?1, ?2, ?3, ?4)",
                params![run_id, step_id, chat_id, message_id],
            )?;
            Ok(())
        })
        .await
    }
}

/// A change to the state caused by one ledger record.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Bind {
        run_id: String,
        chat_id: i64,
        flow: String,
        via_session: bool,
    },
    Status {
        run_id: String,
        status: RunStatus,
    },
    /// The run ended with `status`: none of its prompts waits any more.
    Ended {
        run_id: String,
        status: RunStatus,
    },
    Shown {
        run_id: String,
        chat_id: i64,
    },
    LastLlm {
        run_id: String,
        text: Option<String>,
    },
    PromptSent {
        id: i64,
        message_id: i32,
    },
    Answered {
        run_id: String,
        wait_key: Option<String>,
    },
    StreamDone {
        run_id: String,
        step_id: String,
    },
}

fn apply(c: &Connection, ch: Change) -> rusqlite::Result<usize> {
    match ch {
        Change::Bind { run_id, chat_id, flow, via_session } => c.execute(
            "INSERT OR IGNORE INTO runs (run_id, chat_id, flow, status, via_session) VALUES (?1, ?2, ?3, 'running', ?4)",
            params![run_id, chat_id, flow, via_session],
        ),
        Change::Status { run_id, status } => {
            c.execute("UPDATE runs SET status = ?2 WHERE run_id = ?1", params![run_id, status.as_str()])
        }
        Change::Shown { run_id, chat_id } => c.execute(
            "UPDATE runs SET shown = 1 WHERE run_id = ?1 AND chat_id = ?2",
            params![run_id, chat_id],
        ),
        Change::LastLlm { run_id, text } => {
            c.execute("UPDATE runs SET last_llm = ?2 WHERE run_id = ?1", params![run_id, text])
        }
        Change::PromptSent { id, message_id } => c.execute(
            "UPDATE prompts SET message_id = ?2 WHERE id = ?1",
            params![id, message_id],
        ),
        Change::Answered { run_id, wait_key } => c.execute(
            "UPDATE prompts SET answered = 1 WHERE run_id = ?1 AND (?2 IS NULL OR wait_key = ?2)",
            params![run_id, wait_key],
        ),
        Change::Ended { run_id, status } => {
            let wait_key = None;
            let n = apply(c, Change::Answered { run_id: run_id.clone(), wait_key })?;
            Ok(n + apply(c, Change::Status { run_id, status })?)
        }
        Change::StreamDone { run_id, step_id } => c.execute(
            "DELETE FROM streams WHERE run_id = ?1 AND step_id = ?2",
            params![run_id, step_id],
        ),
    }
}

const RUN_COLS: &str =
    "SELECT run_id, chat_id, flow, status, via_session, shown, last_llm FROM runs";

fn chat_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<ChatRun> {
    Ok(ChatRun {
        run_id: r.get(0)?,
        chat_id: r.get(1)?,
        flow: r.get(2)?,
        status: r.get(3)?,
        via_session: r.get(4)?,
        shown: r.get(5)?,
        last_llm: r.get(6)?,
    })
}

const PROMPT_COLS: &str = "SELECT id, run_id, wait_key, chat_id, message_id, text, choices, allow_free_text, answered FROM prompts";

fn prompt_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Prompt> {
    let choices: String = r.get(6)?;
    Ok(Prompt {
        id: r.get(0)?,
        run_id: r.get(1)?,
        wait_key: r.get(2)?,
        chat_id: r.get(3)?,
        message_id: r.get(4)?,
        text: r.get(5)?,
        choices: serde_json::from_str(&choices).unwrap_or_default(),
        allow_free_text: r.get(7)?,
        answered: r.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cursor_and_changes_commit_together_and_survive_reopening() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| BridgeError::State(e.to_string()))?;
        let path = dir.path().join("tg.sqlite");
        let s = State::open(&path)?;
        let bind = Change::Bind {
            run_id: "r1".into(),
            chat_id: 7,
            flow: "chat".into(),
            via_session: true,
        };
        s.commit_record(5, vec![bind]).await?;
        drop(s);
        let s = State::open(&path)?;
        assert_eq!(s.meta_u64("ledger_cursor").await?, 5);
        let runs = s.active_runs(7).await?;
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].flow, "chat");
        Ok(())
    }

    #[tokio::test]
    async fn a_stranger_is_refused_once() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| BridgeError::State(e.to_string()))?;
        let s = State::open(&dir.path().join("tg.sqlite"))?;
        assert!(s.first_refusal(9).await?);
        assert!(!s.first_refusal(9).await?);
        assert!(!s.is_paired(9).await?);
        s.set_paired(9, "Eve".into()).await?;
        assert!(s.is_paired(9).await?);
        Ok(())
    }

    #[tokio::test]
    async fn the_newest_unanswered_prompt_is_the_open_one() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| BridgeError::State(e.to_string()))?;
        let s = State::open(&dir.path().join("tg.sqlite"))?;
        let p = |key: &str| Prompt {
            id: 0,
            run_id: "r".into(),
            wait_key: key.into(),
            chat_id: 1,
            message_id: None,
            text: "q".into(),
            choices: vec!["a".into()],
            allow_free_text: false,
            answered: false,
        };
        s.add_prompt(p("k1")).await?;
        let id2 = s.add_prompt(p("k2")).await?;
        assert_eq!(s.open_prompt(1).await?.map(|p| p.id), Some(id2));
        let answered = Change::Answered {
            run_id: "r".into(),
            wait_key: Some("k2".into()),
        };
        s.commit_record(1, vec![answered]).await?;
        assert_eq!(
            s.open_prompt(1).await?.map(|p| p.wait_key),
            Some("k1".into())
        );
        Ok(())
    }
}
