//! What a processor emits: window updates, late events, checkpoint snapshots; and what it is
//! restored from.

use super::rows::{ChangedRow, PackedRows};
use crate::agg::PartialState;
use crate::error::StreamError;
use crate::keys::GroupKey;
use crate::plan::{AggregateKind, MetricPlan};
use crate::window::Window;
use bytes::Bytes;
use serde_json::value::RawValue;
use sluice_core::time::Millis;
use sluice_log::{Header, Record};
use std::sync::Arc;

/// Why a window update was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateKind {
    /// The watermark passed the window's end (first emission), or an event within the
    /// allowed lateness changed it afterwards. More versions may follow.
    Update,
    /// The watermark passed the window's end plus the allowed lateness: this is the last
    /// version; the processor forgets the window.
    Final,
    /// A session window that was emitted (or checkpointed) under these bounds was merged into
    /// another or extended: results under these bounds are void.
    Retract,
}

/// One emitted version of one window of one group key.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowUpdate {
    /// The metric's name.
    pub metric: Arc<str>,
    /// The source partition whose events it aggregates (partials of different partitions
    /// merge into the metric's result).
    pub partition: u32,
    /// Tenant and group key values.
    pub key: Arc<GroupKey>,
    /// The window.
    pub window: Window,
    /// Increases with every emission of this window (from 1).
    pub version: u32,
    /// Why it was emitted.
    pub kind: UpdateKind,
    /// The partial aggregate state (`None` for [`UpdateKind::Retract`]).
    pub state: Option<PartialState>,
}

/// Why an event missed a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LateReason {
    /// The watermark had passed the window's end plus the allowed lateness.
    WindowClosed,
    /// The metric already had `max-open-windows` open windows on this partition.
    TooManyOpenWindows,
    /// The tenant or a group key value is text that is not UTF-8.
    InvalidKey,
}

impl LateReason {
    /// The name used in the late record and in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            LateReason::WindowClosed => "window_closed",
            LateReason::TooManyOpenWindows => "too_many_open_windows",
            LateReason::InvalidKey => "invalid_key",
        }
    }
}

/// An event a metric could not count, to be appended to the late-events topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateEvent {
    /// The metric that missed it.
    pub metric: Arc<str>,
    /// Why.
    pub reason: LateReason,
    /// Where it was read.
    pub partition: u32,
    /// Its offset in the source partition.
    pub offset: u64,
    /// Its event time.
    pub event_time: Millis,
    /// The metric's watermark when it arrived.
    pub watermark: Millis,
    /// The source record's key.
    pub key: Option<Bytes>,
    /// The event, as read.
    pub value: Bytes,
}

/// The header carrying a late record's deterministic id (`metric:partition:offset`): a
/// replay produces the same ids, so consumers can drop duplicates.
pub const LATE_ID_HEADER: &str = "sluice-id";

impl LateEvent {
    /// The record appended to the late-events topic: JSON with the metric, reason, source
    /// position, event time, watermark and the event itself.
    pub fn to_record(&self, timestamp: Millis) -> Record {
        let event: Box<RawValue> = std::str::from_utf8(&self.value)
            .ok()
            .and_then(|text| RawValue::from_string(text.to_owned()).ok())
            .unwrap_or_else(|| {
                let lossy = String::from_utf8_lossy(&self.value);
                RawValue::from_string(serde_json::Value::from(lossy.as_ref()).to_string())
                    .unwrap_or_else(|_| RawValue::NULL.to_owned())
            });
        let body = serde_json::json!({
            "metric": &*self.metric,
            "reason": self.reason.as_str(),
            "partition": self.partition,
            "offset": self.offset,
            "event_time": self.event_time,
            "watermark": self.watermark,
            "event": event,
        });
        let mut record = Record::new(self.key.clone(), body.to_string(), timestamp);
        record.headers.push(Header {
            key: LATE_ID_HEADER.to_owned(),
            value: Bytes::from(format!(
                "{}:{}:{}",
                self.metric, self.partition, self.offset
            )),
        });
        record
    }
}

/// One (tenant, group key, window) partial, as checkpointed and restored.
#[derive(Debug, Clone, PartialEq)]
pub struct PartialRow {
    /// Tenant and group key values.
    pub key: Arc<GroupKey>,
    /// The window.
    pub window: Window,
    /// The last emitted version (0 if never emitted).
    pub version: u32,
    /// The state.
    pub state: PartialState,
}

impl PartialRow {
    /// Decodes a packed row, checking its state against the metric's aggregates (`kinds`).
    pub fn decode(row: ChangedRow<'_>, kinds: &[AggregateKind]) -> Result<PartialRow, StreamError> {
        Ok(PartialRow {
            key: Arc::new(GroupKey::from_bytes(row.key)?),
            window: Window {
                start: row.window_start,
                end: row.window_end,
            },
            version: row.version,
            state: PartialState::decode(row.state, Some(kinds))?,
        })
    }
}

/// What changed in one metric since the previous checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricCheckpoint {
    /// The metric's name.
    pub metric: Arc<str>,
    /// Its watermark at the barrier (`None` before the first event).
    pub watermark: Option<Millis>,
    /// Rows to delete: session windows stored under bounds that no longer exist. Apply
    /// before `changed`.
    pub retracted: Vec<(Arc<GroupKey>, Window)>,
    /// Every window closed since the previous checkpoint, with its final state, encoded
    /// (changed since or not): the partition never changes it again, so the store merges it
    /// into the window's final row and drops the partition's open row of it. Apply after
    /// `retracted`.
    pub closed: PackedRows,
    /// Open windows to insert or replace: every one whose state changed, encoded.
    pub changed: PackedRows,
}

/// A processor's state at a checkpoint barrier, as a delta since the previous one. Writing
/// every delta in order (in one transaction each, with the offset) reproduces the
/// processor's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The barrier's id.
    pub barrier: u64,
    /// The source partition.
    pub partition: u32,
    /// The next source offset to read: every record before it is reflected in the state.
    pub offset: u64,
    /// The partition's event-time clock (the newest event time, advanced while idle; each
    /// metric's watermark is this minus its out-of-orderness). `None` before the first event.
    pub event_time: Option<Millis>,
    /// Per metric, what changed.
    pub metrics: Vec<MetricCheckpoint>,
    /// The derived streams' records appended since the previous checkpoint: the offset
    /// ranges this checkpoint's commit makes visible (filled in by the partition task, which
    /// appends them).
    pub output: Vec<OutputRange>,
}

/// Offsets `[start, end)` of a derived stream's partition that one writer appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRange {
    /// The stream (its topic).
    pub stream: Arc<str>,
    /// The first offset.
    pub start: u64,
    /// One past the last.
    pub end: u64,
}

/// What a processor is restored from: a committed offset and clock, and per metric its
/// stored rows (rows of windows the restored watermark has closed are ignored).
#[derive(Debug, Clone)]
pub struct RestoreState {
    /// The next offset to read.
    pub offset: u64,
    /// The event-time clock at that offset.
    pub event_time: Option<Millis>,
    /// The metrics and their stored rows.
    pub metrics: Vec<(Arc<MetricPlan>, Vec<PartialRow>)>,
}

/// An open window, as read by queries merging live state.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenWindow {
    /// Tenant and group key values.
    pub key: Arc<GroupKey>,
    /// The window.
    pub window: Window,
    /// The last emitted version (0 if never emitted).
    pub version: u32,
    /// Whether the watermark has passed its end (a version has been emitted).
    pub fired: bool,
    /// The current state.
    pub state: PartialState,
}

/// A metric's state that the store does not have yet, for queries that must see every event
/// processed so far: the open windows, the windows closed since the last checkpoint (with their
/// final state), and the session bounds retracted since then. Laid over the stored rows of the
/// same partition (retracted rows removed, then closed and open ones replacing theirs), it
/// gives the partition's results as of now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveWindows {
    /// The open windows.
    pub open: Vec<OpenWindow>,
    /// Windows closed since the last checkpoint, with their final state.
    pub closed: Vec<PartialRow>,
    /// Session bounds retracted since the last checkpoint: their stored rows are void.
    pub retracted: Vec<(Arc<GroupKey>, Window)>,
    /// The metric's watermark (`None` before the first event).
    pub watermark: Option<Millis>,
}

/// A derived stream's record, to append to the stream's topic (partition for partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedRecord {
    /// The stream (its topic's name).
    pub stream: Arc<str>,
    /// The source record's offset (for a session: the offset after which it closed).
    pub offset: u64,
    /// A session's id (`CREATE SESSIONS`), which names its origin instead of the offset.
    pub session: Option<String>,
    /// The source record's key (the visitor: the log keeps a visitor's records in order).
    pub key: Option<Bytes>,
    /// The record (see [`crate::eval::Compiled::write_record`]).
    pub value: Vec<u8>,
    /// The event time, the record's timestamp.
    pub event_time: Millis,
}

/// The header naming where a derived record came from: `topic/partition/offset` of its event,
/// or `topic/partition/session/<id>` of a session. The same event (or session) always gives
/// the same origin, so outside consumers can use it as the record's id.
pub const ORIGIN_HEADER: &str = "sluice-origin";

impl DerivedRecord {
    /// The record appended to the stream's topic, `source` naming the topic it was read from.
    pub fn to_record(self, source: &str, partition: u32) -> Record {
        let mut record = Record::new(self.key, self.value, self.event_time);
        let origin = match &self.session {
            Some(id) => format!("{source}/{partition}/session/{id}"),
            None => format!("{source}/{partition}/{}", self.offset),
        };
        record.headers.push(Header {
            key: ORIGIN_HEADER.to_owned(),
            value: Bytes::from(origin),
        });
        record
    }
}

/// Everything one message produced, drained by the partition task.
#[derive(Debug, Default)]
pub struct Outputs {
    /// Window updates, in emission order.
    pub updates: Vec<WindowUpdate>,
    /// Late events to append to the late topic.
    pub late: Vec<LateEvent>,
    /// Derived streams' records, in source order.
    pub records: Vec<DerivedRecord>,
    /// Checkpoint snapshots.
    pub checkpoints: Vec<Checkpoint>,
}

impl Outputs {
    /// Whether nothing was produced.
    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
            && self.late.is_empty()
            && self.records.is_empty()
            && self.checkpoints.is_empty()
    }
}
