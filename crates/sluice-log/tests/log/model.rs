//! Model-based property test: random sequences of append / read / offset-for-time / retention /
//! commit / reopen / damage against a plain in-memory model of the log. The model mirrors
//! segment rolls (from the encoded batch sizes) so that retention's choices can be predicted
//! exactly, and what recovery makes of a damaged batch of the active segment: a gap in the
//! middle (the batches after it keep their offsets, in a segment of their own), or a cut tail
//! (the offsets are handed out again, in a new epoch).

use crate::common::{open, runtime, value_bytes};
use bytes::Bytes;
use proptest::prelude::*;
use sluice_core::config::ByteSize;
use sluice_log::file::format::encode_batch;
use sluice_log::{
    AckMode, EpochStart, FileLog, Log, LogConfig, LogError, ReadBuffer, ReadOptions, Record,
    TopicSpec,
};
use std::collections::BTreeMap;
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
    /// Close, flip a byte inside batch `pick` of the partition's active segment, drop its
    /// index (as after a crash), reopen.
    Damage {
        partition: u32,
        pick: usize,
    },
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
        1 => (0..PARTITIONS, any::<usize>()).prop_map(|(partition, pick)| Op::Damage { partition, pick }),
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

/// A batch as the model knows it.
#[derive(Debug, Clone, Copy)]
struct ModelBatch {
    base: u64,
    count: u64,
    bytes: u64,
    max_timestamp: i64,
}

#[derive(Debug, Clone)]
struct ModelSegment {
    base: u64,
    end: u64,
    batches: Vec<ModelBatch>,
}

impl ModelSegment {
    fn empty(base: u64) -> Self {
        Self {
            base,
            end: base,
            batches: Vec::new(),
        }
    }

    fn bytes(&self) -> u64 {
        self.batches.iter().map(|b| b.bytes).sum()
    }

    fn max_timestamp(&self) -> i64 {
        self.batches
            .iter()
            .map(|b| b.max_timestamp)
            .max()
            .unwrap_or(i64::MIN)
    }
}

/// One partition as the model sees it.
#[derive(Debug)]
struct ModelPartition {
    /// Every record by offset: offsets increase, with gaps where damage was salvaged.
    records: BTreeMap<u64, Record>,
    segments: Vec<ModelSegment>,
    epochs: Vec<EpochStart>,
}

impl ModelPartition {
    fn new() -> Self {
        Self {
            records: BTreeMap::new(),
            segments: vec![ModelSegment::empty(0)],
            epochs: vec![EpochStart {
                epoch: 0,
                start_offset: 0,
            }],
        }
    }

    fn start(&self) -> u64 {
        self.segments[0].base
    }

    fn end(&self) -> u64 {
        self.segments.last().unwrap().end
    }

    fn append(&mut self, records: Vec<Record>, segment_bytes: u64) -> u64 {
        let mut frame = Vec::new();
        let encoded = encode_batch(&records, &mut frame);
        let len = encoded.frame_len as u64;
        let end = self.end();
        let active = self.segments.last().unwrap();
        if active.bytes() > 0 && active.bytes() + len > segment_bytes {
            self.segments.push(ModelSegment::empty(end));
        }
        let active = self.segments.last_mut().unwrap();
        active.batches.push(ModelBatch {
            base: end,
            count: records.len() as u64,
            bytes: len,
            max_timestamp: encoded.max_timestamp,
        });
        active.end += records.len() as u64;
        for (i, record) in records.into_iter().enumerate() {
            self.records.insert(end + i as u64, record);
        }
        end
    }

    fn retention(&mut self, now: i64) -> u64 {
        let cutoff = now - RETENTION_MINUTES * MINUTE;
        let mut total: u64 = self.segments.iter().map(ModelSegment::bytes).sum();
        let mut freed = 0;
        while self.segments.len() > 1 {
            let first = &self.segments[0];
            if first.max_timestamp() >= cutoff && total <= RETENTION_BYTES {
                break;
            }
            total -= first.bytes();
            freed += first.bytes();
            let end = first.end;
            self.records = self.records.split_off(&end);
            self.segments.remove(0);
        }
        freed
    }

    /// The records a read from `offset` can return, in order.
    fn from(&self, offset: u64) -> Vec<(u64, &Record)> {
        self.records.range(offset..).map(|(o, r)| (*o, r)).collect()
    }

    /// Where a read from `offset` stops at the latest: the end of the segment it reads from
    /// (the first one holding an offset at or after it; damage to the first batch of a
    /// segment leaves an empty one before the gap, which a read steps over).
    fn segment_end_for(&self, offset: u64) -> u64 {
        self.segments
            .iter()
            .find(|s| offset < s.end && s.base < s.end)
            .map_or(self.end(), |s| s.end)
    }

    /// What recovery makes of damage to batch `index` of the active segment: a gap, with the
    /// batches after it in a segment of their own; or, for the last batch, a cut tail and a new
    /// epoch at the new end.
    fn damage(&mut self, index: usize) {
        let active = self.segments.pop().unwrap();
        let lost = active.batches[index];
        for offset in lost.base..lost.base + lost.count {
            self.records.remove(&offset);
        }
        let mut before = ModelSegment {
            base: active.base,
            end: lost.base,
            batches: active.batches[..index].to_vec(),
        };
        if index + 1 == active.batches.len() {
            self.segments.push(before);
            let epoch = self.epochs.last().unwrap().epoch + 1;
            self.epochs.retain(|e| e.start_offset <= lost.base);
            self.epochs.push(EpochStart {
                epoch,
                start_offset: lost.base,
            });
            return;
        }
        let after = &active.batches[index + 1..];
        let rest = ModelSegment {
            base: after[0].base,
            end: active.end,
            batches: after.to_vec(),
        };
        before.end = lost.base;
        self.segments.push(before);
        self.segments.push(rest);
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
                if offset < m.start() || offset > m.end() {
                    prop_assert!(
                        matches!(result, Err(LogError::OffsetOutOfRange { .. })),
                        "offset {} outside {}..{} gave {:?}",
                        offset,
                        m.start(),
                        m.end(),
                        result
                    );
                    continue;
                }
                let batch = result.unwrap();
                prop_assert_eq!(batch.end_offset, m.end());
                let expected = m.from(offset);
                prop_assert!(batch.records.len() <= expected.len());
                prop_assert_eq!(batch.records.is_empty(), expected.is_empty());
                let mut bytes = 0;
                for (i, stored) in batch.records.iter().enumerate() {
                    prop_assert!(bytes < max_bytes, "read went on past max_bytes");
                    prop_assert_eq!(stored.offset, expected[i].0);
                    prop_assert_eq!(&stored.record, expected[i].1);
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
                if offset < m.start() || offset > m.end() {
                    prop_assert!(
                        matches!(result, Err(LogError::OffsetOutOfRange { .. })),
                        "offset {} outside {}..{} gave {:?}",
                        offset,
                        m.start(),
                        m.end(),
                        result
                    );
                    *next = m.start();
                    continue;
                }
                result.unwrap();
                prop_assert_eq!(buffer.end_offset(), m.end());
                let expected = m.from(offset);
                prop_assert_eq!(buffer.is_empty(), expected.is_empty());
                prop_assert!(buffer.len() <= expected.len());
                let mut sizes = Vec::new();
                for (i, record) in buffer.iter().enumerate() {
                    let stored = record.to_stored();
                    prop_assert_eq!(stored.offset, expected[i].0);
                    prop_assert_eq!(&stored.record, expected[i].1);
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
                    .find(|(_, r)| r.timestamp >= time)
                    .map(|(offset, _)| *offset);
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
            Op::Damage { partition, pick } => {
                let m = &mut model[partition as usize];
                let active = m.segments.last().unwrap();
                if active.batches.is_empty() {
                    continue;
                }
                let index = pick % active.batches.len();
                let segment = dir
                    .path()
                    .join(format!("topics/m/{partition}"))
                    .join(format!("{:020}.log", active.base));
                let position: u64 = active.batches[..index].iter().map(|b| b.bytes).sum();
                log.close().await.unwrap();
                let mut bytes = std::fs::read(&segment).unwrap();
                // The first record's timestamp delta: inside the checksummed part.
                bytes[position as usize + 38] ^= 0x40;
                std::fs::write(&segment, &bytes).unwrap();
                let _ = std::fs::remove_file(segment.with_extension("idx"));
                m.damage(index);
                log = open(dir.path(), &config);
            }
        }
        let info = &log.describe(Some("m")).await.unwrap()[0];
        for (p, m) in model.iter().enumerate() {
            let actual = info.partitions[p];
            prop_assert_eq!(actual.start_offset, m.start());
            prop_assert_eq!(actual.end_offset, m.end());
            prop_assert_eq!(
                actual.bytes,
                m.segments.iter().map(ModelSegment::bytes).sum::<u64>()
            );
            prop_assert_eq!(&log.epochs("m", p as u32).await.unwrap(), &m.epochs);
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
