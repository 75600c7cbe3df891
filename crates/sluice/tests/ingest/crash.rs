//! Crashes with the real binary. SIGKILL under load: a real server process takes `sluice bench
//! ingest` traffic plus tracked batches; it is killed at a random moment, several times; after
//! each kill the log is opened (recovering it) and every event that received a 200 must be
//! there. Dedup across a SIGKILL: retries from the whole window are duplicates, and a damaged
//! log in the window is reported without stopping the start.

use super::api::open_log;
use super::support::{BIN, Server, http_request};
use hyper::{Method, StatusCode};
use rand::Rng;
use serde_json::{Value, json};
use sluice::client::{Connection, Target, basic_auth};
use sluice_log::{Log, LogBackend, ReadOptions};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEY: &str = "wk_crash_test_0123456789";
const ADMIN: &str = "ak_crash_admin_0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_event_is_lost_when_the_server_is_killed_during_bench_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config_path = dir.path().join("sluice.toml");
    std::fs::write(
        &config_path,
        format!(
            "[log]\npartitions = 4\n\n[[tenants]]\nname = \"crash\"\nwrite-keys = [\"{KEY}\"]\n"
        ),
    )
    .unwrap();
    let config_arg = config_path.display().to_string();
    let acknowledged: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut rng = rand::rng();

    for round in 0..3 {
        let server = Server::start_in(&data, &["--config", &config_arg]);
        let url = format!("http://{}", server.addr);
        let mut bench = Command::new(BIN)
            .args([
                "bench",
                "ingest",
                "--url",
                &url,
                "--write-key",
                KEY,
                "--duration",
                "30",
                "--connections",
                "4",
                "--batch",
                "50",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let target = Target::parse(&url).unwrap();
        let senders: Vec<_> = (0..3)
            .map(|sender| {
                tokio::spawn(tracked_sender(
                    target.clone(),
                    round,
                    sender,
                    Arc::clone(&acknowledged),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(400..1500))).await;
        let output = server.signal("KILL");
        assert_eq!(output.status.code(), None, "killed by a signal");
        for sender in senders {
            sender.await.unwrap();
        }
        let _ = bench.kill();
        let _ = bench.wait();
    }

    let log = open_log(&config_path, &data).await;
    let stored = stored_ids(&log).await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 100,
        "the tracked senders got {} events acknowledged",
        acknowledged.len()
    );
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events are missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // And the recovered log takes appends again.
    let partitions = log.describe(Some("events")).await.unwrap()[0]
        .partitions
        .clone();
    let end = partitions[0].end_offset;
    let appended = log
        .append("events", 0, vec![sluice_log::Record::new(None, "{}", 0)])
        .await
        .unwrap();
    assert_eq!(appended.base_offset, end);
    log.close().await.unwrap();
}

/// Sends batches of 20 events with known ids until the server dies; records the ids of every
/// batch answered 200.
async fn tracked_sender(
    target: Target,
    round: usize,
    sender: usize,
    acknowledged: Arc<Mutex<HashSet<String>>>,
) {
    let auth = basic_auth(KEY);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let Ok(mut connection) = Connection::open(&target).await else {
        return;
    };
    for batch in 0.. {
        let ids: Vec<String> = (0..20)
            .map(|n| format!("ack-{round}-{sender}-{batch}-{n}"))
            .collect();
        let messages: Vec<Value> = ids
            .iter()
            .map(|id| json!({"type": "track", "anonymousId": id, "event": "Tracked", "messageId": id}))
            .collect();
        let body = json!({ "batch": messages }).to_string();
        match connection
            .send(Method::POST, "/v1/batch", &headers, body.into())
            .await
        {
            Ok(reply) if reply.status == StatusCode::OK => acknowledged.lock().unwrap().extend(ids),
            Ok(reply) if reply.status.is_server_error() => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Ok(reply) => panic!(
                "unexpected {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            ),
            Err(_) => return,
        }
    }
}

async fn stored_ids(log: &LogBackend) -> HashSet<String> {
    let mut ids = HashSet::new();
    let info = log.describe(Some("events")).await.unwrap();
    for partition in &info[0].partitions {
        let mut offset = partition.start_offset;
        while offset < partition.end_offset {
            let batch = log
                .read(
                    "events",
                    partition.partition,
                    offset,
                    ReadOptions {
                        max_bytes: 4 << 20,
                        max_wait: Duration::ZERO,
                    },
                )
                .await
                .unwrap();
            offset = batch.next_offset(offset);
            for record in &batch.records {
                let event: Value = serde_json::from_slice(&record.record.value).unwrap();
                ids.insert(event["message_id"].as_str().unwrap().to_owned());
            }
        }
    }
    ids
}

/// Posts a batch of tracked events with the given message ids; returns (accepted, duplicates).
fn post_batch(server: &Server, ids: &[String]) -> (u64, u64) {
    let messages: Vec<Value> = ids
        .iter()
        .map(|id| json!({"type": "track", "anonymousId": id, "event": "Tracked", "messageId": id}))
        .collect();
    let body = json!({ "batch": messages }).to_string();
    let auth = basic_auth(KEY);
    let (status, reply) = http_request(
        server.addr,
        "POST",
        "/v1/batch",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    (
        reply["accepted"].as_u64().unwrap(),
        reply["duplicates"].as_u64().unwrap(),
    )
}

/// The value of a Prometheus metric, named with its labels if it has any (`None` when it is not
/// exported yet).
fn metric(server: &Server, name: &str) -> Option<f64> {
    let bearer = format!("Bearer {ADMIN}");
    let (status, text) = http_request(
        server.addr,
        "GET",
        "/metrics",
        &[("authorization", &bearer)],
        b"",
    );
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

fn write_config(dir: &Path, body: &str) -> String {
    let path = dir.join("sluice.toml");
    std::fs::write(
        &path,
        format!(
            "admin-keys = [\"{ADMIN}\"]\n{body}\n\n[[tenants]]\nname = \"crash\"\nwrite-keys = [\"{KEY}\"]\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

async fn stored_count(data: &Path, config: &str) -> (usize, HashSet<String>) {
    let log = open_log(Path::new(config), data).await;
    let ids = stored_ids(&log).await;
    let info = log.describe(Some("events")).await.unwrap();
    let total = info[0]
        .partitions
        .iter()
        .map(|p| (p.end_offset - p.start_offset) as usize)
        .sum();
    log.close().await.unwrap();
    (total, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_from_the_whole_dedup_window_are_duplicates_after_kill_9() {
    // 4,100 acknowledged ids with a capacity of 8,192: a start-up read-back of a quarter of the
    // capacity (2,048 ids) would let half of the retries through as new events.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(
        dir.path(),
        "[log]\npartitions = 4\n\n[ingest]\ndedup-capacity = 8192\ndedup-snapshot-interval = \"1s\"",
    );
    let batches: Vec<Vec<String>> = (0..41)
        .map(|b| (0..100).map(|n| format!("window-{b}-{n}")).collect())
        .collect();
    let server = Server::start_in(&data, &["--config", &config]);
    for batch in &batches[..20] {
        assert_eq!(post_batch(&server, batch), (100, 0));
    }
    // A snapshot is written after the first half (the second half is only in the log).
    let snapshots = "sluice_ingest_dedup_snapshots_total{result=\"ok\"}";
    let seen = metric(&server, snapshots).unwrap_or(0.0);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while metric(&server, snapshots).unwrap_or(0.0) < seen + 2.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no dedup snapshot written"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for batch in &batches[20..] {
        assert_eq!(post_batch(&server, batch), (100, 0));
    }
    let output = server.signal("KILL");
    assert_eq!(output.status.code(), None, "killed by a signal");

    let server = Server::start_in(&data, &["--config", &config]);
    assert_eq!(
        metric(&server, "sluice_ingest_dedup_covered_seconds"),
        Some(600.0),
        "the whole window is covered"
    );
    assert!(metric(&server, "sluice_ingest_dedup_remembered_ids").unwrap() >= 4100.0);
    assert_eq!(
        metric(&server, "sluice_ingest_dedup_capacity_ids"),
        Some(8192.0)
    );
    for (index, batch) in batches.iter().enumerate() {
        assert_eq!(
            post_batch(&server, batch),
            (0, 100),
            "batch {index} retried after the restart"
        );
    }
    let fresh: Vec<String> = (0..100).map(|n| format!("after-{n}")).collect();
    assert_eq!(post_batch(&server, &fresh), (100, 0));
    let output = server.interrupt();
    assert_eq!(output.status.code(), Some(0));

    let (total, ids) = stored_count(&data, &config).await;
    assert_eq!((total, ids.len()), (4200, 4200), "no event is stored twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_of_records_cut_off_the_log_after_the_snapshot_are_appended_again() {
    // The dedup snapshot a clean stop writes remembers every id; then the log loses its last
    // batches (a power loss with `ack = "write"`, or a repair cutting a damaged tail). Retries
    // of the lost events must be appended again: they are in no result and no log any more.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(dir.path(), "[log]\npartitions = 1");
    let batches: Vec<Vec<String>> = (0..10)
        .map(|b| (0..100).map(|n| format!("cut-{b}-{n}")).collect())
        .collect();
    let server = Server::start_in(&data, &["--config", &config]);
    for batch in &batches {
        assert_eq!(post_batch(&server, batch), (100, 0));
    }
    assert_eq!(server.interrupt().status.code(), Some(0));

    // One batch frame per request: cut the last three off the segment, at a frame boundary.
    let segment = data.join("log/topics/events/0/00000000000000000000.log");
    let bytes = std::fs::read(&segment).unwrap();
    let frames = frames(&bytes);
    assert_eq!(frames.len(), 10, "one batch per request");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(frames[7].0 as u64)
        .unwrap();
    let _ = std::fs::remove_file(segment.with_extension("idx"));

    let server = Server::start_in(&data, &["--config", &config]);
    for (index, batch) in batches.iter().enumerate() {
        let expected = if index < 7 { (0, 100) } else { (100, 0) };
        assert_eq!(
            post_batch(&server, batch),
            expected,
            "batch {index} retried after the log lost batches 7 to 9"
        );
    }
    assert_eq!(server.interrupt().status.code(), Some(0));
    let (total, ids) = stored_count(&data, &config).await;
    assert_eq!((total, ids.len()), (1000, 1000), "every event once");
}

/// The byte range of the batch frames of a segment file (`[start, end)` of each).
fn frames(segment: &[u8]) -> Vec<(usize, usize)> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 12 <= segment.len() {
        let length = u32::from_le_bytes(segment[at + 8..at + 12].try_into().unwrap()) as usize;
        frames.push((at, at + 12 + length));
        at += 12 + length;
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_sealed_segment_in_the_dedup_window_is_reported_and_the_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Small segments; no dedup snapshot before the kill, so the start reads the window back
    // from the log, across the damage.
    let config = write_config(
        dir.path(),
        "[log]\npartitions = 1\nsegment-bytes = \"32KiB\"\nmax-batch-bytes = \"32KiB\"\nmax-record-bytes = \"16KiB\"\nindex-interval-bytes = \"1KiB\"\n\n[ingest]\ndedup-snapshot-interval = \"10m\"",
    );
    let batches: Vec<Vec<String>> = (0..60)
        .map(|b| (0..20).map(|n| format!("sealed-{b}-{n}")).collect())
        .collect();
    let server = Server::start_in(&data, &["--config", &config]);
    for batch in &batches {
        assert_eq!(post_batch(&server, batch), (20, 0));
    }
    let output = server.signal("KILL");
    assert_eq!(output.status.code(), None, "killed by a signal");

    // Flip bytes inside the records of a batch in the middle of a sealed segment whose index
    // is intact: the log opens, and reading that batch fails its checksum.
    let partition = data.join("log/topics/events/0");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&partition)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 4, "{} segments", segments.len());
    let damaged = &segments[1];
    assert!(damaged.with_extension("idx").exists());
    let mut bytes = std::fs::read(damaged).unwrap();
    let batch_frames = frames(&bytes);
    let (start, end) = batch_frames[batch_frames.len() / 2];
    for byte in &mut bytes[start + 100..(start + 116).min(end)] {
        *byte ^= 0xff;
    }
    std::fs::write(damaged, &bytes).unwrap();

    let server = Server::start_in(&data, &["--config", &config]);
    let unreadable = metric(&server, "sluice_ingest_dedup_unreadable_records_total").unwrap();
    // The damaged batch's 20 records, not the intact batches read around it.
    assert!(
        (20.0..=40.0).contains(&unreadable),
        "{unreadable} records counted unreadable"
    );
    let covered = metric(&server, "sluice_ingest_dedup_covered_seconds").unwrap();
    assert!(covered < 600.0, "coverage {covered}s is reported reduced");
    // Ids before and after the damage are remembered.
    assert_eq!(post_batch(&server, &batches[0]), (0, 20));
    assert_eq!(post_batch(&server, &batches[59]), (0, 20));
    let output = server.interrupt();
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = stderr
        .lines()
        .find(|line| line.contains("ERROR") && line.contains("dedup window"))
        .unwrap_or_else(|| panic!("no ERROR about the damage:\n{stderr}"));
    let file = damaged.file_name().unwrap().to_str().unwrap();
    assert!(
        report.contains(file) && report.contains("partition"),
        "the ERROR names the partition and the file: {report}"
    );
    assert!(
        stderr
            .lines()
            .any(|line| line.contains("WARN") && line.contains("only partly covered")),
        "{stderr}"
    );
}
