//! The one reconnect loop both bridges' ledger followers use: run a session until it ends,
//! wait (doubling after each failure, reset after a clean end), and run it again.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

const FIRST: Duration = Duration::from_millis(200);
const MAX: Duration = Duration::from_secs(10);

/// Something that follows a stream until the stream ends or fails.
pub trait Session {
    type Error: Display;
    fn session(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Runs `s` forever; `what` names it in the logs.
pub async fn forever<S: Session>(what: &'static str, s: &mut S) {
    let mut backoff = FIRST;
    loop {
        match s.session().await {
            Ok(()) => backoff = FIRST,
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "{what} restarts");
                backoff = (backoff * 2).min(MAX);
            }
        }
        tokio::time::sleep(backoff).await;
    }
}
