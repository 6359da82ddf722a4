//! Read-only looks into a bridge's own state file, so a test can wait for what the bridge
//! committed (a mail queued, a prompt's message recorded) instead of sleeping and hoping.

use std::path::Path;

/// A row of the email bridge's outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub key: String,
    pub to: String,
    pub attempts: u32,
    pub sent: bool,
    pub last_error: Option<String>,
}

fn open(path: &Path) -> Option<rusqlite::Connection> {
    if !path.exists() {
        return None;
    }
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let c = rusqlite::Connection::open_with_flags(path, flags);
    Some(c.unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display())))
}

/// A query's answer; "nothing yet" while the bridge has not created its tables, and a
/// failed test for any other error (a broken query must not read as "not yet").
fn or_nothing<T: Default>(r: rusqlite::Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) if e.to_string().contains("no such table") => T::default(),
        Err(e) => panic!("peek: {e}"),
    }
}

/// Every mail the email bridge queued (sent or not), oldest first; empty before the file
/// exists.
pub fn email_outbox(state: &Path) -> Vec<Queued> {
    let Some(c) = open(state) else {
        return Vec::new();
    };
    let rows = c
        .prepare("SELECT key, to_addr, attempts, sent_at IS NOT NULL, last_error FROM outbox ORDER BY id")
        .and_then(|mut st| {
            st.query_map([], |r| {
                Ok(Queued {
                    key: r.get(0)?,
                    to: r.get(1)?,
                    attempts: r.get::<_, i64>(2)? as u32,
                    sent: r.get(3)?,
                    last_error: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        });
    or_nothing(rows)
}

/// Whether the Telegram bridge recorded the message it sent for a prompt whose text starts
/// with `text` (the send and this record are one step of the bridge).
pub fn telegram_prompt_sent(state: &Path, text: &str) -> bool {
    let Some(c) = open(state) else {
        return false;
    };
    let n = c.query_row(
        "SELECT count(*) FROM prompts WHERE message_id IS NOT NULL AND substr(text, 1, length(?1)) = ?1",
        [text],
        |r| r.get::<_, i64>(0),
    );
    or_nothing(n) > 0
}
