//! The log: topics of partitions of records, appended durably, read by offset or time, replayed
//! at will. It is the spine of sluice: the collector appends to it, the stream engine and every
//! other consumer read from it, and replaying it rebuilds any result.
//!
//! The semantics are Kafka's, so a topic means the same on both backends: a topic has N
//! partitions; a record has an offset (increasing per partition from 0, consecutive within an
//! append; gaps only where recovery or `sluice log repair` recorded damaged records as lost, as
//! Kafka's compacted topics have gaps), an optional key, a value, a timestamp and headers; the
//! default partitioner is Kafka's murmur2 ([`partition_for_key`]). A partition's end offset
//! moves back only when recovery cuts a torn or damaged tail; it then starts a new epoch
//! ([`Log::epochs`]).
//!
//! # Layout
//! - [`Log`]: the trait every backend implements (create/describe topics, append, read with
//!   tail-following, find an offset by time, consumer offsets, retention).
//! - [`LogBackend`]: the backends, chosen by the URL in [`LogConfig`] (`file://`, or `kafka://`
//!   with feature `kafka`).
//! - [`file`]: the built-in segmented file log, with its on-disk format and recovery rules.
//! - `kafka` (feature `kafka`): the Kafka backend, through librdkafka.
//! - [`history`]: records a partition no longer holds, kept elsewhere (the raw event
//!   archive) and read back through [`history::WithHistory`].
//! - [`group`]: which partitions this process works on, when several share them (Kafka's
//!   consumer groups).
//! - [`config`]: the `[log]` config section.
//! - [`record`]: records, batches, topic descriptions.
//! - [`ReadBuffer`]: reused memory for consumers that read a partition from end to end.
//! - [`partitioner`]: Kafka's murmur2 default partitioner.
//! - [`error`]: the [`LogError`] type.

pub mod backend;
mod buffer;
pub mod config;
pub mod error;
pub mod file;
pub mod group;
pub mod history;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod partitioner;
pub mod record;
pub mod rewind;

pub use backend::LogBackend;
pub use buffer::{ReadBuffer, RecordRef};
pub use config::{AckMode, ClientValue, KafkaConfig, LogConfig};
pub use error::LogError;
pub use file::FileLog;
pub use partitioner::partition_for_key;
pub use record::{
    AppendResult, EpochStart, Header, PartitionInfo, ReadBatch, Record, StoredRecord, TopicInfo,
    TopicSpec,
};
pub use rewind::rewind_target;

use sluice_core::time::Millis;
use std::future::Future;
use std::time::Duration;

/// The result type of log operations.
pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// How much a read returns, and how long it waits when there is nothing to return yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Stop adding records once this many value+key bytes are collected (at least one record is
    /// always returned when one is available, however large).
    pub max_bytes: usize,
    /// When no record at or after the offset exists yet, wait up to this long for one to be
    /// appended (tail-following, like Kafka's `fetch.max.wait.ms`); zero returns at once.
    pub max_wait: Duration,
}

/// A partitioned, durable, replayable log.
///
/// Every method is `async` and cheap to call concurrently from many tasks. Backends are chosen
/// by URL scheme and dispatched through the [`LogBackend`] enum, so the trait needs no `dyn`.
pub trait Log: Send + Sync + 'static {
    /// Creates a topic; creating an existing topic with the same partition count is a no-op,
    /// with a different one an error.
    fn create_topic(&self, spec: TopicSpec) -> impl Future<Output = Result<()>> + Send;

    /// Describes one topic, or every topic when `topic` is `None`, sorted by name.
    fn describe(&self, topic: Option<&str>) -> impl Future<Output = Result<Vec<TopicInfo>>> + Send;

    /// Appends `records` to one partition, in order, and returns once they are durable under
    /// the configured ack mode. On the file log the records get consecutive offsets; on Kafka
    /// another producer's records may land between them (another node appending to the same
    /// partition), which the result shows ([`AppendResult::is_contiguous`]).
    fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
    ) -> impl Future<Output = Result<AppendResult>> + Send;

    /// Reads records from `offset` on: from the first offset at or after it that exists (an
    /// offset inside a recorded gap reads from the next record). An offset before the
    /// partition's start (removed by retention) is [`LogError::OffsetOutOfRange`]; an offset at
    /// the end waits for new records up to `options.max_wait`, then returns an empty batch.
    /// Damaged records that no repair has recorded as lost fail the read with
    /// [`LogError::Corrupt`]: a read never skips them silently.
    fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        options: ReadOptions,
    ) -> impl Future<Output = Result<ReadBatch>> + Send;

    /// Reads like [`Log::read`], into `buffer` (replacing the records it held): for consumers
    /// that handle each batch before reading the next, the records live in memory the buffer
    /// keeps from read to read, with no allocation per record (see [`ReadBuffer`]).
    ///
    /// The records are the same as `read` returns from `offset`, at least one when one is
    /// available, but a backend may return whole batches: a read then stops after the batch
    /// that brings it to `options.max_bytes` (or at a batch boundary before it), so it can hold
    /// up to one batch more. The file log also stops at the end of a segment and reads at most
    /// 16 MiB (plus one batch) at a time. The default implementation copies what `read` returns.
    fn read_into(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        options: ReadOptions,
        buffer: &mut ReadBuffer,
    ) -> impl Future<Output = Result<()>> + Send {
        async move {
            let batch = self.read(topic, partition, offset, options).await?;
            buffer.fill(&batch);
            Ok(())
        }
    }

    /// The first offset whose record timestamp is at or after `timestamp`, or `None` when every
    /// record is older (Kafka's `ListOffsets` by time). [`LogError::Corrupt`] when the answer
    /// may be among damaged records.
    fn offset_for_time(
        &self,
        topic: &str,
        partition: u32,
        timestamp: Millis,
    ) -> impl Future<Output = Result<Option<u64>>> + Send;

    /// Stores a consumer group's next offset to read for a partition (`None` reads it back).
    /// Used by tools and consumers that do not keep offsets elsewhere; the stream engine keeps
    /// its offsets in the store, with its results.
    fn consumer_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        commit: Option<u64>,
    ) -> impl Future<Output = Result<Option<u64>>> + Send;

    /// Deletes whole segments older than each topic's retention age or beyond its retention
    /// size; returns how many bytes were freed. Backends may also run it in the background.
    fn enforce_retention(&self) -> impl Future<Output = Result<u64>> + Send;

    /// The first offset of a partition a read before its start can return: where the records
    /// retention removed are kept elsewhere ([`history::WithHistory`]), the first one kept
    /// there; `None` (the default) when reads end at the partition's start.
    fn history_start(
        &self,
        topic: &str,
        partition: u32,
    ) -> impl Future<Output = Result<Option<u64>>> + Send {
        let _ = (topic, partition);
        async { Ok(None) }
    }

    /// The partition's epochs, oldest first; never empty (a partition begins with epoch 0 at
    /// offset 0); the last is the current one. Start offsets never decrease.
    ///
    /// A consumer that keeps its position elsewhere (the stream engine keeps it in the store)
    /// keeps the epoch with it: if a later epoch starts before that position, the offsets from
    /// that start on were cut off and handed out again, and the consumer must go back to the
    /// start of that later epoch to see the records that now carry them. The default, for
    /// backends whose end offset never moves back, is the one epoch 0.
    fn epochs(
        &self,
        topic: &str,
        partition: u32,
    ) -> impl Future<Output = Result<Vec<EpochStart>>> + Send {
        let _ = (topic, partition);
        async {
            Ok(vec![EpochStart {
                epoch: 0,
                start_offset: 0,
            }])
        }
    }
}

/// Enforces retention every `every` until `shutdown` completes: the background task a server
/// runs beside its log. Failures are logged and retried at the next tick.
pub async fn run_retention<L: Log>(
    log: &L,
    every: Duration,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticks.tick() => match log.enforce_retention().await {
                Ok(0) => {}
                Ok(freed) => tracing::info!(freed_bytes = freed, "log retention freed space"),
                Err(error) => tracing::warn!(%error, "log retention failed; retrying at the next check"),
            },
        }
    }
}
