//! The PostgreSQL store (`store.url = "postgres://…"`): the SQLite store's tables and
//! protocol in a PostgreSQL database, so several sluice nodes share one store.
//!
//! Connections come from a pool (`deadpool-postgres`); every write is one transaction. The
//! exactly-once protocol is the SQLite store's, with row locks where SQLite had its single
//! writer:
//! - A claim is one upsert that bumps the epoch. A commit or reposition locks the partition's
//!   position row (`FOR UPDATE`) first and checks its epoch: a claim by a newer owner waits for
//!   a running commit, then fences every later one.
//! - A closed window merges into its final row under that row's lock: the commit inserts the
//!   final rows that do not exist (`ON CONFLICT DO NOTHING`, which waits for a concurrent
//!   insert of the same row to commit or roll back), then locks the others (`FOR UPDATE`),
//!   merges each state with the engine's merge in this process, and writes them back. Two
//!   partitions closing one window at once, on two nodes, never lose each other's part.
//! - Reads of a range are one statement (one snapshot); reads that need the watermarks too
//!   run in one `REPEATABLE READ` transaction.
//!
//! Rows go to the server in arrays (`UNNEST`), one statement per kind of change, so a commit
//! costs a handful of round trips whatever its size.
//!
//! Each metric also has a view, `metric_<name>`, of its final rows with plain SQL columns for
//! BI tools (`views.rs`, [`view_name`]): every final row written carries its key and values
//! decoded (`finals.keys`, `finals.vals`), from the metric's plan, which a commit closing
//! windows reads from `metrics` in its transaction.

mod alerts;
mod boards;
mod directory;
mod erasures;
mod schema;
mod schema_registry;
mod serving;
mod views;

pub use views::view_name;

use crate::error::StoreError;
use crate::merge::merged_state;
use crate::model::{
    ChangedRow, Commit, MetricCommit, MetricRecord, Origin, PackedRows, PartialRow, Position,
    ReplayPlan, RowDecoder, RowRef, StoredRow,
};
use crate::roles::{Catalogue, Checkpoints, Housekeeping};
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use sluice_core::time::Millis;
use sluice_stream::plan::MetricPlan;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_postgres::{NoTls, Transaction};

pub(crate) type Client = deadpool_postgres::Client;

/// Connections kept at most.
const POOL_SIZE: usize = 16;

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// The URL without its password, for messages.
    location: Arc<str>,
    /// Metrics' plans, for the decoded values of their final rows.
    plans: Arc<views::Plans>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// A PostgreSQL error as a [`StoreError`]: a full disk as such, anything else with the
/// server's message and SQLSTATE.
pub(crate) fn pg_error(location: &str, error: tokio_postgres::Error) -> StoreError {
    if let Some(db) = error.as_db_error() {
        if *db.code() == tokio_postgres::error::SqlState::DISK_FULL {
            return StoreError::DiskFull {
                path: location.into(),
            };
        }
        return StoreError::Postgres {
            location: location.to_owned(),
            detail: format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        };
    }
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    StoreError::Postgres {
        location: location.to_owned(),
        detail,
    }
}

/// `url` without a password (`postgres://user:secret@host/db` → `postgres://user@host/db`).
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

impl PostgresStore {
    /// Connects to the database `url` names (libpq's URL form) and brings its schema up to
    /// date. The tables live in the schema its `search_path` names (the user's by default;
    /// `?options=-csearch_path%3Dname` picks another).
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let config: tokio_postgres::Config = url.parse().map_err(|error| {
            StoreError::Invalid(format!(
                "{}: not a PostgreSQL URL ({error}); write postgres://user:password@host:5432/database",
                without_password(url)
            ))
        })?;
        Self::with_config(config, &without_password(url)).await
    }

    /// Connects with a parsed configuration; `location` names it in messages.
    pub async fn with_config(
        mut config: tokio_postgres::Config,
        location: &str,
    ) -> Result<PostgresStore, StoreError> {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|error| StoreError::Invalid(format!("{location}: {error}")))?;
        let store = PostgresStore {
            pool,
            location: Arc::from(location),
            plans: Arc::default(),
        };
        let mut client = store.client().await?;
        schema::migrate(&mut client, location).await?;
        store.refresh_views(&mut client).await?;
        Ok(store)
    }

    /// Makes every metric's view again and decodes the final rows written without their
    /// values (by a sluice from before them).
    async fn refresh_views(&self, client: &mut Client) -> Result<(), StoreError> {
        let planned = views::replace_all(client, &self.plans)
            .await
            .map_err(|error| self.view_failed(error))?;
        for (metric, plan) in planned {
            let (filled, undecoded) = views::fill(client, &metric, &plan)
                .await
                .map_err(self.failed())?;
            if filled > 0 {
                tracing::info!(%metric, rows = filled, "final rows decoded for the metric's view");
            }
            if undecoded > 0 {
                tracing::warn!(%metric, rows = undecoded, "final rows that do not decode under the metric's plan are left out of its view");
            }
        }
        Ok(())
    }

    /// A pooled connection.
    async fn client(&self) -> Result<Client, StoreError> {
        self.pool.get().await.map_err(|error| match error {
            deadpool_postgres::PoolError::Backend(error) => match pg_error(&self.location, error) {
                StoreError::Postgres { location, detail } => StoreError::Postgres {
                    location,
                    detail: format!(
                        "{detail}; check that PostgreSQL runs at that address and accepts this user and password"
                    ),
                },
                other => other,
            },
            other => StoreError::Postgres {
                location: self.location.to_string(),
                detail: format!(
                    "no connection ({other}); check that the server runs and accepts this user"
                ),
            },
        })
    }

    /// Maps an error of this store's database.
    fn failed(&self) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
        |error| pg_error(&self.location, error)
    }

    /// Maps an error making a metric's view: one that objects of the user's read and whose
    /// columns changed is theirs to resolve.
    fn view_failed(&self, error: tokio_postgres::Error) -> StoreError {
        if !views::is_read_by_others(&error) {
            return pg_error(&self.location, error);
        }
        let detail = error.as_db_error().map_or_else(String::new, |db| {
            format!("{} ({})", db.message(), db.detail().unwrap_or_default())
        });
        StoreError::Invalid(format!(
            "{}: a metric's view cannot take its new columns: {detail}; drop those objects or make them read something else, then try again",
            self.location
        ))
    }
}

/// `u32` and `u64` values as the `BIGINT` columns hold them.
impl PostgresStore {
    /// A metric's current generation, its row locked until `tx` ends.
    async fn current_generation(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        metric: &str,
    ) -> Result<i64, StoreError> {
        tx.query_opt(
            "SELECT generation FROM metrics WHERE name = $1 FOR UPDATE",
            &[&metric],
        )
        .await
        .map_err(self.failed())?
        .map(|row| row.get(0))
        .ok_or_else(|| StoreError::UnknownMetric(metric.to_owned()))
    }
}

fn big(value: impl Into<u64>) -> i64 {
    value.into() as i64
}

#[async_trait]
impl Catalogue for PostgresStore {
    async fn metrics(&self) -> Result<Vec<MetricRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name, sql, backfill, generation, created_at, origin FROM metrics ORDER BY name",
                &[],
            )
            .await
            .map_err(self.failed())?;
        Ok(rows
            .iter()
            .map(|row| MetricRecord {
                name: row.get(0),
                sql: row.get(1),
                backfill: row.get(2),
                generation: row.get::<_, i64>(3) as u32,
                created_at: row.get(4),
                origin: Origin::parse(row.get(5)),
            })
            .collect())
    }

    async fn create_metric(&self, record: MetricRecord) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        let inserted = tx
            .execute(
                "INSERT INTO metrics (name, sql, backfill, generation, created_at, origin) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (name) DO NOTHING",
                &[&record.name, &record.sql, &record.backfill, &big(record.generation), &record.created_at, &record.origin.as_str()],
            )
            .await
            .map_err(self.failed())?;
        if inserted == 0 {
            return Err(StoreError::MetricExists(record.name));
        }
        let plan = self.plans.of(&record.name, &record.sql);
        views::replace_view(&tx, &record.name, plan.as_deref())
            .await
            .map_err(|error| self.view_failed(error))?;
        tx.commit().await.map_err(self.failed())
    }

    async fn delete_metric(&self, name: &str) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        let dropped = views::drop_view(&tx, name).await.map_err(self.failed())?;
        if !dropped {
            tracing::warn!(metric = name, view = %view_name(name), "the metric's view stays, empty: other database objects read it");
        }
        let deleted = tx
            .execute("DELETE FROM metrics WHERE name = $1", &[&name])
            .await
            .map_err(self.failed())?;
        for table in ["partials", "finals", "watermarks", "replays"] {
            tx.execute(&format!("DELETE FROM {table} WHERE metric = $1"), &[&name])
                .await
                .map_err(self.failed())?;
        }
        tx.execute(
            "DELETE FROM stream_ranges WHERE stream = $1 OR stream = $1 || '.changes'",
            &[&name],
        )
        .await
        .map_err(self.failed())?;
        // Pipelines are named `metric@generation`.
        tx.execute(
            "DELETE FROM positions WHERE left(pipeline, length($1) + 1) = $1 || '@'",
            &[&name],
        )
        .await
        .map_err(self.failed())?;
        tx.commit().await.map_err(self.failed())?;
        self.plans.forget(name);
        Ok(deleted > 0)
    }

    async fn switch_generation(
        &self,
        metric: &str,
        next: u32,
        keep_before: Option<Millis>,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        let current = self.current_generation(&tx, metric).await?;
        let next = big(next);
        if current >= next {
            // Another node switched first.
            return Ok(());
        }
        if let Some(before) = keep_before {
            // Before the replay's start, the previous results stand.
            let keep: [(&str, &[&(dyn tokio_postgres::types::ToSql + Sync)]); 5] = [
                (
                    "DELETE FROM partials WHERE metric = $1 AND generation = $2 AND window_start < $3",
                    &[&metric, &next, &before],
                ),
                (
                    "INSERT INTO partials (metric, generation, partition, tenant, window_start, group_key, window_end, version, state) \
                     SELECT metric, $2, partition, tenant, window_start, group_key, window_end, version, state FROM partials \
                     WHERE metric = $1 AND generation = $3 AND window_start < $4",
                    &[&metric, &next, &current, &before],
                ),
                // Reads find open rows through their partitions' watermark rows.
                (
                    "INSERT INTO watermarks (metric, generation, partition, watermark) \
                     SELECT DISTINCT metric, generation, partition, NULL::BIGINT FROM partials \
                     WHERE metric = $1 AND generation = $2 ON CONFLICT DO NOTHING",
                    &[&metric, &next],
                ),
                (
                    "DELETE FROM finals WHERE metric = $1 AND generation = $2 AND window_start < $3",
                    &[&metric, &next, &before],
                ),
                (
                    "INSERT INTO finals (metric, generation, tenant, window_start, group_key, window_end, version, state, keys, vals) \
                     SELECT metric, $2, tenant, window_start, group_key, window_end, version, state, keys, vals FROM finals \
                     WHERE metric = $1 AND generation = $3 AND window_start < $4",
                    &[&metric, &next, &current, &before],
                ),
            ];
            for (statement, params) in keep {
                tx.execute(statement, params).await.map_err(self.failed())?;
            }
        }
        for table in ["partials", "finals", "watermarks"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE metric = $1 AND generation < $2"),
                &[&metric, &next],
            )
            .await
            .map_err(self.failed())?;
        }
        let old: Vec<String> = (0..next as u32)
            .map(|generation| MetricRecord::pipeline_of(metric, generation))
            .collect();
        tx.execute("DELETE FROM positions WHERE pipeline = ANY($1)", &[&old])
            .await
            .map_err(self.failed())?;
        tx.execute("DELETE FROM replays WHERE metric = $1", &[&metric])
            .await
            .map_err(self.failed())?;
        tx.execute(
            "UPDATE metrics SET generation = $2 WHERE name = $1",
            &[&metric, &next],
        )
        .await
        .map_err(self.failed())?;
        tx.commit().await.map_err(self.failed())
    }

    async fn begin_replay(&self, metric: &str, plan: &ReplayPlan) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        let current = self.current_generation(&tx, metric).await?;
        let recorded: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM replays WHERE metric = $1)",
                &[&metric],
            )
            .await
            .map_err(self.failed())?
            .get(0);
        let generation = big(plan.generation);
        if recorded || current + 1 != generation {
            return Ok(false);
        }
        // What an interrupted replay left of the generation.
        for table in ["partials", "finals", "watermarks"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE metric = $1 AND generation = $2"),
                &[&metric, &generation],
            )
            .await
            .map_err(self.failed())?;
        }
        tx.execute(
            "DELETE FROM positions WHERE pipeline = $1",
            &[&MetricRecord::pipeline_of(metric, plan.generation)],
        )
        .await
        .map_err(self.failed())?;
        let initial: Vec<i64> = plan.initial.iter().map(|&offset| big(offset)).collect();
        let targets: Vec<i64> = plan.targets.iter().map(|&offset| big(offset)).collect();
        tx.execute(
            "INSERT INTO replays (metric, generation, from_time, partition, initial_offset, target_offset) \
             SELECT $1, $2, $3, p.partition - 1, p.initial, p.target \
             FROM UNNEST($4::BIGINT[], $5::BIGINT[]) WITH ORDINALITY AS p(initial, target, partition)",
            &[&metric, &generation, &plan.from_time, &initial, &targets],
        )
        .await
        .map_err(self.failed())?;
        tx.commit().await.map_err(self.failed())?;
        Ok(true)
    }

    async fn replays(&self) -> Result<Vec<(String, ReplayPlan)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT metric, generation, from_time, partition, initial_offset, target_offset \
                 FROM replays ORDER BY metric, partition",
                &[],
            )
            .await
            .map_err(self.failed())?;
        Ok(ReplayPlan::from_rows(rows.iter().map(|row| {
            (
                row.get::<_, String>(0),
                row.get::<_, i64>(1) as u32,
                row.get::<_, Option<i64>>(2),
                row.get::<_, i64>(3) as u32,
                row.get::<_, i64>(4) as u64,
                row.get::<_, i64>(5) as u64,
            )
        })))
    }
}

/// The columns of a [`Position`], in the order [`position_from`] reads them.
const POSITION_COLUMNS: &str = "epoch, next_offset, event_time, log_epoch, lost_offsets";

fn position_from(row: &tokio_postgres::Row, first: usize) -> Position {
    Position {
        epoch: row.get::<_, i64>(first) as u64,
        offset: row.get::<_, i64>(first + 1) as u64,
        event_time: row.get(first + 2),
        log_epoch: row.get::<_, i64>(first + 3) as u32,
        lost_offsets: row.get::<_, i64>(first + 4) as u64,
    }
}

/// The position of a pipeline partition, locked until the transaction ends.
async fn locked_position(
    tx: &Transaction<'_>,
    pipeline: &str,
    partition: u32,
) -> Result<Option<Position>, tokio_postgres::Error> {
    let row = tx
        .query_opt(
            &format!("SELECT {POSITION_COLUMNS} FROM positions WHERE pipeline = $1 AND partition = $2 FOR UPDATE"),
            &[&pipeline, &big(partition)],
        )
        .await?;
    Ok(row.map(|row| position_from(&row, 0)))
}

/// A failure applying a commit: PostgreSQL's, a state that would not merge, a final row that
/// does not decode under its metric's plan, or final rows deleted under the merge again and
/// again (a replay switching generations meanwhile).
enum ApplyError {
    Postgres(tokio_postgres::Error),
    Merge(String),
    Decode(String),
    Raced(String),
}

impl From<tokio_postgres::Error> for ApplyError {
    fn from(error: tokio_postgres::Error) -> Self {
        ApplyError::Postgres(error)
    }
}

impl ApplyError {
    fn into_store(self, location: &str) -> StoreError {
        match self {
            ApplyError::Postgres(error) => pg_error(location, error),
            ApplyError::Merge(detail) => StoreError::Corrupt {
                path: location.into(),
                detail: format!("a stored state does not merge: {detail}"),
            },
            ApplyError::Decode(detail) => StoreError::Corrupt {
                path: location.into(),
                detail,
            },
            // Not damage: the commit fails and its partition tries again.
            ApplyError::Raced(detail) => StoreError::Postgres {
                location: location.to_owned(),
                detail,
            },
        }
    }
}

/// Rows' (tenant, window start, group key, window end) as the arrays `UNNEST` takes.
#[derive(Default)]
struct Keys<'a> {
    tenants: Vec<&'a str>,
    starts: Vec<i64>,
    keys: Vec<&'a [u8]>,
    ends: Vec<i64>,
}

impl<'a> Keys<'a> {
    fn push(&mut self, tenant: &'a str, start: Millis, key: &'a [u8], end: Millis) {
        self.tenants.push(tenant);
        self.starts.push(start);
        self.keys.push(key);
        self.ends.push(end);
    }
}

/// A window's identity within one metric generation.
type WindowId<'a> = (&'a str, Millis, &'a [u8], Millis);

/// [`WindowId`], owned.
type OwnedWindowId = (String, Millis, Vec<u8>, Millis);

/// Deletes a partition's open rows of the given windows.
async fn delete_open(
    tx: &Transaction<'_>,
    metric: &str,
    generation: u32,
    partition: u32,
    rows: &Keys<'_>,
) -> Result<(), tokio_postgres::Error> {
    if rows.tenants.is_empty() {
        return Ok(());
    }
    tx.execute(
        "DELETE FROM partials p USING UNNEST($4::TEXT[], $5::BIGINT[], $6::BYTEA[], $7::BIGINT[]) AS r(tenant, window_start, group_key, window_end) \
         WHERE p.metric = $1 AND p.generation = $2 AND p.partition = $3 AND p.tenant = r.tenant \
         AND p.window_start = r.window_start AND p.group_key = r.group_key AND p.window_end = r.window_end",
        &[&metric, &big(generation), &big(partition), &rows.tenants, &rows.starts, &rows.keys, &rows.ends],
    )
    .await?;
    Ok(())
}

/// A final row's `keys` and `vals` ([`views::decoded`]); none without a plan.
fn decoded(
    plan: Option<&MetricPlan>,
    metric: &str,
    key: &[u8],
    state: &[u8],
) -> Result<(Option<String>, Option<String>), ApplyError> {
    let Some(plan) = plan else {
        return Ok((None, None));
    };
    let (keys, values) = views::decoded(plan, key, state).map_err(|reason| {
        ApplyError::Decode(format!(
            "a final row of {metric:?} does not decode under the metric's plan: {reason}"
        ))
    })?;
    Ok((Some(keys), Some(values)))
}

/// Merges closed windows' states into their final rows (made for windows no partition has
/// closed before), under the rows' locks, with their key and values decoded by `plan` (none
/// without one). Rows of one window given twice are merged first.
async fn merge_finals(
    tx: &Transaction<'_>,
    metric: &str,
    generation: u32,
    plan: Option<&MetricPlan>,
    rows: impl Iterator<Item = ChangedRow<'_>>,
) -> Result<(), ApplyError> {
    let mut parts: BTreeMap<WindowId<'_>, (u32, Vec<u8>)> = BTreeMap::new();
    for row in rows {
        let id = (row.tenant, row.window_start, row.key, row.window_end);
        match parts.get_mut(&id) {
            Some((version, state)) => {
                *state = merged_state(state, row.state).map_err(ApplyError::Merge)?;
                *version = (*version).max(row.version);
            }
            None => {
                parts.insert(id, (row.version, row.state.to_vec()));
            }
        }
    }
    let generation = big(generation);
    // Every commit inserts and locks final rows in key order (the map's, and the sort before
    // the lock), so two commits never wait for each other in a cycle.
    // A final row deleted between the insert and the lock (a replay switching generations)
    // is made again by the next round; two rounds are the most a race needs.
    for _ in 0..4 {
        if parts.is_empty() {
            return Ok(());
        }
        let mut all = Keys::default();
        let (mut versions, mut states) = (Vec::new(), Vec::new());
        let (mut key_json, mut value_json) = (Vec::new(), Vec::new());
        for ((tenant, start, key, end), (version, state)) in &parts {
            all.push(tenant, *start, key, *end);
            versions.push(big(*version));
            states.push(state.as_slice());
            let (keys, values) = decoded(plan, metric, key, state)?;
            key_json.push(keys);
            value_json.push(values);
        }
        let inserted = tx
            .query(
                "INSERT INTO finals (metric, generation, tenant, window_start, group_key, window_end, version, state, keys, vals) \
                 SELECT $1, $2, tenant, window_start, group_key, window_end, version, state, keys::JSONB, vals::JSONB \
                 FROM UNNEST($3::TEXT[], $4::BIGINT[], $5::BYTEA[], $6::BIGINT[], $7::BIGINT[], $8::BYTEA[], $9::TEXT[], $10::TEXT[]) \
                 AS r(tenant, window_start, group_key, window_end, version, state, keys, vals) \
                 ON CONFLICT DO NOTHING RETURNING tenant, window_start, group_key, window_end",
                &[&metric, &generation, &all.tenants, &all.starts, &all.keys, &all.ends, &versions, &states, &key_json, &value_json],
            )
            .await?;
        let inserted: std::collections::HashSet<OwnedWindowId> = inserted
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
            .collect();
        parts.retain(|(tenant, start, key, end), _| {
            !inserted.contains(&((*tenant).to_owned(), *start, key.to_vec(), *end))
        });
        if parts.is_empty() {
            return Ok(());
        }
        let mut rest = Keys::default();
        for (tenant, start, key, end) in parts.keys() {
            rest.push(tenant, *start, key, *end);
        }
        let existing = tx
            .query(
                "SELECT f.tenant, f.window_start, f.group_key, f.window_end, f.version, f.state FROM finals f \
                 JOIN UNNEST($3::TEXT[], $4::BIGINT[], $5::BYTEA[], $6::BIGINT[]) AS r(tenant, window_start, group_key, window_end) \
                 ON f.tenant = r.tenant AND f.window_start = r.window_start AND f.group_key = r.group_key AND f.window_end = r.window_end \
                 WHERE f.metric = $1 AND f.generation = $2 \
                 ORDER BY f.tenant, f.window_start, f.group_key, f.window_end FOR UPDATE OF f",
                &[&metric, &generation, &rest.tenants, &rest.starts, &rest.keys, &rest.ends],
            )
            .await?;
        let stored: std::collections::HashMap<OwnedWindowId, (i64, Vec<u8>)> = existing
            .iter()
            .map(|row| {
                (
                    (row.get(0), row.get(1), row.get(2), row.get(3)),
                    (row.get(4), row.get(5)),
                )
            })
            .collect();
        let mut merged = Keys::default();
        let (mut versions, mut states) = (Vec::new(), Vec::new());
        let (mut key_json, mut value_json) = (Vec::new(), Vec::new());
        let mut done = Vec::new();
        for (&(tenant, start, key, end), (version, state)) in &parts {
            let id = (tenant.to_owned(), start, key.to_vec(), end);
            let Some((stored_version, stored_state)) = stored.get(&id) else {
                continue;
            };
            let state = merged_state(stored_state, state).map_err(ApplyError::Merge)?;
            let (keys, values) = decoded(plan, metric, key, &state)?;
            key_json.push(keys);
            value_json.push(values);
            states.push(state);
            versions.push((*stored_version).max(big(*version)));
            merged.push(tenant, start, key, end);
            done.push((tenant, start, key, end));
        }
        if !done.is_empty() {
            tx.execute(
                "UPDATE finals f SET version = r.version, state = r.state, keys = r.keys::JSONB, vals = r.vals::JSONB \
                 FROM UNNEST($3::TEXT[], $4::BIGINT[], $5::BYTEA[], $6::BIGINT[], $7::BIGINT[], $8::BYTEA[], $9::TEXT[], $10::TEXT[]) \
                 AS r(tenant, window_start, group_key, window_end, version, state, keys, vals) \
                 WHERE f.metric = $1 AND f.generation = $2 AND f.tenant = r.tenant AND f.window_start = r.window_start \
                 AND f.group_key = r.group_key AND f.window_end = r.window_end",
                &[&metric, &generation, &merged.tenants, &merged.starts, &merged.keys, &merged.ends, &versions, &states, &key_json, &value_json],
            )
            .await?;
        }
        for id in done {
            parts.remove(&id);
        }
    }
    Err(ApplyError::Raced(format!(
        "{} final rows of {metric:?} were deleted while being merged, four times",
        parts.len()
    )))
}

/// Writes one metric's part of a commit of `partition`: retracted open rows, then closed
/// windows into their final rows (decoded by `plan`), then changed open rows, then the
/// watermark.
async fn apply_metric(
    tx: &Transaction<'_>,
    partition: u32,
    metric: &MetricCommit,
    plan: Option<&MetricPlan>,
) -> Result<(), ApplyError> {
    let (name, generation) = (metric.metric.as_str(), metric.generation);
    let mut gone = Keys::default();
    for row in &metric.retracted {
        gone.push(&row.tenant, row.window_start, &row.key, row.window_end);
    }
    for row in metric.closed.iter() {
        gone.push(row.tenant, row.window_start, row.key, row.window_end);
    }
    delete_open(tx, name, generation, partition, &gone).await?;
    merge_finals(tx, name, generation, plan, metric.closed.iter()).await?;
    upsert_open(tx, name, generation, partition, &metric.changed).await?;
    tx.execute(
        "INSERT INTO watermarks (metric, generation, partition, watermark) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (metric, generation, partition) DO UPDATE SET watermark = excluded.watermark",
        &[&name, &big(generation), &big(partition), &metric.watermark],
    )
    .await?;
    Ok(())
}

/// Inserts or replaces a partition's open rows; of two rows of one window the later wins.
async fn upsert_open(
    tx: &Transaction<'_>,
    metric: &str,
    generation: u32,
    partition: u32,
    rows: &PackedRows,
) -> Result<(), tokio_postgres::Error> {
    let mut latest: BTreeMap<WindowId<'_>, ChangedRow<'_>> = BTreeMap::new();
    for row in rows.iter() {
        latest.insert((row.tenant, row.window_start, row.key, row.window_end), row);
    }
    if latest.is_empty() {
        return Ok(());
    }
    let mut keys = Keys::default();
    let (mut versions, mut states) = (Vec::new(), Vec::new());
    for row in latest.values() {
        keys.push(row.tenant, row.window_start, row.key, row.window_end);
        versions.push(big(row.version));
        states.push(row.state);
    }
    tx.execute(
        "INSERT INTO partials (metric, generation, partition, tenant, window_start, group_key, window_end, version, state) \
         SELECT $1, $2, $3, * FROM UNNEST($4::TEXT[], $5::BIGINT[], $6::BYTEA[], $7::BIGINT[], $8::BIGINT[], $9::BYTEA[]) \
         ON CONFLICT (metric, generation, partition, tenant, window_start, group_key, window_end) \
         DO UPDATE SET version = excluded.version, state = excluded.state",
        &[&metric, &big(generation), &big(partition), &keys.tenants, &keys.starts, &keys.keys, &keys.ends, &versions, &states],
    )
    .await?;
    Ok(())
}

/// A stored row from columns `group_key, window_start, window_end, version, state` starting
/// at `first`.
fn stored_row(
    row: &tokio_postgres::Row,
    first: usize,
    partition: Option<u32>,
    tenant: String,
) -> StoredRow {
    StoredRow {
        partition,
        tenant,
        key: row.get(first),
        window_start: row.get(first + 1),
        window_end: row.get(first + 2),
        version: row.get::<_, i64>(first + 3) as u32,
        state: row.get(first + 4),
    }
}

#[async_trait]
impl Checkpoints for PostgresStore {
    async fn claim(
        &self,
        pipeline: &str,
        partition: u32,
        initial_offset: u64,
        log_epoch: u32,
    ) -> Result<Position, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO positions (pipeline, partition, epoch, next_offset, event_time, log_epoch) VALUES ($1, $2, 1, $3, NULL, $4) \
                     ON CONFLICT (pipeline, partition) DO UPDATE SET epoch = positions.epoch + 1 RETURNING {POSITION_COLUMNS}"
                ),
                &[&pipeline, &big(partition), &big(initial_offset), &big(log_epoch)],
            )
            .await
            .map_err(self.failed())?;
        Ok(position_from(&row, 0))
    }

    async fn reposition(
        &self,
        pipeline: &str,
        partition: u32,
        epoch: u64,
        offset: u64,
        log_epoch: u32,
    ) -> Result<Position, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        let current = locked_position(&tx, pipeline, partition)
            .await
            .map_err(self.failed())?;
        let Some(current) = current.filter(|current| current.epoch == epoch) else {
            return Err(StoreError::Fenced {
                pipeline: pipeline.to_owned(),
                partition,
                epoch,
                current: current.map_or(0, |current| current.epoch),
            });
        };
        let position = Position {
            offset,
            log_epoch,
            lost_offsets: current.lost_offsets + current.offset.abs_diff(offset),
            ..current
        };
        tx.execute(
            "UPDATE positions SET next_offset = $3, log_epoch = $4, lost_offsets = $5 WHERE pipeline = $1 AND partition = $2",
            &[&pipeline, &big(partition), &big(position.offset), &big(position.log_epoch), &big(position.lost_offsets)],
        )
        .await
        .map_err(self.failed())?;
        tx.commit().await.map_err(self.failed())?;
        Ok(position)
    }

    async fn commit(
        &self,
        pipeline: &str,
        partition: u32,
        epoch: u64,
        commit: Arc<Commit>,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        let current = locked_position(&tx, pipeline, partition)
            .await
            .map_err(self.failed())?
            .map(|position| position.epoch);
        if current != Some(epoch) {
            return Err(StoreError::Fenced {
                pipeline: pipeline.to_owned(),
                partition,
                epoch,
                current: current.unwrap_or(0),
            });
        }
        for metric in &commit.metrics {
            // Only final rows need the plan.
            let plan = if metric.closed.is_empty() {
                None
            } else {
                self.plans
                    .current(&*tx, &metric.metric)
                    .await
                    .map_err(self.failed())?
            };
            apply_metric(&tx, partition, metric, plan.as_deref())
                .await
                .map_err(|e| e.into_store(&self.location))?;
        }
        for range in &commit.output {
            let partition = big(partition);
            let (start, end) = (big(range.start), big(range.end));
            let extended = tx
                .execute(
                    "UPDATE stream_ranges SET \"end\" = $4 WHERE stream = $1 AND partition = $2 AND \"end\" = $3",
                    &[&range.stream, &partition, &start, &end],
                )
                .await
                .map_err(self.failed())?;
            if extended == 0 {
                tx.execute(
                    "INSERT INTO stream_ranges (stream, partition, start, \"end\") VALUES ($1, $2, $3, $4)",
                    &[&range.stream, &partition, &start, &end],
                )
                .await
                .map_err(self.failed())?;
            }
        }
        tx.execute(
            "UPDATE positions SET next_offset = $3, event_time = $4, log_epoch = $5, note = $6 WHERE pipeline = $1 AND partition = $2",
            &[&pipeline, &big(partition), &big(commit.offset), &commit.event_time, &big(commit.log_epoch), &commit.note],
        )
        .await
        .map_err(self.failed())?;
        tx.commit().await.map_err(self.failed())
    }

    async fn load_rows(
        &self,
        metric: &str,
        generation: u32,
        partition: u32,
        open_after: Millis,
    ) -> Result<Vec<StoredRow>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT tenant, group_key, window_start, window_end, version, state FROM partials \
                 WHERE metric = $1 AND generation = $2 AND partition = $3 AND window_end > $4",
                &[&metric, &big(generation), &big(partition), &open_after],
            )
            .await
            .map_err(self.failed())?;
        Ok(rows
            .iter()
            .map(|row| stored_row(row, 1, Some(partition), row.get(0)))
            .collect())
    }

    async fn load_partials(
        &self,
        metric: &str,
        generation: u32,
        partition: u32,
        open_after: Millis,
        decode: RowDecoder,
    ) -> Result<Result<Vec<PartialRow>, String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT group_key, window_start, window_end, version, state FROM partials \
                 WHERE metric = $1 AND generation = $2 AND partition = $3 AND window_end > $4",
                &[&metric, &big(generation), &big(partition), &open_after],
            )
            .await
            .map_err(self.failed())?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let row = RowRef {
                key: row.get(0),
                window_start: row.get(1),
                window_end: row.get(2),
                version: row.get::<_, i64>(3) as u32,
                state: row.get(4),
            };
            match decode(row) {
                Ok(value) => out.push(value),
                Err(reason) => return Ok(Err(reason)),
            }
        }
        Ok(Ok(out))
    }

    async fn settle(
        &self,
        metric: &str,
        generation: u32,
        lateness: Millis,
    ) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        let rows = tx
            .query(
                "SELECT p.partition, p.tenant, p.group_key, p.window_start, p.window_end, p.version, p.state \
                 FROM partials p JOIN watermarks w \
                 ON w.metric = p.metric AND w.generation = p.generation AND w.partition = p.partition \
                 WHERE p.metric = $1 AND p.generation = $2 AND w.watermark IS NOT NULL \
                 AND p.window_end <= w.watermark - $3 FOR UPDATE OF p",
                &[&metric, &big(generation), &lateness],
            )
            .await
            .map_err(self.failed())?;
        let closed: Vec<(u32, StoredRow)> = rows
            .iter()
            .map(|row| {
                let partition = row.get::<_, i64>(0) as u32;
                (
                    partition,
                    StoredRow {
                        partition: Some(partition),
                        tenant: row.get(1),
                        key: row.get(2),
                        window_start: row.get(3),
                        window_end: row.get(4),
                        version: row.get::<_, i64>(5) as u32,
                        state: row.get(6),
                    },
                )
            })
            .collect();
        let mut by_partition: BTreeMap<u32, Keys<'_>> = BTreeMap::new();
        for (partition, row) in &closed {
            by_partition.entry(*partition).or_default().push(
                &row.tenant,
                row.window_start,
                &row.key,
                row.window_end,
            );
        }
        for (partition, keys) in &by_partition {
            delete_open(&tx, metric, generation, *partition, keys)
                .await
                .map_err(self.failed())?;
        }
        let plan = if closed.is_empty() {
            None
        } else {
            self.plans
                .current(&*tx, metric)
                .await
                .map_err(self.failed())?
        };
        merge_finals(
            &tx,
            metric,
            generation,
            plan.as_deref(),
            closed.iter().map(|(_, row)| row.as_changed()),
        )
        .await
        .map_err(|e| e.into_store(&self.location))?;
        tx.commit().await.map_err(self.failed())?;
        Ok(closed.len() as u64)
    }

    async fn watermarks(
        &self,
        metric: &str,
        generation: u32,
    ) -> Result<Vec<(u32, Option<Millis>)>, StoreError> {
        let client = self.client().await?;
        watermarks_of(&**client, metric, generation)
            .await
            .map_err(self.failed())
    }

    async fn committed_note(
        &self,
        pipeline: &str,
        partition: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT note FROM positions WHERE pipeline = $1 AND partition = $2",
                &[&pipeline, &big(partition)],
            )
            .await
            .map_err(self.failed())?;
        Ok(row.and_then(|row| row.get(0)))
    }

    async fn positions(&self, pipeline: &str) -> Result<Vec<(u32, Position)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT partition, {POSITION_COLUMNS} FROM positions WHERE pipeline = $1 ORDER BY partition"),
                &[&pipeline],
            )
            .await
            .map_err(self.failed())?;
        Ok(rows
            .iter()
            .map(|row| (row.get::<_, i64>(0) as u32, position_from(row, 1)))
            .collect())
    }

    async fn stream_ranges(
        &self,
        stream: &str,
        partition: u32,
        from: u64,
        limit: u32,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT start, \"end\" FROM stream_ranges WHERE stream = $1 AND partition = $2 AND \"end\" > $3 ORDER BY start LIMIT $4",
                &[&stream, &big(partition), &big(from), &i64::from(limit)],
            )
            .await
            .map_err(self.failed())?;
        Ok(rows
            .iter()
            .map(|row| (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
            .collect())
    }
}

/// Each partition's committed watermark of a metric generation.
async fn watermarks_of(
    client: &impl tokio_postgres::GenericClient,
    metric: &str,
    generation: u32,
) -> Result<Vec<(u32, Option<Millis>)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT partition, watermark FROM watermarks WHERE metric = $1 AND generation = $2 ORDER BY partition",
            &[&metric, &big(generation)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| (row.get::<_, i64>(0) as u32, row.get(1)))
        .collect())
}

#[async_trait]
impl Housekeeping for PostgresStore {
    async fn size(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::BIGINT FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND c.relkind = 'r'",
                &[],
            )
            .await
            .map_err(self.failed())?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn set_max_size(&self, bytes: Option<u64>) -> Result<(), StoreError> {
        match bytes {
            None => Ok(()),
            Some(_) => Err(StoreError::Invalid(format!(
                "{}: store.max-size caps the SQLite store only; cap a PostgreSQL database with the server's own means (a tablespace on its own volume) and set max-size = 0",
                self.location
            ))),
        }
    }

    fn location(&self) -> String {
        self.location.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn locations_never_show_the_password() {
        assert_eq!(
            without_password("postgres://sluice:s3cret@db.internal:5432/results?sslmode=disable"),
            "postgres://sluice@db.internal:5432/results?sslmode=disable"
        );
        assert_eq!(
            without_password("postgres://db/results"),
            "postgres://db/results"
        );
        assert_eq!(without_password("postgresql://u@h/d"), "postgresql://u@h/d");
    }
}
