//! Prompts for a team: votes counted by person (the gateway names the voter when it
//! accepts the answer, after checking the approvers), a quorum of the same choice or one
//! rejecting vote (`reject_on: any`) ends the prompt; reminders and escalation are the
//! run's timers (`wake_at`), each a ledger record that channels act on. Pure.

use protocol::{Actor, RecordStatus, RunStatus, Vote};
use serde_json::{Value, json};

use super::exec::Machine;
use super::{Pending, Reject, TeamState, match_choice};
use crate::flows::Team;

/// The state a new prompt of `team` starts with, at `now`.
pub(super) fn start(team: &Team, now: chrono::DateTime<chrono::Utc>) -> TeamState {
    let every = team.remind.map(|d| d.as_millis() as u64);
    TeamState {
        approvers: team.approvers.clone(),
        quorum: team.quorum,
        reject_on_any: team.reject_on_any,
        votes: Vec::new(),
        remind_every_ms: every,
        reminders: 0,
        remind_max: team.remind_max,
        next_remind: team.remind.and_then(|d| later(now, d)),
        escalate_at: team.escalate.as_ref().and_then(|e| later(now, e.after)),
        escalate_notify: team
            .escalate
            .as_ref()
            .map(|e| e.notify.clone())
            .unwrap_or_default(),
        escalate_approvers: team
            .escalate
            .as_ref()
            .map(|e| e.approvers.clone())
            .unwrap_or_default(),
    }
}

fn later(
    now: chrono::DateTime<chrono::Utc>,
    d: std::time::Duration,
) -> Option<chrono::DateTime<chrono::Utc>> {
    now.checked_add_signed(chrono::Duration::from_std(d).ok()?)
}

impl Machine<'_> {
    /// A vote on a team prompt: recorded; the prompt ends when a choice has its quorum or
    /// a rejecting vote arrives with `reject_on: any`. `true` when the run goes on.
    pub(super) fn vote(
        &mut self,
        pending: Pending,
        response: &Value,
        actor: Actor,
    ) -> Result<bool, Reject> {
        let Pending::Ask {
            step_id,
            node,
            choices,
            team: Some(mut team),
            ..
        } = pending.clone()
        else {
            return Err(Reject::BadAnswer);
        };
        let choice = match match_choice(response, &choices, false)? {
            Value::String(s) => s,
            _ => return Err(Reject::BadAnswer),
        };
        let Some(voter) = actor.voter.clone() else {
            return Err(Reject::NotApprover("the answer names no approver".into()));
        };
        if let Some(v) = team.votes.iter().find(|v| v.voter == voter) {
            return Err(Reject::AlreadyVoted(format!(
                "{voter} already voted {}",
                v.choice
            )));
        }
        team.votes.push(Vote {
            voter: voter.clone(),
            choice: choice.clone(),
            channel: actor.channel.clone(),
        });
        let agreeing = team.votes.iter().filter(|v| v.choice == choice).count() as u32;
        let n = team.votes.len();
        let tally = tally(&team, &choices);
        let mut d = self.draft(
            &format!("{step_id}/vote{n}"),
            &node,
            RecordStatus::Completed,
            None,
        );
        d.result =
            Some(json!({"vote": choice, "voter": voter, "tally": tally, "quorum": team.quorum}));
        d.actor = actor.clone();
        self.t.records.push(d);
        let rejects = team.reject_on_any && choices.first() != Some(&choice);
        if agreeing >= team.quorum || rejects {
            let result = json!({"response": choice, "votes": team.votes});
            let mut done = self.draft(&step_id, &node, RecordStatus::Completed, None);
            done.result = Some(result.clone());
            done.actor = actor;
            done.ended_at = Some(self.ctx.now);
            self.t.records.push(done);
            self.state.steps.insert(node, result);
            self.state.pending = None;
            self.state.pc += 1;
            self.t.status = Some(RunStatus::Running);
            return Ok(true);
        }
        self.rewait(with_team(pending, team));
        Ok(false)
    }

    /// A reminder or the escalation came due: recorded (channels act on the records),
    /// and the prompt keeps waiting.
    pub(super) fn team_timer(&mut self, pending: Pending) -> bool {
        let Pending::Ask {
            step_id,
            node,
            prompt,
            choices,
            team: Some(mut team),
            ..
        } = pending.clone()
        else {
            return false;
        };
        let now = self.ctx.now;
        if team.next_due().is_none_or(|due| now < due) {
            return false; // nothing due: no transition, so the runner stops here
        }
        if team.escalate_at.is_some_and(|t| now >= t) {
            team.escalate_at = None;
            team.approvers
                .extend(team.escalate_approvers.iter().cloned());
            let payload = json!({"wait_key": step_id, "prompt": prompt, "choices": choices,
                "notify": team.escalate_notify, "approvers": team.approvers, "quorum": team.quorum});
            let d = self.draft(
                &format!("{step_id}/escalate"),
                &node,
                RecordStatus::Completed,
                Some(("escalate", payload)),
            );
            self.t.records.push(d);
            self.t.notify.extend(team.escalate_notify.iter().cloned());
        }
        if team.next_remind.is_some_and(|t| now >= t) {
            team.reminders += 1;
            let n = team.reminders;
            let payload =
                json!({"wait_key": step_id, "prompt": prompt, "choices": choices, "reminder": n});
            let d = self.draft(
                &format!("{step_id}/remind{n}"),
                &node,
                RecordStatus::Completed,
                Some(("remind", payload)),
            );
            self.t.records.push(d);
            team.next_remind = match team.remind_every_ms {
                Some(ms) if n < team.remind_max => now.checked_add_signed(
                    chrono::Duration::milliseconds(ms.min(i64::MAX as u64) as i64),
                ),
                _ => None,
            };
        }
        self.rewait(with_team(pending, team));
        false
    }

    /// The run keeps waiting on `pending` (changed), without a new prompt record.
    fn rewait(&mut self, pending: Pending) {
        let (_, _, waiting) = super::waits::describe_wait(&pending);
        self.t.wake_at = super::waits::wake_at(&pending);
        self.t.status = Some(RunStatus::Waiting);
        self.t.waiting = Some(waiting);
        self.state.pending = Some(pending);
    }
}

fn with_team(mut pending: Pending, team: TeamState) -> Pending {
    if let Pending::Ask { team: t, .. } = &mut pending {
        *t = Some(team);
    }
    pending
}

/// Votes per choice, in the choices' order.
fn tally(team: &TeamState, choices: &[String]) -> Value {
    let counts: serde_json::Map<String, Value> = choices
        .iter()
        .map(|c| {
            (
                c.clone(),
                json!(team.votes.iter().filter(|v| &v.choice == c).count()),
            )
        })
        .collect();
    Value::Object(counts)
}
