//! The timer loop: timers are rows (`runs.wake_at`), so they survive restarts. The loop
//! sleeps until the earliest one (or until told that a new one was armed) and wakes due runs.

use std::time::Duration;

use super::Runner;

const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Due runs woken per pass. Timers that all came due while the gateway was down (a
/// million of them, say) are woken a batch at a time, not read and driven at once.
const BATCH: u32 = 1000;
const BATCH_PAUSE: Duration = Duration::from_millis(100);

pub(super) async fn run(r: Runner) {
    loop {
        let now = chrono::Utc::now();
        let sleep = match r.inner.store.due_timers(now, BATCH).await {
            Ok((due, _)) if due.len() >= BATCH as usize => {
                r.wake_all(due);
                // The next batch after a pause that lets this one's drives move their
                // timers on (a run read again while still driven is only looked at once
                // more). At most BATCH wakes per pause, whatever else the runner does.
                tokio::time::sleep(BATCH_PAUSE).await;
                continue;
            }
            Ok((due, next)) => {
                r.wake_all(due);
                next.and_then(|n| chrono::DateTime::parse_from_rfc3339(&n).ok())
                    .and_then(|n| (n.with_timezone(&chrono::Utc) - now).to_std().ok())
                    .unwrap_or(MAX_SLEEP)
                    .min(MAX_SLEEP)
            }
            Err(e) => {
                tracing::error!(error = %e, "timers: cannot read due timers");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep + Duration::from_millis(1)) => {}
            _ = r.inner.timers.notified() => {}
        }
    }
}

impl Runner {
    /// A new timer was armed: re-plan the sleep.
    pub(super) fn timer_armed(&self) {
        self.inner.timers.notify_one();
    }
}
