//! Reading a topic sluice does not own (a team's existing events topic) as a member of a
//! consumer group: the nodes of a cluster share its partitions, and the group's committed
//! offsets say where the next reader starts. The caller commits only what it has stored, so a
//! crash reads the records after the last commit again (at least once; the collector's dedup on
//! message ids makes that once).

use super::{Inner, kafka_error};
use crate::{LogError, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One record of a source topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    /// Its partition.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
    /// Its value (empty for a tombstone).
    pub value: Vec<u8>,
}

/// A member of a consumer group on one topic.
pub struct TopicReader {
    consumer: Arc<BaseConsumer>,
    topic: String,
    brokers: String,
}

impl std::fmt::Debug for TopicReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicReader")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// Joins `group` (prefixed) on `topic` (as named: not prefixed), reading from the earliest
/// retained record where the group has no committed offset.
pub(super) fn join(inner: &Inner, topic: &str, group: &str) -> Result<TopicReader> {
    let group = format!("{}{group}", inner.prefix);
    let mut config = ClientConfig::clone(&inner.client);
    if config.get("partition.assignment.strategy").is_none() {
        config.set("partition.assignment.strategy", "cooperative-sticky");
    }
    let consumer: BaseConsumer = config
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            inner.session_timeout.as_millis().to_string(),
        )
        .create()
        .map_err(|e| kafka_error(&inner.brokers, "joining a source topic's group", e))?;
    consumer
        .subscribe(&[topic])
        .map_err(|e| kafka_error(&inner.brokers, "joining a source topic's group", e))?;
    Ok(TopicReader {
        consumer: Arc::new(consumer),
        topic: topic.to_owned(),
        brokers: inner.brokers.clone(),
    })
}

impl TopicReader {
    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Up to `max` records, waiting at most `wait` for the first (an empty answer is not an
    /// error). Polling also serves the group (heartbeats, rebalances): call it at least every
    /// few seconds.
    pub async fn poll(&self, max: usize, wait: Duration) -> Result<Vec<SourceRecord>> {
        let consumer = Arc::clone(&self.consumer);
        let brokers = self.brokers.clone();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + wait;
            let mut records = Vec::new();
            while records.len() < max {
                let left = deadline.saturating_duration_since(Instant::now());
                let timeout = if records.is_empty() {
                    left
                } else {
                    Duration::ZERO
                };
                match consumer.poll(timeout) {
                    None => break,
                    Some(Ok(message)) => records.push(SourceRecord {
                        partition: message.partition() as u32,
                        offset: message.offset() as u64,
                        value: message.payload().unwrap_or_default().to_vec(),
                    }),
                    Some(Err(error)) => {
                        if records.is_empty() {
                            return Err(kafka_error(&brokers, "reading a source topic", error));
                        }
                        break;
                    }
                }
            }
            Ok(records)
        })
        .await
        .map_err(|_| LogError::Closed)?
    }

    /// Commits, per partition, the offset after the last record stored.
    pub async fn commit(&self, next: &[(u32, u64)]) -> Result<()> {
        if next.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for &(partition, offset) in next {
            list.add_partition_offset(&self.topic, partition as i32, Offset::Offset(offset as i64))
                .map_err(|e| kafka_error(&self.brokers, "committing a source offset", e))?;
        }
        let consumer = Arc::clone(&self.consumer);
        let brokers = self.brokers.clone();
        tokio::task::spawn_blocking(move || {
            consumer
                .commit(&list, CommitMode::Sync)
                .map_err(|e| kafka_error(&brokers, "committing a source offset", e))
        })
        .await
        .map_err(|_| LogError::Closed)?
    }
}
