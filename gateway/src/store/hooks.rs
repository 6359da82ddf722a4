//! Rows of the integration surface: trigger deliveries (each accepted once), webhook
//! subscriptions, and the webhook outbox (one row per event and subscriber, retried until
//! delivered or out of attempts). The dispatcher's ledger cursor is stored in the same
//! transaction as the deliveries it enqueued, so a restart neither loses nor repeats one.

use super::sql::{Db, DbResult, Optional, Row, args};
use serde_json::{Value, json};

use super::runs::{NewRun, get_summary, insert_run};
use super::{Result, StoreError, now, ts};
use protocol::RunSummary;

/// The key namespace of `runs/start` requests that carry an `Idempotency-Key`.
pub(crate) const START_NAMESPACE: &str = "http:runs.start";

/// What [`Store::start_run_once`] did.
#[derive(Debug)]
pub(crate) enum Started {
    /// Started the run; the ids to wake.
    Fresh(RunSummary, Vec<String>),
    /// The key was used before: the run it started.
    Earlier(RunSummary),
}

const CURSOR_KEY: &str = "webhooks.cursor";

/// The columns [`webhook`] reads.
pub(super) const HOOK_COLS: &str =
    "id, url, secret, events, flows, created_at, from_gseq, kind, owner";

/// A webhook subscription.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    /// The subscription as the API shows it (its events, and the flows it is limited to).
    pub(crate) info: protocol::WebhookInfo,
    /// Signs each delivery; shown once, when the webhook is created.
    pub(crate) secret: String,
    /// Only records after this global cursor are delivered (set at creation).
    pub(crate) from_gseq: u64,
    /// A signed JSON POST (`Webhook`) or a Web Push notification (`Push`: `secret` holds
    /// the browser's keys, `owner` the credential that subscribed).
    pub(crate) kind: HookKind,
    /// The id of the credential a push subscription belongs to.
    pub(crate) owner: Option<String>,
}

/// What a subscription receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HookKind {
    Webhook,
    Push,
}

impl HookKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Push => "push",
        }
    }
}

impl Webhook {
    pub(crate) fn wants(&self, event: &str, flow: &str) -> bool {
        let w = &self.info;
        w.events.iter().any(|e| e == event)
            && (w.flows.is_empty() || w.flows.iter().any(|f| f == flow))
    }
}

/// An event to deliver to one subscriber.
#[derive(Debug, Clone)]
pub(crate) struct NewDelivery {
    pub(crate) webhook_id: String,
    pub(crate) event: String,
    pub(crate) run_id: String,
    /// The global cursor of the record that caused it (one delivery per record and hook).
    pub(crate) gseq: u64,
    pub(crate) payload: Value,
}

/// A delivery that is due, with what is needed to send it.
#[derive(Debug, Clone)]
pub(crate) struct DueDelivery {
    pub(crate) id: String,
    /// The subscription it goes to, and what kind that is.
    pub(crate) webhook_id: String,
    pub(crate) kind: HookKind,
    /// The credential a push subscription belongs to.
    pub(crate) owner: Option<String>,
    pub(crate) event: String,
    pub(crate) url: String,
    pub(crate) secret: String,
    pub(crate) payload: String,
    pub(crate) attempts: u32,
}

/// How one attempt went.
pub(crate) enum Attempt {
    Delivered {
        status: u16,
    },
    Failed {
        status: Option<u16>,
        error: String,
        retry_at_ms: Option<i64>,
    },
    /// Not sent, and never will be (a push whose prompt was answered meanwhile).
    Cancelled {
        reason: String,
    },
}

fn strings(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

pub(super) fn webhook(r: &Row<'_, '_>) -> DbResult<Webhook> {
    let info = protocol::WebhookInfo {
        id: r.get(0)?,
        url: r.get(1)?,
        events: strings(&r.get::<String>(3)?),
        flows: strings(&r.get::<String>(4)?),
        created_at: r.get(5)?,
    };
    Ok(Webhook {
        info,
        secret: r.get(2)?,
        from_gseq: r.get::<i64>(6)? as u64,
        kind: match r.get::<String>(7)?.as_str() {
            "push" => HookKind::Push,
            _ => HookKind::Webhook,
        },
        owner: r.get(8)?,
    })
}

pub(crate) fn now_ms() -> i64 {
    now().timestamp_millis()
}

impl super::Store {
    /// Starts a run at most once per (`namespace`, `key`): the key and the run commit in
    /// one transaction, so a repeated key finds the run the first request started.
    /// Trigger deliveries use the trigger's name as the namespace; `runs/start` with an
    /// `Idempotency-Key` uses [`START_NAMESPACE`].
    pub(crate) async fn start_run_once(
        &self,
        namespace: &str,
        key: &str,
        run: NewRun,
    ) -> Result<Started> {
        self.start_run_once_by(vec![(namespace.to_owned(), key.to_owned())], run)
            .await
    }

    /// Like [`Self::start_run_once`] with several keys: when any of them was used before,
    /// nothing starts and the run that key started is returned; otherwise every key is
    /// recorded with the new run. (A signed trigger is keyed by its delivery id and by its
    /// signature, so a captured request replayed under a fresh delivery id starts nothing.)
    pub(crate) async fn start_run_once_by(
        &self,
        keys: Vec<(String, String)>,
        run: NewRun,
    ) -> Result<Started> {
        self.write(move |c, out| {
            for (ns, key) in &keys {
                c.serialize_on(&format!("start:{ns}:{key}"))?;
            }
            for (ns, key) in &keys {
                let earlier: Option<String> = c
                    .prepare_cached(
                        "SELECT run_id FROM trigger_deliveries WHERE trigger_name = ?1 AND delivery_id = ?2",
                    )?
                    .query_row(args![ns, key], |r| r.get(0))
                    .optional()?;
                if let Some(run_id) = earlier {
                    return Ok((false, get_summary(c, &run_id)?));
                }
            }
            for (ns, key) in &keys {
                c.prepare_cached(
                    "INSERT INTO trigger_deliveries (trigger_name, delivery_id, run_id, created_at) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(args![ns, key, run.run_id, ts(now())])?;
            }
            insert_run(c, &run, out)?;
            Ok((true, get_summary(c, &run.run_id)?))
        })
        .await
        .map(|((fresh, s), wake)| {
            if fresh {
                Started::Fresh(s, wake)
            } else {
                Started::Earlier(s)
            }
        })
    }

    pub(crate) async fn create_webhook(&self, w: Webhook) -> Result<Webhook> {
        self.write(move |c, _| {
            let mut w = w;
            w.from_gseq = super::ledger::global_head(c)?;
            c.execute(
                "INSERT INTO webhooks (id, url, secret, events, flows, created_at, from_gseq, kind, owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                args![w.info.id, w.info.url, w.secret, serde_json::to_string(&w.info.events)?,
                        serde_json::to_string(&w.info.flows)?, w.info.created_at, w.from_gseq as i64,
                        w.kind.as_str(), w.owner],
            )?;
            Ok(w)
        })
        .await
        .map(|(w, _)| w)
    }

    /// Subscriptions that are not deleted, oldest first: webhooks and push subscriptions.
    pub(crate) async fn webhooks(&self) -> Result<Vec<Webhook>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {HOOK_COLS} FROM webhooks WHERE deleted_at IS NULL ORDER BY rowid"
            ))?
            .query_map([], webhook)?
            .collect::<DbResult<Vec<_>>>()?)
        })
        .await
    }

    /// Deletes a subscription; its pending deliveries are dropped (marked `cancelled`).
    pub(crate) async fn delete_webhook(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c, _| {
            let n = c.execute(
                "UPDATE webhooks SET deleted_at = ?2 WHERE id = ?1 AND kind = 'webhook' AND deleted_at IS NULL",
                args![id, ts(now())],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("no webhook `{id}`")));
            }
            c.execute(
                "UPDATE webhook_deliveries SET status = 'cancelled' WHERE webhook_id = ?1 AND status = 'pending'",
                args![id],
            )?;
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// The global cursor the dispatcher has enqueued up to.
    pub(crate) async fn webhook_cursor(&self) -> Result<Option<u64>> {
        self.read(|c| {
            let v: Option<String> = c
                .query_row("SELECT value FROM meta WHERE key = ?1", [CURSOR_KEY], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok(v.and_then(|v| v.parse().ok()))
        })
        .await
    }

    /// Enqueues deliveries and moves the cursor, in one transaction.
    pub(crate) async fn enqueue_deliveries(
        &self,
        cursor: u64,
        items: Vec<NewDelivery>,
    ) -> Result<()> {
        self.write(move |c, _| {
            let at = ts(now());
            let due = now_ms();
            let mut ins = c.prepare_cached(
                "INSERT INTO webhook_deliveries (id, webhook_id, event, run_id, gseq, payload, status, next_attempt_ms, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8) ON CONFLICT DO NOTHING",
            )?;
            for d in &items {
                let id = uuid::Uuid::new_v5(
                    &uuid::Uuid::NAMESPACE_OID,
                    format!("{}:{}", d.webhook_id, d.gseq).as_bytes(),
                )
                .to_string();
                let mut payload = d.payload.clone();
                payload["delivery_id"] = json!(id);
                ins.execute(args![id, d.webhook_id, d.event, d.run_id, d.gseq as i64,
                                    payload.to_string(), due, at])?;
            }
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
                args![CURSOR_KEY, cursor.to_string()],
            )?;
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// Pending deliveries due now, oldest first, and when the next one after them is due.
    pub(crate) async fn due_deliveries(
        &self,
        limit: u32,
    ) -> Result<(Vec<DueDelivery>, Option<i64>)> {
        self.read(move |c| {
            let at = now_ms();
            let due = c
                .prepare_cached(
                    "SELECT d.id, d.event, w.url, w.secret, d.payload, d.attempts, w.id, w.kind, w.owner FROM webhook_deliveries d
                     JOIN webhooks w ON w.id = d.webhook_id
                     WHERE d.status = 'pending' AND d.next_attempt_ms <= ?1 ORDER BY d.next_attempt_ms LIMIT ?2",
                )?
                .query_map(args![at, limit as i64], |r| {
                    Ok(DueDelivery {
                        id: r.get(0)?,
                        event: r.get(1)?,
                        url: r.get(2)?,
                        secret: r.get(3)?,
                        payload: r.get(4)?,
                        attempts: r.get::<i64>(5)? as u32,
                        webhook_id: r.get(6)?,
                        kind: if r.get::<String>(7)? == "push" {
                            HookKind::Push
                        } else {
                            HookKind::Webhook
                        },
                        owner: r.get(8)?,
                    })
                })?
                .collect::<DbResult<Vec<_>>>()?;
            let next: Option<i64> = c.query_row(
                "SELECT MIN(next_attempt_ms) FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_ms > ?1",
                [at],
                |r| r.get(0),
            )?;
            Ok((due, next))
        })
        .await
    }

    /// Records an attempt: delivered, retried later, or given up (`failed`).
    pub(crate) async fn record_attempt(&self, id: &str, a: Attempt) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c, _| {
            match a {
                Attempt::Delivered { status } => c.execute(
                    "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, last_status = ?2,
                     last_error = NULL, delivered_at = ?3 WHERE id = ?1",
                    args![id, status, ts(now())],
                )?,
                Attempt::Cancelled { reason } => c.execute(
                    "UPDATE webhook_deliveries SET status = 'cancelled', last_error = ?2 WHERE id = ?1",
                    args![id, reason],
                )?,
                Attempt::Failed { status, error, retry_at_ms } => c.execute(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = ?2, last_error = ?3,
                     status = CASE WHEN CAST(?4 AS BIGINT) IS NULL THEN 'failed' ELSE status END,
                     next_attempt_ms = COALESCE(?4, next_attempt_ms) WHERE id = ?1",
                    args![id, status, error, retry_at_ms],
                )?,
            };
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// The delivery log, newest first.
    pub(crate) async fn deliveries(
        &self,
        status: Option<String>,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<protocol::Delivery>, bool)> {
        self.read(move |c| {
            let mut items = c
                .prepare_cached(
                    "SELECT id, webhook_id, event, run_id, status, attempts, last_status, last_error,
                            next_attempt_ms, created_at, delivered_at
                     FROM webhook_deliveries WHERE (CAST(?1 AS TEXT) IS NULL OR status = ?1)
                     ORDER BY rowid DESC LIMIT ?2 OFFSET ?3",
                )?
                .query_map(args![status, limit as i64 + 1, offset as i64], |r| {
                    let pending = r.get::<String>(4)? == "pending";
                    let next_ms: i64 = r.get(8)?;
                    let next = pending
                        .then(|| chrono::DateTime::from_timestamp_millis(next_ms).map(ts))
                        .flatten();
                    Ok(protocol::Delivery {
                        id: r.get(0)?,
                        webhook_id: r.get(1)?,
                        event: r.get(2)?,
                        run_id: r.get(3)?,
                        status: r.get(4)?,
                        attempts: r.get::<i64>(5)? as u32,
                        last_status: r.get::<Option<i64>>(6)?.map(|s| s as u16),
                        last_error: r.get(7)?,
                        next_attempt_at: next,
                        created_at: r.get(9)?,
                        delivered_at: r.get(10)?,
                    })
                })?
                .collect::<DbResult<Vec<_>>>()?;
            let more = items.len() > limit as usize;
            items.truncate(limit as usize);
            Ok((items, more))
        })
        .await
    }

    /// The newest run of `flow` in `session` that waits for a person, if any.
    pub(crate) async fn waiting_in_session(
        &self,
        session: &str,
        flow: &str,
    ) -> Result<Option<String>> {
        let (session, flow) = (session.to_owned(), flow.to_owned());
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT run_id FROM runs WHERE session_id = ?1 AND bundle_id = ?2 AND status = 'waiting'
                 ORDER BY rowid DESC LIMIT 1",
                args![session, flow],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    /// Seeds a session's history with earlier turns, only when it has none yet.
    pub(crate) async fn seed_history(
        &self,
        session: &str,
        turns: Vec<crate::engine::ChatMessage>,
    ) -> Result<()> {
        let session = session.to_owned();
        self.write(move |c, _| seed(c, &session, &turns))
            .await
            .map(|_| ())
    }
}

fn seed(c: &Db, session: &str, turns: &[crate::engine::ChatMessage]) -> Result<()> {
    c.serialize_on(&format!("history:{session}"))?;
    let have: i64 = c.query_row(
        "SELECT COUNT(*) FROM session_messages WHERE session_id = ?1",
        [session],
        |r| r.get(0),
    )?;
    if have > 0 {
        return Ok(());
    }
    let at = ts(now());
    let mut ins = c.prepare_cached(
        "INSERT INTO session_messages (session_id, run_id, role, content, created_at) VALUES (?1, '', ?2, ?3, ?4)",
    )?;
    for m in turns {
        ins.execute(args![session, m.role, m.content, at])?;
    }
    Ok(())
}
