use super::*;
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
    let config = ArchiveConfig {
        enabled: true,
        url: String::new(),
        roll_bytes: ByteSize(1 << 20),
        roll_age: HumanDuration(Duration::from_secs(1)),
        retention: HumanDuration(Duration::ZERO),
        tenant_retention: Default::default(),
        columns: Vec::new(),
    };
    let archive = Archive::start_on(
        Arc::clone(log),
        store.clone(),
        "events",
        target.clone(),
        &config,
        erased,
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let position = loop {
        let positions = store.positions(PIPELINE).await.unwrap();
        if let Some((_, position)) = positions.first().filter(|(_, at)| at.offset == end) {
            break *position;
        }
        assert!(
            Instant::now() < deadline,
            "the archive did not catch up: {positions:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    archive.stop().await;
    position
}

/// A crash between writing a batch's files and committing it leaves files the archive must
/// not keep: here a batch cut differently from the one the restart reads (it held an event of
/// another tenant and hour, as a batch read up to another offset would). The restart deletes
/// them, archives from the committed position, and each event ends up in one file.
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

async fn an_uncommitted_batch_is_discarded(dir: &Path, target: Target) {
    let log = open_log(&dir.join("log")).await;
    let store = StoreBackend::from(SqliteStore::open(&dir.join("store.db")).unwrap());
    let records: Vec<Record> = (0..10)
        .map(|i| Record::new(None, event(i, "shop", BASE + i as Millis * 60_000), BASE))
        .collect();
    log.append("events", 0, records).await.unwrap();

    // The crashed attempt: claimed, wrote its pending record and files, never committed.
    let position = store.claim(PIPELINE, 0, 0, 0).await.unwrap();
    assert_eq!(position.offset, 0);
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
    let (pending, files) = batch_files(0, crashed);
    target.write_pending(0, &pending).await.unwrap();
    target.write_files(files).await.unwrap();
    assert_eq!(archived_offsets(&target).await.len(), 11);

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

/// A file larger than the multipart threshold is uploaded in parts and reads back whole; the
/// pending record is written, read back and removed. (The test server takes parts of 1 KiB;
/// S3's least is 5 MiB.)
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
    let (pending, files) = batch_files(0, batch);
    target.write_pending(0, &pending).await.unwrap();
    assert_eq!(target.read_pending(0).await.unwrap(), Some(pending.clone()));
    let bytes = target.write_files(files).await.unwrap();
    assert!(
        bytes > 3 * part as u64,
        "{bytes} bytes: more than three parts"
    );
    let found = archived_offsets(&target).await;
    assert_eq!(
        found.iter().map(|(offset, _)| *offset).collect::<Vec<_>>(),
        (0..3000).collect::<Vec<_>>()
    );
    target.remove_pending(0).await.unwrap();
    assert_eq!(target.read_pending(0).await.unwrap(), None);
    // Discarding deletes the objects that exist and counts them.
    assert_eq!(target.discard(&pending).await.unwrap(), 1);
    assert_eq!(target.discard(&pending).await.unwrap(), 0);
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
