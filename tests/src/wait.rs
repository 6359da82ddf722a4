//! Waiting with deadlines: for a process to print its ready line, and for a condition a
//! test needs to see. Nothing here sleeps for a fixed time to let something happen.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// Reads `child`'s stdout (30 s at most) until a line starts with `ready`; returns the rest
/// of that line. Every line goes into `seen`; later ones are drained in the background.
pub async fn read_until(
    child: &mut Child,
    ready: &str,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) -> String {
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let rest = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.lock().expect("lock").push(line.clone());
            if let Some(rest) = line.strip_prefix(ready) {
                return rest.to_owned();
            }
        }
        panic!("switchboard exited before printing `{ready}`");
    })
    .await
    .unwrap_or_else(|_| panic!("switchboard did not print `{ready}` within 30 s"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    rest
}

/// [`read_until`] for a process whose output is not kept.
pub async fn ready_line(child: &mut Child, ready: &str) -> String {
    read_until(child, ready, Default::default()).await
}

/// Polls `check` every 20 ms until it gives a value, for at most `secs` seconds (then the
/// test fails, naming `what`). Tests wait for what they need to see (a status, a record, a
/// call a fake recorded), never for a fixed time.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {secs} s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
