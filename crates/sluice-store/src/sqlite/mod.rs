//! The embedded store: one SQLite file (`<data-dir>/store.db`) in WAL mode.
//!
//! One connection writes (commits are short: a checkpoint's changed rows and one position
//! row); several read connections serve queries concurrently with it (WAL readers never block
//! the writer). Every blocking call runs on tokio's blocking pool.
//!
//! Durability: `synchronous = NORMAL` in WAL mode makes every commit atomic and durable
//! against a crash of sluice; after a power loss the last commits may be missing, but the
//! store is always at some committed checkpoint, with rows and offsets that agree — which
//! is what exactly-once needs (processing resumes from that checkpoint's offsets).

mod alerts;
mod boards;
mod directory;
mod erasures;
mod schema;
mod schema_registry;
mod serving;

use crate::error::StoreError;
use crate::model::{
    ChangedRow, Commit, MetricCommit, MetricRecord, Origin, PackedRows, PartialRow, Position,
    ReplayPlan, RowDecoder, RowPage, RowQuery, RowRange, RowRef, RowsAndWatermarks, StoredRow,
};
use crate::roles::{Catalogue, Checkpoints, Housekeeping, ResultReads};
use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use sluice_core::time::Millis;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const READERS: usize = 4;

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

/// Maps a SQLite error to what the user must know: corruption and full disks name the file.
pub(crate) fn classify(path: &Path, error: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(failure, detail) = &error {
        match failure.code {
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                let detail = detail.clone().unwrap_or_else(|| failure.to_string());
                return StoreError::Corrupt {
                    path: path.to_owned(),
                    detail,
                };
            }
            ErrorCode::DiskFull => {
                return StoreError::DiskFull {
                    path: path.to_owned(),
                };
            }
            _ => {}
        }
    }
    StoreError::Sqlite {
        path: path.to_owned(),
        source: error,
    }
}

fn open_connection(path: &Path, write: bool) -> Result<Connection, StoreError> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let connection = Connection::open_with_flags(path, flags).map_err(|e| classify(path, e))?;
    connection
        .execute_batch("PRAGMA busy_timeout = 10000; PRAGMA cache_size = -65536;")
        .map_err(|e| classify(path, e))?;
    if write {
        // A new file gets pages of 16 KiB (SQLite's default is 4 KiB): a partial of a
        // distinct count or percentile takes 1–4 KiB, which on a 4 KiB page of a WITHOUT ROWID
        // table spills into an overflow page of its own, so each row would cost a whole page
        // to write and read. Only a file without tables takes it, and it must come before WAL.
        connection
            .execute_batch("PRAGMA page_size = 16384;")
            .map_err(|e| classify(path, e))?;
        // journal_mode answers with a row; query it rather than execute it.
        let mode: String = connection
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(|e| classify(path, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Invalid(format!(
                "{}: cannot use WAL journaling (got {mode})",
                path.display()
            )));
        }
        connection
            .execute_batch("PRAGMA synchronous = NORMAL;")
            .map_err(|e| classify(path, e))?;
        register_merge(&connection).map_err(|e| classify(path, e))?;
    }
    Ok(connection)
}

impl SqliteStore {
    /// Opens (creating if needed) the store file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|error| {
                StoreError::Invalid(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        let writer = open_connection(path, true)?;
        schema::migrate(path, &writer)?;
        schema::verify(path, &writer)?;
        let readers = (0..READERS)
            .map(|_| open_connection(path, false).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
            }),
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection, &Path) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut connection = inner.writer.lock();
            work(&mut connection, &inner.path)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection, &Path) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let index = inner.next_reader.fetch_add(1, Ordering::Relaxed) % inner.readers.len();
            let connection = inner.readers[index].lock();
            work(&connection, &inner.path)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

#[async_trait]
impl Catalogue for SqliteStore {
    async fn metrics(&self) -> Result<Vec<MetricRecord>, StoreError> {
        self.read(|connection, path| {
            let mut statement = connection
                .prepare_cached("SELECT name, sql, backfill, generation, created_at, origin FROM metrics ORDER BY name")
                .map_err(|e| classify(path, e))?;
            let rows = statement
                .query_map([], |row| {
                    Ok(MetricRecord {
                        name: row.get(0)?,
                        sql: row.get(1)?,
                        backfill: row.get(2)?,
                        generation: row.get(3)?,
                        created_at: row.get(4)?,
                        origin: Origin::parse(&row.get::<_, String>(5)?),
                    })
                })
                .map_err(|e| classify(path, e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| classify(path, e))
        })
        .await
    }

    async fn create_metric(&self, record: MetricRecord) -> Result<(), StoreError> {
        self.write(move |connection, path| {
            let inserted = connection
                .execute(
                    "INSERT INTO metrics (name, sql, backfill, generation, created_at, origin) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT (name) DO NOTHING",
                    params![record.name, record.sql, record.backfill, record.generation, record.created_at, record.origin.as_str()],
                )
                .map_err(|e| classify(path, e))?;
            if inserted == 0 {
                return Err(StoreError::MetricExists(record.name));
            }
            Ok(())
        })
        .await
    }

    async fn delete_metric(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write(move |connection, path| {
            let tx = connection.transaction().map_err(|e| classify(path, e))?;
            let deleted = tx
                .execute("DELETE FROM metrics WHERE name = ?1", [&name])
                .map_err(|e| classify(path, e))?;
            tx.execute("DELETE FROM partials WHERE metric = ?1", [&name])
                .map_err(|e| classify(path, e))?;
            tx.execute("DELETE FROM finals WHERE metric = ?1", [&name])
                .map_err(|e| classify(path, e))?;
            tx.execute("DELETE FROM watermarks WHERE metric = ?1", [&name])
                .map_err(|e| classify(path, e))?;
            tx.execute("DELETE FROM replays WHERE metric = ?1", [&name])
                .map_err(|e| classify(path, e))?;
            tx.execute(
                "DELETE FROM stream_ranges WHERE stream = ?1 OR stream = ?1 || '.changes'",
                [&name],
            )
            .map_err(|e| classify(path, e))?;
            let pattern = format!("{}@%", escape_like(&name));
            tx.execute(
                "DELETE FROM positions WHERE pipeline LIKE ?1 ESCAPE '\\'",
                [&pattern],
            )
            .map_err(|e| classify(path, e))?;
            tx.commit().map_err(|e| classify(path, e))?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn switch_generation(
        &self,
        metric: &str,
        next: u32,
        keep_before: Option<Millis>,
    ) -> Result<(), StoreError> {
        let metric = metric.to_owned();
        self.write(move |connection, path| {
            let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| classify(path, e))?;
            let current: Option<u32> = tx
                .query_row("SELECT generation FROM metrics WHERE name = ?1", [&metric], |row| row.get(0))
                .optional()
                .map_err(|e| classify(path, e))?;
            let Some(current) = current else { return Err(StoreError::UnknownMetric(metric)) };
            if current >= next {
                // Another node switched first.
                return Ok(());
            }
            if let Some(before) = keep_before {
                // Before the replay's start, the previous results stand.
                tx.execute(
                    "DELETE FROM partials WHERE metric = ?1 AND generation = ?2 AND window_start < ?3",
                    params![metric, next, before],
                )
                .map_err(|e| classify(path, e))?;
                tx.execute(
                    "INSERT INTO partials (metric, generation, tenant, window_start, group_key, window_end, partition, version, state) \
                     SELECT metric, ?2, tenant, window_start, group_key, window_end, partition, version, state FROM partials \
                     WHERE metric = ?1 AND generation = ?3 AND window_start < ?4",
                    params![metric, next, current, before],
                )
                .map_err(|e| classify(path, e))?;
                // Reads find open rows through their partitions' watermark rows.
                tx.execute(
                    "INSERT OR IGNORE INTO watermarks (metric, generation, partition, watermark) \
                     SELECT DISTINCT metric, generation, partition, NULL FROM partials WHERE metric = ?1 AND generation = ?2",
                    params![metric, next],
                )
                .map_err(|e| classify(path, e))?;
                tx.execute(
                    "DELETE FROM finals WHERE metric = ?1 AND generation = ?2 AND window_start < ?3",
                    params![metric, next, before],
                )
                .map_err(|e| classify(path, e))?;
                tx.execute(
                    "INSERT INTO finals (metric, generation, tenant, window_start, group_key, window_end, version, state) \
                     SELECT metric, ?2, tenant, window_start, group_key, window_end, version, state FROM finals \
                     WHERE metric = ?1 AND generation = ?3 AND window_start < ?4",
                    params![metric, next, current, before],
                )
                .map_err(|e| classify(path, e))?;
            }
            tx.execute("DELETE FROM partials WHERE metric = ?1 AND generation < ?2", params![metric, next]).map_err(|e| classify(path, e))?;
            tx.execute("DELETE FROM finals WHERE metric = ?1 AND generation < ?2", params![metric, next]).map_err(|e| classify(path, e))?;
            tx.execute("DELETE FROM watermarks WHERE metric = ?1 AND generation < ?2", params![metric, next]).map_err(|e| classify(path, e))?;
            for generation in 0..next {
                tx.execute("DELETE FROM positions WHERE pipeline = ?1", [MetricRecord::pipeline_of(&metric, generation)])
                    .map_err(|e| classify(path, e))?;
            }
            tx.execute("DELETE FROM replays WHERE metric = ?1", [&metric]).map_err(|e| classify(path, e))?;
            tx.execute("UPDATE metrics SET generation = ?2 WHERE name = ?1", params![metric, next]).map_err(|e| classify(path, e))?;
            tx.commit().map_err(|e| classify(path, e))?;
            Ok(())
        })
        .await
    }

    async fn begin_replay(&self, metric: &str, plan: &ReplayPlan) -> Result<bool, StoreError> {
        let (metric, plan) = (metric.to_owned(), plan.clone());
        self.write(move |connection, path| {
            let tx = connection
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| classify(path, e))?;
            let current: Option<u32> = tx
                .query_row("SELECT generation FROM metrics WHERE name = ?1", [&metric], |row| row.get(0))
                .optional()
                .map_err(|e| classify(path, e))?;
            let Some(current) = current else {
                return Err(StoreError::UnknownMetric(metric));
            };
            let recorded: bool = tx
                .query_row("SELECT EXISTS (SELECT 1 FROM replays WHERE metric = ?1)", [&metric], |row| row.get(0))
                .map_err(|e| classify(path, e))?;
            if recorded || current + 1 != plan.generation {
                return Ok(false);
            }
            // What an interrupted replay left of the generation.
            for table in ["partials", "finals", "watermarks"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE metric = ?1 AND generation = ?2"),
                    params![metric, plan.generation],
                )
                .map_err(|e| classify(path, e))?;
            }
            tx.execute(
                "DELETE FROM positions WHERE pipeline = ?1",
                [MetricRecord::pipeline_of(&metric, plan.generation)],
            )
            .map_err(|e| classify(path, e))?;
            {
                let mut insert = tx
                    .prepare(
                        "INSERT INTO replays (metric, generation, from_time, partition, initial_offset, target_offset) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .map_err(|e| classify(path, e))?;
                for (partition, (initial, target)) in plan.initial.iter().zip(&plan.targets).enumerate() {
                    insert
                        .execute(params![metric, plan.generation, plan.from_time, partition as u32, initial, target])
                        .map_err(|e| classify(path, e))?;
                }
            }
            tx.commit().map_err(|e| classify(path, e))?;
            Ok(true)
        })
        .await
    }

    async fn replays(&self) -> Result<Vec<(String, ReplayPlan)>, StoreError> {
        self.read(|connection, path| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT metric, generation, from_time, partition, initial_offset, target_offset \
                     FROM replays ORDER BY metric, partition",
                )
                .map_err(|e| classify(path, e))?;
            let rows = statement
                .query_map([], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
                })
                .map_err(|e| classify(path, e))?;
            let rows = rows.collect::<Result<Vec<_>, _>>().map_err(|e| classify(path, e))?;
            Ok(ReplayPlan::from_rows(rows))
        })
        .await
    }
}

#[async_trait]
impl Checkpoints for SqliteStore {
    async fn claim(
        &self,
        pipeline: &str,
        partition: u32,
        initial_offset: u64,
        log_epoch: u32,
    ) -> Result<Position, StoreError> {
        let pipeline = pipeline.to_owned();
        self.write(move |connection, path| {
            let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| classify(path, e))?;
            let existing = position_of(&tx, &pipeline, partition).map_err(|e| classify(path, e))?;
            let position = match existing {
                Some(position) => Position { epoch: position.epoch + 1, ..position },
                None => Position { epoch: 1, offset: initial_offset, event_time: None, log_epoch, lost_offsets: 0 },
            };
            tx.execute(
                "INSERT INTO positions (pipeline, partition, epoch, next_offset, event_time, log_epoch) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (pipeline, partition) DO UPDATE SET epoch = excluded.epoch",
                params![pipeline, partition, position.epoch, position.offset, position.event_time, position.log_epoch],
            )
            .map_err(|e| classify(path, e))?;
            tx.commit().map_err(|e| classify(path, e))?;
            Ok(position)
        })
        .await
    }

    async fn reposition(
        &self,
        pipeline: &str,
        partition: u32,
        epoch: u64,
        offset: u64,
        log_epoch: u32,
    ) -> Result<Position, StoreError> {
        let pipeline = pipeline.to_owned();
        self.write(move |connection, path| {
            let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| classify(path, e))?;
            let current = position_of(&tx, &pipeline, partition).map_err(|e| classify(path, e))?;
            let Some(current) = current.filter(|current| current.epoch == epoch) else {
                let current = current.map_or(0, |current| current.epoch);
                return Err(StoreError::Fenced { pipeline, partition, epoch, current });
            };
            let position = Position {
                offset,
                log_epoch,
                lost_offsets: current.lost_offsets + current.offset.abs_diff(offset),
                ..current
            };
            tx.execute(
                "UPDATE positions SET next_offset = ?3, log_epoch = ?4, lost_offsets = ?5 WHERE pipeline = ?1 AND partition = ?2",
                params![pipeline, partition, position.offset, position.log_epoch, position.lost_offsets],
            )
            .map_err(|e| classify(path, e))?;
            tx.commit().map_err(|e| classify(path, e))?;
            Ok(position)
        })
        .await
    }

    async fn commit(
        &self,
        pipeline: &str,
        partition: u32,
        epoch: u64,
        commit: Arc<Commit>,
    ) -> Result<(), StoreError> {
        let pipeline = pipeline.to_owned();
        self.write(move |connection, path| {
            let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| classify(path, e))?;
            let current: Option<u64> = tx
                .query_row(
                    "SELECT epoch FROM positions WHERE pipeline = ?1 AND partition = ?2",
                    params![pipeline, partition],
                    |row| row.get(0),
                )
                .optional()
                .map_err(|e| classify(path, e))?;
            if current != Some(epoch) {
                return Err(StoreError::Fenced { pipeline, partition, epoch, current: current.unwrap_or(0) });
            }
            for metric in &commit.metrics {
                apply_metric(&tx, partition, metric).map_err(|e| e.into_store(path))?;
            }
            for range in &commit.output {
                let extended = tx
                    .prepare_cached("UPDATE stream_ranges SET \"end\" = ?4 WHERE stream = ?1 AND partition = ?2 AND \"end\" = ?3")
                    .and_then(|mut update| update.execute(params![range.stream, partition, range.start, range.end]))
                    .map_err(|e| classify(path, e))?;
                if extended == 0 {
                    tx.prepare_cached("INSERT INTO stream_ranges (stream, partition, start, \"end\") VALUES (?1, ?2, ?3, ?4)")
                        .and_then(|mut insert| insert.execute(params![range.stream, partition, range.start, range.end]))
                        .map_err(|e| classify(path, e))?;
                }
            }
            tx.execute(
                "UPDATE positions SET next_offset = ?3, event_time = ?4, log_epoch = ?5, note = ?6 WHERE pipeline = ?1 AND partition = ?2",
                params![pipeline, partition, commit.offset, commit.event_time, commit.log_epoch, commit.note],
            )
            .map_err(|e| classify(path, e))?;
            tx.commit().map_err(|e| classify(path, e))?;
            Ok(())
        })
        .await
    }

    async fn load_rows(
        &self,
        metric: &str,
        generation: u32,
        partition: u32,
        open_after: Millis,
    ) -> Result<Vec<StoredRow>, StoreError> {
        let metric = metric.to_owned();
        self.read(move |connection, path| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT tenant, group_key, window_start, window_end, version, state FROM partials \
                     WHERE metric = ?1 AND generation = ?2 AND partition = ?3 AND window_end > ?4",
                )
                .map_err(|e| classify(path, e))?;
            let rows = statement
                .query_map(params![metric, generation, partition, open_after], |row| {
                    stored_row(row, Some(partition), row.get(0)?)
                })
                .map_err(|e| classify(path, e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| classify(path, e))
        })
        .await
    }

    async fn load_partials(
        &self,
        metric: &str,
        generation: u32,
        partition: u32,
        open_after: Millis,
        decode: RowDecoder,
    ) -> Result<Result<Vec<PartialRow>, String>, StoreError> {
        let metric = metric.to_owned();
        self.read(move |connection, path| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT group_key, window_start, window_end, version, state FROM partials \
                     WHERE metric = ?1 AND generation = ?2 AND partition = ?3 AND window_end > ?4",
                )
                .map_err(|e| classify(path, e))?;
            let mut rows = statement
                .query(params![metric, generation, partition, open_after])
                .map_err(|e| classify(path, e))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(|e| classify(path, e))? {
                let blob = |index| {
                    row.get_ref(index)
                        .and_then(|value| value.as_blob().map_err(Into::into))
                };
                let row = RowRef {
                    key: blob(0).map_err(|e| classify(path, e))?,
                    window_start: row.get(1).map_err(|e| classify(path, e))?,
                    window_end: row.get(2).map_err(|e| classify(path, e))?,
                    version: row.get(3).map_err(|e| classify(path, e))?,
                    state: blob(4).map_err(|e| classify(path, e))?,
                };
                match decode(row) {
                    Ok(value) => out.push(value),
                    Err(reason) => return Ok(Err(reason)),
                }
            }
            Ok(Ok(out))
        })
        .await
    }

    async fn settle(
        &self,
        metric: &str,
        generation: u32,
        lateness: Millis,
    ) -> Result<u64, StoreError> {
        let metric = metric.to_owned();
        self.write(move |connection, path| {
            let tx = connection
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| classify(path, e))?;
            let closed = closed_open_rows(&tx, &metric, generation, lateness)
                .map_err(|e| classify(path, e))?;
            let mut retract = tx
                .prepare_cached(DELETE_OPEN)
                .map_err(|e| classify(path, e))?;
            let mut merge = tx
                .prepare_cached(MERGE_FINAL)
                .map_err(|e| classify(path, e))?;
            for (partition, row) in &closed {
                retract
                    .execute(params![
                        metric,
                        generation,
                        partition,
                        row.tenant,
                        row.window_start,
                        row.key,
                        row.window_end
                    ])
                    .map_err(|e| classify(path, e))?;
                merge_final(&mut merge, &metric, generation, row.as_changed())
                    .map_err(|e| e.into_store(path))?;
            }
            drop((retract, merge));
            tx.commit().map_err(|e| classify(path, e))?;
            Ok(closed.len() as u64)
        })
        .await
    }

    async fn watermarks(
        &self,
        metric: &str,
        generation: u32,
    ) -> Result<Vec<(u32, Option<Millis>)>, StoreError> {
        let metric = metric.to_owned();
        self.read(move |connection, path| {
            watermarks_of(connection, &metric, generation).map_err(|e| classify(path, e))
        })
        .await
    }

    async fn committed_note(
        &self,
        pipeline: &str,
        partition: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let pipeline = pipeline.to_owned();
        self.read(move |connection, path| {
            connection
                .query_row(
                    "SELECT note FROM positions WHERE pipeline = ?1 AND partition = ?2",
                    params![pipeline, partition],
                    |row| row.get(0),
                )
                .optional()
                .map(Option::flatten)
                .map_err(|e| classify(path, e))
        })
        .await
    }

    async fn positions(&self, pipeline: &str) -> Result<Vec<(u32, Position)>, StoreError> {
        let pipeline = pipeline.to_owned();
        self.read(move |connection, path| {
            let mut statement = connection
                .prepare_cached(&format!("SELECT partition, {POSITION_COLUMNS} FROM positions WHERE pipeline = ?1 ORDER BY partition"))
                .map_err(|e| classify(path, e))?;
            let rows = statement
                .query_map([pipeline], |row| Ok((row.get(0)?, position_from(row, 1)?)))
                .map_err(|e| classify(path, e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| classify(path, e))
        })
        .await
    }

    async fn stream_ranges(
        &self,
        stream: &str,
        partition: u32,
        from: u64,
        limit: u32,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        let stream = stream.to_owned();
        self.read(move |connection, path| {
            let mut statement = connection
                .prepare_cached("SELECT start, \"end\" FROM stream_ranges WHERE stream = ?1 AND partition = ?2 AND \"end\" > ?3 ORDER BY start LIMIT ?4")
                .map_err(|e| classify(path, e))?;
            let rows = statement
                .query_map(params![stream, partition, from, limit], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(|e| classify(path, e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| classify(path, e))
        })
        .await
    }
}

#[async_trait]
impl ResultReads for SqliteStore {
    async fn query_rows(&self, query: RowQuery) -> Result<Vec<StoredRow>, StoreError> {
        // No limit: every row comes back.
        Ok(self
            .rows_in_range(query.into_range())
            .await?
            .unwrap_or_default())
    }

    async fn rows_in(&self, range: RowRange) -> Result<Option<Vec<StoredRow>>, StoreError> {
        self.rows_in_range(range).await
    }

    async fn live_rows(
        &self,
        range: RowRange,
        skip: Vec<u32>,
    ) -> Result<Option<RowsAndWatermarks>, StoreError> {
        self.live_rows_in(range, skip).await
    }

    async fn rows_page(&self, page: RowPage) -> Result<Vec<StoredRow>, StoreError> {
        self.rows_of_page(page).await
    }
}

#[async_trait]
impl Housekeeping for SqliteStore {
    async fn size(&self) -> Result<u64, StoreError> {
        self.write(|connection, path| {
            let pages: u64 = connection
                .query_row("PRAGMA page_count", [], |row| row.get(0))
                .map_err(|e| classify(path, e))?;
            let page_size: u64 = connection
                .query_row("PRAGMA page_size", [], |row| row.get(0))
                .map_err(|e| classify(path, e))?;
            Ok(pages * page_size)
        })
        .await
    }

    async fn set_max_size(&self, bytes: Option<u64>) -> Result<(), StoreError> {
        self.write(move |connection, path| {
            let page_size: u64 = connection
                .query_row("PRAGMA page_size", [], |row| row.get(0))
                .map_err(|e| classify(path, e))?;
            let pages = bytes.map_or(4_294_967_294, |bytes| (bytes / page_size.max(1)).max(1));
            let _: u64 = connection
                .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |row| {
                    row.get(0)
                })
                .map_err(|e| classify(path, e))?;
            Ok(())
        })
        .await
    }

    fn location(&self) -> String {
        self.inner.path.display().to_string()
    }
}

/// A failure applying a commit: SQLite's, or a state that would not merge.
enum ApplyError {
    Sqlite(rusqlite::Error),
    Merge(String),
}

impl From<rusqlite::Error> for ApplyError {
    fn from(error: rusqlite::Error) -> Self {
        ApplyError::Sqlite(error)
    }
}

impl ApplyError {
    fn into_store(self, path: &Path) -> StoreError {
        match self {
            ApplyError::Sqlite(error) => classify(path, error),
            ApplyError::Merge(detail) => StoreError::Corrupt {
                path: path.to_owned(),
                detail: format!("a stored state does not merge: {detail}"),
            },
        }
    }
}

/// Deletes one open row: `?1`–`?7` metric, generation, partition, tenant, window start, group
/// key, window end.
const DELETE_OPEN: &str = "DELETE FROM partials WHERE metric = ?1 AND generation = ?2 AND partition = ?3 \
     AND tenant = ?4 AND window_start = ?5 AND group_key = ?6 AND window_end = ?7";

/// Writes one metric's part of a commit of `partition`: retracted open rows, then closed
/// windows into their final rows, then changed open rows, then the watermark.
fn apply_metric(
    tx: &rusqlite::Transaction<'_>,
    partition: u32,
    metric: &MetricCommit,
) -> Result<(), ApplyError> {
    let mut retract = tx.prepare_cached(DELETE_OPEN)?;
    let mut delete_open = |tenant: &str, start: Millis, key: &[u8], end: Millis| {
        retract.execute(params![
            metric.metric,
            metric.generation,
            partition,
            tenant,
            start,
            key,
            end
        ])
    };
    for row in &metric.retracted {
        delete_open(&row.tenant, row.window_start, &row.key, row.window_end)?;
    }
    let mut merge = tx.prepare_cached(MERGE_FINAL)?;
    for row in in_key_order(&metric.closed) {
        delete_open(row.tenant, row.window_start, row.key, row.window_end)?;
        merge_final(&mut merge, &metric.metric, metric.generation, row)?;
    }
    let mut upsert = tx.prepare_cached(
        "INSERT INTO partials (metric, generation, tenant, window_start, group_key, window_end, partition, version, state) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (metric, generation, partition, tenant, window_start, group_key, window_end) \
         DO UPDATE SET version = excluded.version, state = excluded.state",
    )?;
    for row in in_key_order(&metric.changed) {
        upsert.execute(params![
            metric.metric,
            metric.generation,
            row.tenant,
            row.window_start,
            row.key,
            row.window_end,
            partition,
            row.version,
            row.state
        ])?;
    }
    tx.prepare_cached(
        "INSERT INTO watermarks (metric, generation, partition, watermark) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (metric, generation, partition) DO UPDATE SET watermark = excluded.watermark",
    )?
    .execute(params![
        metric.metric,
        metric.generation,
        partition,
        metric.watermark
    ])?;
    Ok(())
}

/// Rows in the order of the tables' keys (tenant, window start, group key, window end): each
/// write then lands beside the one before it, on a page in cache, and pages fill in order
/// instead of splitting wherever keys fall (the processor lists rows as windows close).
/// Stable: of two rows with one key, the later still wins.
fn in_key_order(rows: &PackedRows) -> Vec<ChangedRow<'_>> {
    let mut rows: Vec<ChangedRow<'_>> = rows.iter().collect();
    rows.sort_by(|a, b| {
        (a.tenant, a.window_start, a.key, a.window_end).cmp(&(
            b.tenant,
            b.window_start,
            b.key,
            b.window_end,
        ))
    });
    rows
}

/// The SQL function that merges two encoded states (`sluice_merge(state, other)`), registered
/// on the writing connection: a closed window then reaches its final row in one upsert.
const MERGE_FUNCTION: &str = "sluice_merge";

/// What the merge function's errors start with, to tell them from SQLite's own.
const MERGE_FAILED: &str = "sluice_merge: ";

/// The upsert [`merge_final`] executes: `?1`–`?8` metric, generation, tenant, window start,
/// group key, window end, version, state.
const MERGE_FINAL: &str = "INSERT INTO finals (metric, generation, tenant, window_start, group_key, window_end, version, state) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
     ON CONFLICT (metric, generation, tenant, window_start, group_key, window_end) \
     DO UPDATE SET version = max(version, excluded.version), state = sluice_merge(state, excluded.state)";

/// Registers [`MERGE_FUNCTION`] on `connection`.
fn register_merge(connection: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    connection.create_scalar_function(
        MERGE_FUNCTION,
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |context| {
            let into = context.get_raw(0).as_blob()?;
            let other = context.get_raw(1).as_blob()?;
            crate::merge::merged_state(into, other).map_err(|reason| {
                rusqlite::Error::UserFunctionError(format!("{MERGE_FAILED}{reason}").into())
            })
        },
    )
}

/// Merges a closed window's state into its final row, making the row if this is the first
/// partition to close the window. The final version is the highest any partition reached.
fn merge_final(
    upsert: &mut rusqlite::CachedStatement<'_>,
    metric: &str,
    generation: u32,
    row: ChangedRow<'_>,
) -> Result<(), ApplyError> {
    upsert
        .execute(params![
            metric,
            generation,
            row.tenant,
            row.window_start,
            row.key,
            row.window_end,
            row.version,
            row.state
        ])
        .map_err(|error| match &error {
            rusqlite::Error::SqliteFailure(_, Some(message))
                if message.starts_with(MERGE_FAILED) =>
            {
                ApplyError::Merge(message[MERGE_FAILED.len()..].to_owned())
            }
            _ => ApplyError::Sqlite(error),
        })?;
    Ok(())
}

/// A stored row whose columns 1 to 5 are `group_key, window_start, window_end, version,
/// state` (column 0 is the partition or the tenant, whichever the query does not fix).
pub(crate) fn stored_row(
    row: &rusqlite::Row<'_>,
    partition: Option<u32>,
    tenant: String,
) -> rusqlite::Result<StoredRow> {
    Ok(StoredRow {
        partition,
        tenant,
        key: row.get(1)?,
        window_start: row.get(2)?,
        window_end: row.get(3)?,
        version: row.get(4)?,
        state: row.get(5)?,
    })
}

/// Each partition's committed watermark of a metric generation.
pub(crate) fn watermarks_of(
    connection: &Connection,
    metric: &str,
    generation: u32,
) -> rusqlite::Result<Vec<(u32, Option<Millis>)>> {
    let mut statement = connection.prepare_cached(
        "SELECT partition, watermark FROM watermarks WHERE metric = ?1 AND generation = ?2 ORDER BY partition",
    )?;
    let rows = statement.query_map(params![metric, generation], |row| {
        Ok((row.get(0)?, row.get(1)?))
    })?;
    rows.collect()
}

/// The open rows of a metric generation whose window their partition's committed watermark
/// has closed, with their partitions, in key order.
fn closed_open_rows(
    tx: &rusqlite::Transaction<'_>,
    metric: &str,
    generation: u32,
    lateness: Millis,
) -> rusqlite::Result<Vec<(u32, StoredRow)>> {
    let mut statement = tx.prepare(
        "SELECT p.partition, p.tenant, p.group_key, p.window_start, p.window_end, p.version, p.state \
         FROM partials p JOIN watermarks w \
         ON w.metric = p.metric AND w.generation = p.generation AND w.partition = p.partition \
         WHERE p.metric = ?1 AND p.generation = ?2 AND w.watermark IS NOT NULL \
         AND p.window_end <= w.watermark - ?3 \
         ORDER BY p.tenant, p.window_start, p.group_key, p.window_end, p.partition",
    )?;
    let rows = statement.query_map(params![metric, generation, lateness], |row| {
        let partition: u32 = row.get(0)?;
        Ok((
            partition,
            StoredRow {
                partition: Some(partition),
                tenant: row.get(1)?,
                key: row.get(2)?,
                window_start: row.get(3)?,
                window_end: row.get(4)?,
                version: row.get(5)?,
                state: row.get(6)?,
            },
        ))
    })?;
    rows.collect()
}

/// The columns of a [`Position`], in the order [`position_from`] reads them.
const POSITION_COLUMNS: &str = "epoch, next_offset, event_time, log_epoch, lost_offsets";

/// A position from [`POSITION_COLUMNS`], starting at column `first`.
fn position_from(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Position> {
    Ok(Position {
        epoch: row.get(first)?,
        offset: row.get(first + 1)?,
        event_time: row.get(first + 2)?,
        log_epoch: row.get(first + 3)?,
        lost_offsets: row.get(first + 4)?,
    })
}

/// A pipeline partition's position, inside a transaction.
fn position_of(
    tx: &rusqlite::Transaction<'_>,
    pipeline: &str,
    partition: u32,
) -> rusqlite::Result<Option<Position>> {
    tx.query_row(
        &format!("SELECT {POSITION_COLUMNS} FROM positions WHERE pipeline = ?1 AND partition = ?2"),
        params![pipeline, partition],
        |row| position_from(row, 0),
    )
    .optional()
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

#[cfg(test)]
mod tests;
