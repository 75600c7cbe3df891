use super::*;
use crate::publish::Owner;
use arrow_array::Array;
use arrow_array::cast::AsArray;
use sluice_core::config::{ByteSize, HumanDuration};
use sluice_log::{LogBackend, LogConfig, Record, TopicSpec};
use sluice_store::SqliteStore;
use std::path::Path;

const HOUR_MS: Millis = 3_600_000;
const BASE: Millis = 1_796_648_400_000; // 2026-12-07T13:00:00Z

fn event(i: u64, tenant: &str, time: Millis) -> String {
    format!(
        r#"{{"message_id":"m{i}","tenant":"{tenant}","type":"track","event":"View","anonymous_id":"a{i}","timestamp":{time},"received_at":{time},"properties":{{"n":{i}}}}}"#
    )
}

async fn open_log(dir: &Path) -> Arc<LogBackend> {
    open_log_with(dir, None).await
}

/// A log of one partition; with `retention_bytes`, of 4 KiB segments.
async fn open_log_with(dir: &Path, retention_bytes: Option<u64>) -> Arc<LogBackend> {
    let table: toml::Table =
        toml::from_str(include_str!("../../../sluice/src/default.toml")).unwrap();
    let mut config: LogConfig = table["log"].clone().try_into().unwrap();
    if retention_bytes.is_some() {
        config.segment_bytes = ByteSize(4096);
        config.max_batch_bytes = ByteSize(4096);
        config.max_record_bytes = ByteSize(1024);
    }
    let log = LogBackend::open(&config, dir).await.unwrap();
    log.create_topic(TopicSpec {
        name: "events".into(),
        partitions: 1,
        retention_age: None,
        retention_bytes,
    })
    .await
    .unwrap();
    Arc::new(log)
}

/// Every (log offset, file) in the archive.
async fn archived_offsets(target: &Target) -> Vec<(u64, String)> {
    let mut found = Vec::new();
    for (name, batch) in target.read_batches("events").await {
        let offsets = batch.column_by_name("log_offset").unwrap();
        let offsets = offsets
            .as_any()
            .downcast_ref::<arrow_array::Int64Array>()
            .unwrap();
        found.extend(
            offsets
                .values()
                .iter()
                .map(|offset| (*offset as u64, name.clone())),
        );
    }
    found.sort();
    found
}

/// Runs the archivers over `log` into `target` until partition 0's committed position is
/// `end`, stops them, and returns that position.
async fn archive_until(
    log: &Arc<LogBackend>,
    store: &StoreBackend,
    target: &Target,
    end: u64,
) -> sluice_store::Position {
    archive_until_erased(log, store, target, end, Arc::default()).await
}

/// [`archive_until`], skipping the events of `erased` ids.
async fn archive_until_erased(
    log: &Arc<LogBackend>,
    store: &StoreBackend,
    target: &Target,
    end: u64,
    erased: Arc<ErasedUsers>,
) -> sluice_store::Position {
    let archive = start(log, store, target, erased, Partitions::All).await;
    let position = caught_up(store, end).await;
    archive.stop().await;
    position
}

/// The archive of `archived` over `log` into `target`, on every partition.
async fn start_with(
    log: &Arc<LogBackend>,
    store: &StoreBackend,
    target: &Target,
    archived: Archived,
) -> Archive {
    start_of(
        log,
        store,
        target,
        archived,
        Arc::default(),
        Partitions::All,
    )
    .await
}

/// The archive of the tests (1 MiB, 1 s batches) over `log`'s events into `target`.
async fn start(
    log: &Arc<LogBackend>,
    store: &StoreBackend,
    target: &Target,
    erased: Arc<ErasedUsers>,
    partitions: Partitions,
) -> Archive {
    let archived = Archived::events("events");
    start_of(log, store, target, archived, erased, partitions).await
}

/// The archive of the tests (1 MiB, 1 s batches) of `archived` over `log` into `target`.
async fn start_of(
    log: &Arc<LogBackend>,
    store: &StoreBackend,
    target: &Target,
    archived: Archived,
    erased: Arc<ErasedUsers>,
    partitions: Partitions,
) -> Archive {
    let config = ArchiveConfig {
        enabled: true,
        url: String::new(),
        roll_bytes: ByteSize(1 << 20),
        roll_age: HumanDuration(Duration::from_secs(1)),
        retention: HumanDuration(Duration::ZERO),
        tenant_retention: Default::default(),
        columns: Vec::new(),
        streams: Vec::new(),
    };
    Archive::start_on(
        Arc::clone(log),
        store.clone(),
        archived,
        target.clone(),
        &config,
        erased,
        partitions,
    )
    .await
    .unwrap()
}

/// Waits until partition 0's committed position is `end`; returns it.
async fn caught_up(store: &StoreBackend, end: u64) -> sluice_store::Position {
    caught_up_in(store, PIPELINE, end).await
}

/// [`caught_up`] of the store pipeline `pipeline`.
async fn caught_up_in(store: &StoreBackend, pipeline: &str, end: u64) -> sluice_store::Position {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let positions = store.positions(pipeline).await.unwrap();
        if let Some((_, position)) = positions.first().filter(|(_, at)| at.offset == end) {
            return *position;
        }
        assert!(
            Instant::now() < deadline,
            "the archive did not catch up: {positions:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A crash between staging a batch's files and committing it leaves files the archive must
/// not keep: here a batch cut differently from the one the restart reads (it held an event of
/// another tenant and hour, as a batch read up to another offset would). Readers never see
/// them; the restart deletes them, archives from the committed position, and each event ends
/// up in one file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncommitted_batch_is_discarded_and_its_events_archived_once() {
    let dir = tempfile::tempdir().unwrap();
    an_uncommitted_batch_is_discarded(dir.path(), Target::test_dir(dir.path())).await;
}

/// The same on S3: the files of the uncommitted batch are objects, deleted the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_an_uncommitted_batch_is_discarded_and_its_events_archived_once() {
    let dir = tempfile::tempdir().unwrap();
    an_uncommitted_batch_is_discarded(dir.path(), Target::test_bucket("uncommitted")).await;
}

/// Ten events of shop (offsets 0..10), and what an owner of partition 0 staged of them plus a
/// ghost event of another tenant and hour at offset 10; returns the claim and the file names.
async fn stage_a_crashed_batch(
    log: &LogBackend,
    store: &StoreBackend,
    target: &Target,
) -> (Owner, Vec<String>) {
    let records: Vec<Record> = (0..10)
        .map(|i| Record::new(None, event(i, "shop", BASE + i as Millis * 60_000), BASE))
        .collect();
    log.append("events", 0, records).await.unwrap();
    let position = store.claim(PIPELINE, 0, 0, 0).await.unwrap();
    assert_eq!(position.offset, 0);
    let owner = Owner {
        store: store.clone(),
        pipeline: crate::sink::PIPELINE.into(),
        partition: 0,
        epoch: position.epoch,
    };
    let mut crashed = Batch::new(0, Hints::new());
    for i in 0..10 {
        let json = event(i, "shop", BASE + i as Millis * 60_000);
        let parsed = EventScan::default().fields(json.as_bytes()).unwrap();
        crashed.push(0, i, &parsed, json.len(), &Promotions::new(&[]));
    }
    let ghost = event(99, "ghost", BASE + 5 * HOUR_MS);
    crashed.push(
        0,
        10,
        &EventScan::default().fields(ghost.as_bytes()).unwrap(),
        ghost.len(),
        &Promotions::new(&[]),
    );
    crashed.end = 11;
    let files = batch_files(0, crashed);
    let names = files.iter().map(|(name, _)| name.clone()).collect();
    let staged = files
        .into_iter()
        .map(|(name, rows)| (owner.staged(&name), rows))
        .collect();
    target.write_files(staged).await.unwrap();
    (owner, names)
}

async fn an_uncommitted_batch_is_discarded(dir: &Path, target: Target) {
    let log = open_log(&dir.join("log")).await;
    let store = StoreBackend::from(SqliteStore::open(&dir.join("store.db")).unwrap());
    stage_a_crashed_batch(&log, &store, &target).await;
    assert!(
        archived_offsets(&target).await.is_empty(),
        "readers see nothing staged"
    );
    assert_eq!(
        target
            .list("_sluice/staged/", ".parquet")
            .await
            .unwrap()
            .len(),
        2
    );

    archive_until(&log, &store, &target, 10).await;

    // The ghost's file is gone: every file left is the shop's.
    let found = archived_offsets(&target).await;
    let offsets: Vec<u64> = found.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets, (0..10).collect::<Vec<_>>(), "{found:?}");
    assert!(
        found
            .iter()
            .all(|(_, file)| file.starts_with("events/tenant=shop/date=2026-12-07/hour=13/")),
        "{found:?}"
    );
    assert!(
        target.list("_sluice/", "").await.unwrap().is_empty(),
        "nothing is left staged"
    );
}

/// A crash between a batch's commit and its publish: its events are committed but not
/// visible. The next owner publishes them, once, and archives on from the position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_batch_a_crash_left_unpublished_is_published_by_the_next_owner() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::test_dir(dir.path());
    let log = open_log(&dir.path().join("log")).await;
    let store = StoreBackend::from(SqliteStore::open(&dir.path().join("store.db")).unwrap());
    let (owner, names) = stage_a_crashed_batch(&log, &store, &target).await;
    let note = crate::publish::Note {
        epoch: owner.epoch,
        files: names,
        delete: Vec::new(),
    };
    let commit = sluice_store::Commit {
        offset: 11,
        event_time: None,
        log_epoch: 0,
        metrics: Vec::new(),
        output: Vec::new(),
        note: Some(serde_json::to_vec(&note).unwrap()),
    };
    store
        .commit(PIPELINE, 0, owner.epoch, Arc::new(commit))
        .await
        .unwrap();
    // One file moved before the crash.
    target
        .move_file(&owner.staged(&note.files[0]), &note.files[0])
        .await
        .unwrap();
    // Offset 10 is the batch's last (its ghost); the archive goes on from 11.
    let more: Vec<Record> = (10..15)
        .map(|i| Record::new(None, event(i, "shop", BASE), BASE))
        .collect();
    log.append("events", 0, more).await.unwrap();

    archive_until(&log, &store, &target, 15).await;

    let offsets: Vec<u64> = archived_offsets(&target)
        .await
        .into_iter()
        .map(|(offset, _)| offset)
        .collect();
    assert_eq!(
        offsets,
        (0..15).collect::<Vec<_>>(),
        "the committed batch once, and the rest"
    );
    assert!(target.list("_sluice/", "").await.unwrap().is_empty());
}

/// Two nodes sharing the store and the archive. An archiver fenced out by another node's
/// claim (here the claim is made directly) stages its batch but never shows it. Then the
/// group moves partition 0 between the nodes, and for a while both believe they own it: the
/// one fenced out stops, and a node that still owns the partition starts its archiver again.
/// Every event is archived once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_share_a_partition_archive_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::test_dir(&dir.path().join("archive"));
    let log = open_log(&dir.path().join("log")).await;
    let store = StoreBackend::from(SqliteStore::open(&dir.path().join("store.db")).unwrap());
    // Each hundred events of another hour.
    let append = |from: u64, to: u64| {
        let records: Vec<Record> = (from..to)
            .map(|i| {
                let time = BASE + (i / 100) as Millis * HOUR_MS + i as Millis;
                Record::new(None, event(i, "shop", time), BASE)
            })
            .collect();
        let log = Arc::clone(&log);
        async move { log.append("events", 0, records).await.unwrap() }
    };
    let offsets = || async {
        let found = archived_offsets(&target).await;
        found
            .into_iter()
            .map(|(offset, _)| offset)
            .collect::<Vec<u64>>()
    };
    let (first_owns, first_owned) = watch::channel(BTreeSet::new());
    let (second_owns, second_owned) = watch::channel(BTreeSet::new());
    let first = start(
        &log,
        &store,
        &target,
        Arc::default(),
        Partitions::Owned(first_owned),
    )
    .await;
    let second = start(
        &log,
        &store,
        &target,
        Arc::default(),
        Partitions::Owned(second_owned),
    )
    .await;
    append(0, 100).await;
    first_owns.send_replace(BTreeSet::from([0]));
    caught_up(&store, 100).await;

    // Another node claims the partition; the first stages its next batch, is fenced out at
    // its commit, and shows nothing.
    let claimed = store.claim(PIPELINE, 0, 0, 0).await.unwrap();
    append(100, 200).await;
    let fenced_staging = crate::publish::staging(0, claimed.epoch - 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while target
        .list(&fenced_staging, ".parquet")
        .await
        .unwrap()
        .is_empty()
        && offsets().await.len() == 100
    {
        assert!(
            Instant::now() < deadline,
            "the first archiver staged nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(offsets().await, (0..100).collect::<Vec<_>>());

    // The group gives the partition to the second node.
    first_owns.send_replace(BTreeSet::new());
    second_owns.send_replace(BTreeSet::from([0]));
    caught_up(&store, 200).await;
    assert!(
        target.list("_sluice/", "").await.unwrap().is_empty(),
        "the second's claim deleted what the first staged"
    );

    // Both own it for a while: each claim fences the other out, which starts again.
    first_owns.send_replace(BTreeSet::from([0]));
    for chunk in 2..6 {
        append(chunk * 100, chunk * 100 + 100).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    caught_up(&store, 600).await;
    first_owns.send_replace(BTreeSet::new());
    append(600, 700).await;
    caught_up(&store, 700).await;
    first.stop().await;
    second.stop().await;

    assert_eq!(offsets().await, (0..700).collect::<Vec<_>>());
}

/// Retention that removed events before they were archived: the archiver goes on from the
/// log's first offset, its position moves past the gap (counted as lost), and every event
/// still in the log is archived once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_retention_removed_before_archiving_are_skipped_and_counted_as_lost() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log_with(&dir.path().join("log"), Some(8192)).await;
    let store = StoreBackend::from(SqliteStore::open(&dir.path().join("store.db")).unwrap());
    // The archiver was here before: its position is 0.
    store.claim(PIPELINE, 0, 0, 0).await.unwrap();
    for i in 0..200 {
        let record = Record::new(None, event(i, "shop", BASE + i as Millis), BASE);
        log.append("events", 0, vec![record]).await.unwrap();
    }
    log.enforce_retention().await.unwrap();
    let partition = &log.describe(Some("events")).await.unwrap()[0].partitions[0];
    let (first, end) = (partition.start_offset, partition.end_offset);
    assert!(
        first > 0 && end == 200,
        "retention removed the start: {first}..{end}"
    );

    let target = Target::test_dir(dir.path());
    let position = archive_until(&log, &store, &target, end).await;
    assert_eq!(position.lost_offsets, first);
    let offsets: Vec<u64> = archived_offsets(&target)
        .await
        .into_iter()
        .map(|(offset, _)| offset)
        .collect();
    assert_eq!(offsets, (first..end).collect::<Vec<_>>());
}

/// A record of the events topic that is not an event, or whose tenant is no tenant name (it
/// would name a directory outside the tenant's), or an event of an erased id, is skipped; the
/// position passes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_are_not_events_of_a_valid_tenant_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    not_events_are_skipped(dir.path(), Target::test_dir(dir.path())).await;
    assert!(!dir.path().join("escape").exists());
}

/// The same on S3, where a tenant name is a key prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_records_that_are_not_events_of_a_valid_tenant_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    not_events_are_skipped(dir.path(), Target::test_bucket("skipped")).await;
}

async fn not_events_are_skipped(dir: &Path, target: Target) {
    let log = open_log(&dir.join("log")).await;
    let store = StoreBackend::from(SqliteStore::open(&dir.join("store.db")).unwrap());
    let records = vec![
        Record::new(None, event(0, "shop", BASE), BASE),
        Record::new(None, event(1, "../escape", BASE), BASE),
        Record::new(None, "not json", BASE),
        Record::new(None, event(3, "shop", BASE), BASE),
        // Erased ids (the anonymous id a4 in shop, the user id u5): not archived; a6 is
        // erased in another tenant only.
        Record::new(None, event(4, "shop", BASE), BASE),
        Record::new(
            None,
            event(5, "shop", BASE).replace(r#""type""#, r#""user_id":"u5","type""#),
            BASE,
        ),
        Record::new(None, event(6, "shop", BASE), BASE),
    ];
    log.append("events", 0, records).await.unwrap();
    let erased = Arc::new(ErasedUsers::default());
    erased.insert("shop", "a4");
    erased.insert("shop", "u5");
    erased.insert("blog", "a6");
    archive_until_erased(&log, &store, &target, 7, erased).await;
    let found = archived_offsets(&target).await;
    let offsets: Vec<u64> = found.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets, [0, 3, 6]);
    assert!(
        found
            .iter()
            .all(|(_, name)| name.starts_with("events/tenant=shop/")),
        "only tenant=shop: {found:?}"
    );
}

/// A file larger than the multipart threshold is uploaded in parts, is published by a
/// server-side copy, and reads back whole. (The test server takes parts of 1 KiB; S3's least
/// is 5 MiB.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_a_large_file_is_uploaded_in_parts_and_reads_back_whole() {
    let part = 4096;
    let target = Target::test_bucket("multipart").with_multipart_bytes(1024, part);
    let mut batch = Batch::new(0, Hints::new());
    for i in 0..3000 {
        let json = event(i, "shop", BASE + i as Millis);
        batch.push(
            0,
            i,
            &EventScan::default().fields(json.as_bytes()).unwrap(),
            json.len(),
            &Promotions::new(&[]),
        );
    }
    batch.end = 3000;
    let files = batch_files(0, batch);
    let name = files[0].0.clone();
    let staged = format!("{}{name}", crate::publish::staging(0, 1));
    let bytes = target
        .write_files(
            files
                .into_iter()
                .map(|(_, rows)| (staged.clone(), rows))
                .collect(),
        )
        .await
        .unwrap();
    assert!(
        bytes > 3 * part as u64,
        "{bytes} bytes: more than three parts"
    );
    assert!(archived_offsets(&target).await.is_empty());
    assert!(target.move_file(&staged, &name).await.unwrap());
    assert!(
        !target.move_file(&staged, &name).await.unwrap(),
        "moved already"
    );
    let found = archived_offsets(&target).await;
    assert_eq!(
        found.iter().map(|(offset, _)| *offset).collect::<Vec<_>>(),
        (0..3000).collect::<Vec<_>>()
    );
    assert!(!target.exists(&staged).await.unwrap());
    assert!(target.remove(&name).await.unwrap());
    assert!(!target.remove(&name).await.unwrap());
    assert!(archived_offsets(&target).await.is_empty());
}

/// On a server that checks signatures: the right key passes the start's check; a missing
/// bucket or a wrong secret stops the start with what to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_a_missing_bucket_or_wrong_secret_is_a_clear_error_at_the_start() {
    let bucket = std::env::var("SLUICE_TEST_S3_BUCKET").unwrap_or_default();
    let right = Target::test_s3(true, &bucket, "access", None).unwrap();
    right.check_writable().await.unwrap();
    for (target, says) in [
        (
            Target::test_s3(true, "no-such-bucket", "access", None),
            "NoSuchBucket",
        ),
        (
            Target::test_s3(true, &bucket, "access", Some("not-the-secret")),
            "SignatureDoesNotMatch",
        ),
    ] {
        let error = target.unwrap().check_writable().await.unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(error, ArchiveError::S3Access { .. })
                && message.contains(says)
                && message.contains("AWS_ACCESS_KEY_ID"),
            "{message}"
        );
    }
}

/// A derived stream's committed ranges, read from the store as its readers read them.
struct StoreRanges(StoreBackend);

impl Committed for StoreRanges {
    fn ranges(&self, partition: u32, from: u64) -> sluice_stream::task::RangesFuture<'_> {
        Box::pin(async move {
            self.0
                .stream_ranges("visits", partition, from, 64)
                .await
                .map_err(|error| error.to_string())
        })
    }
}

/// A session record of visitor `i`.
fn session(i: u64) -> String {
    format!(
        r#"{{"tenant":"shop","timestamp":{},"message_id":"s{i}","type":"session","anonymous_id":"a{i}","properties":{{"duration_ms":{i}}}}}"#,
        BASE + i as Millis
    )
}

/// A derived stream's archive holds the records its writers committed and only those: the
/// orphans a crashed writer left between two ranges are skipped, the records appended but not
/// committed yet wait for their commit. Its files are under `streams/<name>/`, with its own
/// position, and sessions keep their type and have no `received_at`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_derived_stream_is_archived_from_its_committed_ranges_only() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::test_dir(&dir.path().join("archive"));
    a_derived_stream_is_archived(dir.path(), target).await;
}

/// The same on S3: the stream's archive is under a prefix of the archive's prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_a_derived_stream_is_archived_from_its_committed_ranges_only() {
    let dir = tempfile::tempdir().unwrap();
    a_derived_stream_is_archived(dir.path(), Target::test_bucket("derived")).await;
}

async fn a_derived_stream_is_archived(dir: &Path, target: Target) {
    let log = open_log(&dir.join("log")).await;
    log.create_topic(TopicSpec {
        name: "visits".into(),
        partitions: 1,
        retention_age: None,
        retention_bytes: None,
    })
    .await
    .unwrap();
    let store = StoreBackend::from(SqliteStore::open(&dir.join("store.db")).unwrap());
    let records: Vec<Record> = (0..10)
        .map(|i| Record::new(None, session(i), BASE))
        .collect();
    log.append("visits", 0, records).await.unwrap();
    // The writer committed 0..4 and 6..9; 4..6 are a crashed attempt's, 9 is not committed.
    let writer = store.claim("visits@0", 0, 0, 0).await.unwrap().epoch;
    let commit = |offset: u64, ranges: Vec<(u64, u64)>| {
        let output = ranges
            .into_iter()
            .map(|(start, end)| sluice_store::model::StreamRange {
                stream: "visits".into(),
                start,
                end,
            })
            .collect();
        Arc::new(sluice_store::Commit {
            offset,
            event_time: None,
            log_epoch: 0,
            metrics: Vec::new(),
            output,
            note: None,
        })
    };
    store
        .commit("visits@0", 0, writer, commit(1, vec![(0, 4), (6, 9)]))
        .await
        .unwrap();

    let archived = Archived::stream("visits", Arc::new(StoreRanges(store.clone())));
    let archive = start_with(&log, &store, &target, archived).await;
    let pipeline = "archive/visits";
    let stream = target.under("streams/visits/");
    let offsets = || async {
        let found = archived_offsets(&stream).await;
        found
            .into_iter()
            .map(|(offset, _)| offset)
            .collect::<Vec<u64>>()
    };
    caught_up_in(&store, pipeline, 9).await;
    assert_eq!(offsets().await, [0, 1, 2, 3, 6, 7, 8]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(offsets().await.len(), 7, "offset 9 waits for its commit");
    store
        .commit("visits@0", 0, writer, commit(2, vec![(9, 10)]))
        .await
        .unwrap();
    caught_up_in(&store, pipeline, 10).await;
    archive.stop().await;
    assert_eq!(offsets().await, [0, 1, 2, 3, 6, 7, 8, 9]);
    assert!(
        store.positions(PIPELINE).await.unwrap().is_empty(),
        "the events' position is another"
    );
    for (_, batch) in stream.read_batches("events").await {
        let kinds = batch["type"].as_string::<i32>();
        assert!(kinds.iter().all(|kind| kind == Some("session")));
        assert_eq!(batch["received_at"].null_count(), batch.num_rows());
        assert!(
            batch
                .schema()
                .field_with_name("received_at")
                .unwrap()
                .is_nullable()
        );
    }
    assert!(
        archived_offsets(&target).await.is_empty(),
        "nothing in the events' archive"
    );
}
