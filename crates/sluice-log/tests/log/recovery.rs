//! The file log's own promises: what survives a reopen, how damaged files are repaired or
//! refused, locking, read-only access and retention.

use crate::common::{config, open, record, runtime, value_bytes};
use bytes::Bytes;
use sluice_core::config::ByteSize;
use sluice_log::file::format::peek_header;
use sluice_log::file::segment::{index_path, log_path};
use sluice_log::{
    AckMode, EpochStart, FileLog, Log, LogConfig, LogError, ReadBuffer, ReadOptions, Record,
    StoredRecord, TopicSpec,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

const NOW: i64 = 1_700_000_000_000;
const MINUTE: i64 = 60_000;

fn partition_dir(log_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    log_dir
        .join("topics")
        .join(topic)
        .join(partition.to_string())
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// Appends `batches` batches of 4 records of ~500 bytes, the timestamps one minute apart per
/// batch; returns every record appended.
async fn fill(log: &FileLog, topic: &str, batches: u64) -> Vec<Record> {
    let mut all = Vec::new();
    for batch in 0..batches {
        let records: Vec<Record> = (0..4)
            .map(|i| {
                Record::new(
                    Some(Bytes::from(format!("key-{batch}-{i}"))),
                    value_bytes(batch * 4 + i, 500),
                    NOW + batch as i64 * MINUTE,
                )
            })
            .collect();
        log.append(topic, 0, records.clone()).await.unwrap();
        all.extend(records);
    }
    all
}

async fn read_all(log: &FileLog, topic: &str, from: u64) -> Vec<StoredRecord> {
    let mut records = Vec::new();
    let mut offset = from;
    loop {
        let options = ReadOptions {
            max_bytes: 3000,
            max_wait: Duration::ZERO,
        };
        let batch = log.read(topic, 0, offset, options).await.unwrap();
        if batch.records.is_empty() {
            return records;
        }
        offset = batch.next_offset(offset);
        records.extend(batch.records);
    }
}

fn values(records: &[StoredRecord]) -> Vec<Record> {
    records.iter().map(|r| r.record.clone()).collect()
}

#[test]
fn everything_survives_a_clean_reopen_and_appends_continue() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = config(AckMode::Write);
        let log = open(dir.path(), &config);
        log.create_topic(TopicSpec::new("t", 1)).await.unwrap();
        let written = fill(&log, "t", 30).await;
        log.close().await.unwrap();
        let segments = segment_files(&partition_dir(dir.path(), "t", 0));
        assert!(segments.len() > 2, "expected several segments");
        assert!(
            segments.iter().all(|s| index_path(s).exists()),
            "every segment has an index after a clean close"
        );

        let log = open(dir.path(), &config);
        assert_eq!(values(&read_all(&log, "t", 0).await), written);
        let appended = log
            .append("t", 0, vec![record(None, "more", NOW)])
            .await
            .unwrap();
        assert_eq!(appended.base_offset, written.len() as u64);
        assert_eq!(
            log.offset_for_time("t", 0, NOW + 10 * MINUTE)
                .await
                .unwrap(),
            Some(40)
        );
        log.close().await.unwrap();
    });
}

#[test]
fn a_torn_or_corrupt_tail_is_truncated_and_earlier_batches_kept() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = config(AckMode::Fsync);
        let log = open(dir.path(), &config);
        log.create_topic(TopicSpec::new("t", 1)).await.unwrap();
        let written = fill(&log, "t", 2).await;
        log.close().await.unwrap();
        let partition = partition_dir(dir.path(), "t", 0);
        let active = segment_files(&partition).pop().unwrap();
        let clean_len = std::fs::metadata(&active).unwrap().len();

        // A torn write: half of a batch header and some of its body after the valid data.
        let mut bytes = std::fs::read(&active).unwrap();
        let torn = bytes[..300].to_vec();
        bytes.extend_from_slice(&torn);
        std::fs::write(&active, &bytes).unwrap();
        let log = open(dir.path(), &config);
        assert_eq!(values(&read_all(&log, "t", 0).await), written);
        assert_eq!(std::fs::metadata(&active).unwrap().len(), clean_len);
        let next = log
            .append("t", 0, vec![record(None, "after", NOW)])
            .await
            .unwrap();
        assert_eq!(next.base_offset, 8);
        log.close().await.unwrap();

        // A flipped byte inside the last batch: that batch goes, the first stays.
        let mut bytes = std::fs::read(&active).unwrap();
        let len = bytes.len();
        bytes[len - 2] ^= 0xff;
        std::fs::write(&active, &bytes).unwrap();
        std::fs::remove_file(index_path(&active)).unwrap();
        let log = open(dir.path(), &config);
        assert_eq!(values(&read_all(&log, "t", 0).await), written);
        log.close().await.unwrap();
    });
}

fn epoch(epoch: u32, start_offset: u64) -> EpochStart {
    EpochStart {
        epoch,
        start_offset,
    }
}

#[test]
fn a_cut_tail_starts_a_new_epoch_at_the_new_end_and_a_clean_reopen_does_not() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = config(AckMode::Write);
        let log = open(dir.path(), &config);
        log.create_topic(TopicSpec::new("t", 2)).await.unwrap();
        fill(&log, "t", 3).await;
        assert_eq!(log.epochs("t", 0).await.unwrap(), [epoch(0, 0)]);
        log.close().await.unwrap();
        let partition = partition_dir(dir.path(), "t", 0);
        assert!(!partition.join("epochs").exists(), "no file without a cut");

        // The last batch (offsets 8..12) is cut: offsets 8.. are handed out again.
        let active = segment_files(&partition).pop().unwrap();
        let mut bytes = std::fs::read(&active).unwrap();
        let len = bytes.len();
        bytes[len - 2] ^= 0xff;
        std::fs::write(&active, &bytes).unwrap();
        std::fs::remove_file(index_path(&active)).unwrap();
        let log = open(dir.path(), &config);
        assert_eq!(
            log.epochs("t", 0).await.unwrap(),
            [epoch(0, 0), epoch(1, 8)]
        );
        assert_eq!(log.epochs("t", 1).await.unwrap(), [epoch(0, 0)]);
        let again = log
            .append("t", 0, vec![record(None, "reused", NOW)])
            .await
            .unwrap();
        assert_eq!(again.base_offset, 8);
        log.close().await.unwrap();

        // A clean reopen keeps the epochs as they are, and so does a reader beside the writer.
        let log = open(dir.path(), &config);
        assert_eq!(
            log.epochs("t", 0).await.unwrap(),
            [epoch(0, 0), epoch(1, 8)]
        );
        let reader = FileLog::open_read_only(dir.path(), &config).unwrap();
        assert_eq!(
            reader.epochs("t", 0).await.unwrap(),
            [epoch(0, 0), epoch(1, 8)]
        );
        reader.close().await.unwrap();
        let error = log.epochs("t", 2).await.unwrap_err();
        assert!(
            matches!(error, LogError::UnknownPartition { .. }),
            "{error}"
        );
        log.close().await.unwrap();

        // A torn write at the same end cuts again: epoch 2 starts at the same offset.
        let mut bytes = std::fs::read(&active).unwrap();
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&active, &bytes).unwrap();
        let log = open(dir.path(), &config);
        assert_eq!(
            log.epochs("t", 0).await.unwrap(),
            [epoch(0, 0), epoch(1, 8), epoch(2, 9)]
        );
        log.close().await.unwrap();
    });
}

#[test]
fn missing_damaged_and_stale_indexes_are_rebuilt() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = config(AckMode::Write);
        let log = open(dir.path(), &config);
        log.create_topic(TopicSpec::new("t", 1)).await.unwrap();
        let written = fill(&log, "t", 30).await;
        log.close().await.unwrap();
        let segments = segment_files(&partition_dir(dir.path(), "t", 0));
        std::fs::remove_file(index_path(&segments[0])).unwrap();
        std::fs::write(index_path(&segments[1]), b"not an index").unwrap();
        // An index of another segment claims a different length: stale.
        std::fs::copy(index_path(&segments[2]), index_path(&segments[1])).unwrap();

        let log = open(dir.path(), &config);
        assert_eq!(values(&read_all(&log, "t", 0).await), written);
        for batch in [0, 7, 29] {
            let time = NOW + batch * MINUTE;
            let expected = Some(batch as u64 * 4);
            assert_eq!(log.offset_for_time("t", 0, time).await.unwrap(), expected);
            let read = log
                .read(
                    "t",
                    0,
                    batch as u64 * 4 + 1,
                    ReadOptions {
                        max_bytes: 1,
                        max_wait: Duration::ZERO,
                    },
                )
                .await
                .unwrap();
            assert_eq!(read.records[0].record, written[batch as usize * 4 + 1]);
        }
        log.close().await.unwrap();
        assert!(index_path(&segments[0]).exists(), "rebuilt index written");
    });
}

/// Where each batch of a segment file starts, and its base offset.
fn batch_positions(path: &Path) -> Vec<(usize, u64)> {
    let bytes = std::fs::read(path).unwrap();
    let mut positions = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = peek_header(&bytes[at..]).unwrap().unwrap();
        positions.push((at, header.base_offset));
        at += header.frame_len;
    }
    positions
}

/// Flips `count` bytes of `path` from `at` on.
fn flip(path: &Path, at: usize, count: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    for byte in &mut bytes[at..at + count] {
        *byte ^= 0x5a;
    }
    std::fs::write(path, &bytes).unwrap();
}

fn at_once(max_bytes: usize) -> ReadOptions {
    ReadOptions {
        max_bytes,
        max_wait: Duration::ZERO,
    }
}

#[test]
fn damage_in_the_middle_of_the_active_segment_loses_only_the_damaged_batch() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        // One segment for everything: the damage lands in the active segment.
        let config = LogConfig {
            segment_bytes: ByteSize(1 << 20),
            ..config(AckMode::Fsync)
        };
        let log = open(dir.path(), &config);
        log.create_topic(TopicSpec::new("t", 1)).await.unwrap();
        let written = fill(&log, "t", 30).await;
        log.close().await.unwrap();
        let partition = partition_dir(dir.path(), "t", 0);
        let active = segment_files(&partition).pop().unwrap();
        let original = std::fs::read(&active).unwrap();
        let batches = batch_positions(&active);
        assert_eq!(batches.len(), 30);
        // As after a crash: no index. 16 bytes flipped in the middle of batch 10 (offsets
        // 40..44).
        std::fs::remove_file(index_path(&active)).unwrap();
        let (damaged_at, damaged_end) = (batches[10].0, batches[11].0);
        flip(&active, damaged_at + 300, 16);

        let log = open(dir.path(), &config);
        // Every record but the damaged batch's, with its offset.
        let read = read_all(&log, "t", 0).await;
        let offsets: Vec<u64> = read.iter().map(|r| r.offset).collect();
        let expected: Vec<u64> = (0..40).chain(44..120).collect();
        assert_eq!(offsets, expected);
        let kept: Vec<Record> = [&written[..40], &written[44..]].concat();
        assert_eq!(values(&read), kept);
        // A read inside the gap returns the records from the next offset on.
        for from in [40, 41, 43] {
            let batch = log.read("t", 0, from, at_once(1)).await.unwrap();
            assert_eq!(batch.records[0].offset, 44, "read from {from}");
            assert_eq!(batch.next_offset(from), 45);
            let mut buffer = ReadBuffer::new();
            log.read_into("t", 0, from, at_once(1), &mut buffer)
                .await
                .unwrap();
            assert_eq!(buffer.get(0).unwrap().offset, 44, "read_into from {from}");
        }
        // The batch's time now finds the batch after it; the end did not move: no new epoch.
        let lost_time = NOW + 10 * MINUTE;
        assert_eq!(
            log.offset_for_time("t", 0, lost_time).await.unwrap(),
            Some(44)
        );
        assert_eq!(log.epochs("t", 0).await.unwrap(), [epoch(0, 0)]);
        let info = log.describe(Some("t")).await.unwrap()[0].partitions[0];
        assert_eq!((info.start_offset, info.end_offset), (0, 120));

        // The damaged bytes, exactly, are in the quarantine with a note of what they held.
        let quarantine = dir.path().join("quarantine/t/0");
        let name = format!("00000000000000000000-{damaged_at}");
        let saved = std::fs::read(quarantine.join(format!("{name}.bin"))).unwrap();
        let mut damaged = original[damaged_at..damaged_end].to_vec();
        for byte in &mut damaged[300..316] {
            *byte ^= 0x5a;
        }
        assert_eq!(saved, damaged);
        let note: serde_json::Value = serde_json::from_slice(
            &std::fs::read(quarantine.join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(note["first_offset"], 40);
        assert_eq!(note["end_offset"], 44);
        assert_eq!(note["records_lost"], 4);
        assert_eq!(note["bytes"], serde_json::json!([damaged_at, damaged_end]));
        assert!(
            note["reason"].as_str().unwrap().contains("checksum"),
            "{note}"
        );
        // The intact batches after the damage are a segment of their own.
        let files = segment_files(&partition);
        assert_eq!(files, [active.clone(), log_path(&partition, 44)]);

        // Appends go on after the last offset; a clean reopen changes nothing.
        let appended = log
            .append("t", 0, vec![record(None, "after", NOW)])
            .await
            .unwrap();
        assert_eq!(appended.base_offset, 120);
        log.close().await.unwrap();
        let log = open(dir.path(), &config);
        assert_eq!(read_all(&log, "t", 0).await.len(), 117);
        assert_eq!(log.epochs("t", 0).await.unwrap(), [epoch(0, 0)]);
        let reader = FileLog::open_read_only(dir.path(), &config).unwrap();
        assert_eq!(read_all(&reader, "t", 40).await[0].offset, 44);
        reader.close().await.unwrap();
        log.close().await.unwrap();
    });
}

#[test]
fn damage_in_a_sealed_segment_fails_only_the_reads_that_touch_it() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = config(AckMode::Write);
        let log = open(dir.path(), &config);
        log.create_topic(TopicSpec::new("t", 1)).await.unwrap();
        log.create_topic(TopicSpec::new("other", 1)).await.unwrap();
        let written = fill(&log, "t", 30).await;
        let other = fill(&log, "other", 3).await;
        log.close().await.unwrap();
        let segments = segment_files(&partition_dir(dir.path(), "t", 0));
        let second = batch_positions(&segments[1]);
        let next_base = batch_positions(&segments[2])[0].1;
        // Batch 1 of the second segment is damaged; without an index, open finds it.
        flip(&segments[1], second[1].0 + 100, 1);
        std::fs::remove_file(index_path(&segments[1])).unwrap();

        let log = open(dir.path(), &config);
        assert_eq!(values(&read_all(&log, "other", 0).await), other);
        // Before the damage, and from the next segment on, everything reads.
        let damaged_from = second[1].1;
        let before = log.read("t", 0, 0, at_once(1 << 20)).await.unwrap();
        assert_eq!(before.records.len() as u64, second[0].1);
        let head = log
            .read("t", 0, second[0].1, at_once(1 << 20))
            .await
            .unwrap();
        assert_eq!(head.next_offset(second[0].1), damaged_from);
        let rest = read_all(&log, "t", next_base).await;
        assert_eq!(values(&rest), written[next_base as usize..].to_vec());
        // Reads of the damaged offsets fail, naming the file, the range and the remedy.
        for from in [damaged_from, next_base - 1] {
            let error = log.read("t", 0, from, at_once(1)).await.unwrap_err();
            assert!(matches!(error, LogError::Corrupt { .. }), "{error}");
            let message = error.to_string();
            for expected in [
                segments[1].file_name().unwrap().to_str().unwrap(),
                &format!("offsets {damaged_from}..{next_base}"),
                &format!("bytes {}..", second[1].0),
                "fails its checksum",
                "sluice log repair",
            ] {
                assert!(message.contains(expected), "{expected:?} in {message}");
            }
            let mut buffer = ReadBuffer::new();
            let error = log
                .read_into("t", 0, from, at_once(1), &mut buffer)
                .await
                .unwrap_err();
            assert!(matches!(error, LogError::Corrupt { .. }), "{error}");
        }
        // A search by time that may end among the damaged records says so; others work.
        let damaged_time = NOW + (damaged_from / 4) as i64 * MINUTE;
        let error = log.offset_for_time("t", 0, damaged_time).await.unwrap_err();
        assert!(
            error.to_string().contains("may be among offsets"),
            "{error}"
        );
        assert_eq!(log.offset_for_time("t", 0, NOW).await.unwrap(), Some(0));
        assert_eq!(
            log.offset_for_time("t", 0, NOW + 29 * MINUTE)
                .await
                .unwrap(),
            Some(116)
        );
        // Appends go on.
        let appended = log
            .append("t", 0, vec![record(None, "more", NOW)])
            .await
            .unwrap();
        assert_eq!(appended.base_offset, 120);
        log.close().await.unwrap();

        // Damage behind an index that still matches the file's length is found by the read.
        let segments = segment_files(&partition_dir(dir.path(), "t", 0));
        let third = batch_positions(&segments[3]);
        flip(&segments[3], third[0].0 + 60, 1);
        let log = open(dir.path(), &config);
        let error = log.read("t", 0, third[0].1, at_once(1)).await.unwrap_err();
        assert!(matches!(error, LogError::Corrupt { .. }), "{error}");
        assert!(error.to_string().contains("sluice log repair"), "{error}");
        log.close().await.unwrap();
    });
}

#[test]
fn a_missing_segment_file_fails_only_the_reads_of_its_offsets() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = config(AckMode::Write);
        let log = open(dir.path(), &config);
        log.create_topic(TopicSpec::new("t", 1)).await.unwrap();
        let written = fill(&log, "t", 30).await;
        log.close().await.unwrap();
        // What the old advice ("move the file away") led to.
        let partition = partition_dir(dir.path(), "t", 0);
        let segments = segment_files(&partition);
        let (from, to) = (
            batch_positions(&segments[1])[0].1,
            batch_positions(&segments[2])[0].1,
        );
        std::fs::rename(&segments[1], dir.path().join("moved.log")).unwrap();

        let log = open(dir.path(), &config);
        let head = log.read("t", 0, 0, at_once(1 << 20)).await.unwrap();
        assert_eq!(head.next_offset(0), from);
        let error = log.read("t", 0, from, at_once(1)).await.unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(&format!("offsets {from}..{to}")),
            "{message}"
        );
        assert!(message.contains("no segment file holds"), "{message}");
        assert_eq!(
            values(&read_all(&log, "t", to).await),
            written[to as usize..].to_vec()
        );
        log.close().await.unwrap();
    });
}

#[test]
fn a_second_writer_is_locked_out_but_may_read() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = config(AckMode::Fsync);
        let log = open(dir.path(), &config);
        log.create_topic(TopicSpec::new("t", 1)).await.unwrap();
        let written = fill(&log, "t", 3).await;

        let error = FileLog::open(dir.path(), &config).unwrap_err();
        assert!(matches!(error, LogError::Locked { .. }), "{error}");
        assert!(
            error
                .to_string()
                .contains("in use by another sluice process")
        );

        let reader = FileLog::open_read_only(dir.path(), &config).unwrap();
        assert_eq!(values(&read_all(&reader, "t", 0).await), written);
        let error = reader
            .append("t", 0, vec![record(None, "x", NOW)])
            .await
            .unwrap_err();
        assert!(matches!(error, LogError::ReadOnly { .. }), "{error}");
        let retention = reader.enforce_retention_at(i64::MAX).unwrap_err();
        assert!(
            matches!(retention, LogError::ReadOnly { .. }),
            "{retention}"
        );
        let error = reader
            .create_topic(TopicSpec::new("u", 1))
            .await
            .unwrap_err();
        assert!(matches!(error, LogError::ReadOnly { .. }), "{error}");

        // The reader follows the writer's appends, across the segments it rolls meanwhile.
        let end = written.len() as u64;
        let waiting = reader.read(
            "t",
            0,
            end,
            ReadOptions {
                max_bytes: 1,
                max_wait: Duration::from_secs(60),
            },
        );
        let (followed, more) = tokio::join!(waiting, fill(&log, "t", 30));
        assert_eq!(followed.unwrap().records[0].offset, end);
        let all = values(&read_all(&reader, "t", 0).await);
        assert_eq!(all, [written.clone(), more].concat());
        reader.close().await.unwrap();

        log.close().await.unwrap();
        open(dir.path(), &config).close().await.unwrap();
        let error = FileLog::open_read_only(&dir.path().join("nothing"), &config).unwrap_err();
        assert!(error.to_string().contains("there is no log"), "{error}");
    });
}

#[test]
fn retention_deletes_whole_old_segments_by_age_and_size() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = config(AckMode::Write);
        let log = open(dir.path(), &config);
        let spec = TopicSpec {
            retention_age: Some(Duration::from_secs(3600)),
            ..TopicSpec::new("aged", 1)
        };
        log.create_topic(spec).await.unwrap();
        let spec = TopicSpec {
            retention_bytes: Some(40 * 1024),
            ..TopicSpec::new("sized", 1)
        };
        log.create_topic(spec).await.unwrap();
        let aged = fill(&log, "aged", 120).await;
        fill(&log, "sized", 120).await;
        let before = log.describe(None).await.unwrap();

        // Nothing expired yet: the newest records are 119 minutes after NOW.
        let freed_nothing = log.enforce_retention_at(NOW).unwrap();
        let sized = &log.describe(Some("sized")).await.unwrap()[0].partitions[0];
        assert!(
            sized.bytes <= 40 * 1024,
            "size retention: {} bytes left",
            sized.bytes
        );
        assert!(sized.start_offset > 0);
        assert!(freed_nothing > 0, "size retention freed bytes");

        // An hour after batch 60, every segment whose newest record is older goes.
        let freed = log.enforce_retention_at(NOW + 120 * MINUTE).unwrap();
        assert!(freed > 0);
        let info = &log.describe(Some("aged")).await.unwrap()[0].partitions[0];
        let start = info.start_offset;
        assert!(start > 0 && start <= 60 * 4, "start offset {start}");
        assert_eq!(info.end_offset, before[0].partitions[0].end_offset);
        // The first record kept is in a segment whose newest record is not expired.
        let kept = read_all(&log, "aged", start).await;
        assert_eq!(values(&kept), aged[start as usize..].to_vec());
        let error = log
            .read(
                "aged",
                0,
                start - 1,
                ReadOptions {
                    max_bytes: 1,
                    max_wait: Duration::ZERO,
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(error, LogError::OffsetOutOfRange { .. }),
            "{error}"
        );
        assert_eq!(
            log.offset_for_time("aged", 0, NOW).await.unwrap(),
            Some(start),
            "offsets by time only see what is kept"
        );
        let files = segment_files(&partition_dir(dir.path(), "aged", 0));
        assert_eq!(
            files[0],
            log_path(&partition_dir(dir.path(), "aged", 0), start)
        );
        log.close().await.unwrap();

        // Retention survives a reopen.
        let log = open(dir.path(), &config);
        let info = &log.describe(Some("aged")).await.unwrap()[0].partitions[0];
        assert_eq!(info.start_offset, start);
        log.close().await.unwrap();
    });
}

#[test]
fn leftovers_of_interrupted_operations_are_cleaned_up() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = config(AckMode::Fsync);
        let log = open(dir.path(), &config);
        log.create_topic(TopicSpec::new("t", 1)).await.unwrap();
        fill(&log, "t", 2).await;
        log.close().await.unwrap();
        let partition = partition_dir(dir.path(), "t", 0);
        std::fs::write(partition.join("00000000000000000000.tmp"), b"half").unwrap();
        std::fs::write(index_path(&log_path(&partition, 4242)), b"orphan").unwrap();
        // A topic whose creation stopped before topic.json was written.
        std::fs::create_dir_all(dir.path().join("topics/half/0")).unwrap();

        let log = open(dir.path(), &config);
        assert!(!partition.join("00000000000000000000.tmp").exists());
        assert!(!index_path(&log_path(&partition, 4242)).exists());
        let names: Vec<String> = log
            .describe(None)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["t"]);
        log.create_topic(TopicSpec::new("half", 2)).await.unwrap();
        log.append("half", 1, vec![record(None, "x", NOW)])
            .await
            .unwrap();
        log.close().await.unwrap();
    });
}
