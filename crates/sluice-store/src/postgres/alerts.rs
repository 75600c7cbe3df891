//! Alert rules, their progress, the notification outbox and silences in PostgreSQL (schema
//! migration 6), as in the SQLite store, with locks where SQLite had its single writer:
//! - Storing a rule locks `alert_rules` against other writers (nodes storing their config's
//!   rules at once take turns, and the second finds the first's rule unchanged).
//! - A commit locks the rows of the rules whose progress it stores (`FOR KEY SHARE`): a rule
//!   deleted meanwhile is either gone before (its progress is skipped) or deleted after the
//!   commit (its progress with it, `ON DELETE CASCADE`). Progress is one upsert that keeps the
//!   stored row when it got further, so two nodes committing at once keep the furthest.
//!
//! Channels are a JSON array's text, made and read by the server (`array_to_json`,
//! `json_array_elements_text`).

use super::PostgresStore;
use crate::error::StoreError;
use crate::model::{
    AlertProgress, AlertRuleRecord, DeliveryOutcome, DeliveryState, Notification,
    NotificationQuery, SilenceRecord,
};
use crate::roles::Alerts;
use async_trait::async_trait;
use sluice_core::time::{Millis, now_millis};
use std::collections::{BTreeMap, HashSet};
use tokio_postgres::Row;

/// Reads rules as [`rule_from`] takes them; a `WHERE` clause may follow.
const RULE_SELECT: &str = "SELECT id, tenant, name, metric, sql, \
     ARRAY(SELECT c FROM json_array_elements_text(channels::JSON) WITH ORDINALITY AS e(c, n) ORDER BY n), \
     origin, created_at FROM alert_rules";

/// The outbox's columns, in the order [`PostgresStore::notification_from`] reads them.
const NOTIFICATION_COLUMNS: &str = "id, channel, tenant, rule, status, created_at, payload, \
     attempts, next_attempt, state, last_error, updated_at";

#[async_trait]
impl Alerts for PostgresStore {
    async fn alert_rules(&self) -> Result<Vec<AlertRuleRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(&format!("{RULE_SELECT} ORDER BY tenant, name"), &[])
            .await
            .map_err(self.failed())?;
        Ok(rows.iter().map(rule_from).collect())
    }

    async fn put_alert_rule(
        &self,
        rule: AlertRuleRecord,
    ) -> Result<(AlertRuleRecord, bool), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        tx.batch_execute("LOCK TABLE alert_rules IN SHARE ROW EXCLUSIVE MODE")
            .await
            .map_err(self.failed())?;
        let stored = tx
            .query_opt(
                &format!("{RULE_SELECT} WHERE tenant = $1 AND name = $2"),
                &[&rule.tenant, &rule.name],
            )
            .await
            .map_err(self.failed())?
            .map(|row| rule_from(&row));
        if let Some(stored) = stored {
            if stored.same_definition(&rule) {
                return Ok((stored, false));
            }
            // Its progress goes with it (ON DELETE CASCADE).
            tx.execute(
                "DELETE FROM alert_rules WHERE id = $1",
                &[&(stored.id as i64)],
            )
            .await
            .map_err(self.failed())?;
        }
        let created_at = now_millis();
        let id: i64 = tx
            .query_one(
                "INSERT INTO alert_rules (tenant, name, metric, sql, channels, origin, created_at) \
                 VALUES ($1, $2, $3, $4, array_to_json($5::TEXT[])::TEXT, $6, $7) RETURNING id",
                &[
                    &rule.tenant,
                    &rule.name,
                    &rule.metric,
                    &rule.sql,
                    &rule.channels,
                    &rule.origin,
                    &created_at,
                ],
            )
            .await
            .map_err(self.failed())?
            .get(0);
        tx.commit().await.map_err(self.failed())?;
        Ok((
            AlertRuleRecord {
                id: id as u64,
                created_at,
                ..rule
            },
            true,
        ))
    }

    async fn delete_alert_rule(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        // Its progress goes with it (ON DELETE CASCADE), in this one statement.
        let deleted = client
            .execute(
                "DELETE FROM alert_rules WHERE tenant = $1 AND name = $2",
                &[&tenant, &name],
            )
            .await
            .map_err(self.failed())?;
        Ok(deleted > 0)
    }

    async fn alert_progress(&self, rule_ids: Vec<u64>) -> Result<Vec<AlertProgress>, StoreError> {
        if rule_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = rule_ids.iter().map(|&id| id as i64).collect();
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT rule_id, cursor, snapshot FROM alert_progress \
                 WHERE rule_id = ANY($1) ORDER BY rule_id",
                &[&ids],
            )
            .await
            .map_err(self.failed())?;
        Ok(rows
            .iter()
            .map(|row| AlertProgress {
                rule_id: row.get::<_, i64>(0) as u64,
                cursor: row.get(1),
                snapshot: row.get(2),
            })
            .collect())
    }

    async fn commit_alerts(
        &self,
        progress: Vec<AlertProgress>,
        notifications: Vec<Notification>,
    ) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        if !progress.is_empty() {
            let ids: Vec<i64> = progress.iter().map(|p| p.rule_id as i64).collect();
            let existing: HashSet<i64> = tx
                .query(
                    "SELECT id FROM alert_rules WHERE id = ANY($1) FOR KEY SHARE",
                    &[&ids],
                )
                .await
                .map_err(self.failed())?
                .iter()
                .map(|row| row.get(0))
                .collect();
            let latest = furthest_progress(&progress, &existing);
            let ids: Vec<i64> = latest.keys().copied().collect();
            let cursors: Vec<i64> = latest.values().map(|p| p.cursor).collect();
            let snapshots: Vec<&[u8]> = latest.values().map(|p| p.snapshot.as_slice()).collect();
            tx.execute(
                "INSERT INTO alert_progress (rule_id, cursor, snapshot) \
                 SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BYTEA[]) \
                 ON CONFLICT (rule_id) DO UPDATE SET cursor = EXCLUDED.cursor, snapshot = EXCLUDED.snapshot \
                 WHERE alert_progress.cursor <= EXCLUDED.cursor",
                &[&ids, &cursors, &snapshots],
            )
            .await
            .map_err(self.failed())?;
        }
        let inserted = if notifications.is_empty() {
            0
        } else {
            let outbox = OutboxColumns::of(&notifications);
            tx.execute(
                &format!(
                    "INSERT INTO alert_outbox ({NOTIFICATION_COLUMNS}) \
                     SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
                     $6::BIGINT[], $7::TEXT[], $8::BIGINT[], $9::BIGINT[], $10::TEXT[], $11::TEXT[], $12::BIGINT[]) \
                     ON CONFLICT (id, channel) DO NOTHING"
                ),
                &[
                    &outbox.ids,
                    &outbox.channels,
                    &outbox.tenants,
                    &outbox.rules,
                    &outbox.statuses,
                    &outbox.created_at,
                    &outbox.payloads,
                    &outbox.attempts,
                    &outbox.next_attempts,
                    &outbox.states,
                    &outbox.last_errors,
                    &outbox.updated_at,
                ],
            )
            .await
            .map_err(self.failed())?
        };
        tx.commit().await.map_err(self.failed())?;
        Ok(inserted)
    }

    async fn due_notifications(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {NOTIFICATION_COLUMNS} FROM alert_outbox \
                     WHERE state = 'pending' AND next_attempt <= $1 \
                     ORDER BY next_attempt, created_at, id, channel LIMIT $2"
                ),
                &[&now, &limit],
            )
            .await
            .map_err(self.failed())?;
        rows.iter().map(|row| self.notification_from(row)).collect()
    }

    async fn record_deliveries(&self, outcomes: Vec<DeliveryOutcome>) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        // One statement per outcome, in order: of two outcomes for one notification, the
        // second applies only if the first left it pending, as the contract reads.
        let update = tx
            .prepare(
                "UPDATE alert_outbox SET state = $3, attempts = $4, next_attempt = $5, \
                 last_error = $6, updated_at = $7 \
                 WHERE id = $1 AND channel = $2 AND state = 'pending'",
            )
            .await
            .map_err(self.failed())?;
        for outcome in &outcomes {
            tx.execute(
                &update,
                &[
                    &outcome.id,
                    &outcome.channel,
                    &outcome.state.as_str(),
                    &i64::from(outcome.attempts),
                    &outcome.next_attempt,
                    &outcome.last_error,
                    &outcome.at,
                ],
            )
            .await
            .map_err(self.failed())?;
        }
        tx.commit().await.map_err(self.failed())
    }

    async fn notifications(
        &self,
        query: NotificationQuery,
    ) -> Result<Vec<Notification>, StoreError> {
        let limit = query.effective_limit() as i64;
        let state = query.state.map(DeliveryState::as_str);
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {NOTIFICATION_COLUMNS} FROM alert_outbox \
                     WHERE ($1::TEXT IS NULL OR tenant = $1) AND ($2::TEXT IS NULL OR rule = $2) \
                     AND ($3::TEXT IS NULL OR state = $3) AND ($4::BIGINT IS NULL OR created_at < $4) \
                     ORDER BY created_at DESC, id DESC, channel DESC LIMIT $5"
                ),
                &[&query.tenant, &query.rule, &state, &query.before, &limit],
            )
            .await
            .map_err(self.failed())?;
        rows.iter().map(|row| self.notification_from(row)).collect()
    }

    async fn notification_counts(&self) -> Result<Vec<(DeliveryState, u64)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT state, COUNT(*) FROM alert_outbox GROUP BY state ORDER BY state",
                &[],
            )
            .await
            .map_err(self.failed())?;
        rows.iter()
            .map(|row| Ok((self.state_of(row.get(0))?, row.get::<_, i64>(1) as u64)))
            .collect()
    }

    async fn silences(&self) -> Result<Vec<SilenceRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, tenant, rule, key, from_ms, to_ms, comment, created_at \
                 FROM alert_silences ORDER BY tenant, from_ms, id",
                &[],
            )
            .await
            .map_err(self.failed())?;
        Ok(rows
            .iter()
            .map(|row| SilenceRecord {
                id: row.get(0),
                tenant: row.get(1),
                rule: row.get(2),
                key: row.get(3),
                from: row.get(4),
                to: row.get(5),
                comment: row.get(6),
                created_at: row.get(7),
            })
            .collect())
    }

    async fn put_silence(&self, silence: SilenceRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        let inserted = client
            .execute(
                "INSERT INTO alert_silences (id, tenant, rule, key, from_ms, to_ms, comment, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                &[
                    &silence.id,
                    &silence.tenant,
                    &silence.rule,
                    &silence.key,
                    &silence.from,
                    &silence.to,
                    &silence.comment,
                    &silence.created_at,
                ],
            )
            .await
            .map_err(self.failed())?;
        if inserted == 0 {
            return Err(StoreError::Invalid(format!(
                "a silence with id {:?} exists already; give the new silence an id of its own",
                silence.id
            )));
        }
        Ok(())
    }

    async fn delete_silence(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let deleted = client
            .execute(
                "DELETE FROM alert_silences WHERE tenant = $1 AND id = $2",
                &[&tenant, &id],
            )
            .await
            .map_err(self.failed())?;
        Ok(deleted > 0)
    }
}

impl PostgresStore {
    /// A notification from [`NOTIFICATION_COLUMNS`].
    fn notification_from(&self, row: &Row) -> Result<Notification, StoreError> {
        Ok(Notification {
            id: row.get(0),
            channel: row.get(1),
            tenant: row.get(2),
            rule: row.get(3),
            status: row.get(4),
            created_at: row.get(5),
            payload: row.get(6),
            attempts: row.get::<_, i64>(7) as u32,
            next_attempt: row.get(8),
            state: self.state_of(row.get(9))?,
            last_error: row.get(10),
            updated_at: row.get(11),
        })
    }

    /// A stored delivery state.
    fn state_of(&self, text: &str) -> Result<DeliveryState, StoreError> {
        DeliveryState::parse(text).ok_or_else(|| StoreError::Postgres {
            location: self.location.to_string(),
            detail: format!(
                "unknown notification state {text:?} in alert_outbox (written by a newer sluice? upgrade this one)"
            ),
        })
    }
}

/// A rule from [`RULE_SELECT`].
fn rule_from(row: &Row) -> AlertRuleRecord {
    AlertRuleRecord {
        id: row.get::<_, i64>(0) as u64,
        tenant: row.get(1),
        name: row.get(2),
        metric: row.get(3),
        sql: row.get(4),
        channels: row.get(5),
        origin: row.get(6),
        created_at: row.get(7),
    }
}

/// Per rule of `existing`, the progress that applying `progress` in order would leave: the
/// furthest, the later of equals. (One upsert cannot touch a row twice.)
fn furthest_progress<'a>(
    progress: &'a [AlertProgress],
    existing: &HashSet<i64>,
) -> BTreeMap<i64, &'a AlertProgress> {
    let mut latest: BTreeMap<i64, &AlertProgress> = BTreeMap::new();
    for one in progress {
        let id = one.rule_id as i64;
        if !existing.contains(&id) {
            continue;
        }
        let kept = latest.entry(id).or_insert(one);
        if kept.cursor <= one.cursor {
            *kept = one;
        }
    }
    latest
}

/// Notifications' columns as the arrays `UNNEST` takes.
struct OutboxColumns<'a> {
    ids: Vec<&'a str>,
    channels: Vec<&'a str>,
    tenants: Vec<&'a str>,
    rules: Vec<&'a str>,
    statuses: Vec<&'a str>,
    created_at: Vec<i64>,
    payloads: Vec<&'a str>,
    attempts: Vec<i64>,
    next_attempts: Vec<i64>,
    states: Vec<&'static str>,
    last_errors: Vec<Option<&'a str>>,
    updated_at: Vec<i64>,
}

impl<'a> OutboxColumns<'a> {
    fn of(notifications: &'a [Notification]) -> OutboxColumns<'a> {
        let text = |field: fn(&Notification) -> &str| -> Vec<&'a str> {
            notifications.iter().map(field).collect()
        };
        let number = |field: fn(&Notification) -> i64| -> Vec<i64> {
            notifications.iter().map(field).collect()
        };
        OutboxColumns {
            ids: text(|n| &n.id),
            channels: text(|n| &n.channel),
            tenants: text(|n| &n.tenant),
            rules: text(|n| &n.rule),
            statuses: text(|n| &n.status),
            created_at: number(|n| n.created_at),
            payloads: text(|n| &n.payload),
            attempts: number(|n| i64::from(n.attempts)),
            next_attempts: number(|n| n.next_attempt),
            states: notifications.iter().map(|n| n.state.as_str()).collect(),
            last_errors: notifications
                .iter()
                .map(|n| n.last_error.as_deref())
                .collect(),
            updated_at: number(|n| n.updated_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(rule_id: u64, cursor: Millis, snapshot: &[u8]) -> AlertProgress {
        AlertProgress {
            rule_id,
            cursor,
            snapshot: snapshot.to_vec(),
        }
    }

    #[test]
    fn the_furthest_progress_of_each_existing_rule_is_kept_the_later_of_equals() {
        let given = [
            progress(1, 10, b"a"),
            progress(1, 5, b"b"),
            progress(2, 7, b"c"),
            progress(2, 7, b"d"),
            progress(3, 9, b"e"),
        ];
        let existing = HashSet::from([1, 2]);
        let kept: Vec<(i64, &[u8])> = furthest_progress(&given, &existing)
            .into_iter()
            .map(|(id, p)| (id, p.snapshot.as_slice()))
            .collect();
        assert_eq!(kept, [(1, &b"a"[..]), (2, &b"d"[..])]);
    }
}
