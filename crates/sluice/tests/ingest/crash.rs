//! SIGKILL under load: a real server process takes `sluice bench ingest` traffic plus tracked
//! batches; it is killed at a random moment, several times; after each kill the log is opened
//! (recovering it) and every event that received a 200 must be there.

use super::support::{BIN, Server};
use hyper::{Method, StatusCode};
use rand::Rng;
use serde_json::{Value, json};
use sluice::client::{Connection, Target, basic_auth};
use sluice_log::{Log, LogBackend, ReadOptions};
use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEY: &str = "wk_crash_test_0123456789";

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

    let config = sluice::config::load(
        Some(&config_path),
        &[("data-dir", toml::Value::String(data.display().to_string()))],
    )
    .unwrap();
    let log = LogBackend::open(&config.log, &config.data_dir)
        .await
        .unwrap();
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
