//! The exactly-once pipelines against the real file log and the real SQLite store: results
//! after restarts, abrupt stops and takeovers equal what the events say, exactly.

use sluice_core::time::Millis;
use sluice_log::{Log, LogBackend, LogConfig, Record, TopicSpec};
use sluice_pipelines::{MetricSpec, PartitionState, PipelineSettings, Pipelines, partial_row};
use sluice_store::model::{Origin, RowQuery};
use sluice_store::{Housekeeping, SqliteStore};
use sluice_stream::agg::PartialState;
use sluice_stream::config::StreamConfig;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const METRIC: &str = "CREATE METRIC views AS SELECT properties.page AS page, COUNT(*) AS n, SUM(properties.price) AS revenue \
                      FROM events WHERE event = 'View' GROUP BY page, TUMBLE(timestamp, INTERVAL '1' MINUTE) \
                      WITH (out_of_orderness = '5s', allowed_lateness = '0s')";
const BASE: Millis = 1_714_564_800_000;

fn log_config() -> LogConfig {
    let text = include_str!("../../sluice/src/default.toml");
    let table: toml::Table = toml::from_str(text).unwrap();
    table["log"].clone().try_into().unwrap()
}

fn settings() -> PipelineSettings {
    let text = include_str!("../../sluice/src/default.toml");
    let table: toml::Table = toml::from_str(text).unwrap();
    let stream: StreamConfig = table["stream"].clone().try_into().unwrap();
    PipelineSettings {
        stream,
        checkpoint_interval: Duration::from_millis(50),
        retry_max_backoff: Duration::from_millis(200),
        erased: Default::default(),
        history: None,
    }
}

async fn open_log(dir: &Path) -> Arc<LogBackend> {
    let log = LogBackend::open(&log_config(), dir).await.unwrap();
    log.create_topic(TopicSpec {
        name: "events".into(),
        partitions: 2,
        retention_age: None,
        retention_bytes: None,
    })
    .await
    .unwrap();
    Arc::new(log)
}

/// Event `i`: page `i % 3`, price `i % 7 + 0.25`, one every 2 s, some of them `Click`s.
fn event(i: u64) -> (u32, Record) {
    let time = BASE + i as Millis * 2_000;
    let kind = if i.is_multiple_of(5) { "Click" } else { "View" };
    let json = format!(
        r#"{{"message_id":"m{i}","tenant":"shop","type":"track","event":"{kind}","anonymous_id":"a{}","timestamp":{time},"received_at":{time},"properties":{{"page":"p{}","price":{}.25}}}}"#,
        i % 11,
        i % 3,
        i % 7
    );
    ((i % 2) as u32, Record::new(None, json.into_bytes(), time))
}

async fn append(log: &LogBackend, range: std::ops::Range<u64>) {
    let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
    for i in range {
        let (partition, record) = event(i);
        by_partition.entry(partition).or_default().push(record);
    }
    for (partition, records) in by_partition {
        log.append("events", partition, records).await.unwrap();
    }
}

/// What the events say: per (page, minute) the count and the revenue in cents.
fn expected(range: std::ops::Range<u64>) -> BTreeMap<(String, Millis), (u64, i64)> {
    expected_of(range)
}

/// [`expected`] of any events.
fn expected_of(events: impl Iterator<Item = u64>) -> BTreeMap<(String, Millis), (u64, i64)> {
    let mut out = BTreeMap::new();
    for i in events.filter(|i| !i.is_multiple_of(5)) {
        let time = BASE + i as Millis * 2_000;
        let entry = out
            .entry((format!("p{}", i % 3), time - time.rem_euclid(60_000)))
            .or_insert((0, 0));
        entry.0 += 1;
        entry.1 += (i % 7) as i64 * 100 + 25;
    }
    out
}

/// Every stored row of the metric's generation `generation`, final and open.
async fn every_row(
    pipelines: &Pipelines<LogBackend>,
    generation: u32,
) -> Vec<sluice_store::StoredRow> {
    let query = RowQuery {
        metric: "views".into(),
        generation,
        tenant: "shop".into(),
        from: Millis::MIN,
        to: Millis::MAX,
    };
    pipelines.store().query_rows(query).await.unwrap()
}

/// The committed results, merged over partitions.
async fn stored(pipelines: &Pipelines<LogBackend>) -> BTreeMap<(String, Millis), (u64, i64)> {
    let (plan, generation) = pipelines.plan("views").unwrap();
    let rows = every_row(pipelines, generation).await;
    let mut merged: BTreeMap<(String, Millis), PartialState> = BTreeMap::new();
    for row in &rows {
        let partial = partial_row(row, &plan).unwrap();
        let page = partial.key.values()[0]
            .to_string()
            .trim_matches('"')
            .to_owned();
        match merged.entry((page, row.window_start)) {
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(partial.state);
            }
            std::collections::btree_map::Entry::Occupied(mut entry) => {
                entry.get_mut().merge(&partial.state).unwrap()
            }
        }
    }
    let kinds: Vec<_> = plan.aggregates.iter().map(|a| a.kind).collect();
    merged
        .into_iter()
        .map(|(key, state)| {
            let values = state.finalize(&kinds);
            let count: u64 = values[0].to_string().parse().unwrap();
            let cents = (values[1].to_string().parse::<f64>().unwrap() * 100.0).round() as i64;
            (key, (count, cents))
        })
        .collect()
}

/// Waits until every partition has committed up to the log's end.
async fn caught_up(pipelines: &Pipelines<LogBackend>) {
    caught_up_named(pipelines, "views").await
}

/// Waits until every partition of `name` has committed up to its source's end.
async fn caught_up_named(pipelines: &Pipelines<LogBackend>, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = pipelines.status(Some(name)).await.unwrap().pop().unwrap();
        if status.lag == 0
            && status
                .partitions
                .iter()
                .all(|p| p.state == PartitionState::Running)
        {
            pipelines.checkpoint(name).await.unwrap();
            return;
        }
        assert!(Instant::now() < deadline, "not caught up: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spec() -> Vec<MetricSpec> {
    vec![MetricSpec {
        sql: METRIC.into(),
        backfill: true,
    }]
}

/// The pipelines of [`spec`] over `log`, with the store at `store_path`.
async fn start(log: &Arc<LogBackend>, store_path: &Path) -> Pipelines<LogBackend> {
    Pipelines::start(
        Arc::clone(log),
        SqliteStore::open(store_path).unwrap(),
        settings(),
        &spec(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_exact_across_graceful_stops_and_abrupt_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store.db");
    let log = open_log(dir.path()).await;
    append(&log, 0..600).await;

    let pipelines = start(&log, &store_path).await;
    caught_up(&pipelines).await;
    assert_eq!(stored(&pipelines).await, expected(0..600));
    pipelines.stop().await;

    // An abrupt end: the runtime that runs the pipelines disappears mid-way, with appends
    // landing while it processes. Whatever it committed is consistent.
    abrupt_ends(&log, &store_path, spec);

    let pipelines = start(&log, &store_path).await;
    caught_up(&pipelines).await;
    assert_eq!(
        stored(&pipelines).await,
        expected(0..1800),
        "every event counted exactly once"
    );
    one_row_per_final_window(&pipelines).await;
    pipelines.stop().await;
}

/// Three abrupt ends after events 0..600: each round starts `specs`' pipelines, appends 400
/// more events while they run, and drops the runtime that runs them mid-way.
fn abrupt_ends(log: &Arc<LogBackend>, store_path: &Path, specs: fn() -> Vec<MetricSpec>) {
    for round in 0..3u64 {
        let (log, store_path) = (Arc::clone(log), store_path.to_owned());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let pipelines = Pipelines::start(
                    Arc::clone(&log),
                    SqliteStore::open(&store_path).unwrap(),
                    settings(),
                    &specs(),
                )
                .await
                .unwrap();
                let start = 600 + round * 400;
                for chunk in (start..start + 400).step_by(50) {
                    append(&log, chunk..chunk + 50).await;
                    tokio::time::sleep(Duration::from_millis(7)).await;
                }
                drop(pipelines);
            });
            runtime.shutdown_background();
        })
        .join()
        .unwrap();
    }
}

/// Every window that every partition has closed is stored once, as its final row; an open row
/// is of a window its partition still has open.
async fn one_row_per_final_window(pipelines: &Pipelines<LogBackend>) {
    let (plan, generation) = pipelines.plan("views").unwrap();
    let store = pipelines.store();
    let watermarks: BTreeMap<u32, Millis> = store
        .watermarks("views", generation)
        .await
        .unwrap()
        .into_iter()
        .map(|(partition, watermark)| (partition, watermark.unwrap()))
        .collect();
    let frontier = *watermarks.values().min().unwrap();
    let rows = every_row(pipelines, generation).await;
    let mut finals = std::collections::HashSet::new();
    for row in &rows {
        let close = row.window_end + plan.allowed_lateness;
        match row.partition {
            None => assert!(
                finals.insert((row.key.clone(), row.window_start)),
                "one final row per window"
            ),
            Some(partition) => {
                assert!(
                    close > watermarks[&partition],
                    "open rows are of open windows"
                );
                assert!(close > frontier, "a window every partition closed is final");
            }
        }
    }
    assert!(finals.len() > 100, "{} final rows", finals.len());
    assert!(
        rows.iter().any(|row| row.partition.is_some()),
        "the last windows are open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_owner_fences_the_first_and_results_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store.db");
    let log = open_log(dir.path()).await;
    append(&log, 0..300).await;
    let first = start(&log, &store_path).await;
    caught_up(&first).await;
    let second = start(&log, &store_path).await;
    append(&log, 300..500).await;
    caught_up(&second).await;

    // The first owner's next commit is refused; it stops with the reason.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = first.status(Some("views")).await.unwrap().pop().unwrap();
        if status.partitions.iter().all(|p| matches!(&p.state, PartitionState::Failed { reason, next_retry: None, .. } if reason.contains("a newer owner took over"))) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "first owner not fenced: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stored(&second).await, expected(0..500));
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_added_replayed_and_deleted_without_disturbing_others() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path()).await;
    append(&log, 0..400).await;
    let pipelines = Pipelines::start(
        Arc::clone(&log),
        SqliteStore::open(&dir.path().join("store.db")).unwrap(),
        settings(),
        &spec(),
    )
    .await
    .unwrap();
    caught_up(&pipelines).await;

    // A metric added without backfill starts at the end of the log.
    let other = "CREATE METRIC clicks AS SELECT COUNT(*) AS n FROM events WHERE event = 'Click' GROUP BY TUMBLE(timestamp, INTERVAL '1' HOUR)";
    let status = pipelines.create(other, false, Origin::Api).await.unwrap();
    assert_eq!(status.record.name, "clicks");
    assert!(
        status
            .partitions
            .iter()
            .all(|p| p.committed_offset == p.end_offset),
        "{status:?}"
    );
    append(&log, 400..500).await;
    caught_up(&pipelines).await;
    assert_eq!(
        stored(&pipelines).await,
        expected(0..500),
        "adding a metric did not disturb views"
    );

    // A replay recomputes into a new generation and switches atomically.
    pipelines.replay("views", None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pipelines.plan("views").unwrap().1 != 1 {
        assert!(Instant::now() < deadline, "replay did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    caught_up(&pipelines).await;
    assert_eq!(
        stored(&pipelines).await,
        expected(0..500),
        "a replay reproduces the same results"
    );

    pipelines.delete("clicks").await.unwrap();
    assert!(pipelines.status(Some("clicks")).await.is_err());
    assert!(
        pipelines
            .store()
            .positions("clicks@0")
            .await
            .unwrap()
            .is_empty()
    );
    append(&log, 500..600).await;
    caught_up(&pipelines).await;
    assert_eq!(
        stored(&pipelines).await,
        expected(0..600),
        "deleting a metric did not disturb views"
    );
    pipelines.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_pauses_checkpoints_with_a_clear_error_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store.db");
    let log = open_log(dir.path()).await;
    append(&log, 0..200).await;
    let store = SqliteStore::open(&store_path).unwrap();
    let pipelines = Pipelines::start(Arc::clone(&log), store.clone(), settings(), &spec())
        .await
        .unwrap();
    caught_up(&pipelines).await;

    // The store cannot grow any more: like a full disk.
    store
        .set_max_size(Some(store.size().await.unwrap()))
        .await
        .unwrap();
    // Enough windows that their final rows need pages the file does not have (closed open
    // rows free space that later rows reuse).
    append(&log, 200..20_000).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let reason = loop {
        let status = pipelines
            .status(Some("views"))
            .await
            .unwrap()
            .pop()
            .unwrap();
        if let Some(reason) = status.partitions.iter().find_map(|p| match &p.state {
            PartitionState::Retrying { reason, .. } if reason.contains("disk full") => {
                Some(reason.clone())
            }
            _ => None,
        }) {
            break reason;
        }
        assert!(Instant::now() < deadline, "no disk-full report: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        reason.contains(&store_path.display().to_string()),
        "{reason}"
    );
    assert!(reason.contains("free space"), "{reason}");
    // The log is untouched and keeps taking events meanwhile.
    append(&log, 20_000..20_100).await;

    store.set_max_size(None).await.unwrap();
    caught_up(&pipelines).await;
    assert_eq!(
        stored(&pipelines).await,
        expected(0..20_100),
        "nothing lost while the store was full"
    );
    pipelines.stop().await;
}

/// A metric's status.
async fn status_of(pipelines: &Pipelines<LogBackend>) -> sluice_pipelines::MetricStatus {
    pipelines
        .status(Some("views"))
        .await
        .unwrap()
        .pop()
        .unwrap()
}

/// Flips bytes a quarter into `segment` (inside its first batch) in place (its `.idx` stays, so nothing notices until
/// a read), returning the original bytes.
fn damage(segment: &Path) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let original = std::fs::read(segment).unwrap();
    let at = original.len() / 4;
    let flipped: Vec<u8> = original[at..at + 16].iter().map(|b| !b).collect();
    let file = std::fs::File::options().write(true).open(segment).unwrap();
    file.write_all_at(&flipped, at as u64).unwrap();
    file.sync_all().unwrap();
    original
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_sealed_segment_fails_the_replay_visibly_and_it_resumes_once_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = log_config();
    config.segment_bytes = sluice_core::config::ByteSize(4096);
    config.max_batch_bytes = sluice_core::config::ByteSize(4096);
    config.index_interval_bytes = sluice_core::config::ByteSize(1024);
    config.max_record_bytes = sluice_core::config::ByteSize(1024);
    let log = LogBackend::open(&config, dir.path()).await.unwrap();
    log.create_topic(TopicSpec {
        name: "events".into(),
        partitions: 2,
        retention_age: None,
        retention_bytes: None,
    })
    .await
    .unwrap();
    let log = Arc::new(log);
    // Small appends: each is a batch, a few to a segment.
    for chunk in (0..400).step_by(10) {
        append(&log, chunk..chunk + 10).await;
    }
    let pipelines = Pipelines::start(
        Arc::clone(&log),
        SqliteStore::open(&dir.path().join("store.db")).unwrap(),
        settings(),
        &spec(),
    )
    .await
    .unwrap();
    caught_up(&pipelines).await;

    // An early sealed segment of partition 0 is damaged behind the log's back.
    let partition_dir = dir.path().join("log/topics/events/0");
    let mut segments: Vec<_> = std::fs::read_dir(&partition_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    assert!(segments.len() > 4, "{segments:?}");
    let segment = segments[2].clone();
    let original = damage(&segment);

    // A replay reads it: its partition 0 fails with the reason, visibly, without a panic.
    pipelines.replay("views", None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let replay = loop {
        let status = status_of(&pipelines).await;
        let replay = status.replay.clone().expect("the replay runs");
        if replay.state == "failed" {
            break replay;
        }
        assert!(Instant::now() < deadline, "no failure reported: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let error = replay.error.clone().unwrap();
    assert!(
        error.contains(&segment.display().to_string()) && error.contains("sluice log repair"),
        "names the segment and the remedy: {error}"
    );
    match &replay.partitions[0].state {
        PartitionState::Failed {
            reason_class,
            next_retry: Some(_),
            ..
        } => assert_eq!(reason_class.as_str(), "log_corrupt"),
        other => panic!("partition 0 of the replay: {other:?}"),
    }
    assert!(replay.progress < 1.0, "{replay:?}");

    // It stays failed across its retries (never `running` while it cannot get past the
    // damage), and the replay does not switch generations; the current results keep counting.
    for chunk in (400..500).step_by(10) {
        append(&log, chunk..chunk + 10).await;
    }
    caught_up(&pipelines).await;
    assert_eq!(stored(&pipelines).await, expected(0..500));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = status_of(&pipelines).await;
        assert_eq!(status.state, "running", "{status:?}");
        let replay = status.replay.expect("the replay waits");
        assert_eq!(replay.state, "failed", "{replay:?}");
        match &replay.partitions[0].state {
            PartitionState::Failed { attempt, .. } if *attempt >= 3 => break,
            PartitionState::Failed { .. } => {}
            other => panic!("partition 0 of the replay: {other:?}"),
        }
        assert!(Instant::now() < deadline, "no retries: {replay:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(pipelines.plan("views").unwrap().1, 0);

    // Repaired: the next attempt gets through and the replay finishes with the exact results.
    std::fs::write(&segment, &original).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pipelines.plan("views").unwrap().1 != 1 {
        assert!(
            Instant::now() < deadline,
            "replay did not finish: {:?}",
            status_of(&pipelines).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    caught_up(&pipelines).await;
    assert_eq!(stored(&pipelines).await, expected(0..500));
    pipelines.stop().await;
}

/// Each partition's end offset.
async fn ends(log: &LogBackend) -> Vec<u64> {
    log.describe(Some("events")).await.unwrap()[0]
        .partitions
        .iter()
        .map(|p| p.end_offset)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_reuse_offsets_a_log_repair_cut_are_all_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store.db");
    let log = open_log(dir.path()).await;
    for chunk in (0..600).step_by(20) {
        append(&log, chunk..chunk + 20).await;
    }
    let pipelines = start(&log, &store_path).await;
    caught_up(&pipelines).await;
    pipelines.stop().await;
    drop(pipelines);
    let before = ends(&log).await;
    Arc::try_unwrap(log).unwrap().close().await.unwrap();

    // A torn tail, as a power loss can leave one with `ack = "write"`: partition 0's active
    // segment loses its last third. Recovery cuts back to the last whole batch and starts a
    // new epoch there.
    let partition_dir = dir.path().join("log/topics/events/0");
    let segment = partition_dir.join(format!("{:020}.log", 0));
    let _ = std::fs::remove_file(segment.with_extension("idx"));
    let file = std::fs::File::options().write(true).open(&segment).unwrap();
    file.set_len(file.metadata().unwrap().len() * 2 / 3)
        .unwrap();
    drop(file);
    let log = open_log(dir.path()).await;
    let cut = ends(&log).await;
    assert!(
        cut[0] < before[0] && cut[1] == before[1],
        "{before:?} {cut:?}"
    );
    let epochs = log.epochs("events", 0).await.unwrap();
    assert_eq!(epochs.last().unwrap().start_offset, cut[0], "{epochs:?}");

    // New events take the offsets that were cut off, and more.
    for chunk in (1000..1400).step_by(20) {
        append(&log, chunk..chunk + 20).await;
    }
    let mut want = expected(0..600);
    want.extend(expected(1000..1400));
    for restart in 0..2 {
        let pipelines = start(&log, &store_path).await;
        caught_up(&pipelines).await;
        assert_eq!(
            stored(&pipelines).await,
            want,
            "every new event counted exactly once, the events counted before the cut still counted (start {restart})"
        );
        let status = status_of(&pipelines).await;
        let lost: Vec<u64> = status.partitions.iter().map(|p| p.lost_offsets).collect();
        assert_eq!(lost, [before[0] - cut[0], 0], "{status:?}");
        assert_eq!(status.lost_offsets, before[0] - cut[0]);
        pipelines.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_beyond_a_log_that_lost_whole_batches_is_rewound_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store.db");
    let segment = dir
        .path()
        .join(format!("log/topics/events/0/{:020}.log", 0));
    let log = open_log(dir.path()).await;
    append(&log, 0..300).await;
    Arc::try_unwrap(log).unwrap().close().await.unwrap();
    let boundary = std::fs::metadata(&segment).unwrap().len();
    let log = open_log(dir.path()).await;
    let kept = ends(&log).await;
    for chunk in (300..600).step_by(20) {
        append(&log, chunk..chunk + 20).await;
    }
    let pipelines = start(&log, &store_path).await;
    caught_up(&pipelines).await;
    pipelines.stop().await;
    drop(pipelines);
    let before = ends(&log).await;
    Arc::try_unwrap(log).unwrap().close().await.unwrap();

    // Partition 0 loses whole batches, as a power loss can leave it (the page cache never
    // reached the disk): the file ends at a batch boundary, with nothing for recovery to cut.
    let _ = std::fs::remove_file(segment.with_extension("idx"));
    let file = std::fs::File::options().write(true).open(&segment).unwrap();
    file.set_len(boundary).unwrap();
    drop(file);
    let log = open_log(dir.path()).await;
    assert_eq!(ends(&log).await, [kept[0], before[1]]);

    // The pipelines start before anything new is appended (as `serve` starts them before its
    // collector); the new events then take the lost offsets, and more. All are counted.
    let pipelines = start(&log, &store_path).await;
    for chunk in (1000..1400).step_by(20) {
        append(&log, chunk..chunk + 20).await;
    }
    caught_up(&pipelines).await;
    let mut want = expected(0..600);
    want.extend(expected(1000..1400));
    assert_eq!(stored(&pipelines).await, want);
    assert_eq!(
        status_of(&pipelines).await.lost_offsets,
        before[0] - kept[0]
    );
    pipelines.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_retention_removed_before_they_were_processed_are_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store.db");
    let mut config = log_config();
    config.segment_bytes = sluice_core::config::ByteSize(16 * 1024);
    config.max_batch_bytes = sluice_core::config::ByteSize(16 * 1024);
    config.max_record_bytes = sluice_core::config::ByteSize(4 * 1024);
    let log = Arc::new(LogBackend::open(&config, dir.path()).await.unwrap());
    log.create_topic(TopicSpec {
        name: "events".into(),
        partitions: 2,
        retention_age: None,
        retention_bytes: Some(64 * 1024),
    })
    .await
    .unwrap();
    for chunk in (0..300).step_by(20) {
        append(&log, chunk..chunk + 20).await;
    }
    let pipelines = start(&log, &store_path).await;
    caught_up(&pipelines).await;
    pipelines.stop().await;
    drop(pipelines);

    // While the pipelines are stopped, many more events arrive and retention removes the
    // oldest segments, with records the pipelines never processed. Event `i` is offset `i / 2`
    // of partition `i % 2`.
    for chunk in (300..3000).step_by(20) {
        append(&log, chunk..chunk + 20).await;
    }
    assert!(log.enforce_retention().await.unwrap() > 0);
    let starts: Vec<u64> = log.describe(Some("events")).await.unwrap()[0]
        .partitions
        .iter()
        .map(|p| p.start_offset)
        .collect();
    assert!(starts.iter().all(|&start| start > 150), "{starts:?}");

    // They resume at the log's start instead of failing on the removed offsets for ever, count
    // everything the log still holds exactly once, and report what they could not count.
    let pipelines = start(&log, &store_path).await;
    caught_up(&pipelines).await;
    let mut want = expected(0..300);
    let kept = (300..3000).filter(|&i| i / 2 >= starts[(i % 2) as usize]);
    for (key, (count, cents)) in expected_of(kept) {
        let entry = want.entry(key).or_insert((0, 0));
        entry.0 += count;
        entry.1 += cents;
    }
    assert_eq!(stored(&pipelines).await, want);
    let status = status_of(&pipelines).await;
    let lost: Vec<u64> = status.partitions.iter().map(|p| p.lost_offsets).collect();
    assert_eq!(lost, [starts[0] - 150, starts[1] - 150], "{status:?}");
    pipelines.stop().await;
}

/// A derived stream of the views, and metric `views` computed from it instead of the events.
fn stream_specs() -> Vec<MetricSpec> {
    vec![
        MetricSpec {
            sql: "CREATE METRIC views AS SELECT properties.page AS page, COUNT(*) AS n, SUM(properties.price) AS revenue \
                  FROM viewed GROUP BY page, TUMBLE(timestamp, INTERVAL '1' MINUTE) \
                  WITH (out_of_orderness = '5s', allowed_lateness = '0s')"
                .into(),
            backfill: true,
        },
        MetricSpec {
            sql: "CREATE STREAM viewed AS SELECT properties.page AS page, properties.price, \
                  upper(properties.page) AS shout FROM events WHERE event = 'View'"
                .into(),
            backfill: true,
        },
        // A stream of a stream: it reads `viewed`'s committed records and writes its own.
        MetricSpec {
            sql: "CREATE STREAM pricey AS SELECT page, price FROM viewed WHERE price > 5".into(),
            backfill: true,
        },
    ]
}

/// Every record of one partition of `stream`, and whether a committed range covers it.
async fn partition_records(
    log: &LogBackend,
    pipelines: &Pipelines<LogBackend>,
    stream: &str,
    partition: u32,
) -> Vec<(sluice_log::StoredRecord, bool)> {
    let ranges = pipelines
        .store()
        .stream_ranges(stream, partition, 0, 1_000)
        .await
        .unwrap();
    let options = sluice_log::ReadOptions {
        max_bytes: 64 << 20,
        max_wait: Duration::ZERO,
    };
    let batch = log.read(stream, partition, 0, options).await.unwrap();
    batch
        .records
        .into_iter()
        .map(|stored| {
            let committed = ranges
                .iter()
                .any(|&(start, end)| (start..end).contains(&stored.offset));
            (stored, committed)
        })
        .collect()
}

/// The records of `stream` a reader may read (inside the committed ranges), by origin, and
/// how many records of the topic are outside them.
async fn committed_records(
    log: &LogBackend,
    pipelines: &Pipelines<LogBackend>,
    stream: &str,
) -> (BTreeMap<String, serde_json::Value>, usize) {
    let mut by_origin = BTreeMap::new();
    let mut outside = 0;
    for partition in 0..2u32 {
        for (stored, committed) in partition_records(log, pipelines, stream, partition).await {
            if !committed {
                outside += 1;
                continue;
            }
            let origin = stored
                .record
                .headers
                .iter()
                .find(|header| header.key == "sluice-origin")
                .map(|header| String::from_utf8(header.value.to_vec()).unwrap())
                .expect("every derived record names its origin");
            let value: serde_json::Value = serde_json::from_slice(&stored.record.value).unwrap();
            assert!(
                by_origin.insert(origin.clone(), value).is_none(),
                "{origin} committed twice"
            );
        }
    }
    (by_origin, outside)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_derived_stream_routes_each_event_once_across_abrupt_ends_and_metrics_read_it_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store.db");
    let log = open_log(dir.path()).await;
    append(&log, 0..600).await;
    let start_streams = |log: &Arc<LogBackend>, store_path: &Path| {
        let (log, store_path) = (Arc::clone(log), store_path.to_owned());
        async move {
            Pipelines::start(
                log,
                SqliteStore::open(&store_path).unwrap(),
                settings(),
                &stream_specs(),
            )
            .await
            .unwrap()
        }
    };

    // The stream alone first: a metric added to the config later reads the stream the store
    // already defines.
    let alone = Pipelines::start(
        Arc::clone(&log),
        SqliteStore::open(&store_path).unwrap(),
        settings(),
        &stream_specs()[1..],
    )
    .await
    .unwrap();
    caught_up_named(&alone, "viewed").await;
    alone.stop().await;

    let pipelines = start_streams(&log, &store_path).await;
    caught_up_named(&pipelines, "viewed").await;
    caught_up(&pipelines).await;
    assert_eq!(stored(&pipelines).await, expected(0..600));
    pipelines.stop().await;

    // A writer that appended and died before committing: records no range covers.
    let orphans = (0..7)
        .map(|i| {
            Record::new(
                None,
                format!(
                    r#"{{"tenant":"shop","timestamp":{BASE},"properties":{{"page":"orphan{i}","price":99}}}}"#
                ),
                BASE,
            )
        })
        .collect();
    log.append("viewed", 0, orphans).await.unwrap();

    // Abrupt ends, with appends landing while both pipelines run.
    abrupt_ends(&log, &store_path, stream_specs);

    let pipelines = start_streams(&log, &store_path).await;
    caught_up_named(&pipelines, "viewed").await;
    caught_up(&pipelines).await;
    assert_eq!(
        stored(&pipelines).await,
        expected(0..1800),
        "every view counted exactly once through the stream"
    );
    caught_up_named(&pipelines, "pricey").await;
    let (records, outside) = committed_records(&log, &pipelines, "viewed").await;
    assert!(
        outside >= 7,
        "the orphans stay outside the committed ranges ({outside})"
    );
    let views: Vec<u64> = (0..1800u64).filter(|i| !i.is_multiple_of(5)).collect();
    assert_eq!(records.len(), views.len(), "one committed record per view");
    for i in views {
        let time = BASE + i as Millis * 2_000;
        let offset = {
            // Events of a partition are appended in order: i's offset is its rank there.
            i / 2
        };
        let origin = format!("events/{}/{offset}", i % 2);
        let page = format!("p{}", i % 3);
        assert_eq!(
            records.get(&origin),
            Some(&serde_json::json!({
                "tenant": "shop", "timestamp": time, "message_id": format!("m{i}"),
                "type": "track", "event": "View", "anonymous_id": format!("a{}", i % 11),
                "received_at": time,
                "properties": {"page": page, "price": format!("{}.25", i % 7).parse::<serde_json::Number>().unwrap(), "shout": page.to_uppercase()},
            })),
            "{origin}"
        );
    }

    // The stream of the stream: one record per committed view above 5, naming the view's
    // record as its origin, whatever the abrupt ends did to either writer.
    let (pricey, _) = committed_records(&log, &pipelines, "pricey").await;
    let by_view: BTreeMap<String, serde_json::Value> = pricey
        .iter()
        .map(|(origin, record)| {
            let view = origin
                .strip_prefix("viewed/")
                .unwrap_or_else(|| panic!("{origin} is of viewed"));
            (view.to_owned(), record["properties"].clone())
        })
        .collect();
    let mut expected_pricey = 0;
    for partition in 0..2u32 {
        for (stored, committed) in partition_records(&log, &pipelines, "viewed", partition).await {
            let value: serde_json::Value = serde_json::from_slice(&stored.record.value).unwrap();
            let price = value["properties"]["price"].as_f64().unwrap_or_default();
            if !committed || price <= 5.0 {
                continue;
            }
            expected_pricey += 1;
            let key = format!("{partition}/{}", stored.offset);
            assert_eq!(
                by_view.get(&key),
                Some(
                    &serde_json::json!({"page": value["properties"]["page"], "price": value["properties"]["price"]})
                ),
                "{key}"
            );
        }
    }
    assert!(expected_pricey > 300, "{expected_pricey} views above 5");
    assert_eq!(pricey.len(), expected_pricey, "no more, no less");

    // The stream cannot go while a metric reads it, nor be replayed.
    let error = pipelines.delete("viewed").await.unwrap_err().to_string();
    assert!(error.contains("read by pricey, views"), "{error}");
    let error = pipelines
        .replay("viewed", None)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("is not replayed"), "{error}");
    let error = pipelines
        .create(
            "CREATE METRIC n AS SELECT COUNT(*) AS n FROM nothing GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            false,
            Origin::Api,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("not a derived stream"), "{error}");
    pipelines.stop().await;
}
