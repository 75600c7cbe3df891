//! Records and topic descriptions, shared by every backend.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sluice_core::time::Millis;
use std::time::Duration;

/// A record header (Kafka headers: a string key, a byte value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header name.
    pub key: String,
    /// The header value.
    pub value: Bytes,
}

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The partitioning key; records with the same key go to the same partition.
    pub key: Option<Bytes>,
    /// The payload.
    pub value: Bytes,
    /// The record's time (sluice uses the time the collector received the event).
    pub timestamp: Millis,
    /// Metadata that travels with the record.
    pub headers: Vec<Header>,
}

impl Record {
    /// A record with a key and no headers.
    pub fn new(key: Option<Bytes>, value: impl Into<Bytes>, timestamp: Millis) -> Self {
        Self {
            key,
            value: value.into(),
            timestamp,
            headers: Vec::new(),
        }
    }

    /// Key, value and header bytes: what the record costs in a read or a batch.
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Bytes::len)
            + self.value.len()
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.len())
                .sum::<usize>()
    }
}

/// A record read back, with its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Position in the partition.
    pub offset: u64,
    /// The record as appended.
    pub record: Record,
}

/// What an append assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// Offset of the first record appended.
    pub base_offset: u64,
    /// How many records were appended.
    pub count: u32,
    /// Offset of the last record appended: `base_offset + count - 1` when the records got
    /// consecutive offsets, which the file log always gives and Kafka gives unless another
    /// producer wrote the partition between them (see [`AppendResult::is_contiguous`]).
    pub last_offset: u64,
}

impl AppendResult {
    /// `count` records at consecutive offsets from `base_offset`.
    pub fn contiguous(base_offset: u64, count: u32) -> AppendResult {
        AppendResult {
            base_offset,
            count,
            last_offset: (base_offset + u64::from(count)).saturating_sub(1),
        }
    }

    /// Whether the records hold offsets `base_offset..base_offset + count` and nothing else
    /// does: no other writer's record landed between them.
    pub fn is_contiguous(&self) -> bool {
        self.count == 0 || self.last_offset - self.base_offset + 1 == u64::from(self.count)
    }
}

/// Records returned by one read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadBatch {
    /// Records in offset order, from the first offset at or after the requested one that
    /// exists; consecutive, except across a gap that recovery or repair recorded.
    pub records: Vec<StoredRecord>,
    /// The partition's end offset (the next offset to be appended) when the read was served.
    pub end_offset: u64,
}

impl ReadBatch {
    /// The offset to read next: after the last record, or the requested one when empty.
    pub fn next_offset(&self, requested: u64) -> u64 {
        self.records
            .last()
            .map_or(requested, |last| last.offset + 1)
    }
}

/// Where one epoch of a partition's offsets begins (Kafka's leader epochs play this part).
/// Recovery or repair that moves a partition's end offset back (a torn or damaged tail cut
/// off, so later appends may reuse offsets some reader already saw) starts a new epoch at the
/// new end offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochStart {
    /// The epoch number: 0 for a partition's first epoch, one more for each later one.
    pub epoch: u32,
    /// The first offset of the epoch: the partition's end offset when the epoch began.
    pub start_offset: u64,
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSpec {
    /// Name: letters, digits, `.`, `_`, `-`, at most 249 characters (Kafka's rule).
    pub name: String,
    /// Number of partitions (at least 1).
    pub partitions: u32,
    /// Delete segments whose newest record is older than this; `None` uses the log's default
    /// (`log.retention-age`), zero keeps them regardless of age.
    pub retention_age: Option<Duration>,
    /// Delete the oldest segments while a partition holds more than this many bytes; `None`
    /// uses the log's default (`log.retention-bytes`), zero means no size limit.
    pub retention_bytes: Option<u64>,
}

impl TopicSpec {
    /// A topic with the log's default retention.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        Self {
            name: name.into(),
            partitions,
            retention_age: None,
            retention_bytes: None,
        }
    }
}

/// One partition's extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PartitionInfo {
    /// Partition number.
    pub partition: u32,
    /// First offset still stored (earlier ones were removed by retention).
    pub start_offset: u64,
    /// Next offset to be appended.
    pub end_offset: u64,
    /// Bytes on disk.
    pub bytes: u64,
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Partitions in order.
    pub partitions: Vec<PartitionInfo>,
    /// The retention age in force (the topic's or the log's default); `None`: no age limit.
    pub retention_age: Option<Duration>,
    /// The retention size per partition in force; `None`: no size limit.
    pub retention_bytes: Option<u64>,
}

/// Checks a topic name against Kafka's rule, so topics move between backends unchanged.
pub fn check_topic_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid topic name: use 1 to 249 letters, digits, '.', '_' or '-'"
        ))
    }
}

/// Checks the records of one append: at least one, none larger than `max_record_bytes`
/// (`log.max-record-bytes`).
pub(crate) fn check_records(
    records: &[Record],
    max_record_bytes: usize,
) -> Result<(), crate::LogError> {
    if records.is_empty() {
        return Err(crate::LogError::Invalid(
            "an append needs at least one record".to_owned(),
        ));
    }
    if let Some((index, record)) = records
        .iter()
        .enumerate()
        .find(|(_, r)| r.size() > max_record_bytes)
    {
        return Err(crate::LogError::Invalid(format!(
            "record {index} of the batch is {} bytes (key + value + headers), more than log.max-record-bytes ({}); send smaller records or raise the limit",
            record.size(),
            sluice_core::config::ByteSize(max_record_bytes as u64)
        )));
    }
    Ok(())
}
