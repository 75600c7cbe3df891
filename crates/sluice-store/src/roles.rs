//! The store's traits, one per role, and [`Backend`], all of them together.
//!
//! | trait | used by | what |
//! |---|---|---|
//! | [`Catalogue`] | pipelines, API | metric definitions and their generations |
//! | [`Checkpoints`] | pipelines | claims, commits and rewinds (exactly-once), and reading back what was committed |
//! | [`ResultReads`] | API | results for queries |
//! | [`Directory`] | API | tenants and keys made through the admin API |
//! | [`Usage`] | API | each key's daily usage |
//! | [`Schemas`] | API | the schema registry's versions and settings |
//! | [`Boards`] | API | the dashboard's saved boards |
//! | [`Erasures`] | collector, API | users erased on request, whose future events are dropped |
//! | [`Alerts`] | API (alert runner, notifier) | alert rules, their progress, the notification outbox, silences |
//! | [`Housekeeping`] | binary, pipelines | size, size cap, where the store lives |
//!
//! A backend implements every role ([`Backend`]). Callers hold a
//! [`StoreBackend`](crate::backend::StoreBackend): a cheap clone of one `Arc<dyn Backend>`, so a
//! second backend (PostgreSQL) is one more implementation and one more arm in its `open`, with
//! nothing forwarded by hand.
//! The traits are object-safe: `async_trait` boxes each call's future, one allocation beside
//! a hop to the blocking pool or a database round trip. What every backend must do is written
//! once, in `tests/contract.rs`, and run against each.

use crate::error::StoreError;
use crate::model::{
    AlertProgress, AlertRuleRecord, BoardRecord, Commit, DeliveryOutcome, DeliveryState,
    ErasureRecord, KeyRecord, MetricRecord, Notification, NotificationQuery, Position, ReplayPlan,
    RowDecoder, RowPage, RowQuery, RowRange, RowsAndWatermarks, SilenceRecord, StoredRow,
    TenantRecord,
};
use async_trait::async_trait;
use sluice_core::time::Millis;
use sluice_schema::{SchemaType, SchemaVersion, SubjectConfig};
use sluice_stream::engine::output::PartialRow;
use std::fmt::Debug;
use std::sync::Arc;

/// Metric definitions and their generations. Every change is one atomic transaction.
#[async_trait]
pub trait Catalogue: Send + Sync {
    /// Every metric definition, by name.
    async fn metrics(&self) -> Result<Vec<MetricRecord>, StoreError>;

    /// Adds a metric definition; its name must be new.
    async fn create_metric(&self, record: MetricRecord) -> Result<(), StoreError>;

    /// Deletes a metric with every generation's rows, watermarks and positions, atomically.
    /// Returns whether it existed.
    async fn delete_metric(&self, name: &str) -> Result<bool, StoreError>;

    /// Makes generation `next` of a metric current, deletes older generations and ends its
    /// replay, atomically; rows of the old generation with windows starting before
    /// `keep_before` move to the new. A generation already current (another node of the
    /// cluster switched first) is left as it is.
    async fn switch_generation(
        &self,
        metric: &str,
        next: u32,
        keep_before: Option<Millis>,
    ) -> Result<(), StoreError>;

    /// Records a replay of a metric and deletes what an earlier, interrupted attempt left of
    /// its generation, atomically. False, and nothing changed, when a replay of the metric is
    /// already recorded or `plan.generation` is not the one after the current.
    async fn begin_replay(&self, metric: &str, plan: &ReplayPlan) -> Result<bool, StoreError>;

    /// Every replay under way, by metric name.
    async fn replays(&self) -> Result<Vec<(String, ReplayPlan)>, StoreError>;
}

/// The exactly-once side: who owns a pipeline partition, its committed position, and the rows
/// committed with it. Every write is one transaction, fenced by the owner's epoch.
#[async_trait]
pub trait Checkpoints: Send + Sync {
    /// Takes ownership of a pipeline partition: bumps its epoch (fencing out older owners)
    /// and returns its committed position; a new one starts at `initial_offset` of the log
    /// epoch `log_epoch`.
    async fn claim(
        &self,
        pipeline: &str,
        partition: u32,
        initial_offset: u64,
        log_epoch: u32,
    ) -> Result<Position, StoreError>;

    /// Moves a pipeline partition's position to `offset` of log epoch `log_epoch`, if `epoch`
    /// still owns it (else [`StoreError::Fenced`]), because the log no longer backs it: back,
    /// when the log lost the records from `offset` on and hands their offsets to new records;
    /// forward, when retention removed records before `offset` that it had not processed. The
    /// offsets in between are added to its `lost_offsets`; its rows stay. Returns the new
    /// position.
    async fn reposition(
        &self,
        pipeline: &str,
        partition: u32,
        epoch: u64,
        offset: u64,
        log_epoch: u32,
    ) -> Result<Position, StoreError>;

    /// Commits one checkpoint — rows, watermarks and position in one transaction — if `epoch`
    /// still owns the pipeline partition (else [`StoreError::Fenced`]). Retracted open rows
    /// go first; each closed window's state is then merged into the window's final row (made
    /// if it is the first partition to close it) and the partition's open row of it deleted;
    /// changed open rows are inserted or replaced last. A state that does not decode fails
    /// the commit as [`StoreError::Corrupt`].
    async fn commit(
        &self,
        pipeline: &str,
        partition: u32,
        epoch: u64,
        commit: Arc<Commit>,
    ) -> Result<(), StoreError>;

    /// The open rows of a metric generation's `partition` whose window ends after
    /// `open_after`.
    async fn load_rows(
        &self,
        metric: &str,
        generation: u32,
        partition: u32,
        open_after: Millis,
    ) -> Result<Vec<StoredRow>, StoreError>;

    /// Like [`Checkpoints::load_rows`], handing each row's columns, borrowed, to `decode`
    /// (no copy of the row); stops at the first row it refuses, with its reason.
    async fn load_partials(
        &self,
        metric: &str,
        generation: u32,
        partition: u32,
        open_after: Millis,
        decode: RowDecoder,
    ) -> Result<Result<Vec<PartialRow>, String>, StoreError>;

    /// Moves a metric generation's open rows of windows that their partition's committed
    /// watermark has closed (window end + `lateness` at or before it) into the final rows,
    /// merging, in one transaction; returns how many moved. Commits never leave such rows;
    /// stores written before final rows existed did, and this settles them.
    async fn settle(
        &self,
        metric: &str,
        generation: u32,
        lateness: Millis,
    ) -> Result<u64, StoreError>;

    /// Each partition's watermark for a metric generation.
    async fn watermarks(
        &self,
        metric: &str,
        generation: u32,
    ) -> Result<Vec<(u32, Option<Millis>)>, StoreError>;

    /// The [`Commit::note`] of a pipeline partition's last commit (`None` when it had none,
    /// or the partition never committed). Read after a [`Checkpoints::claim`], it is the
    /// last owner's: a fenced owner's commits never replace it.
    async fn committed_note(
        &self,
        pipeline: &str,
        partition: u32,
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// Each partition's committed position of a pipeline.
    async fn positions(&self, pipeline: &str) -> Result<Vec<(u32, Position)>, StoreError>;

    /// The committed ranges `[start, end)` of a derived stream's `partition` that end after
    /// `from`, in offset order, at most `limit`: the records readers of the stream may read.
    /// A commit adds its [`Commit::output`]; a range that starts where the last one ended
    /// extends it, so one writer's ranges are one row until a crash leaves a gap (records
    /// appended but never committed, which no reader sees). Deleting the stream's definition
    /// deletes its ranges, and those of `<name>.changes` (an identity's second topic: no
    /// definition's name has a dot).
    async fn stream_ranges(
        &self,
        stream: &str,
        partition: u32,
        from: u64,
        limit: u32,
    ) -> Result<Vec<(u64, u64)>, StoreError>;
}

/// Results, as queries read them.
#[async_trait]
pub trait ResultReads: Send + Sync {
    /// One tenant's rows of a metric generation with windows starting in `[from, to)`, final
    /// and open, ordered by window start.
    async fn query_rows(&self, query: RowQuery) -> Result<Vec<StoredRow>, StoreError>;

    /// The rows in `range`, final and open, by window start; `None` when there are more than
    /// `range.limit`.
    async fn rows_in(&self, range: RowRange) -> Result<Option<Vec<StoredRow>>, StoreError>;

    /// [`ResultReads::rows_in`] without the open rows of the partitions in `skip` (a reader
    /// has their state from the engine), with each partition's committed watermark read in
    /// the same snapshot: a reader laying a partition's state that is not committed yet over
    /// the rows tells by it which of that partition's windows the final rows already hold.
    async fn live_rows(
        &self,
        range: RowRange,
        skip: Vec<u32>,
    ) -> Result<Option<RowsAndWatermarks>, StoreError>;

    /// The next page of final rows in `page`'s range, in the order (window start, group key,
    /// window end), strictly after `page.after`; fewer than `page.limit` only at the end.
    async fn rows_page(&self, page: RowPage) -> Result<Vec<StoredRow>, StoreError>;
}

/// Tenants and keys made through the admin API (configured ones live in the config).
#[async_trait]
pub trait Directory: Send + Sync {
    /// Every stored tenant, by name.
    async fn tenants(&self) -> Result<Vec<TenantRecord>, StoreError>;

    /// Adds a tenant; its name must be new ([`StoreError::TenantExists`]).
    async fn create_tenant(&self, tenant: TenantRecord) -> Result<(), StoreError>;

    /// Replaces a tenant's limits; returns whether it exists.
    async fn set_tenant_limits(
        &self,
        name: &str,
        requests_per_second: Option<u32>,
        events_per_day: Option<u64>,
    ) -> Result<bool, StoreError>;

    /// Deletes a tenant and its keys atomically; returns whether it existed.
    async fn delete_tenant(&self, name: &str) -> Result<bool, StoreError>;

    /// Every stored key, oldest first.
    async fn keys(&self) -> Result<Vec<KeyRecord>, StoreError>;

    /// Adds a key; its id and digest must be new.
    async fn create_key(&self, key: KeyRecord) -> Result<(), StoreError>;

    /// Deletes (revokes) a key; returns whether it existed.
    async fn delete_key(&self, id: &str) -> Result<bool, StoreError>;
}

/// Each key's events per UTC day, for daily quotas that survive restarts and that the nodes of
/// a cluster share: a row counts every node's events.
#[async_trait]
pub trait Usage: Send + Sync {
    /// Each key's events used on UTC day `day`.
    async fn key_usage(&self, day: u64) -> Result<Vec<(String, u64)>, StoreError>;

    /// Adds keys' (id, day, events taken) to the day's counts, in one transaction, and forgets
    /// days before the earliest given.
    async fn add_key_usage(&self, usage: Vec<(String, u64, u64)>) -> Result<(), StoreError>;
}

/// The store as a whole: its size, a cap on it, where it lives.
#[async_trait]
pub trait Housekeeping: Send + Sync {
    /// The store's size in bytes.
    async fn size(&self) -> Result<u64, StoreError>;

    /// Caps the store's size (`None`: no cap); reaching the cap behaves like a full disk.
    async fn set_max_size(&self, bytes: Option<u64>) -> Result<(), StoreError>;

    /// Where the store lives, for messages (a file path or a URL without credentials).
    fn location(&self) -> String;
}

/// The schema registry's versions and settings (`sluice-schema` decides, the store keeps).
/// Every write is one transaction.
#[async_trait]
pub trait Schemas: Send + Sync {
    /// Every version (soft-deleted ones too) and every setting.
    async fn schema_registry(&self)
    -> Result<(Vec<SchemaVersion>, Vec<SubjectConfig>), StoreError>;

    /// Appends the next version to a subject, refused with [`StoreError::Conflict`] unless the
    /// subject's highest version (soft-deleted ones included) is still `expected_latest`. The
    /// schema's id is the one the tenant's same type and text already has, else a new one;
    /// ids are never reused, even after a permanent delete.
    async fn add_schema_version(
        &self,
        tenant: &str,
        subject: &str,
        schema_type: SchemaType,
        schema: &str,
        expected_latest: Option<u32>,
    ) -> Result<SchemaVersion, StoreError>;

    /// Soft-deletes the live versions of a subject (one, or all with `version` `None`), or
    /// with `permanent` removes its soft-deleted ones (and, when all go, its settings).
    /// Returns the versions affected, in order.
    async fn delete_schema_versions(
        &self,
        tenant: &str,
        subject: &str,
        version: Option<u32>,
        permanent: bool,
    ) -> Result<Vec<u32>, StoreError>;

    /// Replaces the settings of a tenant (`subject` empty) or subject; `None` removes them.
    async fn set_schema_settings(
        &self,
        tenant: &str,
        subject: &str,
        settings: Option<SubjectConfig>,
    ) -> Result<(), StoreError>;
}

/// Users erased on request, per tenant: the collector drops their future events.
#[async_trait]
pub trait Erasures: Send + Sync {
    /// Every erased id, by tenant then id.
    async fn erasures(&self) -> Result<Vec<ErasureRecord>, StoreError>;
    /// Records an erasure and returns it as stored: an id erased before keeps its first time.
    async fn erase(&self, record: ErasureRecord) -> Result<ErasureRecord, StoreError>;
}

/// The dashboard's saved boards, per tenant.
#[async_trait]
pub trait Boards: Send + Sync {
    /// A tenant's boards, by name.
    async fn boards(&self, tenant: &str) -> Result<Vec<BoardRecord>, StoreError>;

    /// Saves a board, replacing one of the same tenant and name.
    async fn put_board(&self, board: BoardRecord) -> Result<(), StoreError>;

    /// Deletes a board; whether it existed.
    async fn delete_board(&self, tenant: &str, name: &str) -> Result<bool, StoreError>;
}

/// Alert rules, how far each has evaluated its metric, the durable notification outbox, and
/// silences (issue 19). The exactly-once part: a rule's progress and the notifications its
/// transitions made are committed together ([`Alerts::commit_alerts`]), and a notification id
/// is inserted once per channel, so a crash between a transition and its delivery neither
/// loses nor doubles it.
#[async_trait]
pub trait Alerts: Send + Sync {
    /// Every rule, by tenant then name.
    async fn alert_rules(&self) -> Result<Vec<AlertRuleRecord>, StoreError>;

    /// Stores a rule (its `id` and `created_at` are ignored). A rule of the same tenant and
    /// name with the same metric, text and channels is kept as it is (same id, same
    /// progress); one that differs is replaced: a new id, no progress. Returns the rule as
    /// stored and whether it changed.
    async fn put_alert_rule(
        &self,
        rule: AlertRuleRecord,
    ) -> Result<(AlertRuleRecord, bool), StoreError>;

    /// Deletes a rule and its progress; its notifications stay in the outbox (they report
    /// what happened). Returns whether it existed.
    async fn delete_alert_rule(&self, tenant: &str, name: &str) -> Result<bool, StoreError>;

    /// The progress of the rules in `rule_ids` that have one.
    async fn alert_progress(&self, rule_ids: Vec<u64>) -> Result<Vec<AlertProgress>, StoreError>;

    /// In one transaction: stores each progress whose rule still exists and whose cursor is
    /// not behind the stored one (another node that got further keeps its progress), and
    /// inserts each notification whose (id, channel) is new (as `pending`, due at its
    /// `next_attempt`). Returns how many notifications were new.
    async fn commit_alerts(
        &self,
        progress: Vec<AlertProgress>,
        notifications: Vec<Notification>,
    ) -> Result<u64, StoreError>;

    /// Pending notifications due at `now` (`next_attempt <= now`), oldest first, at most
    /// `limit`.
    async fn due_notifications(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError>;

    /// Records attempts' outcomes (each only if the notification is still pending).
    async fn record_deliveries(&self, outcomes: Vec<DeliveryOutcome>) -> Result<(), StoreError>;

    /// Notifications as `query` selects them, newest first.
    async fn notifications(
        &self,
        query: NotificationQuery,
    ) -> Result<Vec<Notification>, StoreError>;

    /// How many notifications are in each state.
    async fn notification_counts(&self) -> Result<Vec<(DeliveryState, u64)>, StoreError>;

    /// Every silence, including expired ones not yet forgotten, by tenant then start.
    async fn silences(&self) -> Result<Vec<SilenceRecord>, StoreError>;

    /// Adds a silence (its id must be new).
    async fn put_silence(&self, silence: SilenceRecord) -> Result<(), StoreError>;

    /// Deletes a tenant's silence; whether it existed.
    async fn delete_silence(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;
}

/// A store backend: every role.
pub trait Backend:
    Catalogue
    + Checkpoints
    + ResultReads
    + Directory
    + Usage
    + Schemas
    + Boards
    + Erasures
    + Alerts
    + Housekeeping
    + Debug
    + 'static
{
}

impl<T> Backend for T where
    T: Catalogue
        + Checkpoints
        + ResultReads
        + Directory
        + Usage
        + Schemas
        + Boards
        + Erasures
        + Alerts
        + Housekeeping
        + Debug
        + 'static
{
}
