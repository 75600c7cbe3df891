//! A log's history: records a partition no longer holds because retention removed them, kept
//! elsewhere and read back by offset (the raw event archive keeps the `events` topic's, see
//! `sluice-archive`). Kafka calls this tiered storage.
//!
//! [`WithHistory`] is a [`Log`] that reads a partition's records before its start from its
//! [`History`], and everything else from the log it wraps. A consumer that keeps its
//! position elsewhere (a pipeline replaying from a time older than the log's retention, or
//! one that fell behind it) then reads the same records, at the same offsets, that the log
//! held, and goes on into the log at its start without noticing the seam.
//!
//! # Contract of a history
//! - It serves one topic ([`History::topic`]); offsets are the log's.
//! - [`History::read`] returns records in offset order from the first one at or after the
//!   requested offset that it holds, stopping before `before` (the log's start: from there the
//!   log answers). Offsets it does not hold (never archived, or removed by its own
//!   retention) are gaps, as a repair's are in the log.
//! - A record read back is the record that was appended: key, value and timestamp; headers
//!   are not kept.

use crate::record::{EpochStart, ReadBatch, StoredRecord, TopicInfo, TopicSpec};
use crate::{AppendResult, Log, LogError, ReadBuffer, ReadOptions, Record, Result};
use sluice_core::time::Millis;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future, so a history is a trait object.
pub type HistoryFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// Where a topic's records before the log's start are kept.
pub trait History: Send + Sync + fmt::Debug + 'static {
    /// The topic it keeps.
    fn topic(&self) -> &str;

    /// The first offset of `partition` it holds, `None` when it holds none.
    fn start(&self, partition: u32) -> HistoryFuture<'_, Option<u64>>;

    /// The first offset before `before` whose record timestamp is at or after `timestamp`,
    /// `None` when it holds none.
    fn offset_for_time(
        &self,
        partition: u32,
        timestamp: Millis,
        before: u64,
    ) -> HistoryFuture<'_, Option<u64>>;

    /// Records from the first it holds at or after `offset`, before `before`, in offset order,
    /// until they reach `max_bytes` (at least one when there is one).
    fn read(
        &self,
        partition: u32,
        offset: u64,
        before: u64,
        max_bytes: usize,
    ) -> HistoryFuture<'_, Vec<StoredRecord>>;
}

/// A log whose reads before a partition's start come from a [`History`].
#[derive(Debug)]
pub struct WithHistory<L> {
    log: Arc<L>,
    history: Option<Arc<dyn History>>,
}

impl<L: Log> WithHistory<L> {
    /// `log`, read before its start from `history` (when there is one).
    pub fn new(log: Arc<L>, history: Option<Arc<dyn History>>) -> Self {
        Self { log, history }
    }

    /// The log it wraps.
    pub fn log(&self) -> &Arc<L> {
        &self.log
    }

    /// The history of `topic`, when there is one.
    fn history_of(&self, topic: &str) -> Option<&Arc<dyn History>> {
        self.history
            .as_ref()
            .filter(|history| history.topic() == topic)
    }

    /// A read from `offset`: from the log, or, when the offset is before the log's start,
    /// from the history up to that start (then from the log's start if the history holds
    /// nothing more).
    async fn read_batch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        options: ReadOptions,
    ) -> Result<Option<ReadBatch>> {
        let Some(history) = self.history_of(topic) else {
            return Ok(None);
        };
        let (start, end) = self.bounds(topic, partition).await?;
        if offset >= start {
            return Ok(None);
        }
        let records = history
            .read(partition, offset, start, options.max_bytes)
            .await?;
        if records.is_empty() {
            return Ok(Some(self.log.read(topic, partition, start, options).await?));
        }
        Ok(Some(ReadBatch {
            records,
            end_offset: end,
        }))
    }

    async fn bounds(&self, topic: &str, partition: u32) -> Result<(u64, u64)> {
        self.log
            .describe(Some(topic))
            .await?
            .first()
            .and_then(|info| info.partitions.get(partition as usize))
            .map(|info| (info.start_offset, info.end_offset))
            .ok_or_else(|| LogError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partitions: 0,
            })
    }
}

impl<L: Log> Log for WithHistory<L> {
    async fn create_topic(&self, spec: TopicSpec) -> Result<()> {
        self.log.create_topic(spec).await
    }

    async fn describe(&self, topic: Option<&str>) -> Result<Vec<TopicInfo>> {
        self.log.describe(topic).await
    }

    async fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
    ) -> Result<AppendResult> {
        self.log.append(topic, partition, records).await
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        options: ReadOptions,
    ) -> Result<ReadBatch> {
        match self.read_batch(topic, partition, offset, options).await? {
            Some(batch) => Ok(batch),
            None => self.log.read(topic, partition, offset, options).await,
        }
    }

    async fn read_into(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        options: ReadOptions,
        buffer: &mut ReadBuffer,
    ) -> Result<()> {
        // The common case, a read inside the log, costs nothing more than the log's read.
        match self
            .log
            .read_into(topic, partition, offset, options, buffer)
            .await
        {
            Err(LogError::OffsetOutOfRange { start, .. }) if offset < start => {}
            other => return other,
        }
        match self.read_batch(topic, partition, offset, options).await? {
            Some(batch) => {
                buffer.fill(&batch);
                Ok(())
            }
            None => {
                self.log
                    .read_into(topic, partition, offset, options, buffer)
                    .await
            }
        }
    }

    async fn offset_for_time(
        &self,
        topic: &str,
        partition: u32,
        timestamp: Millis,
    ) -> Result<Option<u64>> {
        let in_log = self
            .log
            .offset_for_time(topic, partition, timestamp)
            .await?;
        let Some(history) = self.history_of(topic) else {
            return Ok(in_log);
        };
        let (start, _) = self.bounds(topic, partition).await?;
        // The log's first record is at or after the time: earlier ones may be in the history.
        if start > 0
            && in_log.is_none_or(|offset| offset <= start)
            && let Some(offset) = history.offset_for_time(partition, timestamp, start).await?
        {
            return Ok(Some(offset));
        }
        Ok(in_log)
    }

    async fn consumer_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        commit: Option<u64>,
    ) -> Result<Option<u64>> {
        self.log
            .consumer_offset(group, topic, partition, commit)
            .await
    }

    async fn enforce_retention(&self) -> Result<u64> {
        self.log.enforce_retention().await
    }

    async fn epochs(&self, topic: &str, partition: u32) -> Result<Vec<EpochStart>> {
        self.log.epochs(topic, partition).await
    }

    async fn history_start(&self, topic: &str, partition: u32) -> Result<Option<u64>> {
        match self.history_of(topic) {
            Some(history) => history.start(partition).await,
            None => Ok(None),
        }
    }
}
