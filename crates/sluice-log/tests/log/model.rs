//! Model-based property test: random sequences of append / read / offset-for-time / retention /
//! commit / reopen against a plain in-memory model of the log. The model mirrors segment rolls
//! (from the encoded batch sizes) so that retention's choices can be predicted exactly.

use crate::common::{open, runtime, value_bytes};
use bytes::Bytes;
use proptest::prelude::*;
use sluice_core::config::ByteSize;
use sluice_log::file::format::encode_batch;
use sluice_log::{
    AckMode, FileLog, Log, LogConfig, LogError, ReadBuffer, ReadOptions, Record, TopicSpec,
};
use std::time::Duration;

const NOW: i64 = 1_700_000_000_000;
const MINUTE: i64 = 60_000;
const PARTITIONS: u32 = 2;
const RETENTION_MINUTES: i64 = 30;
const RETENTION_BYTES: u64 = 6 * 1024;

#[derive(Debug, Clone)]
enum Op {
    /// Records as (key, value length, value seed, minutes after NOW).
    Append {
        partition: u32,
        records: Vec<(Option<u8>, usize, u64, i64)>,
    },
    Read {
        partition: u32,
        pick: u64,
        max_bytes: usize,
    },
    /// `read_into` a buffer kept per partition: at a random offset, or (`pick` = None) where
    /// that buffer's previous read ended, as a sequential consumer does.
    ReadInto {
        partition: u32,
        pick: Option<u64>,
        max_bytes: usize,
    },
    OffsetForTime {
        partition: u32,
        minutes: i64,
    },
    Retention {
        minutes: i64,
    },
    Commit {
        partition: u32,
        pick: u64,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let record = (
        proptest::option::of(0u8..4),
        0usize..250,
        any::<u64>(),
        0i64..120,
    );
    prop_oneof![
        6 => (0..PARTITIONS, proptest::collection::vec(record, 1..6))
            .prop_map(|(partition, records)| Op::Append { partition, records }),
        3 => (0..PARTITIONS, any::<u64>(), 1usize..3000)
            .prop_map(|(partition, pick, max_bytes)| Op::Read { partition, pick, max_bytes }),
        3 => (0..PARTITIONS, proptest::option::of(any::<u64>()), prop_oneof![1usize..300, 1usize..3000])
            .prop_map(|(partition, pick, max_bytes)| Op::ReadInto { partition, pick, max_bytes }),
        1 => (0..PARTITIONS, -5i64..130)
            .prop_map(|(partition, minutes)| Op::OffsetForTime { partition, minutes }),
        1 => (0i64..200).prop_map(|minutes| Op::Retention { minutes }),
        1 => (0..PARTITIONS, any::<u64>()).prop_map(|(partition, pick)| Op::Commit { partition, pick }),
        1 => Just(Op::Reopen),
    ]
}

fn config(ack: AckMode) -> LogConfig {
    LogConfig {
        segment_bytes: ByteSize(2048),
        index_interval_bytes: ByteSize(128),
        max_record_bytes: ByteSize(1024),
        max_batch_bytes: ByteSize(2048),
        max_pending_bytes: ByteSize(64 * 1024),
        ..crate::common::config(ack)
    }
}

#[derive(Debug, Clone, Copy)]
struct ModelSegment {
    base: u64,
    end: u64,
    bytes: u64,
    max_timestamp: i64,
}

/// One partition as the model sees it.
#[derive(Debug)]
struct ModelPartition {
    /// Offset of `records[0]`.
    start: u64,
    records: Vec<Record>,
    segments: Vec<ModelSegment>,
}

impl ModelPartition {
    fn new() -> Self {
        Self {
            start: 0,
            records: Vec::new(),
            segments: vec![ModelSegment {
                base: 0,
                end: 0,
                bytes: 0,
                max_timestamp: i64::MIN,
            }],
        }
    }

    fn end(&self) -> u64 {
        self.start + self.records.len() as u64
    }

    fn append(&mut self, records: Vec<Record>, segment_bytes: u64) -> u64 {
        let mut frame = Vec::new();
        let encoded = encode_batch(&records, &mut frame);
        let len = encoded.frame_len as u64;
        let end = self.end();
        let active = *self.segments.last().unwrap();
        if active.bytes > 0 && active.bytes + len > segment_bytes {
            self.segments.push(ModelSegment {
                base: end,
                end,
                bytes: 0,
                max_timestamp: i64::MIN,
            });
        }
        let active = self.segments.last_mut().unwrap();
        active.bytes += len;
        active.end += records.len() as u64;
        active.max_timestamp = active.max_timestamp.max(encoded.max_timestamp);
        self.records.extend(records);
        end
    }

    fn retention(&mut self, now: i64) -> u64 {
        let cutoff = now - RETENTION_MINUTES * MINUTE;
        let mut total: u64 = self.segments.iter().map(|s| s.bytes).sum();
        let mut freed = 0;
        while self.segments.len() > 1 {
            let first = self.segments[0];
            if first.max_timestamp >= cutoff && total <= RETENTION_BYTES {
                break;
            }
            total -= first.bytes;
            freed += first.bytes;
            self.records.drain(..(first.end - first.base) as usize);
            self.start = first.end;
            self.segments.remove(0);
        }
        freed
    }

    fn segment_end_for(&self, offset: u64) -> u64 {
        self.segments
            .iter()
            .find(|s| s.base <= offset && offset < s.end)
            .map_or(self.end(), |s| s.end)
    }
}

fn to_records(specs: &[(Option<u8>, usize, u64, i64)]) -> Vec<Record> {
    specs
        .iter()
        .map(|&(key, len, seed, minutes)| {
            Record::new(
                key.map(|k| Bytes::from(vec![b'k'; k as usize])),
                value_bytes(seed, len),
                NOW + minutes * MINUTE,
            )
        })
        .collect()
}

async fn run(ack: AckMode, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let config = config(ack);
    let segment_bytes = config.segment_bytes.bytes();
    let mut log: FileLog = open(dir.path(), &config);
    let spec = TopicSpec {
        retention_age: Some(Duration::from_millis((RETENTION_MINUTES * MINUTE) as u64)),
        retention_bytes: Some(RETENTION_BYTES),
        ..TopicSpec::new("m", PARTITIONS)
    };
    log.create_topic(spec).await.unwrap();
    let mut model: Vec<ModelPartition> = (0..PARTITIONS).map(|_| ModelPartition::new()).collect();
    let mut committed: Vec<Option<u64>> = vec![None; PARTITIONS as usize];
    // One buffer per partition, kept across reads, reopens and retention, and where its last
    // read ended.
    let mut buffers: Vec<(ReadBuffer, u64)> =
        (0..PARTITIONS).map(|_| (ReadBuffer::new(), 0)).collect();

    for op in ops {
        match op {
            Op::Append { partition, records } => {
                let records = to_records(&records);
                let count = records.len() as u32;
                let expected = model[partition as usize].append(records.clone(), segment_bytes);
                let result = log.append("m", partition, records).await.unwrap();
                prop_assert_eq!(result.base_offset, expected);
                prop_assert_eq!(result.count, count);
                if ack == AckMode::None {
                    // Acknowledged before written: wait (without polling) until readable.
                    let options = ReadOptions {
                        max_bytes: 1,
                        max_wait: Duration::from_secs(60),
                    };
                    let read = log.read("m", partition, expected, options).await.unwrap();
                    prop_assert_eq!(read.records[0].offset, expected);
                }
            }
            Op::Read {
                partition,
                pick,
                max_bytes,
            } => {
                let m = &model[partition as usize];
                let offset = pick % (m.end() + 3);
                let options = ReadOptions {
                    max_bytes,
                    max_wait: Duration::ZERO,
                };
                let result = log.read("m", partition, offset, options).await;
                if offset < m.start || offset > m.end() {
                    prop_assert!(
                        matches!(result, Err(LogError::OffsetOutOfRange { .. })),
                        "offset {} outside {}..{} gave {:?}",
                        offset,
                        m.start,
                        m.end(),
                        result
                    );
                    continue;
                }
                let batch = result.unwrap();
                prop_assert_eq!(batch.end_offset, m.end());
                let expected = &m.records[(offset - m.start) as usize..];
                prop_assert!(batch.records.len() <= expected.len());
                prop_assert_eq!(batch.records.is_empty(), offset == m.end());
                let mut bytes = 0;
                for (i, stored) in batch.records.iter().enumerate() {
                    prop_assert!(bytes < max_bytes, "read went on past max_bytes");
                    prop_assert_eq!(stored.offset, offset + i as u64);
                    prop_assert_eq!(&stored.record, &expected[i]);
                    bytes += stored.record.size();
                }
                if let Some(last) = batch.records.last() {
                    // A read stops at max_bytes or at the end of the segment it started in.
                    let next = last.offset + 1;
                    prop_assert!(
                        bytes >= max_bytes || next == m.segment_end_for(offset),
                        "read stopped at {} with {} of {} bytes",
                        next,
                        bytes,
                        max_bytes
                    );
                }
            }
            Op::ReadInto {
                partition,
                pick,
                max_bytes,
            } => {
                let m = &model[partition as usize];
                let (buffer, next) = &mut buffers[partition as usize];
                let offset = pick.map_or(*next, |pick| pick % (m.end() + 3));
                let options = ReadOptions {
                    max_bytes,
                    max_wait: Duration::ZERO,
                };
                let result = log.read_into("m", partition, offset, options, buffer).await;
                if offset < m.start || offset > m.end() {
                    prop_assert!(
                        matches!(result, Err(LogError::OffsetOutOfRange { .. })),
                        "offset {} outside {}..{} gave {:?}",
                        offset,
                        m.start,
                        m.end(),
                        result
                    );
                    *next = m.start;
                    continue;
                }
                result.unwrap();
                prop_assert_eq!(buffer.end_offset(), m.end());
                prop_assert_eq!(buffer.is_empty(), offset == m.end());
                let expected = &m.records[(offset - m.start) as usize..];
                prop_assert!(buffer.len() <= expected.len());
                let mut sizes = Vec::new();
                for (i, record) in buffer.iter().enumerate() {
                    let stored = record.to_stored();
                    prop_assert_eq!(stored.offset, offset + i as u64);
                    prop_assert_eq!(&stored.record, &expected[i]);
                    sizes.push(stored.record.size());
                }
                *next = buffer.next_offset(offset);
                if !buffer.is_empty() {
                    // Whole batches (of at most 5 records here): at most one past max_bytes;
                    // and it stops at max_bytes or at the end of the segment it started in.
                    let before_last_batch: usize =
                        sizes[..sizes.len().saturating_sub(5)].iter().sum();
                    prop_assert!(before_last_batch < max_bytes, "read went on past max_bytes");
                    let bytes: usize = sizes.iter().sum();
                    prop_assert!(
                        bytes >= max_bytes || *next == m.segment_end_for(offset),
                        "read stopped at {} with {} of {} bytes",
                        *next,
                        bytes,
                        max_bytes
                    );
                }
            }
            Op::OffsetForTime { partition, minutes } => {
                let m = &model[partition as usize];
                let time = NOW + minutes * MINUTE;
                let expected = m
                    .records
                    .iter()
                    .position(|r| r.timestamp >= time)
                    .map(|i| m.start + i as u64);
                let found = log.offset_for_time("m", partition, time).await.unwrap();
                prop_assert_eq!(found, expected, "time {}", time);
            }
            Op::Retention { minutes } => {
                let now = NOW + minutes * MINUTE;
                let expected: u64 = model.iter_mut().map(|m| m.retention(now)).sum();
                prop_assert_eq!(log.enforce_retention_at(now).unwrap(), expected);
            }
            Op::Commit { partition, pick } => {
                let end = model[partition as usize].end();
                let offset = pick % (end + 1);
                log.consumer_offset("g", "m", partition, Some(offset))
                    .await
                    .unwrap();
                committed[partition as usize] = Some(offset);
            }
            Op::Reopen => {
                log.close().await.unwrap();
                log = open(dir.path(), &config);
            }
        }
        let info = &log.describe(Some("m")).await.unwrap()[0];
        for (p, m) in model.iter().enumerate() {
            let actual = info.partitions[p];
            prop_assert_eq!(actual.start_offset, m.start);
            prop_assert_eq!(actual.end_offset, m.end());
            prop_assert_eq!(
                actual.bytes,
                m.segments.iter().map(|s| s.bytes).sum::<u64>()
            );
            let stored = log.consumer_offset("g", "m", p as u32, None).await.unwrap();
            prop_assert_eq!(stored, committed[p]);
        }
    }
    log.close().await.unwrap();
    Ok(())
}

fn ack_mode() -> impl Strategy<Value = AckMode> {
    prop_oneof![
        Just(AckMode::Fsync),
        Just(AckMode::Write),
        Just(AckMode::None)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("proptest-regressions/model.txt"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_log_behaves_like_its_model(
        ack in ack_mode(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        runtime().block_on(run(ack, ops))?;
    }
}
