//! Tests of `verify` and `repair` on real logs: damage made by flipping bytes and moving files.

use super::*;
use crate::file::format::peek_header;
use crate::file::segment::index_path;
use crate::{FileLog, Log, ReadOptions, Record, TopicSpec};
use std::time::Duration;

fn config() -> LogConfig {
    LogConfig::for_tests(16 * 1024)
}

/// 40 batches of 4 records of ~500 bytes: several 16 KiB segments.
async fn fill(log: &FileLog, topic: &str) {
    for batch in 0..40u64 {
        let records = (0..4u64)
            .map(|i| {
                let value = format!("{batch}-{i}-{}", "v".repeat(500));
                Record::new(None, value, 1_700_000_000_000 + batch as i64)
            })
            .collect();
        log.append(topic, 0, records).await.unwrap();
    }
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

/// (position, base offset) of every batch of a segment file.
fn batches(path: &Path) -> Vec<(usize, u64)> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = peek_header(&bytes[at..]).unwrap().unwrap();
        out.push((at, header.base_offset));
        at += header.frame_len;
    }
    out
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x81;
    std::fs::write(path, bytes).unwrap();
}

async fn offsets(log: &FileLog, topic: &str) -> Vec<u64> {
    let mut offsets = Vec::new();
    let mut offset = 0;
    loop {
        let options = ReadOptions {
            max_bytes: 1 << 20,
            max_wait: Duration::ZERO,
        };
        let batch = log.read(topic, 0, offset, options).await.unwrap();
        if batch.records.is_empty() {
            return offsets;
        }
        offset = batch.next_offset(offset);
        offsets.extend(batch.records.iter().map(|r| r.offset));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_every_damage_and_repair_keeps_every_intact_batch() {
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let log = FileLog::open(dir.path(), &config).unwrap();
    log.create_topic(TopicSpec::new("t", 1)).await.unwrap();
    log.create_topic(TopicSpec::new("u", 1)).await.unwrap();
    fill(&log, "t").await;
    fill(&log, "u").await;
    log.close().await.unwrap();
    let partition = dir.path().join("topics/t/0");
    let files = segment_files(&partition);
    assert!(files.len() >= 5, "{files:?}");

    // A sealed segment with its second batch damaged, a segment file gone, and the
    // active segment damaged in its middle, as after a crash (no index).
    let sealed = batches(&files[1]);
    flip(&files[1], sealed[1].0 + 70);
    std::fs::remove_file(index_path(&files[1])).unwrap();
    let gone = (batches(&files[3])[0].1, batches(&files[4])[0].1);
    std::fs::remove_file(&files[3]).unwrap();
    let active = files.last().unwrap();
    let tail = batches(active);
    assert!(tail.len() >= 3, "{tail:?}");
    flip(active, tail[1].0 + 90);
    std::fs::remove_file(index_path(active)).unwrap();

    let checks = verify(dir.path(), &config, &Selection::default(), false).unwrap();
    assert_eq!(checks.len(), 2);
    assert!(checks[1].problems.is_empty(), "{:?}", checks[1].problems);
    let problems = &checks[0].problems;
    assert_eq!(problems.len(), 3, "{problems:#?}");
    let Problem::Damaged {
        segment,
        damaged,
        intact_after,
    } = &problems[0]
    else {
        panic!("{problems:?}");
    };
    assert_eq!(segment, &files[1]);
    assert_eq!(damaged.bytes, sealed[1].0 as u64..sealed[2].0 as u64);
    assert_eq!(
        (damaged.first_offset, damaged.end_offset),
        (sealed[1].1, Some(sealed[2].1))
    );
    assert_eq!(intact_after.as_ref().unwrap().start, sealed[2].1);
    assert_eq!(
        problems[1],
        Problem::Missing {
            segment: files[4].clone(),
            offsets: gone.0..gone.1
        }
    );
    assert!(
        matches!(&problems[2], Problem::Damaged { damaged, .. }
            if damaged.first_offset == tail[1].1 && damaged.end_offset == Some(tail[2].1)),
        "{problems:?}"
    );
    let text = problems[0].to_string();
    assert!(text.contains("(4 records)"), "{text}");
    assert!(text.contains("fails its checksum"), "{text}");

    // Only the chosen partitions; unknown names are refused.
    let only_u = Selection {
        topic: Some("u".into()),
        partition: Some(0),
    };
    assert_eq!(
        verify(dir.path(), &config, &only_u, false).unwrap().len(),
        1
    );
    let none = Selection {
        topic: Some("none".into()),
        partition: None,
    };
    assert!(matches!(
        verify(dir.path(), &config, &none, false),
        Err(LogError::UnknownTopic(_))
    ));

    let repaired = repair(dir.path(), &config, &Selection::default()).unwrap();
    assert!(repaired[1].is_untouched());
    let done = &repaired[0];
    assert_eq!(done.salvaged.len(), 2);
    assert_eq!(
        done.missing,
        vec![Range {
            start: gone.0,
            end: gone.1
        }]
    );
    let lost: Vec<Range<u64>> = done
        .salvaged
        .iter()
        .flat_map(|s| &s.losses)
        .map(|loss| loss.damaged.first_offset..loss.damaged.end_offset.unwrap())
        .collect();
    assert_eq!(lost, [sealed[1].1..sealed[2].1, tail[1].1..tail[2].1]);
    for loss in done.salvaged.iter().flat_map(|s| &s.losses) {
        assert!(loss.quarantined.as_ref().unwrap().exists());
    }
    assert!(done.salvaged.iter().all(|s| s.epoch.is_none()));

    // Clean now; every offset that is left reads, and nothing else.
    let checks = verify(dir.path(), &config, &Selection::default(), false).unwrap();
    assert!(checks[0].problems.is_empty(), "{:?}", checks[0].problems);
    assert_eq!(checks[0].gaps.len(), 3);
    let log = FileLog::open(dir.path(), &config).unwrap();
    let read = offsets(&log, "t").await;
    let expected: Vec<u64> = (0..160)
        .filter(|o| !(sealed[1].1..sealed[2].1).contains(o))
        .filter(|o| !(gone.0..gone.1).contains(o))
        .filter(|o| !(tail[1].1..tail[2].1).contains(o))
        .collect();
    assert_eq!(read, expected);
    assert_eq!(offsets(&log, "u").await.len(), 160);

    // Not while the log is open.
    let error = repair(dir.path(), &config, &Selection::default()).unwrap_err();
    assert!(matches!(error, LogError::Locked { .. }), "{error}");
    log.close().await.unwrap();
    // A second repair finds nothing to do.
    let again = repair(dir.path(), &config, &Selection::default()).unwrap();
    assert!(again.iter().all(PartitionRepair::is_untouched), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_tail_is_cut_with_a_new_epoch_and_damaged_partition_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let log = FileLog::open(dir.path(), &config).unwrap();
    log.create_topic(TopicSpec::new("t", 1)).await.unwrap();
    fill(&log, "t").await;
    log.close().await.unwrap();
    let partition = dir.path().join("topics/t/0");
    let active = segment_files(&partition).pop().unwrap();
    let tail = batches(&active);
    let last = *tail.last().unwrap();
    flip(&active, last.0 + 50);
    std::fs::write(gaps::path(&partition), b"not a gap file").unwrap();

    let checks = verify(dir.path(), &config, &Selection::default(), false).unwrap();
    let problems = &checks[0].problems;
    assert!(
        matches!(&problems[0], Problem::File { reason, .. } if reason.contains("gap file")),
        "{problems:?}"
    );
    assert!(
        matches!(&problems[1], Problem::Damaged { damaged, .. }
            if damaged.first_offset == last.1 && damaged.end_offset.is_none()),
        "{problems:?}"
    );
    assert!(problems[1].to_string().contains("cannot be told"));

    let repaired = repair(dir.path(), &config, &Selection::default()).unwrap();
    let done = &repaired[0];
    assert_eq!(done.rebuilt.len(), 1);
    assert!(done.rebuilt[0].1.exists(), "the damaged file is kept");
    let epoch = done.salvaged[0].epoch.unwrap();
    assert_eq!((epoch.epoch, epoch.start_offset), (1, last.1));
    let checks = verify(dir.path(), &config, &Selection::default(), false).unwrap();
    assert!(checks[0].problems.is_empty(), "{:?}", checks[0].problems);
    assert_eq!(checks[0].end_offset, last.1);
    let log = FileLog::open(dir.path(), &config).unwrap();
    assert_eq!(log.epochs("t", 0).await.unwrap().len(), 2);
    let appended = log
        .append("t", 0, vec![Record::new(None, "again", 0)])
        .await
        .unwrap();
    assert_eq!(appended.base_offset, last.1);
    log.close().await.unwrap();
}
