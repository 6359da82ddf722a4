//! Driving a schedule's parent run: fire when due (once, even after downtime), plan the next
//! due time, wait for the child under fixed-delay, and complete when no firing is left.

use chrono::{DateTime, Utc};
use protocol::RunStatus;

use super::Runner;
use crate::schedule::{Mode, Spec};
use crate::store::{Fire, StoreError};

impl Runner {
    pub(super) async fn drive_schedule(&self, run_id: &str) -> Result<(), StoreError> {
        let store = &self.inner.store;
        loop {
            let Some(s) = store.schedule(run_id).await? else {
                return Ok(());
            };
            if s.status != RunStatus::Waiting {
                return Ok(()); // paused, or ended
            }
            let spec: Spec = serde_json::from_value(s.spec.clone())?;
            let now = Utc::now();
            if let Some(due) = s.next_fire_at {
                if due > now {
                    // The due time may be new (update_schedule, resume): let the timer loop re-plan.
                    self.timer_armed();
                    return Ok(());
                }
                let fired = s.fired + 1;
                let next = spec.after_fire(due, now, fired);
                let name = format!("{run_id}/fire/{fired}");
                let child_run_id =
                    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).to_string();
                let fire = Fire {
                    run_id: run_id.to_owned(),
                    fired: s.fired,
                    due,
                    child_run_id,
                    next,
                };
                let (_, wake) = store.fire_schedule(fire).await?;
                self.wake_all(wake.into_iter().filter(|w| w != run_id));
                if next.is_some() {
                    self.timer_armed();
                }
                continue;
            }
            // Nothing due: fixed-delay waits for the child; otherwise the schedule is done.
            let last_end = match &s.last_child {
                Some(c) => match store.run(c).await {
                    Ok(r) if r.status.is_terminal() => Some(parse(&r.updated_at).unwrap_or(now)),
                    Ok(_) => return Ok(()), // the child's end wakes us
                    Err(StoreError::NotFound(_)) => Some(now),
                    Err(e) => return Err(e),
                },
                None => Some(now),
            };
            if spec.mode == Mode::FixedDelay
                && spec.more_after(s.fired)
                && let Some(next) = last_end.and_then(|end| spec.after_child(end, s.fired))
            {
                store.set_next_fire(run_id, next).await?;
                self.timer_armed();
                continue;
            }
            return store.finish_schedule(run_id).await;
        }
    }
}

fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
