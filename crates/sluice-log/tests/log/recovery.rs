//! The file log's own promises: what survives a reopen, how damaged files are repaired or
//! refused, locking, read-only access and retention.

use crate::common::{config, open, record, runtime, value_bytes};
use bytes::Bytes;
use sluice_log::file::segment::{index_path, log_path};
use sluice_log::{
    AckMode, EpochStart, FileLog, Log, LogError, ReadOptions, Record, StoredRecord, TopicSpec,
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

#[test]
fn a_damaged_sealed_segment_is_refused_with_its_path() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = config(AckMode::Write);
        let log = open(dir.path(), &config);
        log.create_topic(TopicSpec::new("t", 1)).await.unwrap();
        fill(&log, "t", 30).await;
        log.close().await.unwrap();
        let segments = segment_files(&partition_dir(dir.path(), "t", 0));
        let mut bytes = std::fs::read(&segments[0]).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&segments[0], &bytes).unwrap();
        std::fs::remove_file(index_path(&segments[0])).unwrap();
        let error = crate::common::try_open(dir.path(), &config).unwrap_err();
        assert!(matches!(error, LogError::Corrupt { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains("00000000000000000000.log"), "{message}");
        assert!(message.contains("fails its checksum"), "{message}");
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
