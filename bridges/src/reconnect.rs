//! The one reconnect loop both bridges' ledger followers use: run a session until it ends,
//! wait (doubling after each failure, reset after a clean end), and run it again. Also the
//! bridges' publishing of their allowlists, retried the same way.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use protocol::backoff::Backoff;

/// The bridges' back-off: from 200 ms, doubling, up to 10 s.
pub fn backoff() -> Backoff {
    Backoff::new(Duration::from_millis(200), Duration::from_secs(10))
}

/// Something that follows a stream until the stream ends or fails.
pub trait Session {
    type Error: Display;
    fn session(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Runs `s` forever; `what` names it in the logs.
pub async fn forever<S: Session>(what: &'static str, s: &mut S) {
    let mut backoff = backoff();
    loop {
        match s.session().await {
            Ok(()) => backoff.reset(),
            Err(e) => tracing::warn!(error = %e, "{what} restarts"),
        }
        backoff.wait().await;
    }
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
