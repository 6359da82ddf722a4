//! Web Push subscriptions: rows of `webhooks` of kind `push`, owned by the credential that
//! subscribed (a paired device or a key). The browser's keys sit in `secret`; their
//! deliveries share the webhook outbox (`hooks`). One live subscription per endpoint: a
//! browser that subscribes again replaces its earlier row.

use super::hooks::{HOOK_COLS, HookKind, Webhook, webhook};
use super::sql::{Db, DbResult, Optional, args};
use super::{Result, Store, StoreError, now, ts};

/// Most live subscriptions one credential may hold.
pub(crate) const MAX_PER_OWNER: i64 = 20;

/// Drops the live push rows whose `filter` column is `value`, with their pending pushes.
pub(super) fn drop_rows(c: &Db, filter: &str, value: &str) -> Result<usize> {
    let at = ts(now());
    let ids: Vec<String> = c
        .prepare_cached(&format!(
            "SELECT id FROM webhooks WHERE kind = 'push' AND deleted_at IS NULL AND {filter} = ?1"
        ))?
        .query_map(args![value], |r| r.get(0))?
        .collect::<DbResult<_>>()?;
    for id in &ids {
        c.execute(
            "UPDATE webhooks SET deleted_at = ?2 WHERE id = ?1",
            args![id, at],
        )?;
        c.execute(
            "UPDATE webhook_deliveries SET status = 'cancelled' WHERE webhook_id = ?1 AND status = 'pending'",
            args![id],
        )?;
    }
    Ok(ids.len())
}

impl Store {
    /// Stores a push subscription (replacing a live one with the same endpoint); refused
    /// when its owner already holds [`MAX_PER_OWNER`].
    pub(crate) async fn subscribe_push(&self, w: Webhook) -> Result<Webhook> {
        self.write(move |c, _| {
            let mut w = w;
            let owner = w.owner.clone().unwrap_or_default();
            c.serialize_on(&format!("push:{}", w.info.url))?;
            c.serialize_on(&format!("push-owner:{owner}"))?;
            let holder: Option<String> = c
                .query_row(
                    "SELECT owner FROM webhooks WHERE kind = 'push' AND deleted_at IS NULL AND url = ?1",
                    args![w.info.url],
                    |r| r.get(0),
                )
                .optional()?;
            if holder.as_ref().is_some_and(|h| *h != owner) {
                return Err(StoreError::Conflict(
                    "another credential subscribed this browser; unsubscribe in the browser and subscribe again".into(),
                ));
            }
            drop_rows(c, "url", &w.info.url)?;
            let held: i64 = c.query_row(
                "SELECT COUNT(*) FROM webhooks WHERE kind = 'push' AND deleted_at IS NULL AND owner = ?1",
                args![owner],
                |r| r.get(0),
            )?;
            if held >= MAX_PER_OWNER {
                return Err(StoreError::Conflict(format!(
                    "this credential already has {held} push subscriptions; remove one first"
                )));
            }
            w.kind = HookKind::Push;
            w.from_gseq = super::ledger::global_head(c)?;
            c.execute(
                "INSERT INTO webhooks (id, url, secret, events, flows, created_at, from_gseq, kind, owner)
                 VALUES (?1, ?2, ?3, '[]', '[]', ?4, ?5, 'push', ?6)",
                args![w.info.id, w.info.url, w.secret, w.info.created_at, w.from_gseq as i64, owner],
            )?;
            Ok(w)
        })
        .await
        .map(|(w, _)| w)
    }

    /// Live push subscriptions, of one owner or of everyone, oldest first.
    pub(crate) async fn push_subscriptions(&self, owner: Option<String>) -> Result<Vec<Webhook>> {
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {HOOK_COLS} FROM webhooks WHERE kind = 'push' AND deleted_at IS NULL
                 AND (CAST(?1 AS TEXT) IS NULL OR owner = ?1) ORDER BY rowid"
            ))?
            .query_map(args![owner], webhook)?
            .collect::<DbResult<Vec<_>>>()?)
        })
        .await
    }

    /// Removes a push subscription (only the owner's, when `owner` is given); its pending
    /// notifications are dropped.
    pub(crate) async fn unsubscribe_push(&self, id: &str, owner: Option<String>) -> Result<()> {
        let id = id.to_owned();
        self.write(move |c, _| {
            let mine: Option<String> = c
                .query_row(
                    "SELECT owner FROM webhooks WHERE id = ?1 AND kind = 'push' AND deleted_at IS NULL",
                    args![id],
                    |r| r.get(0),
                )
                .optional()?;
            match (mine, owner) {
                (Some(m), Some(o)) if m != o => {}
                (Some(_), _) => {
                    drop_rows(c, "id", &id)?;
                    return Ok(());
                }
                (None, _) => {}
            }
            Err(StoreError::NotFound(format!("no push subscription `{id}`")))
        })
        .await
        .map(|_| ())
    }
}
