//! The in-process event bus: committed ledger records and ephemeral LLM deltas, fanned out
//! to SSE streams and the runner's watchers.
//!
//! The store publishes a record only after its transaction committed, in commit order (so the
//! global cursor only grows). Two fan-outs: the global one (every record, for the global
//! stream, webhooks and followers) and one channel per run that someone follows (a run's
//! stream subscribes to its run only, so a record costs O(that run's followers), not
//! O(all streams)). Channels are bounded: a subscriber that lags is told so and must resume
//! from its cursor; publishing never waits for a subscriber.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

/// Events a run's channel holds for a slow follower: a burst of a loop's records (each
/// slot is about 48 bytes, allocated when the first follower comes, freed with the last).
const RUN_CAPACITY: usize = 1024;

/// A committed ledger record.
#[derive(Debug)]
pub(crate) struct RecordEvent {
    /// Global cursor.
    pub(crate) gseq: u64,
    pub(crate) run_id: String,
    /// Per-run cursor.
    pub(crate) seq: u64,
    /// The record as JSON, serialised once for every subscriber.
    pub(crate) json: String,
    /// Set when the record ended the run: `completed`, `failed` or `cancelled`.
    pub(crate) end: Option<&'static str>,
    /// The record framed as an SSE event for a run's streams and for the global ones, made
    /// by the first stream that sends it and shared by the others.
    pub(crate) frames: Frames,
}

/// A record's SSE frames (see [`RecordEvent::frames`]).
#[derive(Debug, Default)]
pub(crate) struct Frames {
    pub(crate) run: std::sync::OnceLock<bytes::Bytes>,
    pub(crate) global: std::sync::OnceLock<bytes::Bytes>,
}

#[derive(Debug, Clone)]
pub(crate) enum BusEvent {
    Record(Arc<RecordEvent>),
    Delta(Arc<protocol::LlmDelta>),
}

impl BusEvent {
    fn run_id(&self) -> &str {
        match self {
            Self::Record(r) => &r.run_id,
            Self::Delta(d) => &d.run_id,
        }
    }
}

type Runs = Mutex<HashMap<String, broadcast::Sender<BusEvent>>>;

#[derive(Debug, Clone)]
pub(crate) struct Bus {
    tx: broadcast::Sender<BusEvent>,
    /// The channels of runs somebody follows (removed with their last follower). The lock
    /// is held for a map operation only, never across an `.await`.
    runs: Arc<Runs>,
    run_followers: Arc<AtomicUsize>,
    /// Events a run's channel holds: the bus's capacity, at most [`RUN_CAPACITY`].
    run_capacity: usize,
}

/// A follower of one run's events; dropping the last one removes the run's channel.
#[derive(Debug)]
pub(crate) struct RunReceiver {
    /// Always `Some` until dropped (it is dropped under the map's lock).
    rx: Option<broadcast::Receiver<BusEvent>>,
    run_id: String,
    runs: Arc<Runs>,
    followers: Arc<AtomicUsize>,
}

impl RunReceiver {
    pub(crate) async fn recv(&mut self) -> Result<BusEvent, broadcast::error::RecvError> {
        match &mut self.rx {
            Some(rx) => rx.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }

    pub(crate) fn try_recv(&mut self) -> Result<BusEvent, broadcast::error::TryRecvError> {
        match &mut self.rx {
            Some(rx) => rx.try_recv(),
            None => Err(broadcast::error::TryRecvError::Closed),
        }
    }
}

impl Drop for RunReceiver {
    fn drop(&mut self) {
        self.followers.fetch_sub(1, Ordering::Relaxed);
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        // The receiver goes first, under the lock that subscribing takes too: of two
        // followers leaving at once, the second sees none left and removes the channel.
        drop(self.rx.take());
        if runs
            .get(&self.run_id)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            runs.remove(&self.run_id);
        }
    }
}

impl Bus {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity).0,
            runs: Arc::default(),
            run_followers: Arc::default(),
            run_capacity: capacity.clamp(1, RUN_CAPACITY),
        }
    }

    pub(crate) fn publish(&self, ev: BusEvent) {
        let run = {
            let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
            runs.get(ev.run_id()).cloned()
        };
        if let Some(tx) = run {
            let _ = tx.send(ev.clone());
        }
        // No subscriber is not an error: nobody is watching.
        let _ = self.tx.send(ev);
    }

    /// Every event of every run.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.tx.subscribe()
    }

    /// The events of one run.
    pub(crate) fn subscribe_run(&self, run_id: &str) -> RunReceiver {
        let rx = {
            let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
            match runs.get(run_id) {
                Some(tx) => tx.subscribe(),
                None => {
                    let (tx, rx) = broadcast::channel(self.run_capacity);
                    runs.insert(run_id.to_owned(), tx);
                    rx
                }
            }
        };
        self.run_followers.fetch_add(1, Ordering::Relaxed);
        RunReceiver {
            rx: Some(rx),
            run_id: run_id.to_owned(),
            runs: self.runs.clone(),
            followers: self.run_followers.clone(),
        }
    }

    /// Open subscriptions, global and per run.
    pub(crate) fn subscribers(&self) -> usize {
        self.tx.receiver_count() + self.run_followers.load(Ordering::Relaxed)
    }

    /// Runs with a channel (someone follows them).
    #[cfg(test)]
    fn followed_runs(&self) -> usize {
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(run: &str, seq: u64) -> BusEvent {
        BusEvent::Record(Arc::new(RecordEvent {
            gseq: seq,
            run_id: run.into(),
            seq,
            json: "{}".into(),
            end: None,
            frames: Frames::default(),
        }))
    }

    #[tokio::test]
    async fn a_run_follower_gets_its_run_only_and_its_channel_goes_with_it() {
        let bus = Bus::new(16);
        let mut global = bus.subscribe();
        let mut a1 = bus.subscribe_run("a");
        let a2 = bus.subscribe_run("a");
        let mut b = bus.subscribe_run("b");
        assert_eq!((bus.subscribers(), bus.followed_runs()), (4, 2));
        bus.publish(record("a", 1));
        bus.publish(record("b", 2));
        bus.publish(record("c", 3));
        let BusEvent::Record(r) = a1.recv().await.unwrap() else {
            panic!()
        };
        assert_eq!((r.run_id.as_str(), r.seq), ("a", 1));
        let BusEvent::Record(r) = b.recv().await.unwrap() else {
            panic!()
        };
        assert_eq!(r.run_id, "b");
        for want in 1..=3 {
            let BusEvent::Record(r) = global.recv().await.unwrap() else {
                panic!()
            };
            assert_eq!(r.gseq, want, "the global feed has everything, in order");
        }
        assert!(a1.try_recv().is_err(), "nothing of b or c reached a");
        drop(a2);
        assert_eq!(bus.followed_runs(), 2, "a is still followed");
        drop(a1);
        drop(b);
        assert_eq!((bus.subscribers(), bus.followed_runs()), (1, 0));
        bus.publish(record("a", 4)); // nobody follows a: only the global feed
        assert!(matches!(global.recv().await, Ok(BusEvent::Record(_))));
    }

    #[test]
    fn followers_leaving_together_leave_no_channel_behind() {
        let bus = Bus::new(16);
        for _ in 0..200 {
            let followers: Vec<RunReceiver> = (0..8).map(|_| bus.subscribe_run("r")).collect();
            std::thread::scope(|s| {
                for f in followers {
                    s.spawn(move || drop(f));
                }
            });
            assert_eq!((bus.followed_runs(), bus.subscribers()), (0, 0));
        }
    }
}
