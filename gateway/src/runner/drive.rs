//! Driving one run: apply its inbox, check what it waits for, perform its effect, feed the
//! engine, commit the transition; repeat until the run blocks, pauses or ends.

use protocol::{Actor, Command, RunStatus};
use serde_json::Value;
use tokio::sync::Notify;

use super::Runner;
use crate::engine::{self, Ctx, Input, Pending, Transition};
use crate::flows::Flow;
use crate::store::{Commit, DriveRow, StoreError};

/// What a drive does next.
enum Next {
    Input(Input),
    /// Look at the run again (it changed meanwhile).
    Again,
    /// Nothing to do until something wakes the run.
    Stop,
}

/// What applying the inbox did.
enum Applied {
    /// The inbox was empty.
    Nothing,
    /// A command was applied or rejected: look at the run again.
    Again,
    /// The command ended the run.
    Ended,
}

/// Session turns an LLM step sees at most.
const HISTORY_LIMIT: u32 = 200;

impl Runner {
    /// Drives `run_id`, from `first` if given (the run as just committed), else read.
    pub(super) async fn drive(
        &self,
        run_id: &str,
        notify: &Notify,
        mut first: Option<DriveRow>,
    ) -> Result<(), StoreError> {
        let store = &self.inner.store;
        loop {
            let row = match first.take() {
                Some(r) => Some(r),
                None => store.drive_row(run_id).await?,
            };
            let Some(mut row) = row else {
                return Ok(());
            };
            // On a shared store: drive only a run this node holds (or claims now).
            if !store.is_me(row.owner.as_deref()) && !store.claim_run(run_id).await? {
                return Ok(());
            }
            if row.status.is_terminal() {
                let mut next = row.inbox.take();
                while let Some(item) = next {
                    let why = format!("the run is {}", row.status.as_str());
                    store.reject_command(item.seq, why).await?;
                    next = store.next_inbox(run_id).await?;
                }
                // Ended elsewhere (a cancel applied by the API process, which wakes this
                // run through the follower): its parent may be waiting for it.
                if let Some(parent) = store.run(run_id).await?.parent_run_id {
                    self.wake(&parent);
                }
                return Ok(());
            }
            if row.status == RunStatus::Paused {
                return Ok(());
            }
            if row.kind == "schedule" {
                return Box::pin(self.drive_schedule(run_id)).await;
            }
            let Some(flow) = self.flow(&row.flow_hash).await? else {
                let t = failure(format!("flow version {} is not available", row.flow_hash));
                return self
                    .commit(&row, t, row.state.clone(), None)
                    .await
                    .map(|_| ());
            };
            match self.apply_inbox(&flow, &row).await? {
                Applied::Nothing => {}
                Applied::Again => continue,
                // Its commit rejected what was left in the inbox and woke any parent.
                Applied::Ended => return Ok(()),
            }
            let input = match self.next_input(&flow, &row, notify).await? {
                Next::Input(i) => i,
                Next::Again => continue,
                Next::Stop => return Ok(()),
            };
            let mut state = row.state.clone();
            let t = match self.step(&flow, &row, &mut state, input).await? {
                Ok(t) => t,
                Err(reason) => failure(reason),
            };
            if t.records.is_empty() && t.status.is_none() {
                return Ok(());
            }
            // A run that ended has nothing more to do: the commit rejected what was left
            // in its inbox, so there is no need to look at it again.
            if self.commit(&row, t, state, None).await?.is_terminal() {
                return Ok(());
            }
        }
    }

    /// The flow version a run is pinned to; one this process has not seen yet (uploaded
    /// through another process) is loaded from the store.
    async fn flow(&self, hash: &str) -> Result<Option<std::sync::Arc<Flow>>, StoreError> {
        if let Some(f) = self.inner.registry.by_hash(hash) {
            return Ok(Some(f));
        }
        let Some((bundle, source)) = self.inner.store.flow_source(hash).await? else {
            return Ok(None);
        };
        match crate::flows::parse::compile(&format!("{bundle} (stored)"), &bundle, &source) {
            Ok(f) => {
                let f = std::sync::Arc::new(f);
                self.inner.registry.add_version(f.clone());
                Ok(Some(f))
            }
            Err(e) => {
                tracing::error!(error = %e, "a stored flow version does not compile");
                Ok(None)
            }
        }
    }

    /// Applies the oldest pending command (an answer or an event), if there is one.
    async fn apply_inbox(&self, flow: &Flow, row: &DriveRow) -> Result<Applied, StoreError> {
        let store = &self.inner.store;
        let Some(item) = &row.inbox else {
            return Ok(Applied::Nothing);
        };
        let mut state = row.state.clone();
        let result = match inbox_input(row, item.kind.as_str(), &item.payload, item.actor.clone()) {
            Ok(input) => self.step(flow, row, &mut state, input).await?,
            Err(reason) => Err(reason),
        };
        match result {
            Ok(t) => {
                let ends = t.status.filter(|s| s.is_terminal());
                let now = self.commit(row, t, state, Some((item.seq, None))).await?;
                // A run cancelled elsewhere meanwhile is looked at again (its parent).
                Ok(if ends == Some(now) {
                    Applied::Ended
                } else {
                    Applied::Again
                })
            }
            Err(reason) => {
                store.reject_command(item.seq, reason).await?;
                Ok(Applied::Again)
            }
        }
    }

    /// What to feed the engine now, given what the run waits for.
    async fn next_input(
        &self,
        flow: &Flow,
        row: &DriveRow,
        notify: &Notify,
    ) -> Result<Next, StoreError> {
        Ok(Next::Input(match &row.state.pending {
            None if row.state.pc == 0 && row.state.visits.is_empty() => {
                if let Err(errs) = flow.validate_input(&row.input) {
                    let t = failure(format!(
                        "input does not match the flow's schema: {}",
                        errs.join("; ")
                    ));
                    self.commit(row, t, row.state.clone(), None).await?;
                    return Ok(Next::Stop);
                }
                Input::Advance
            }
            None => Input::Advance,
            Some(
                Pending::Timer { .. }
                | Pending::Ask {
                    deadline: Some(_), ..
                }
                | Pending::Ask { team: Some(_), .. },
            ) => Input::TimerDue,
            Some(Pending::Child { child_run_id, .. }) => {
                match self.inner.store.run(child_run_id).await {
                    Ok(c) if c.status.is_terminal() => Input::ChildDone {
                        status: c.status,
                        output: c.output,
                        error: c.error,
                    },
                    Ok(_) => return Ok(Next::Stop),
                    Err(StoreError::NotFound(m)) => Input::ChildDone {
                        status: RunStatus::Failed,
                        output: None,
                        error: Some(m),
                    },
                    Err(e) => return Err(e),
                }
            }
            Some(Pending::Effect {
                step_id,
                idempotency_key,
                request,
                attempt,
                ..
            }) => {
                let tp = self
                    .traceparent(&row.run_id, idempotency_key, *attempt)
                    .await;
                // Boxed: an effect's future (an HTTP client's, an MCP call's) is large, and
                // inline it would make every drive that large, effect or not.
                let work = Box::pin(self.perform(
                    &row.run_id,
                    step_id,
                    idempotency_key,
                    tp.as_deref(),
                    request,
                ));
                match self.until_cancelled(&row.run_id, notify, work).await? {
                    Some(result) => Input::EffectDone { result },
                    None => return Ok(Next::Again),
                }
            }
            Some(_) => return Ok(Next::Stop),
        }))
    }

    async fn step(
        &self,
        flow: &Flow,
        row: &DriveRow,
        state: &mut engine::RunState,
        input: Input,
    ) -> Result<Result<Transition, String>, StoreError> {
        let history = if flow.uses_history {
            let key = engine::session_key(&row.run_id, row.session_id.as_deref());
            self.inner.store.history(&key, HISTORY_LIMIT).await?
        } else {
            Vec::new()
        };
        let ctx = Ctx {
            run_id: &row.run_id,
            bundle_id: &row.bundle_id,
            session_id: row.session_id.as_deref(),
            input: &row.input,
            history: &history,
            now: chrono::Utc::now(),
        };
        Ok(engine::step(flow, state, &ctx, input).map_err(|r| r.to_string()))
    }

    async fn commit(
        &self,
        row: &DriveRow,
        t: Transition,
        state: engine::RunState,
        command: Option<(u64, Option<String>)>,
    ) -> Result<RunStatus, StoreError> {
        let armed = t.wake_at.is_some();
        let (status, wake) = self
            .inner
            .store
            .commit(Commit {
                run_id: row.run_id.clone(),
                transition: t,
                state,
                command,
                expect_seq: row.handed.then_some(row.last_seq),
            })
            .await?;
        self.wake_all(wake.into_iter().filter(|id| *id != row.run_id));
        if armed {
            self.timer_armed();
        }
        Ok(status)
    }

    /// Runs an effect, but gives up (`None`) if the run is cancelled meanwhile. A pause lets
    /// the effect finish: its result is recorded and the run stays paused.
    async fn until_cancelled<F>(
        &self,
        run_id: &str,
        notify: &Notify,
        work: F,
    ) -> Result<Option<Result<Value, String>>, StoreError>
    where
        F: std::future::Future<Output = Result<Value, String>>,
    {
        tokio::pin!(work);
        loop {
            tokio::select! {
                r = &mut work => return Ok(Some(r)),
                _ = notify.notified() => {
                    let s = self.inner.store.run(run_id).await?;
                    if s.status == RunStatus::Cancelled {
                        return Ok(None);
                    }
                }
            }
        }
    }
}

/// A transition that fails the run: the runner could not drive it (outside any step).
pub(super) fn failure(error: String) -> Transition {
    let mut t = Transition::default();
    t.fail_run(error, chrono::Utc::now());
    t
}

/// The engine input for an inbox item: a `resume` answer (the client's command, read by
/// the one command parser) or an event delivery (the store's own item); why not, else.
fn inbox_input(row: &DriveRow, kind: &str, payload: &Value, actor: Actor) -> Result<Input, String> {
    match kind {
        "resume" => {
            let Command::Answer { wait_key, response } = Command::parse(kind, payload)? else {
                return Err("a resume without `wait_key` answers nothing".into());
            };
            Ok(match &row.state.pending {
                Some(Pending::Event { event, .. }) => Input::Event {
                    wait_key,
                    name: event.clone(),
                    payload: response,
                    actor,
                },
                _ => Input::Answer {
                    wait_key,
                    response,
                    actor,
                },
            })
        }
        "event" => Ok(Input::Event {
            wait_key: payload["wait_key"].as_str().unwrap_or_default().to_owned(),
            name: payload["name"].as_str().unwrap_or_default().to_owned(),
            payload: payload.get("payload").cloned().unwrap_or(Value::Null),
            actor,
        }),
        other => Err(format!(
            "command type `{other}` cannot be applied by the runner"
        )),
    }
}
