//! What traces read of a run: its stored trace (`crate::trace`), flow, parent and creation
//! time. Reads only; the trace is written with the run (`runs`, `children`).

use super::sql::{Optional, args};
use super::{Result, Store};

/// A run as the trace exporter sees it.
#[derive(Debug, Clone)]
pub(crate) struct TracedRun {
    pub(crate) trace: Option<String>,
    pub(crate) parent_run_id: Option<String>,
    pub(crate) bundle_id: String,
    pub(crate) created_at: String,
}

impl Store {
    /// `None` when the run is gone (pruned).
    pub(crate) async fn traced_run(&self, run_id: &str) -> Result<Option<TracedRun>> {
        let id = run_id.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT trace, parent_run_id, bundle_id, created_at FROM runs WHERE run_id = ?1",
            )?
            .query_row(args![id], |r| {
                Ok(TracedRun {
                    trace: r.get(0)?,
                    parent_run_id: r.get(1)?,
                    bundle_id: r.get(2)?,
                    created_at: r.get(3)?,
                })
            })
            .optional()?)
        })
        .await
    }
}
