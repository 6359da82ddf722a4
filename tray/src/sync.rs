//! Keeps the tray current without polling: a snapshot of the active runs, then the gateway's
//! global ledger stream from the tray's cursor (kept in a file, so a restart resumes where
//! it stopped; the first start begins at the ledger's head). A broken stream reconnects with back-off, taking a fresh snapshot first.
//! Also submits the commands a click asks for. Talks to the gateway through `protocol`
//! only; what the records mean is the [`crate::controller`]'s business.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use protocol::backoff::Backoff;
use protocol::{
    Client, ClientError, CommandRequest, LedgerRecord, RunStatus, RunSummary, StreamItem,
};

/// What the sync loop tells the GUI.
#[derive(Debug, Clone)]
pub enum Update {
    /// The active runs, right after (re)connecting.
    Snapshot(Vec<RunSummary>),
    /// The runs whose prompt with approvers this device may answer.
    Mine(std::collections::HashSet<String>),
    Record(Box<LedgerRecord>),
    /// The gateway is unreachable; retrying.
    Disconnected(String),
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Each status is listed up to this many runs.
const SNAPSHOT_LIMIT: u32 = 500;

/// The active runs (running, waiting, paused).
pub async fn snapshot(client: &Client) -> Result<Vec<RunSummary>, ClientError> {
    let mut all = Vec::new();
    for status in [RunStatus::Running, RunStatus::Waiting, RunStatus::Paused] {
        all.extend(client.runs(Some(status), SNAPSHOT_LIMIT, 0).await?.items);
    }
    Ok(all)
}

/// The runs whose prompt with approvers this device's person may answer.
pub async fn mine(client: &Client) -> Result<std::collections::HashSet<String>, ClientError> {
    let list = client.approvals().await?;
    Ok(list
        .items
        .into_iter()
        .filter(|a| !a.approvers.is_empty())
        .map(|a| a.run_id)
        .collect())
}

/// The tray's stored ledger cursor.
pub struct Cursor {
    path: Option<PathBuf>,
    value: u64,
    saved: u64,
    saved_at: Instant,
}

impl Cursor {
    /// Reads the cursor stored at `path` (0 when there is none).
    pub fn load(path: Option<PathBuf>) -> Self {
        let value = path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        Self {
            path,
            value,
            saved: value,
            saved_at: Instant::now(),
        }
    }

    pub fn get(&self) -> u64 {
        self.value
    }

    /// Moves the cursor; written to its file at most once a second.
    pub fn advance(&mut self, to: u64) {
        self.value = to;
        if self.saved_at.elapsed() >= Duration::from_secs(1) {
            self.save();
        }
    }

    pub fn save(&mut self) {
        if self.value == self.saved {
            return;
        }
        if let Some(p) = &self.path {
            let tmp = p.with_extension("tmp");
            let written = std::fs::write(&tmp, self.value.to_string())
                .and_then(|()| std::fs::rename(&tmp, p));
            if let Err(e) = written {
                tracing::warn!(path = %p.display(), error = %e, "cannot store the tray's cursor");
                return;
            }
        }
        self.saved = self.value;
        self.saved_at = Instant::now();
    }
}

/// Follows the gateway forever, handing updates to `send`; returns when `send` says the
/// receiver is gone.
pub async fn follow(client: Client, mut cursor: Cursor, send: impl Fn(Update) -> bool) {
    let mut backoff = Backoff::new(Duration::from_millis(250), MAX_BACKOFF);
    loop {
        let err = match follow_once(&client, &mut cursor, &send, &mut backoff).await {
            Ok(false) => return,
            Ok(true) => "the event stream ended".to_owned(),
            Err(e) => e.to_string(),
        };
        cursor.save();
        tracing::warn!(error = %err, "tray: gateway unreachable; reconnecting");
        if !send(Update::Disconnected(err)) {
            return;
        }
        backoff.wait().await;
    }
}

/// One connection: `Ok(false)` when the receiver is gone, `Ok(true)` when the stream ended.
async fn follow_once(
    client: &Client,
    cursor: &mut Cursor,
    send: &impl Fn(Update) -> bool,
    backoff: &mut Backoff,
) -> Result<bool, ClientError> {
    if cursor.get() == 0 {
        // First start: the snapshot has the present; the past need not be replayed.
        cursor.advance(client.ledger_head().await?);
    }
    let stream = client.stream_global(cursor.get()).await?;
    // Snapshot after subscribing: records committed in between are in the stream too.
    if !send(Update::Snapshot(snapshot(client).await?)) || !send(Update::Mine(mine(client).await?))
    {
        return Ok(false);
    }
    backoff.reset();
    let mut stream = Box::pin(stream);
    while let Some(item) = stream.next().await {
        if let StreamItem::Step(ev) = item? {
            let at = ev.cursor;
            // A prompt with approvers: ask the gateway whether this device is one.
            let team = ev.record.effect_kind() == "ask"
                && ev.record.effect_payload()["approvers"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty());
            if team && !send(Update::Mine(mine(client).await?)) {
                return Ok(false);
            }
            if !send(Update::Record(Box::new(ev.record))) {
                return Ok(false);
            }
            cursor.advance(at);
        }
    }
    Ok(true)
}

/// Submits commands in order; a gateway outage is retried a few times. Returns what went
/// wrong, for the user.
pub async fn submit(client: &Client, cmds: &[CommandRequest]) -> Result<(), String> {
    for cmd in cmds {
        let mut wait = Duration::from_millis(200);
        let mut tries = 0;
        loop {
            match client.command(cmd).await {
                Ok(_) => break,
                Err(e) if e.is_transient() && tries < 4 => {
                    tries += 1;
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => {
                    return Err(format!(
                        "{} {} refused: {}",
                        cmd.kind,
                        cmd.run_id.get(..8).unwrap_or(&cmd.run_id),
                        e.message()
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("cursor");
        let mut c = Cursor::load(Some(path.clone()));
        assert_eq!(c.get(), 0);
        c.advance(41);
        c.advance(42);
        c.save();
        assert_eq!(Cursor::load(Some(path)).get(), 42);
        assert_eq!(Cursor::load(None).get(), 0);
    }
}
