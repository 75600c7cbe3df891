//! Alert rules, their progress, the notification outbox and silences (schema migration 9).
//!
//! A rule's channels are stored as a JSON array's text: written by [`channels_json`], read
//! back through SQLite's own `json_each`. Rule ids are `AUTOINCREMENT`, so a replaced or
//! deleted rule's id is never handed out again. SQLite leaves the progress table's reference
//! to its rule unenforced (the store does not turn foreign keys on): deleting or replacing a
//! rule deletes its progress here, in the same transaction.

use super::{SqliteStore, classify};
use crate::error::StoreError;
use crate::model::{
    AlertProgress, AlertRuleRecord, DeliveryOutcome, DeliveryState, Notification,
    NotificationQuery, SilenceRecord,
};
use crate::roles::Alerts;
use async_trait::async_trait;
use rusqlite::types::Type;
use rusqlite::{Connection, TransactionBehavior, params};
use sluice_core::time::{Millis, now_millis};
use std::fmt::Write as _;

/// The outbox's columns, in the order [`notification_from`] reads them.
const NOTIFICATION_COLUMNS: &str = "id, channel, tenant, rule, status, created_at, payload, \
     attempts, next_attempt, state, last_error, updated_at";

#[async_trait]
impl Alerts for SqliteStore {
    async fn alert_rules(&self) -> Result<Vec<AlertRuleRecord>, StoreError> {
        self.read(|connection, path| rules_of(connection, "", []).map_err(|e| classify(path, e)))
            .await
    }

    async fn put_alert_rule(
        &self,
        rule: AlertRuleRecord,
    ) -> Result<(AlertRuleRecord, bool), StoreError> {
        self.write(move |connection, path| {
            let fail = |e| classify(path, e);
            let tx = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(fail)?;
            let stored = rules_of(
                &tx,
                "WHERE r.tenant = ?1 AND r.name = ?2",
                params![rule.tenant, rule.name],
            )
            .map_err(fail)?
            .pop();
            if let Some(stored) = stored {
                if stored.same_definition(&rule) {
                    return Ok((stored, false));
                }
                delete_rule(&tx, "id = ?1", params![stored.id]).map_err(fail)?;
            }
            let created_at = now_millis();
            let id: u64 = tx
                .query_row(
                    "INSERT INTO alert_rules (tenant, name, metric, sql, channels, origin, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
                    params![
                        rule.tenant,
                        rule.name,
                        rule.metric,
                        rule.sql,
                        channels_json(&rule.channels),
                        rule.origin,
                        created_at
                    ],
                    |row| row.get(0),
                )
                .map_err(fail)?;
            tx.commit().map_err(fail)?;
            Ok((
                AlertRuleRecord {
                    id,
                    created_at,
                    ..rule
                },
                true,
            ))
        })
        .await
    }

    async fn delete_alert_rule(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.write(move |connection, path| {
            let fail = |e| classify(path, e);
            let tx = connection.transaction().map_err(fail)?;
            let deleted = delete_rule(&tx, "tenant = ?1 AND name = ?2", params![tenant, name])
                .map_err(fail)?;
            tx.commit().map_err(fail)?;
            Ok(deleted)
        })
        .await
    }

    async fn alert_progress(&self, rule_ids: Vec<u64>) -> Result<Vec<AlertProgress>, StoreError> {
        if rule_ids.is_empty() {
            return Ok(Vec::new());
        }
        // The ids go in as one JSON array: one statement (one snapshot) whatever their number.
        let ids = format!(
            "[{}]",
            rule_ids
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        self.read(move |connection, path| {
            let fail = |e| classify(path, e);
            let mut statement = connection
                .prepare_cached(
                    "SELECT rule_id, cursor, snapshot FROM alert_progress \
                     WHERE rule_id IN (SELECT value FROM json_each(?1)) ORDER BY rule_id",
                )
                .map_err(fail)?;
            let rows = statement
                .query_map([ids], |row| {
                    Ok(AlertProgress {
                        rule_id: row.get(0)?,
                        cursor: row.get(1)?,
                        snapshot: row.get(2)?,
                    })
                })
                .map_err(fail)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(fail)
        })
        .await
    }

    async fn commit_alerts(
        &self,
        progress: Vec<AlertProgress>,
        notifications: Vec<Notification>,
    ) -> Result<u64, StoreError> {
        self.write(move |connection, path| {
            let fail = |e| classify(path, e);
            let tx = connection
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(fail)?;
            store_progress(&tx, &progress).map_err(fail)?;
            let inserted = insert_notifications(&tx, &notifications).map_err(fail)?;
            tx.commit().map_err(fail)?;
            Ok(inserted)
        })
        .await
    }

    async fn due_notifications(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |connection, path| {
            let fail = |e| classify(path, e);
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT {NOTIFICATION_COLUMNS} FROM alert_outbox \
                     WHERE state = 'pending' AND next_attempt <= ?1 \
                     ORDER BY next_attempt, created_at, id, channel LIMIT ?2"
                ))
                .map_err(fail)?;
            let rows = statement
                .query_map(params![now, limit], notification_from)
                .map_err(fail)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(fail)
        })
        .await
    }

    async fn record_deliveries(&self, outcomes: Vec<DeliveryOutcome>) -> Result<(), StoreError> {
        self.write(move |connection, path| {
            let fail = |e| classify(path, e);
            let tx = connection.transaction().map_err(fail)?;
            {
                let mut update = tx
                    .prepare_cached(
                        "UPDATE alert_outbox SET state = ?3, attempts = ?4, next_attempt = ?5, \
                         last_error = ?6, updated_at = ?7 \
                         WHERE id = ?1 AND channel = ?2 AND state = 'pending'",
                    )
                    .map_err(fail)?;
                for outcome in &outcomes {
                    update
                        .execute(params![
                            outcome.id,
                            outcome.channel,
                            outcome.state.as_str(),
                            outcome.attempts,
                            outcome.next_attempt,
                            outcome.last_error,
                            outcome.at
                        ])
                        .map_err(fail)?;
                }
            }
            tx.commit().map_err(fail)
        })
        .await
    }

    async fn notifications(
        &self,
        query: NotificationQuery,
    ) -> Result<Vec<Notification>, StoreError> {
        let limit = query.effective_limit() as i64;
        self.read(move |connection, path| {
            let fail = |e| classify(path, e);
            let mut statement = connection
                .prepare_cached(&format!(
                    "SELECT {NOTIFICATION_COLUMNS} FROM alert_outbox \
                     WHERE (?1 IS NULL OR tenant = ?1) AND (?2 IS NULL OR rule = ?2) \
                     AND (?3 IS NULL OR state = ?3) AND (?4 IS NULL OR created_at < ?4) \
                     ORDER BY created_at DESC, id DESC, channel DESC LIMIT ?5"
                ))
                .map_err(fail)?;
            let rows = statement
                .query_map(
                    params![
                        query.tenant,
                        query.rule,
                        query.state.map(DeliveryState::as_str),
                        query.before,
                        limit
                    ],
                    notification_from,
                )
                .map_err(fail)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(fail)
        })
        .await
    }

    async fn notification_counts(&self) -> Result<Vec<(DeliveryState, u64)>, StoreError> {
        self.read(|connection, path| {
            let fail = |e| classify(path, e);
            let mut statement = connection
                .prepare_cached(
                    "SELECT state, COUNT(*) FROM alert_outbox GROUP BY state ORDER BY state",
                )
                .map_err(fail)?;
            let rows = statement
                .query_map([], |row| Ok((state_from(row, 0)?, row.get(1)?)))
                .map_err(fail)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(fail)
        })
        .await
    }

    async fn silences(&self) -> Result<Vec<SilenceRecord>, StoreError> {
        self.read(|connection, path| {
            let fail = |e| classify(path, e);
            let mut statement = connection
                .prepare_cached(
                    "SELECT id, tenant, rule, key, from_ms, to_ms, comment, created_at \
                     FROM alert_silences ORDER BY tenant, from_ms, id",
                )
                .map_err(fail)?;
            let rows = statement
                .query_map([], |row| {
                    Ok(SilenceRecord {
                        id: row.get(0)?,
                        tenant: row.get(1)?,
                        rule: row.get(2)?,
                        key: row.get(3)?,
                        from: row.get(4)?,
                        to: row.get(5)?,
                        comment: row.get(6)?,
                        created_at: row.get(7)?,
                    })
                })
                .map_err(fail)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(fail)
        })
        .await
    }

    async fn put_silence(&self, silence: SilenceRecord) -> Result<(), StoreError> {
        self.write(move |connection, path| {
            let inserted = connection
                .execute(
                    "INSERT INTO alert_silences (id, tenant, rule, key, from_ms, to_ms, comment, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING",
                    params![
                        silence.id,
                        silence.tenant,
                        silence.rule,
                        silence.key,
                        silence.from,
                        silence.to,
                        silence.comment,
                        silence.created_at
                    ],
                )
                .map_err(|e| classify(path, e))?;
            if inserted == 0 {
                return Err(silence_exists(&silence.id));
            }
            Ok(())
        })
        .await
    }

    async fn delete_silence(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.write(move |connection, path| {
            let deleted = connection
                .execute(
                    "DELETE FROM alert_silences WHERE tenant = ?1 AND id = ?2",
                    params![tenant, id],
                )
                .map_err(|e| classify(path, e))?;
            Ok(deleted > 0)
        })
        .await
    }
}

/// The rules `filter` (a `WHERE` clause over `alert_rules r`, or nothing) selects, by tenant
/// then name, each with its channels in order.
fn rules_of(
    connection: &Connection,
    filter: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<AlertRuleRecord>> {
    // One row per channel (one with a NULL channel for a rule without any).
    let mut statement = connection.prepare_cached(&format!(
        "SELECT r.id, r.tenant, r.name, r.metric, r.sql, r.origin, r.created_at, c.value \
         FROM alert_rules r LEFT JOIN json_each(r.channels) c {filter} \
         ORDER BY r.tenant, r.name, c.key"
    ))?;
    let mut rows = statement.query(params)?;
    let mut rules: Vec<AlertRuleRecord> = Vec::new();
    while let Some(row) = rows.next()? {
        let id: u64 = row.get(0)?;
        let channel: Option<String> = row.get(7)?;
        match rules.last_mut() {
            Some(rule) if rule.id == id => rule.channels.extend(channel),
            _ => rules.push(AlertRuleRecord {
                id,
                tenant: row.get(1)?,
                name: row.get(2)?,
                metric: row.get(3)?,
                sql: row.get(4)?,
                channels: channel.into_iter().collect(),
                origin: row.get(5)?,
                created_at: row.get(6)?,
            }),
        }
    }
    Ok(rules)
}

/// Deletes the rules `filter` (a condition over `alert_rules`) selects, with their progress;
/// whether there were any.
fn delete_rule(
    tx: &rusqlite::Transaction<'_>,
    filter: &str,
    params: impl rusqlite::Params + Copy,
) -> rusqlite::Result<bool> {
    tx.prepare_cached(&format!(
        "DELETE FROM alert_progress WHERE rule_id IN (SELECT id FROM alert_rules WHERE {filter})"
    ))?
    .execute(params)?;
    let deleted = tx
        .prepare_cached(&format!("DELETE FROM alert_rules WHERE {filter}"))?
        .execute(params)?;
    Ok(deleted > 0)
}

/// Stores each progress whose rule exists and whose cursor is not behind the stored one.
fn store_progress(
    tx: &rusqlite::Transaction<'_>,
    progress: &[AlertProgress],
) -> rusqlite::Result<()> {
    // The SELECT's WHERE also keeps SQLite from reading ON CONFLICT as a join's.
    let mut upsert = tx.prepare_cached(
        "INSERT INTO alert_progress (rule_id, cursor, snapshot) \
         SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM alert_rules WHERE id = ?1) \
         ON CONFLICT (rule_id) DO UPDATE SET cursor = excluded.cursor, snapshot = excluded.snapshot \
         WHERE alert_progress.cursor <= excluded.cursor",
    )?;
    for one in progress {
        upsert.execute(params![one.rule_id, one.cursor, one.snapshot])?;
    }
    Ok(())
}

/// Inserts each notification whose (id, channel) is new; how many were.
fn insert_notifications(
    tx: &rusqlite::Transaction<'_>,
    notifications: &[Notification],
) -> rusqlite::Result<u64> {
    let mut insert = tx.prepare_cached(&format!(
        "INSERT INTO alert_outbox ({NOTIFICATION_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
         ON CONFLICT (id, channel) DO NOTHING"
    ))?;
    let mut inserted = 0;
    for n in notifications {
        inserted += insert.execute(params![
            n.id,
            n.channel,
            n.tenant,
            n.rule,
            n.status,
            n.created_at,
            n.payload,
            n.attempts,
            n.next_attempt,
            n.state.as_str(),
            n.last_error,
            n.updated_at
        ])? as u64;
    }
    Ok(inserted)
}

/// A notification from [`NOTIFICATION_COLUMNS`].
fn notification_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<Notification> {
    Ok(Notification {
        id: row.get(0)?,
        channel: row.get(1)?,
        tenant: row.get(2)?,
        rule: row.get(3)?,
        status: row.get(4)?,
        created_at: row.get(5)?,
        payload: row.get(6)?,
        attempts: row.get(7)?,
        next_attempt: row.get(8)?,
        state: state_from(row, 9)?,
        last_error: row.get(10)?,
        updated_at: row.get(11)?,
    })
}

/// The delivery state in column `index`.
fn state_from(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<DeliveryState> {
    let text: String = row.get(index)?;
    DeliveryState::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            Type::Text,
            format!(
                "unknown notification state {text:?} (written by a newer sluice? upgrade this one)"
            )
            .into(),
        )
    })
}

/// The error for a silence id already taken.
fn silence_exists(id: &str) -> StoreError {
    StoreError::Invalid(format!(
        "a silence with id {id:?} exists already; give the new silence an id of its own"
    ))
}

/// Names as a JSON array's text (`["a","b"]`), as `json_each` reads it back.
fn channels_json(channels: &[String]) -> String {
    let mut json = String::from("[");
    for (index, channel) in channels.iter().enumerate() {
        if index > 0 {
            json.push(',');
        }
        json.push('"');
        for c in channel.chars() {
            match c {
                '"' => json.push_str("\\\""),
                '\\' => json.push_str("\\\\"),
                c if u32::from(c) < 0x20 => {
                    let _ = write!(json, "\\u{:04x}", u32::from(c));
                }
                c => json.push(c),
            }
        }
        json.push('"');
    }
    json.push(']');
    json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip_through_json_each() {
        let connection = Connection::open_in_memory().unwrap();
        let names: Vec<String> = [
            "ops",
            "",
            "quote \" and backslash \\",
            "line\nbreak\ttab\u{1}",
            "ünïcode 🚨",
            "[\"not\", \"an array\"]",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        for channels in [vec![], names] {
            let json = channels_json(&channels);
            let mut statement = connection
                .prepare("SELECT value FROM json_each(?1) ORDER BY key")
                .unwrap();
            let back: Vec<String> = statement
                .query_map([&json], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(back, channels, "{json}");
        }
    }

    #[test]
    fn history_limits_default_and_cap() {
        let limit = |limit| {
            NotificationQuery {
                limit,
                ..NotificationQuery::default()
            }
            .effective_limit()
        };
        assert_eq!(limit(0), NotificationQuery::DEFAULT_LIMIT);
        assert_eq!(limit(7), 7);
        assert_eq!(limit(usize::MAX), NotificationQuery::MAX_LIMIT);
    }
}
