//! What the store holds, as plain values: metric definitions, pipeline positions, and partial
//! aggregate rows (encoded group keys and states are opaque bytes here; the stream engine owns
//! their format and its versioning).

use serde::Serialize;
use sluice_core::access::Role;
use sluice_core::time::Millis;
pub use sluice_stream::engine::output::PartialRow;
pub use sluice_stream::engine::rows::{ChangedRow, PackedRows};

/// Where a metric definition came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A `[[metrics]]` table in the config file.
    Config,
    /// `POST /v1/admin/metrics`.
    Api,
}

impl Origin {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Api => "api",
        }
    }

    pub(crate) fn parse(text: &str) -> Origin {
        if text == "config" {
            Origin::Config
        } else {
            Origin::Api
        }
    }
}

/// A metric definition and which generation of its results is current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricRecord {
    /// Unique name.
    pub name: String,
    /// The `CREATE METRIC` statement.
    pub sql: String,
    /// Whether it was computed from the earliest retained offset.
    pub backfill: bool,
    /// Results of this generation are served; a replay computes the next one beside it and
    /// switches atomically.
    pub generation: u32,
    /// When it was created.
    pub created_at: Millis,
    /// Config file or API.
    pub origin: Origin,
}

impl MetricRecord {
    /// The pipeline computing generation `generation` of `metric`.
    pub fn pipeline_of(metric: &str, generation: u32) -> String {
        format!("{metric}@{generation}")
    }

    /// The pipeline computing the current generation.
    pub fn pipeline(&self) -> String {
        Self::pipeline_of(&self.name, self.generation)
    }
}

/// A replay under way, kept in the store so that every node of a cluster computes its share
/// of it and any of them can make it current: the generation it computes, the time its
/// windows start from (`None`: everything), and per source partition the offset it starts at
/// and the log's end it must reach before it becomes current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayPlan {
    /// The generation computed: the one after the current.
    pub generation: u32,
    /// Windows from this time on are recomputed; older ones keep the current results.
    pub from_time: Option<Millis>,
    /// Per source partition, the offset the replay starts at.
    pub initial: Vec<u64>,
    /// Per source partition, the offset it must have committed before it becomes current.
    pub targets: Vec<u64>,
}

impl ReplayPlan {
    /// Plans from the rows of the `replays` table — (metric, generation, from time,
    /// partition, initial offset, target offset) — ordered by metric and partition.
    pub(crate) fn from_rows(
        rows: impl IntoIterator<Item = (String, u32, Option<Millis>, u32, u64, u64)>,
    ) -> Vec<(String, ReplayPlan)> {
        let mut plans: Vec<(String, ReplayPlan)> = Vec::new();
        for (metric, generation, from_time, _, initial, target) in rows {
            match plans.last_mut() {
                Some((name, plan)) if *name == metric => {
                    plan.initial.push(initial);
                    plan.targets.push(target);
                }
                _ => plans.push((
                    metric,
                    ReplayPlan {
                        generation,
                        from_time,
                        initial: vec![initial],
                        targets: vec![target],
                    },
                )),
            }
        }
        plans
    }
}

/// A pipeline partition's committed position and its owner's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The fencing token of the current owner: a commit with another epoch is refused.
    pub epoch: u64,
    /// The next source offset to read; every record before it is reflected in the rows.
    pub offset: u64,
    /// The partition's event-time clock at that offset.
    pub event_time: Option<Millis>,
    /// The source partition's log epoch the offset belongs to (the log's epochs: `Log::epochs`).
    pub log_epoch: u32,
    /// Offsets counted in this pipeline partition's rows whose records the log no longer
    /// holds: a repair cut them and handed the offsets to new records, so the position was
    /// rewound to process those (the counted events stay counted; they happened).
    pub lost_offsets: u64,
}

/// One stored aggregate of a (tenant, group key, window) of one metric generation: either a
/// partition's row of a window it has open (its partial state so far), or the window's final
/// row, which every partition merged its state into as it closed the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    /// The partition whose open window this is; `None` for a final row.
    pub partition: Option<u32>,
    /// Tenant (also inside `key`; separate so reads filter on it).
    pub tenant: String,
    /// Encoded tenant + group key values.
    pub key: Vec<u8>,
    /// Window start, inclusive.
    pub window_start: Millis,
    /// Window end, exclusive.
    pub window_end: Millis,
    /// Last emitted version of the window.
    pub version: u32,
    /// Encoded partial state.
    pub state: Vec<u8>,
}

/// A row to delete: a session window whose bounds changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetractedRow {
    /// Tenant.
    pub tenant: String,
    /// Encoded key.
    pub key: Vec<u8>,
    /// Window start.
    pub window_start: Millis,
    /// Window end.
    pub window_end: Millis,
}

/// What one metric changed in one partition since the previous checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricCommit {
    /// The metric.
    pub metric: String,
    /// The generation being computed.
    pub generation: u32,
    /// Its watermark at the checkpoint.
    pub watermark: Option<Millis>,
    /// Open rows of the partition to delete (applied first).
    pub retracted: Vec<RetractedRow>,
    /// Windows the partition closed since the previous checkpoint, with its final state of
    /// each: merged into the window's final row, and the partition's open row of it deleted.
    pub closed: PackedRows,
    /// Open rows of the partition to insert or replace.
    pub changed: PackedRows,
}

impl StoredRow {
    /// This row's columns, borrowed.
    pub fn as_changed(&self) -> ChangedRow<'_> {
        ChangedRow {
            tenant: &self.tenant,
            key: &self.key,
            window_start: self.window_start,
            window_end: self.window_end,
            version: self.version,
            state: &self.state,
        }
    }
}

/// One checkpoint of one pipeline partition: rows and position, committed together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Commit {
    /// The next offset to read.
    pub offset: u64,
    /// The event-time clock.
    pub event_time: Option<Millis>,
    /// The source partition's log epoch the records were read in.
    pub log_epoch: u32,
    /// Per metric, what changed.
    pub metrics: Vec<MetricCommit>,
    /// Derived streams' records appended since the previous commit, made visible by this one
    /// (see [`Checkpoints::stream_ranges`](crate::roles::Checkpoints::stream_ranges)).
    pub output: Vec<StreamRange>,
    /// What the pipeline partition must finish after a crash if this was its last commit
    /// (opaque to the store: the archive's files to publish), kept with the position until
    /// the next commit replaces it (see
    /// [`Checkpoints::committed_note`](crate::roles::Checkpoints::committed_note)).
    pub note: Option<Vec<u8>>,
}

/// Offsets `[start, end)` of a derived stream's partition (the commit's partition) that its
/// writer appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRange {
    /// The stream (its topic).
    pub stream: String,
    /// The first offset.
    pub start: u64,
    /// One past the last.
    pub end: u64,
}

/// Rows to read for a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowQuery {
    /// The metric.
    pub metric: String,
    /// Its generation.
    pub generation: u32,
    /// Only this tenant's rows.
    pub tenant: String,
    /// Windows starting at or after this.
    pub from: Millis,
    /// Windows starting before this.
    pub to: Millis,
}

/// A tenant created through the admin API (tenants of the config file are not stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantRecord {
    /// Unique name.
    pub name: String,
    /// When it was created.
    pub created_at: Millis,
    /// Requests per second per key (`None`: the configured default).
    pub requests_per_second: Option<u32>,
    /// Events per UTC day per write key (`None`: the configured default).
    pub events_per_day: Option<u64>,
}

/// A saved dashboard board of a tenant: its panels as the API validated them (JSON text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoardRecord {
    /// The tenant it belongs to.
    pub tenant: String,
    /// Its name, unique in the tenant.
    pub name: String,
    /// The board (`{"title", "panels": […]}`), as JSON text.
    pub spec: String,
    /// When it was last saved.
    pub updated_at: Millis,
}

/// A user erased on request (`DELETE /v1/users/{id}`): the collector drops the events whose
/// user id or anonymous id is `id` from `erased_at` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErasureRecord {
    /// The tenant the id belongs to.
    pub tenant: String,
    /// The user id or anonymous id.
    pub id: String,
    /// When it was first erased.
    pub erased_at: Millis,
}

/// A key created through the admin API. The secret itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRecord {
    /// Public id (`key_…`).
    pub id: String,
    /// Its tenant (`None` for admin keys).
    pub tenant: Option<String>,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the secret.
    #[serde(skip)]
    pub digest: [u8; 32],
    /// The secret's first characters, to recognise it.
    pub hint: String,
    /// A label chosen by the admin.
    pub label: String,
    /// When it was created.
    pub created_at: Millis,
}

/// One stored partial's columns, borrowed from the database page they were read from.
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    /// Encoded tenant + group key.
    pub key: &'a [u8],
    /// Window start.
    pub window_start: Millis,
    /// Window end.
    pub window_end: Millis,
    /// Last emitted version.
    pub version: u32,
    /// Encoded partial state.
    pub state: &'a [u8],
}

/// Which rows of one tenant's metric generation to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowRange {
    /// The metric.
    pub metric: String,
    /// Its generation.
    pub generation: u32,
    /// The tenant.
    pub tenant: String,
    /// Windows ending after this…
    pub end_after: Millis,
    /// …and at or before this.
    pub end_upto: Millis,
    /// Windows starting at or after this…
    pub start_from: Millis,
    /// …and before this.
    pub start_before: Millis,
    /// Read at most this many rows; one more means "too many".
    pub limit: usize,
}

impl RowQuery {
    /// The same rows as a [`RowRange`]: windows of any end, no bound on their count.
    pub fn into_range(self) -> RowRange {
        RowRange {
            metric: self.metric,
            generation: self.generation,
            tenant: self.tenant,
            end_after: Millis::MIN,
            end_upto: Millis::MAX,
            start_from: self.from,
            start_before: self.to,
            limit: usize::MAX,
        }
    }
}

/// A page of one tenant's final rows of a metric generation, for reads that stream a whole
/// range (exports): rows in the order (window start, group key, window end), from just after
/// `after` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowPage {
    /// The metric.
    pub metric: String,
    /// Its generation.
    pub generation: u32,
    /// The tenant.
    pub tenant: String,
    /// Windows starting at or after this…
    pub start_from: Millis,
    /// …and before this.
    pub start_before: Millis,
    /// Only windows ending at or before this.
    pub end_upto: Millis,
    /// The last row of the previous page; `None` for the first page.
    pub after: Option<RowCursor>,
    /// At most this many rows.
    pub limit: usize,
}

/// Where a [`RowPage`] ended: its last row's place in the page order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowCursor {
    pub window_start: Millis,
    pub key: Vec<u8>,
    pub window_end: Millis,
}

impl RowCursor {
    /// The cursor just past `row`.
    pub fn of(row: &StoredRow) -> RowCursor {
        RowCursor {
            window_start: row.window_start,
            key: row.key.clone(),
            window_end: row.window_end,
        }
    }
}

/// Stored rows read together with each partition's committed watermark, in one snapshot of
/// the store (see [`ResultReads::live_rows`](crate::roles::ResultReads::live_rows)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowsAndWatermarks {
    /// The rows.
    pub rows: Vec<StoredRow>,
    /// Each partition's committed watermark for the metric generation.
    pub watermarks: Vec<(u32, Option<Millis>)>,
}

/// Decodes one stored row's borrowed columns into the engine's partial row, or says why not
/// (see [`Checkpoints::load_partials`](crate::roles::Checkpoints::load_partials)).
pub type RowDecoder = Box<dyn Fn(RowRef<'_>) -> Result<PartialRow, String> + Send + Sync>;

/// The SHA-256 of a schema's canonical text, in hex: how the store finds a schema's id
/// without indexing texts of up to `schemas.max-schema-bytes`.
pub(crate) fn schema_digest(schema: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(schema.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A stored setting's text back to its value; a value this sluice does not know (written by
/// a newer one) is left unset rather than failing every read.
pub(crate) fn stored_setting<T: std::str::FromStr>(text: Option<String>) -> Option<T> {
    text.and_then(|text| text.parse().ok())
}

/// A stored schema type back to its value (`AVRO` for anything unknown never happens: the
/// store only holds what the registry wrote).
pub(crate) fn stored_schema_type(text: &str) -> sluice_schema::SchemaType {
    text.parse().unwrap_or_default()
}

/// An alert rule as stored (issue 19): its text as the API or the config gave it, checked
/// against its metric before it was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertRuleRecord {
    /// Assigned by the store when the rule is first stored or its text changes; never reused,
    /// so notification ids of a replaced rule never collide with the old one's.
    pub id: u64,
    /// The tenant it watches.
    pub tenant: String,
    /// Its name, unique in the tenant.
    pub name: String,
    /// The metric it reads.
    pub metric: String,
    /// The `CREATE ALERT …` text.
    pub sql: String,
    /// The notification channels it sends to, by name.
    pub channels: Vec<String>,
    /// Where it was defined: `config` or `api`.
    pub origin: String,
    /// When this version was stored.
    pub created_at: Millis,
}

impl AlertRuleRecord {
    /// Whether `other` defines the same rule: same metric, text and channels (id, origin and
    /// time do not count). A rule stored again unchanged keeps its id and progress.
    pub fn same_definition(&self, other: &AlertRuleRecord) -> bool {
        self.metric == other.metric && self.sql == other.sql && self.channels == other.channels
    }
}

/// How far a rule has read its metric, and its evaluator's state then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertProgress {
    /// The rule's [`AlertRuleRecord::id`].
    pub rule_id: u64,
    /// Every final window ending at or before this has been evaluated.
    pub cursor: Millis,
    /// The evaluator's snapshot (serialized by the caller).
    pub snapshot: Vec<u8>,
}

/// Where a notification is in its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not yet acknowledged by the receiver; tried again at `next_attempt`.
    Pending,
    /// The receiver acknowledged it (a 2xx answer).
    Delivered,
    /// Given up after the retry period: visible in the history, never sent again.
    Dead,
    /// A silence covered it when it was due: never sent.
    Silenced,
}

impl DeliveryState {
    /// The name in the store and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
            DeliveryState::Silenced => "silenced",
        }
    }

    /// The state named `text`.
    pub fn parse(text: &str) -> Option<DeliveryState> {
        Some(match text {
            "pending" => DeliveryState::Pending,
            "delivered" => DeliveryState::Delivered,
            "dead" => DeliveryState::Dead,
            "silenced" => DeliveryState::Silenced,
            _ => return None,
        })
    }
}

/// One notification to one channel, in the durable outbox. (`id`, `channel`) is unique:
/// inserting a notification whose id the channel already has does nothing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    /// `{tenant}/{rule}.{rule id}/{key}/{sequence}`: one per transition, the same after a
    /// crash and a replay. Receivers dedupe on it.
    pub id: String,
    /// The channel's name.
    pub channel: String,
    /// The rule's tenant.
    pub tenant: String,
    /// The rule's name.
    pub rule: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// When the transition was found (wall clock): silences are matched against it.
    pub created_at: Millis,
    /// The notification, channel-neutral, as JSON text.
    pub payload: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When the next attempt is due (while pending).
    pub next_attempt: Millis,
    /// Its delivery state.
    pub state: DeliveryState,
    /// The last attempt's failure, for people.
    pub last_error: Option<String>,
    /// When the state last changed.
    pub updated_at: Millis,
}

/// A delivery attempt's outcome for one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOutcome {
    /// The notification's id and channel.
    pub id: String,
    pub channel: String,
    /// Its new state.
    pub state: DeliveryState,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// When the next attempt is due (while still pending).
    pub next_attempt: Millis,
    /// Why the attempt failed, if it did.
    pub last_error: Option<String>,
    /// Now.
    pub at: Millis,
}

/// Which notifications a history read returns, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NotificationQuery {
    /// Only this tenant's (`None`: every tenant's, for admins).
    pub tenant: Option<String>,
    /// Only this rule's.
    pub rule: Option<String>,
    /// Only those in this state.
    pub state: Option<DeliveryState>,
    /// Only those created before this (paging back).
    pub before: Option<Millis>,
    /// At most this many.
    pub limit: usize,
}

impl NotificationQuery {
    /// A history read's limit when the query gives none (0).
    pub const DEFAULT_LIMIT: usize = 100;
    /// The most notifications one history read returns.
    pub const MAX_LIMIT: usize = 10_000;

    /// The limit a backend applies: [`Self::DEFAULT_LIMIT`] for 0, at most [`Self::MAX_LIMIT`].
    pub fn effective_limit(&self) -> usize {
        match self.limit {
            0 => Self::DEFAULT_LIMIT,
            limit => limit.min(Self::MAX_LIMIT),
        }
    }
}

/// A silence: notifications of a tenant's rule (or all its rules), for keys whose fields
/// include `key`'s (or every key), created in `[from, to)`, are not sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SilenceRecord {
    /// Unique id (`sil_…`).
    pub id: String,
    /// The tenant.
    pub tenant: String,
    /// The rule silenced (`None`: all the tenant's rules).
    pub rule: Option<String>,
    /// Key fields a silenced notification's key has, as a JSON object's text (`None`: every
    /// key).
    pub key: Option<String>,
    /// From (inclusive)…
    pub from: Millis,
    /// …to (exclusive).
    pub to: Millis,
    /// Why, for people.
    pub comment: String,
    /// When it was made.
    pub created_at: Millis,
}
