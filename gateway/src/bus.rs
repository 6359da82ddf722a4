//! The in-process event bus: committed ledger records and ephemeral LLM deltas, fanned out
//! to SSE streams and the runner's watchers.
//!
//! The store publishes a record only after its transaction committed, in commit order (so the
//! global cursor only grows). The bus is bounded: a subscriber that lags is told so and must
//! resume from its cursor; publishing never waits for a subscriber.

use std::sync::Arc;

use tokio::sync::broadcast;

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
}

#[derive(Debug, Clone)]
pub(crate) enum BusEvent {
    Record(Arc<RecordEvent>),
    Delta(Arc<protocol::LlmDelta>),
}

#[derive(Debug, Clone)]
pub(crate) struct Bus {
    tx: broadcast::Sender<BusEvent>,
}

impl Bus {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity).0,
        }
    }

    pub(crate) fn publish(&self, ev: BusEvent) {
        // No subscriber is not an error: nobody is watching.
        let _ = self.tx.send(ev);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.tx.subscribe()
    }

    pub(crate) fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}
