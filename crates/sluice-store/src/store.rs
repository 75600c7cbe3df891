//! The `Store` trait every result-store backend implements, and the enum that dispatches to
//! the configured one (chosen by `store.url`).

use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::model::{Commit, MetricRecord, Position, RowQuery, RowRef, StoredRow};
use crate::sqlite::SqliteStore;
use sluice_core::time::Millis;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

/// Where results, offsets and metric definitions live. Every write that matters for
/// exactly-once is one atomic transaction; reads never block writes.
pub trait Store: Send + Sync + Clone + 'static {
    /// Every metric definition, by name.
    fn metrics(&self) -> impl Future<Output = Result<Vec<MetricRecord>, StoreError>> + Send;

    /// Adds a metric definition; its name must be new.
    fn create_metric(
        &self,
        record: MetricRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes a metric with every generation's rows, watermarks and positions, atomically.
    /// Returns whether it existed.
    fn delete_metric(&self, name: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Takes ownership of a pipeline partition: bumps its epoch (fencing out older owners)
    /// and returns its committed position; a new one starts at `initial_offset` of the log
    /// epoch `log_epoch`.
    fn claim(
        &self,
        pipeline: &str,
        partition: u32,
        initial_offset: u64,
        log_epoch: u32,
    ) -> impl Future<Output = Result<Position, StoreError>> + Send;

    /// Moves a pipeline partition's position back to `offset` of log epoch `log_epoch`, if
    /// `epoch` still owns it (else [`StoreError::Fenced`]): the log lost the records from
    /// `offset` on and hands their offsets to new records. The offsets given up are added to
    /// its `lost_offsets`; its rows stay. Returns the new position.
    fn rewind(
        &self,
        pipeline: &str,
        partition: u32,
        epoch: u64,
        offset: u64,
        log_epoch: u32,
    ) -> impl Future<Output = Result<Position, StoreError>> + Send;

    /// Commits one checkpoint — rows, watermarks and position in one transaction — if `epoch`
    /// still owns the pipeline partition (else [`StoreError::Fenced`]).
    fn commit(
        &self,
        pipeline: &str,
        partition: u32,
        epoch: u64,
        commit: Arc<Commit>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The rows of a metric generation computed from `partition` whose window ends after
    /// `open_after`.
    fn load_rows(
        &self,
        metric: &str,
        generation: u32,
        partition: u32,
        open_after: Millis,
    ) -> impl Future<Output = Result<Vec<StoredRow>, StoreError>> + Send;

    /// Like [`Store::load_rows`], handing each row's columns, borrowed, to `decode`; stops at
    /// the first row it refuses, with its reason.
    fn load_rows_with<T: Send + 'static>(
        &self,
        metric: &str,
        generation: u32,
        partition: u32,
        open_after: Millis,
        decode: impl Fn(RowRef<'_>) -> Result<T, String> + Send + 'static,
    ) -> impl Future<Output = Result<Result<Vec<T>, String>, StoreError>> + Send;

    /// One tenant's rows of a metric generation with windows starting in `[from, to)`, from
    /// every partition, ordered by window start.
    fn query_rows(
        &self,
        query: RowQuery,
    ) -> impl Future<Output = Result<Vec<StoredRow>, StoreError>> + Send;

    /// Each partition's watermark for a metric generation.
    fn watermarks(
        &self,
        metric: &str,
        generation: u32,
    ) -> impl Future<Output = Result<Vec<(u32, Option<Millis>)>, StoreError>> + Send;

    /// Each partition's committed position of a pipeline.
    fn positions(
        &self,
        pipeline: &str,
    ) -> impl Future<Output = Result<Vec<(u32, Position)>, StoreError>> + Send;

    /// Makes generation `next` of a metric current and deletes older generations, atomically;
    /// rows of the old generation with windows starting before `keep_before` move to the new.
    fn switch_generation(
        &self,
        metric: &str,
        next: u32,
        keep_before: Option<Millis>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes everything of one generation of a metric (an interrupted replay's leftovers).
    fn drop_generation(
        &self,
        metric: &str,
        generation: u32,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The store's size in bytes.
    fn size(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Caps the store's size (`None`: no cap); reaching the cap behaves like a full disk.
    fn set_max_size(
        &self,
        bytes: Option<u64>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Where the store lives, for messages (a file path or a URL without credentials).
    fn location(&self) -> String;
}

/// The configured store backend.
#[derive(Debug, Clone)]
pub enum StoreBackend {
    /// The embedded SQLite store (`store.url` empty or `sqlite:///…`).
    Sqlite(SqliteStore),
}

impl StoreBackend {
    /// Opens the store `config` names (relative to `data_dir` by default).
    pub fn open(config: &StoreConfig, data_dir: &Path) -> Result<StoreBackend, StoreError> {
        let path = config.sqlite_path(data_dir).map_err(StoreError::Invalid)?;
        Ok(StoreBackend::Sqlite(SqliteStore::open(&path)?))
    }
}

impl From<SqliteStore> for StoreBackend {
    fn from(store: SqliteStore) -> Self {
        StoreBackend::Sqlite(store)
    }
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            StoreBackend::Sqlite($store) => $call,
        }
    };
}

impl Store for StoreBackend {
    async fn metrics(&self) -> Result<Vec<MetricRecord>, StoreError> {
        dispatch!(self, store => store.metrics().await)
    }

    async fn create_metric(&self, record: MetricRecord) -> Result<(), StoreError> {
        dispatch!(self, store => store.create_metric(record).await)
    }

    async fn delete_metric(&self, name: &str) -> Result<bool, StoreError> {
        dispatch!(self, store => store.delete_metric(name).await)
    }

    async fn claim(
        &self,
        pipeline: &str,
        partition: u32,
        initial_offset: u64,
        log_epoch: u32,
    ) -> Result<Position, StoreError> {
        dispatch!(self, store => store.claim(pipeline, partition, initial_offset, log_epoch).await)
    }

    async fn rewind(
        &self,
        pipeline: &str,
        partition: u32,
        epoch: u64,
        offset: u64,
        log_epoch: u32,
    ) -> Result<Position, StoreError> {
        dispatch!(self, store => store.rewind(pipeline, partition, epoch, offset, log_epoch).await)
    }

    async fn commit(
        &self,
        pipeline: &str,
        partition: u32,
        epoch: u64,
        commit: Arc<Commit>,
    ) -> Result<(), StoreError> {
        dispatch!(self, store => store.commit(pipeline, partition, epoch, commit).await)
    }

    async fn load_rows(
        &self,
        metric: &str,
        generation: u32,
        partition: u32,
        open_after: Millis,
    ) -> Result<Vec<StoredRow>, StoreError> {
        dispatch!(self, store => store.load_rows(metric, generation, partition, open_after).await)
    }

    async fn load_rows_with<T: Send + 'static>(
        &self,
        metric: &str,
        generation: u32,
        partition: u32,
        open_after: Millis,
        decode: impl Fn(RowRef<'_>) -> Result<T, String> + Send + 'static,
    ) -> Result<Result<Vec<T>, String>, StoreError> {
        dispatch!(self, store => store.load_rows_with(metric, generation, partition, open_after, decode).await)
    }

    async fn query_rows(&self, query: RowQuery) -> Result<Vec<StoredRow>, StoreError> {
        dispatch!(self, store => store.query_rows(query).await)
    }

    async fn watermarks(
        &self,
        metric: &str,
        generation: u32,
    ) -> Result<Vec<(u32, Option<Millis>)>, StoreError> {
        dispatch!(self, store => store.watermarks(metric, generation).await)
    }

    async fn positions(&self, pipeline: &str) -> Result<Vec<(u32, Position)>, StoreError> {
        dispatch!(self, store => store.positions(pipeline).await)
    }

    async fn switch_generation(
        &self,
        metric: &str,
        next: u32,
        keep_before: Option<Millis>,
    ) -> Result<(), StoreError> {
        dispatch!(self, store => store.switch_generation(metric, next, keep_before).await)
    }

    async fn drop_generation(&self, metric: &str, generation: u32) -> Result<(), StoreError> {
        dispatch!(self, store => store.drop_generation(metric, generation).await)
    }

    async fn size(&self) -> Result<u64, StoreError> {
        dispatch!(self, store => store.size().await)
    }

    async fn set_max_size(&self, bytes: Option<u64>) -> Result<(), StoreError> {
        dispatch!(self, store => store.set_max_size(bytes).await)
    }

    fn location(&self) -> String {
        dispatch!(self, store => store.location())
    }
}
