//! The processor: all metrics of one source partition, driven by one stream of messages.
//!
//! Data and control travel in the same stream ([`Message`]): batches of records, processing
//! time ticks, checkpoint barriers, and metric additions and removals, so a barrier is
//! always between two batches and its snapshot is exactly "everything before offset N".
//! The processor is pure: no I/O, no clock, no channels. It returns what it produced in
//! [`Outputs`] and the partition task (see [`crate::task`]) does the I/O.
//!
//! Per record: one scan of the JSON for the union of the fields the metrics need, then per
//! metric the filter, the group key (encoded into a reused buffer), the aggregate inputs,
//! the window lookup and the state update. After each batch and tick, each metric fires the
//! windows its watermark reached, closes those past their allowed lateness, and emits
//! updates.

pub mod output;
pub mod rows;
mod table;
mod telemetry;

use crate::agg::Input;
use crate::config::ProcessorConfig;
use crate::error::StreamError;
use crate::eval::{Compiled, slot_value};
use crate::identity::{self, IdentitySlots, IdentityTable};
use crate::json::{FieldSet, KeyOrder, Kind, Slot};
use crate::keys;
use crate::plan::{Field, LatePolicy, MetricPlan, Output};
use crate::sessions;
use crate::value::Value;
use crate::watermark::EventClock;
use crate::window::MAX_EVENT_TIME;
use bytes::Bytes;
use output::{
    Checkpoint, DerivedRecord, LateEvent, LiveWindows, MetricCheckpoint, OpenWindow, Outputs,
    RestoreState, UpdateKind,
};
use rows::RowPool;
use sluice_core::erasure::ErasedUsers;
use sluice_core::time::Millis;
use sluice_log::{ReadBuffer, StoredRecord};
use std::sync::Arc;
use table::{EmitContext, WindowTable};
use telemetry::{MetricTelemetry, PartitionTelemetry};

/// One message in a partition's stream.
#[derive(Debug, Clone)]
pub enum Message<'a> {
    /// Records read from the source partition, in offset order, read at processing time
    /// `now`. Records before the processor's next offset are skipped (already counted).
    Data {
        /// The records.
        records: &'a [StoredRecord],
        /// Processing time.
        now: Millis,
    },
    /// [`Message::Data`] for records read with [`sluice_log::Log::read_into`].
    Buffered {
        /// The records.
        records: &'a ReadBuffer,
        /// Processing time.
        now: Millis,
    },
    /// Processing time passed: advances an idle partition's clock, closes windows.
    Tick {
        /// Processing time.
        now: Millis,
    },
    /// Snapshot what changed since the previous barrier into a [`Checkpoint`].
    Barrier {
        /// The barrier's id, returned in the checkpoint.
        id: u64,
    },
    /// Start computing a metric from the next record on.
    AddMetric(Arc<MetricPlan>),
    /// Stop computing a metric and forget its state.
    RemoveMetric(String),
}

/// Counts since the processor started (the same figures the Prometheus metrics carry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records read.
    pub records: u64,
    /// Records that were not events.
    pub invalid: u64,
    /// (metric, event) pairs sent to the late topic.
    pub late: u64,
    /// (metric, event) pairs dropped as late (`late = 'drop'`).
    pub late_dropped: u64,
    /// Window updates emitted.
    pub updates: u64,
    /// (aggregate, event) pairs whose number was outside the decimal range, not aggregated.
    pub out_of_range: u64,
}

struct MetricRuntime {
    plan: Arc<MetricPlan>,
    name: Arc<str>,
    compiled: Compiled,
    windows: WindowTable,
    telemetry: MetricTelemetry,
    /// Per aggregate, numbers out of range in the current batch (counted once per batch).
    out_of_range: Vec<u64>,
    /// `CREATE IDENTITY`: the graph and profiles, instead of windows.
    identity: Option<Box<IdentityRuntime>>,
}

/// An identity's state and where its fields and topics are.
struct IdentityRuntime {
    table: IdentityTable,
    slots: IdentitySlots,
    /// The profile changes' topic.
    changes: Arc<str>,
}

/// Buffers reused for every record.
#[derive(Default)]
struct Scratch {
    slots: Vec<Slot>,
    /// The keys recent events held, so the scan checks them instead of looking them up.
    shape: KeyOrder,
    key: Vec<u8>,
    inputs: Vec<Input>,
    /// Which metrics' filters the scan's gate found true (bit per metric), when it ran.
    passed: Option<u64>,
}

/// One record as the processor reads it, whichever way it was read.
struct Incoming<'r> {
    offset: u64,
    key: Option<&'r [u8]>,
    value: &'r [u8],
}

/// Slot 0 of every scan is the tenant, slot 1 the event time.
const TENANT_SLOT: usize = 0;
const TIME_SLOT: usize = 1;

/// All metrics of one partition.
pub struct Processor {
    partition: u32,
    next_offset: u64,
    config: ProcessorConfig,
    clock: EventClock,
    metrics: Vec<MetricRuntime>,
    fields: FieldSet,
    /// Slots every filter reads (plus tenant and time), when every metric has a filter:
    /// once they are scanned and no filter accepts the event, the scan stops.
    gate_mask: u64,
    scratch: Scratch,
    stats: Stats,
    telemetry: PartitionTelemetry,
    /// Whether anything checkpoints this processor (see [`Processor::without_checkpoints`]).
    checkpointed: bool,
    /// Memory for the rows of checkpoints, handed back once they are committed.
    rows: RowPool,
    /// The erased users, whose events identities skip and whose profiles they remove.
    erased: Option<Arc<ErasedUsers>>,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("partition", &self.partition)
            .field("next_offset", &self.next_offset)
            .field("event_time", &self.clock.time())
            .field(
                "metrics",
                &self.metrics.iter().map(|m| &*m.name).collect::<Vec<_>>(),
            )
            .field("stats", &self.stats)
            .finish()
    }
}

impl Processor {
    /// A processor with no metrics that starts reading `partition` at `offset`.
    pub fn new(partition: u32, offset: u64, config: ProcessorConfig) -> Processor {
        Processor {
            partition,
            next_offset: offset,
            config,
            clock: EventClock::new(config.idle_timeout),
            metrics: Vec::new(),
            fields: FieldSet::default(),
            gate_mask: 0,
            scratch: Scratch::default(),
            stats: Stats::default(),
            telemetry: PartitionTelemetry::new(partition),
            checkpointed: true,
            rows: RowPool::default(),
            erased: None,
        }
    }

    /// This processor, with the erased users' set: identities skip their events and remove
    /// their profiles (see [`crate::identity`]).
    pub fn with_erasures(mut self, erased: Arc<ErasedUsers>) -> Processor {
        self.erased = Some(erased);
        self
    }

    /// A processor resumed from a checkpoint at processing time `now`: its offset, clock, and
    /// each metric's stored open windows.
    pub fn restore(
        partition: u32,
        config: ProcessorConfig,
        state: RestoreState,
        now: Millis,
    ) -> Result<Processor, StreamError> {
        let mut processor = Processor::new(partition, state.offset, config);
        processor.clock = EventClock::restored(config.idle_timeout, state.event_time, now);
        for (plan, rows) in state.metrics {
            let name = plan.name.clone();
            let watermark = processor.clock.watermark(plan.out_of_orderness);
            processor.add_metric(plan)?;
            let metric = processor
                .metrics
                .last_mut()
                .ok_or_else(|| StreamError::Restore {
                    metric: name.clone(),
                    reason: "the metric was not added".into(),
                })?;
            let restored = match metric.identity.as_deref_mut() {
                Some(identity) => identity.table.restore(rows),
                None => metric.windows.restore(rows, watermark),
            };
            restored.map_err(|reason| StreamError::Restore {
                metric: name,
                reason,
            })?;
        }
        processor.refresh_gauges(now);
        Ok(processor)
    }

    /// This processor, for a caller that never checkpoints it (the bare engine's benchmark):
    /// windows closed since the last checkpoint are then not kept for one, so memory stays
    /// bounded, and its checkpoints and live views lack them.
    pub fn without_checkpoints(mut self) -> Processor {
        self.checkpointed = false;
        for metric in &mut self.metrics {
            metric.windows.keep_closed_rows(false);
        }
        self
    }

    /// Where whoever commits this processor's checkpoints gives their rows back
    /// ([`RowPool::give`]), for the next checkpoints to pack into.
    pub fn row_pool(&self) -> RowPool {
        self.rows.clone()
    }

    /// Adds a metric; it counts events from the next record on.
    pub fn add_metric(&mut self, plan: Arc<MetricPlan>) -> Result<(), StreamError> {
        if self.metrics.iter().any(|m| m.plan.name == plan.name) {
            return Err(StreamError::DuplicateMetric(plan.name.clone()));
        }
        let action = match plan.late {
            LatePolicy::Topic => "topic",
            LatePolicy::Drop => "drop",
        };
        let kinds = plan.aggregates.iter().map(|a| a.kind).collect();
        let mut windows = WindowTable::new(plan.window, plan.allowed_lateness, kinds);
        windows.keep_closed_rows(self.checkpointed);
        if let Output::Sessions { max_length } = plan.output {
            windows.sessions(max_length);
        }
        let identity = matches!(plan.output, Output::Identity).then(|| {
            Box::new(IdentityRuntime {
                table: IdentityTable::new(),
                slots: IdentitySlots::default(),
                changes: Arc::from(identity::changes_topic(&plan.name)),
            })
        });
        self.metrics.push(MetricRuntime {
            identity,
            name: Arc::from(plan.name.as_str()),
            telemetry: MetricTelemetry::new(self.partition, &plan, action),
            out_of_range: vec![0; plan.aggregates.len()],
            windows,
            compiled: Compiled::new(&plan, |_| 0),
            plan,
        });
        self.recompile();
        Ok(())
    }

    /// Removes a metric and its state; the others are untouched.
    pub fn remove_metric(&mut self, name: &str) -> Result<(), StreamError> {
        let position = self
            .metrics
            .iter()
            .position(|m| m.plan.name == name)
            .ok_or_else(|| StreamError::UnknownMetric(name.to_owned()))?;
        self.metrics.remove(position);
        self.recompile();
        Ok(())
    }

    /// Rebuilds the field set for the union of the metrics' fields and recompiles them.
    fn recompile(&mut self) {
        let mut fields: Vec<Field> = Vec::new();
        for metric in &self.metrics {
            for field in metric.plan.fields() {
                if field != Field::Timestamp && !fields.contains(&field) {
                    fields.push(field);
                }
            }
        }
        let mut paths: Vec<Vec<&str>> = vec![vec!["tenant"], vec!["timestamp"]];
        paths.extend(fields.iter().map(Field::json_path));
        self.fields = FieldSet::new(&paths);
        let slot_of = |field: &Field| match field {
            Field::Timestamp => TIME_SLOT,
            other => 2 + fields.iter().position(|f| f == other).unwrap_or_default(),
        };
        for metric in &mut self.metrics {
            metric.compiled = Compiled::new(&metric.plan, slot_of);
            if let Some(identity) = metric.identity.as_deref_mut() {
                identity.slots = IdentitySlots {
                    kind: slot_of(&Field::Type),
                    user: slot_of(&Field::UserId),
                    anonymous: slot_of(&Field::AnonymousId),
                    previous: slot_of(&Field::PreviousId),
                    message: slot_of(&Field::MessageId),
                };
            }
        }
        let mut mask = (1u64 << TENANT_SLOT) | (1u64 << TIME_SLOT);
        let mut gated = !self.metrics.is_empty() && self.metrics.len() <= 64;
        for metric in &self.metrics {
            match &metric.plan.filter {
                Some(filter) => filter.for_each_field(&mut |field| match slot_of(field) {
                    slot if slot < 64 => mask |= 1 << slot,
                    _ => gated = false,
                }),
                None => gated = false,
            }
        }
        self.gate_mask = if gated { mask } else { 0 };
    }

    /// The names of the running metrics.
    pub fn metric_names(&self) -> Vec<&str> {
        self.metrics.iter().map(|m| m.plan.name.as_str()).collect()
    }

    /// The next source offset to read.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The partition's event-time clock.
    pub fn event_time(&self) -> Option<Millis> {
        self.clock.time()
    }

    /// A metric's watermark (`None` before the first event).
    pub fn watermark(&self, metric: &str) -> Result<Option<Millis>, StreamError> {
        let metric = self.metric(metric)?;
        Ok(self
            .clock
            .time()
            .map(|_| self.clock.watermark(metric.plan.out_of_orderness)))
    }

    /// Counts since start.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// How many windows (sessions, for `CREATE SESSIONS`) of a metric are open.
    pub fn open_window_count(&self, metric: &str) -> Result<usize, StreamError> {
        let metric = self.metric(metric)?;
        Ok(match metric.identity.as_deref() {
            Some(identity) => identity.table.len(),
            None => metric.windows.len(),
        })
    }

    /// A metric's open windows (optionally one tenant's), for queries merging live state.
    pub fn open_windows(
        &self,
        metric: &str,
        tenant: Option<&str>,
    ) -> Result<Vec<OpenWindow>, StreamError> {
        Ok(self.metric(metric)?.windows.open_windows(tenant))
    }

    /// A metric's state the store does not have yet (optionally one tenant's): laid over
    /// the stored rows of this partition, it gives every event processed so far.
    pub fn live_windows(
        &self,
        metric: &str,
        tenant: Option<&str>,
    ) -> Result<LiveWindows, StreamError> {
        let runtime = self.metric(metric)?;
        let mut live = runtime.windows.live(tenant)?;
        live.watermark = self
            .clock
            .time()
            .map(|_| self.clock.watermark(runtime.plan.out_of_orderness));
        Ok(live)
    }

    fn metric(&self, name: &str) -> Result<&MetricRuntime, StreamError> {
        self.metrics
            .iter()
            .find(|m| m.plan.name == name)
            .ok_or_else(|| StreamError::UnknownMetric(name.to_owned()))
    }

    /// Handles one message, appending what it produced to `out`.
    pub fn handle(&mut self, message: Message<'_>, out: &mut Outputs) -> Result<(), StreamError> {
        match message {
            Message::Data { records, now } => {
                let records = records.iter().map(|stored| Incoming {
                    offset: stored.offset,
                    key: stored.record.key.as_deref(),
                    value: &stored.record.value,
                });
                self.data(records, now, out)?;
            }
            Message::Buffered { records, now } => {
                let records = records.iter().map(|record| Incoming {
                    offset: record.offset,
                    key: record.key,
                    value: record.value,
                });
                self.data(records, now, out)?;
            }
            Message::Tick { now } => {
                self.clock.tick(now);
                self.advance(now, out);
            }
            Message::Barrier { id } => out.checkpoints.push(self.checkpoint(id)),
            Message::AddMetric(plan) => self.add_metric(plan)?,
            Message::RemoveMetric(name) => self.remove_metric(&name)?,
        }
        Ok(())
    }

    /// A batch of records, then the windows their watermark fires and closes.
    fn data<'r>(
        &mut self,
        records: impl Iterator<Item = Incoming<'r>>,
        now: Millis,
        out: &mut Outputs,
    ) -> Result<(), StreamError> {
        let mut arrived = false;
        let mut invalid = 0u64;
        let mut processed = 0u64;
        for record in records {
            if record.offset < self.next_offset {
                continue;
            }
            self.next_offset = record.offset + 1;
            processed += 1;
            match self.process(&record, out)? {
                None => arrived = true,
                Some(reason) => {
                    invalid += 1;
                    self.log_invalid(record.offset, invalid, &reason);
                }
            }
        }
        self.stats.records += processed;
        self.telemetry.events.increment(processed);
        for metric in &mut self.metrics {
            for (index, count) in metric.out_of_range.iter_mut().enumerate() {
                if *count > 0 {
                    metric.telemetry.out_of_range[index].increment(*count);
                    self.stats.out_of_range += std::mem::take(count);
                }
            }
        }
        if invalid > 0 {
            self.stats.invalid += invalid;
            self.telemetry.invalid.increment(invalid);
        }
        if arrived {
            self.clock.arrived(now);
        }
        self.advance(now, out);
        Ok(())
    }

    /// Processes one record; returns why it is not an event, if it is not.
    #[inline]
    fn process(
        &mut self,
        record: &Incoming<'_>,
        out: &mut Outputs,
    ) -> Result<Option<String>, StreamError> {
        let bytes: &[u8] = record.value;
        let Scratch {
            slots,
            shape,
            key,
            inputs,
            passed,
        } = &mut self.scratch;
        let metrics = &self.metrics;
        *passed = None;
        let mut gate = |slots: &[Slot]| {
            let mut mask = 0u64;
            for (index, metric) in metrics.iter().enumerate() {
                if metric.compiled.matches(bytes, slots) {
                    mask |= 1 << index;
                }
            }
            *passed = Some(mask);
            mask == 0
        };
        if let Err(error) = self
            .fields
            .scan_with(bytes, slots, shape, self.gate_mask, &mut gate)
        {
            return Ok(Some(error.to_string()));
        }
        let tenant = match slot_value(bytes, &slots[TENANT_SLOT]) {
            Value::Str(tenant) if !tenant.is_empty() => tenant,
            _ => return Ok(Some("it has no \"tenant\" string".into())),
        };
        let Some(time) = event_time(bytes, &slots[TIME_SLOT]) else {
            return Ok(Some(
                "its \"timestamp\" is not epoch milliseconds between 1970 and 9999".into(),
            ));
        };
        self.clock.observe(time);
        let passed = *passed;
        let erased = self.erased.as_deref();
        for (index, metric) in self.metrics.iter_mut().enumerate() {
            let matches = match passed {
                Some(mask) => mask & (1 << index) != 0,
                None => metric.compiled.matches(bytes, slots),
            };
            if !matches {
                continue;
            }
            if let Some(identity) = metric.identity.as_deref_mut() {
                if let Ok(tenant) = std::str::from_utf8(&tenant) {
                    let event = identity::Event {
                        tenant,
                        time,
                        bytes,
                        slots,
                        offset: record.offset,
                        key: record.key,
                    };
                    let topics = (&metric.name, &identity.changes);
                    identity
                        .table
                        .observe(event, identity.slots, topics, erased, out);
                }
                continue;
            }
            if metric.plan.records().is_some() {
                let mut value = Vec::with_capacity(bytes.len() / 2);
                metric
                    .compiled
                    .write_record(bytes, slots, TENANT_SLOT, TIME_SLOT, &mut value);
                out.records.push(DerivedRecord {
                    stream: metric.name.clone(),
                    offset: record.offset,
                    session: None,
                    key: record.key.map(Bytes::copy_from_slice),
                    value,
                    event_time: time,
                });
                continue;
            }
            key.clear();
            keys::encode_text(&tenant, key);
            metric.compiled.encode_key(bytes, slots, key);
            if metric.compiled.inputs(bytes, slots, time, inputs) {
                for (count, input) in metric.out_of_range.iter_mut().zip(inputs.iter()) {
                    *count += u64::from(*input == Input::OutOfRange);
                }
            }
            let watermark = self.clock.watermark(metric.plan.out_of_orderness);
            let key_hash = metric.windows.key_hash(key);
            let missed = metric.windows.add(
                time,
                key,
                key_hash,
                (inputs, bytes),
                watermark,
                self.config.max_open_windows,
            )?;
            if let Some(reason) = missed {
                metric.telemetry.late(reason).increment(1);
                match metric.plan.late {
                    LatePolicy::Drop => self.stats.late_dropped += 1,
                    LatePolicy::Topic => {
                        self.stats.late += 1;
                        out.late.push(LateEvent {
                            metric: metric.name.clone(),
                            reason,
                            partition: self.partition,
                            offset: record.offset,
                            event_time: time,
                            watermark,
                            key: record.key.map(Bytes::copy_from_slice),
                            value: Bytes::copy_from_slice(record.value),
                        });
                    }
                }
            }
        }
        Ok(None)
    }

    fn log_invalid(&self, offset: u64, in_batch: u64, reason: &str) {
        let count = self.stats.invalid + in_batch;
        // Every power of two: a bad producer is visible without flooding the log.
        if count.is_power_of_two() {
            tracing::warn!(
                partition = self.partition,
                offset,
                reason,
                invalid_so_far = count,
                "skipping a record that is not an event (counted in sluice_stream_invalid_events_total)"
            );
        }
    }

    fn advance(&mut self, now: Millis, out: &mut Outputs) {
        for metric in &mut self.metrics {
            let watermark = self.clock.watermark(metric.plan.out_of_orderness);
            let before = out.updates.len();
            let context = EmitContext {
                metric: &metric.name,
                partition: self.partition,
            };
            metric.windows.advance(watermark, &context, out);
            if matches!(metric.plan.output, Output::Sessions { .. }) {
                sessions_closed(out, before, self.next_offset);
                continue;
            }
            let emitted = (out.updates.len() - before) as u64;
            if emitted > 0 {
                self.stats.updates += emitted;
                metric.telemetry.updates.increment(emitted);
            }
        }
        self.refresh_gauges(now);
    }

    fn refresh_gauges(&self, now: Millis) {
        for metric in &self.metrics {
            metric
                .telemetry
                .open_windows
                .set(metric.windows.len() as f64);
            if self.clock.time().is_some() {
                let watermark = self.clock.watermark(metric.plan.out_of_orderness);
                let delay = now.saturating_sub(watermark) as f64 / 1000.0;
                metric.telemetry.watermark_delay.set(delay);
            }
        }
    }

    fn checkpoint(&mut self, barrier: u64) -> Checkpoint {
        let metrics = self
            .metrics
            .iter_mut()
            .map(|metric| {
                let table::TableCheckpoint {
                    retracted,
                    closed,
                    changed,
                } = match metric.identity.as_deref_mut() {
                    Some(identity) => {
                        if let Some(erased) = &self.erased {
                            identity.table.apply_erasures(erased);
                        }
                        let (retracted, changed) = identity.table.checkpoint(&self.rows);
                        table::TableCheckpoint {
                            retracted,
                            closed: rows::PackedRows::default(),
                            changed,
                        }
                    }
                    None => metric.windows.checkpoint(&self.rows),
                };
                MetricCheckpoint {
                    metric: metric.name.clone(),
                    watermark: self
                        .clock
                        .time()
                        .map(|_| self.clock.watermark(metric.plan.out_of_orderness)),
                    retracted,
                    closed,
                    changed,
                }
            })
            .collect();
        Checkpoint {
            barrier,
            partition: self.partition,
            offset: self.next_offset,
            event_time: self.clock.time(),
            metrics,
            output: Vec::new(),
        }
    }
}

/// Turns the sessions a sessions plan closed (its final updates, `updates[from..]`) into
/// their records; its other updates (none: sessions have no lateness) are dropped. `offset` is
/// the partition's next offset.
fn sessions_closed(out: &mut Outputs, from: usize, offset: u64) {
    for update in out.updates.drain(from..) {
        let (UpdateKind::Final, Some(state)) = (update.kind, &update.state) else {
            continue;
        };
        let mut value = Vec::with_capacity(512);
        let (event_time, id) =
            sessions::write_record(&update.key, update.window, state, &mut value);
        let key = update.key.values().first().map(|visitor| match visitor {
            crate::keys::KeyValue::Text(text) => Bytes::copy_from_slice(text.as_bytes()),
            other => Bytes::from(other.to_string()),
        });
        out.records.push(DerivedRecord {
            stream: update.metric.clone(),
            offset,
            session: Some(id),
            key,
            value,
            event_time,
        });
    }
}

/// The event time in a `timestamp` slot: integral epoch milliseconds in `0..=MAX_EVENT_TIME`.
#[inline]
fn event_time(bytes: &[u8], slot: &Slot) -> Option<Millis> {
    if slot.kind != Kind::Number {
        return None;
    }
    let text = slot.text(bytes);
    if !text.is_empty() && text.len() <= 15 && text.iter().all(u8::is_ascii_digit) {
        let value = text
            .iter()
            .fold(0i64, |acc, digit| acc * 10 + i64::from(digit - b'0'));
        return (value <= MAX_EVENT_TIME).then_some(value);
    }
    let number = crate::decimal::Decimal::parse(text)?.normalized();
    if number.scale() != 0 {
        return None;
    }
    i64::try_from(number.mantissa())
        .ok()
        .filter(|value| (0..=MAX_EVENT_TIME).contains(value))
}

#[cfg(test)]
mod tests;
