//! Starting a run with its first step: the runner computes the first transition before the
//! start is written, so the start's transaction commits the run, its `run_started` record
//! and that step together. One write instead of two, and no drive at all for a run that
//! the step ended or left waiting. Only where this process holds the runner (the embedded
//! SQLite store; on a shared store the runner drives runs its follower hands it, and a
//! start takes the usual path). It never decides a step (the engine does) and never
//! writes SQL (`Store::start_run` does).

use protocol::RunSummary;

use super::Runner;
use super::drive::failure;
use crate::engine::{self, Ctx, Input, Pending, RunState};
use crate::store::{DriveRow, FirstStep, NewRun, StoreError};

impl Runner {
    /// Starts `run` with its first step (see [`Runner::first_step`]), then drives it on if
    /// that step left it something to do now.
    pub(crate) async fn start_run(&self, run: NewRun) -> Result<RunSummary, StoreError> {
        let first = self.first_step(&run);
        let stepped = first.is_some();
        let armed = first
            .as_ref()
            .is_some_and(|f| f.transition.wake_at.is_some());
        let (summary, wake, row) = self.inner.store.start_run(run, true, first).await?;
        if armed {
            self.timer_armed();
        }
        let Some(row) = row else {
            self.wake_all(wake);
            return Ok(summary);
        };
        let id = row.run_id.clone();
        match (stepped, next_turn(&row)) {
            (false, _) | (true, Turn::Steps) => self.wake_with(row),
            // An effect takes long, and a commit from a handed row is refused if anything
            // (a pause) reached the run meanwhile: its result would be thrown away. The
            // drive reads the run instead, as it does before every effect.
            (true, Turn::Effect) => self.wake(&id),
            (true, Turn::None) => {}
        }
        // Children the step spawned, runs its events reached.
        self.wake_all(wake.into_iter().filter(|w| *w != id));
        Ok(summary)
    }

    /// The first transition of a run about to start, as its first drive would compute it
    /// (the same engine call). Its input was checked against the flow's schema already:
    /// every start comes through `http::runs::new_run`, which refuses a mismatch with 400.
    /// `None` when the step needs the store (a flow version this process has not loaded,
    /// a session's chat history) or does nothing: the drive then takes the run from its
    /// start, as for any other run.
    pub(crate) fn first_step(&self, run: &NewRun) -> Option<FirstStep> {
        let flow = self.inner.registry.by_hash(&run.flow_hash)?;
        if flow.uses_history {
            return None;
        }
        let (mut state, now) = (RunState::default(), chrono::Utc::now());
        let ctx = Ctx {
            run_id: &run.run_id,
            bundle_id: &run.bundle_id,
            session_id: run.session_id.as_deref(),
            input: &run.input_data,
            history: &[],
            now,
        };
        let transition = engine::step(&flow, &mut state, &ctx, Input::Advance)
            .unwrap_or_else(|reason| failure(reason.to_string()));
        if transition.records.is_empty() && transition.status.is_none() {
            return None;
        }
        Some(FirstStep {
            transition,
            state,
            at: now,
        })
    }
}

/// What a run its first step left as `row` does next.
enum Turn {
    /// More steps: the drive goes on from the handed row.
    Steps,
    /// An effect to perform (an LLM or HTTP call, a tool).
    Effect,
    /// Nothing now: it ended, or waits (for an answer, an event, a timer, a child) and is
    /// woken by what it waits for.
    None,
}

fn next_turn(row: &DriveRow) -> Turn {
    if row.status != protocol::RunStatus::Running {
        return Turn::None;
    }
    match row.state.pending {
        None => Turn::Steps,
        Some(Pending::Effect { .. }) => Turn::Effect,
        Some(_) => Turn::None,
    }
}
