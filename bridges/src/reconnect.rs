//! The one ledger-following loop both bridges use: read the stored cursor, follow the
//! gateway's global stream from it, hand each record to the bridge and commit what it
//! changed with the cursor past it (records of no concern commit only now and then), and
//! when the stream ends or fails wait (doubling after each failure, reset after a clean
//! end) and start again. Also the bridges' publishing of their allowlists, retried the same
//! way. What a record means to a bridge (what it sends, what it changes) is the bridge's
//! business.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use protocol::backoff::Backoff;
use protocol::{Client, ClientError, LlmDelta, StepEvent, StreamItem};

use crate::db::{LEDGER_CURSOR, State, Tables};

/// The bridges' back-off: from 200 ms, doubling, up to 10 s.
pub fn backoff() -> Backoff {
    Backoff::new(Duration::from_millis(200), Duration::from_secs(10))
}

/// Records that concern no one of a bridge move its stored cursor only this often (they
/// have no effect to repeat, so replaying a few after a restart costs nothing).
pub const IDLE_COMMIT_EVERY: u64 = 256;

/// What a bridge does with the global ledger stream. The loop ([`follow_ledger`]) commits,
/// in one transaction, what each record changed in the bridge's state file and the
/// ledger cursor past it: after a restart the bridge resumes after the last record it
/// committed, so it neither misses a record nor deals with one twice (a crash between a
/// send and its commit can repeat that one record's sends; nothing else).
pub trait LedgerFollower: Send {
    type Tables: Tables;
    /// Deals with one record: `None` when it concerns no one here, else what it changes
    /// (commit it even when empty: it was acted on). Anything it sends goes out before
    /// the commit.
    fn on_record(&mut self, ev: &StepEvent) -> impl Future<Output = Outcome<Self>> + Send;

    /// A live LLM delta (no cursor; nothing to commit). Ignored unless a bridge shows them.
    fn on_delta(&mut self, d: LlmDelta) -> impl Future<Output = Result<(), Failure<Self>>> + Send {
        let _ = d;
        async { Ok(()) }
    }

    /// Called after the changes of a record it acted on committed.
    fn committed(&mut self) {}
}

type Failure<F> = <<F as LedgerFollower>::Tables as Tables>::Error;
type Change<F> = <<F as LedgerFollower>::Tables as Tables>::Change;
type Outcome<F> = Result<Option<Vec<Change<F>>>, Failure<F>>;

/// Follows the ledger of `client`'s gateway with `f` forever, from the cursor `state`
/// holds; `what` names it in the logs.
pub async fn follow_ledger<F>(
    what: &'static str,
    client: &Client,
    state: &State<F::Tables>,
    f: &mut F,
) where
    F: LedgerFollower,
    Failure<F>: From<ClientError> + Display,
{
    let mut backoff = backoff();
    loop {
        match session(client, state, f).await {
            Ok(()) => backoff.reset(),
            Err(e) => tracing::warn!(error = %e, "{what} restarts"),
        }
        backoff.wait().await;
    }
}

/// One session: from the stored cursor until the stream ends or an item fails.
async fn session<F>(client: &Client, state: &State<F::Tables>, f: &mut F) -> Result<(), Failure<F>>
where
    F: LedgerFollower,
    Failure<F>: From<ClientError>,
{
    let mut committed = state.meta_u64(LEDGER_CURSOR).await?;
    let mut stream = Box::pin(client.stream_global(committed).await?);
    while let Some(item) = stream.next().await {
        match item? {
            StreamItem::Step(ev) => {
                match f.on_record(&ev).await? {
                    Some(changes) => {
                        state.commit_record(ev.cursor, changes).await?;
                        f.committed();
                    }
                    None if ev.cursor - committed >= IDLE_COMMIT_EVERY => {
                        state.commit_record(ev.cursor, Vec::new()).await?;
                    }
                    None => continue,
                }
                committed = ev.cursor;
            }
            StreamItem::Delta(d) => f.on_delta(d).await?,
            StreamItem::Done | StreamItem::Other(_) => {}
        }
    }
    Ok(())
}

/// Tells the gateway whom a channel may reach (its allowlist), trying again while the
/// gateway is away. Without it, callers other than this bridge and admins cannot make
/// runs notify this channel's people. A refusal (the bridge's token lacks the `channel`
/// scope) is logged once: the bridge still works for its own users.
pub async fn publish_allowlist(
    client: &protocol::Client,
    channel: &'static str,
    allow: Vec<String>,
) {
    let list = protocol::ChannelAllowlist { allow };
    let mut backoff = backoff();
    loop {
        match client.publish_allowlist(channel, &list).await {
            Ok(_) => {
                tracing::info!(
                    channel,
                    entries = list.allow.len(),
                    "channel allowlist published"
                );
                return;
            }
            Err(e) if e.is_transient() => backoff.wait().await,
            Err(e) => {
                tracing::warn!(channel, error = %e, "cannot publish the channel allowlist (give the bridge's token the `channel` scope); runs started by others cannot notify this channel");
                return;
            }
        }
    }
}
