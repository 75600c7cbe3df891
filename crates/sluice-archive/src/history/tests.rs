use super::*;
use crate::format::{self, Fields, Rows};
use crate::layout::{HOUR, Layout};
use sluice_core::event::Event;

/// 2026-12-07T00:00:00Z.
const DEC_7: Millis = 1_796_601_600_000;
/// When offset 0 was received.
const RECEIVED: Millis = DEC_7 + 5 * HOUR;

/// When `offset` was received: `offset` seconds after offset 0, plus an hour per ten
/// offsets, so the walk back from the newest file meets files received long before.
fn received(offset: u64) -> Millis {
    RECEIVED + offset as Millis * 1000 + (offset / 10) as Millis * HOUR
}
/// Partition 0's batches: `[0, 10)`, `[10, 25)`, `[25, 40)`, `[40, 50)`.
const BATCHES: [u64; 5] = [0, 10, 25, 40, 50];

/// The event at `offset` of `partition`: tenants and hours alternate, so each batch writes
/// several files; ids, texts and JSON that need escaping, optional fields present or not.
fn event(partition: u32, offset: u64) -> Event<'static> {
    let tenant = if offset.is_multiple_of(3) {
        "blog"
    } else {
        "shop"
    };
    let hour = DEC_7 + (if offset.is_multiple_of(2) { 3 } else { 4 }) * HOUR;
    let received = received(offset);
    let user = if offset.is_multiple_of(4) {
        format!(r#""user_id":"u\"{offset}","#)
    } else {
        String::new()
    };
    let sent = if offset.is_multiple_of(5) {
        format!(r#""sent_at":{received},"original_timestamp":{hour},"#)
    } else {
        String::new()
    };
    let json = format!(
        r#"{{"message_id":"p{partition}-m{offset}","tenant":"{tenant}","type":"track","event":"Order \u00e9 {offset}",{user}"anonymous_id":"a{offset}","timestamp":{hour},"received_at":{received},{sent}"properties":{{"n":{offset},"s":"x\"y\\z"}},"context":{{"page":{{"url":"/p/{offset}"}}}}}}"#
    );
    serde_json::from_str::<Event<'_>>(&json)
        .unwrap()
        .into_owned()
}

/// The record the log held at `offset`.
fn record(partition: u32, offset: u64) -> StoredRecord {
    let event = event(partition, offset);
    StoredRecord {
        offset,
        record: Record::new(
            Some(Bytes::copy_from_slice(event.partition_key().as_bytes())),
            event.to_json(),
            event.received_at,
        ),
    }
}

/// The files the archiver writes for `partition`'s batch `[start, end)`: one per tenant and
/// hour.
fn batch(partition: u32, start: u64, end: u64) -> Vec<(String, Rows)> {
    let mut by_file: BTreeMap<String, Rows> = BTreeMap::new();
    for offset in start..end {
        let event = event(partition, offset);
        by_file
            .entry(Layout::file(
                &event.tenant,
                event.timestamp,
                partition,
                start,
            ))
            .or_default()
            .push(partition, offset, &Fields::of(&event));
    }
    by_file.into_iter().collect()
}

/// Partition 0's batches as the archiver writes them, and one batch of partition 1.
async fn archive(target: &Target) {
    let mut files = Vec::new();
    for bounds in BATCHES.windows(2) {
        files.extend(batch(0, bounds[0], bounds[1]));
    }
    files.extend(batch(1, 0, 30));
    target.write_files(files).await.unwrap();
}

/// Merges shop's hour-4 files of partition 0's first three batches, as compaction does.
async fn compact_shop(target: &Target) -> String {
    let inputs: Vec<String> = [0, 10, 25]
        .map(|first| Layout::file("shop", DEC_7 + 4 * HOUR, 0, first))
        .into();
    let mut bytes = Vec::new();
    for input in &inputs {
        bytes.push(target.read(input).await.unwrap());
    }
    let output = "events/tenant=shop/date=2026-12-07/hour=04/part-0-00000000000000000000-00000000000000000025.parquet".to_owned();
    target
        .replace(&output, format::merge(bytes).unwrap().unwrap())
        .await
        .unwrap();
    for input in &inputs {
        target.remove(input).await.unwrap();
    }
    output
}

/// Reads partition `partition` from `offset` until `before`, `max_bytes` at a time.
async fn read_all(
    history: &ArchiveHistory,
    partition: u32,
    offset: u64,
    before: u64,
    max_bytes: usize,
) -> Vec<StoredRecord> {
    let mut records = Vec::new();
    let mut next = offset;
    loop {
        let read = history
            .read(partition, next, before, max_bytes)
            .await
            .unwrap();
        let Some(last) = read.last() else {
            return records;
        };
        next = last.offset + 1;
        records.extend(read);
    }
}

/// Every offset comes back once, in order, as the record the log held (key, JSON value byte
/// for byte, timestamp), across the batches' files and a compacted file spanning three
/// batches; reads stop before `before`, and start anywhere.
async fn reads_give_back_the_logs_records(target: Target) {
    archive(&target).await;
    compact_shop(&target).await;
    let history = ArchiveHistory::new(target, "events");
    assert_eq!(history.topic(), "events");
    assert_eq!(history.start(0).await.unwrap(), Some(0));
    assert_eq!(history.start(7).await.unwrap(), None);

    let expected: Vec<StoredRecord> = (0..50).map(|offset| record(0, offset)).collect();
    assert_eq!(read_all(&history, 0, 0, 50, 1000).await, expected);
    assert_eq!(read_all(&history, 0, 0, u64::MAX, 1).await, expected);
    assert_eq!(read_all(&history, 0, 0, 30, 1000).await, expected[..30]);
    assert_eq!(read_all(&history, 0, 33, 50, 1).await, expected[33..]);
    assert_eq!(read_all(&history, 0, 17, 18, 1).await, expected[17..18]);
    assert_eq!(
        read_all(&history, 1, 0, 50, 1000).await,
        (0..30).map(|offset| record(1, offset)).collect::<Vec<_>>()
    );
    assert!(history.read(0, 50, 100, 1000).await.unwrap().is_empty());
    assert!(history.read(0, 5, 5, 1000).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_directory_reads_give_back_the_logs_records() {
    let dir = tempfile::tempdir().unwrap();
    reads_give_back_the_logs_records(Target::test_dir(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_reads_give_back_the_logs_records() {
    reads_give_back_the_logs_records(Target::test_bucket("history-read")).await;
}

/// The first offset received at or after a time, from the footers (and the columns of the
/// files that straddle it), before the log's start only.
async fn offsets_are_found_by_receive_time(target: Target) {
    archive(&target).await;
    compact_shop(&target).await;
    let history = ArchiveHistory::new(target, "events");
    let at = received;
    for (time, before, expected) in [
        (at(0) - 1, 50, Some(0)),
        (at(0), 50, Some(0)),
        (at(17) - 500, 50, Some(17)),
        (at(17), 50, Some(17)),
        (at(33), 50, Some(33)),
        (at(49), 50, Some(49)),
        (at(49) + 1, 50, None),
        (at(17), 17, None),
        (at(17), 18, Some(17)),
        (at(3), 12, Some(3)),
    ] {
        assert_eq!(
            history.offset_for_time(0, time, before).await.unwrap(),
            expected,
            "time {time}, before {before}"
        );
    }
    assert_eq!(history.offset_for_time(3, at(0), 50).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_directory_offsets_are_found_by_receive_time() {
    let dir = tempfile::tempdir().unwrap();
    offsets_are_found_by_receive_time(Target::test_dir(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_offsets_are_found_by_receive_time() {
    offsets_are_found_by_receive_time(Target::test_bucket("history-time")).await;
}

/// Times before, between and after the receive times: the first offset received at or
/// after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_between_events_find_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::test_dir(dir.path());
    archive(&target).await;
    let history = ArchiveHistory::new(target, "events");
    for (time, expected) in [
        (RECEIVED - 100 * HOUR, Some(0)),
        (received(9) + 30 * 60_000, Some(10)),
        (received(29) + 1, Some(30)),
        (received(49) + 100 * HOUR, None),
    ] {
        assert_eq!(
            history.offset_for_time(0, time, 50).await.unwrap(),
            expected,
            "time {time}"
        );
    }
}

/// A compaction that replaces files a cursor has not opened yet: the read lists the archive
/// again and goes on, every offset once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_during_a_read_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::test_dir(dir.path());
    archive(&target).await;
    let history = ArchiveHistory::new(target.clone(), "events");
    let mut records = history.read(0, 0, 50, 1).await.unwrap();
    assert_eq!(records.len(), 1);
    compact_shop(&target).await;
    let rest = read_all(&history, 0, 1, 50, 200).await;
    records.extend(rest);
    assert_eq!(
        records,
        (0..50).map(|offset| record(0, offset)).collect::<Vec<_>>()
    );
}

#[test]
fn a_files_range_ends_at_the_next_batch_after_its_last() {
    let names = [
        "events/tenant=a/date=2026-12-07/hour=04/part-0-00000000000000000000-00000000000000000025.parquet",
        "events/tenant=b/date=2026-12-07/hour=04/part-0-00000000000000000010.parquet",
        "events/tenant=b/date=2026-12-07/hour=04/part-0-00000000000000000040.parquet",
        "events/tenant=b/date=2026-12-07/hour=04/part-1-00000000000000000005.parquet",
        "events/tenant=b/date=2026-12-07/hour=04/.part-0-00000000000000000050.parquet.tmp",
        "_sluice/staged/0/3/events/tenant=b/date=2026-12-07/hour=04/part-0-00000000000000000060.parquet",
    ];
    let index = Index::from_names(names.iter().map(|name| (name.to_string(), 1)).collect());
    let spans: Vec<(u64, u64, &str)> = index
        .files(0)
        .iter()
        .map(|span| (span.first, span.end, &*span.tenant))
        .collect();
    assert_eq!(
        spans,
        [(0, 40, "a"), (10, 25, "b"), (40, u64::MAX, "b")],
        "the compacted file ends at the batch after 25, the one from 10 at 25"
    );
    assert_eq!(index.files(1).len(), 1);
    assert!(index.files(2).is_empty());
}

/// A batch archived after the cursor's listing (the log's start moved on during a long
/// replay): once the listed files are read, the next read lists the archive again (a listing
/// older than [`FRESH`]) and reads the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_archived_after_the_listing_are_read_too() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::test_dir(dir.path());
    let mut files = Vec::new();
    for bounds in BATCHES[..4].windows(2) {
        files.extend(batch(0, bounds[0], bounds[1]));
    }
    target.write_files(files).await.unwrap();
    let history = ArchiveHistory::new(target.clone(), "events");
    let mut records = history.read(0, 0, 50, 1).await.unwrap();
    target.write_files(batch(0, 40, 50)).await.unwrap();
    tokio::time::sleep(FRESH + Duration::from_millis(100)).await;
    records.extend(read_all(&history, 0, 1, 50, 1000).await);
    assert_eq!(
        records,
        (0..50).map(|offset| record(0, offset)).collect::<Vec<_>>()
    );
}
