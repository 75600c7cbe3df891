//! Damage to the log under a real server: a damaged sealed segment stops only the pipeline
//! partitions that read it, visibly (status, `/metrics`, an ERROR line) and until it is
//! repaired; events that reuse offsets after recovery cut a torn tail are all counted, and all
//! archived.

use super::results::{assert_exact, events, expected, stored};
use super::support::{BIN, Server, duckdb_archive, duckdb_count, http_request, settled};
use serde_json::Value;
use sluice_log::StoredRecord;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ADMIN: &str = "Bearer ak_logfaults_admin_0123456789";
const WRITE_KEY: &str = "wk_logfaults_shop_0123456789";
const METRIC: &str = "CREATE METRIC per_minute AS SELECT COUNT(*) AS n, SUM(properties.amount) AS total FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)";

fn config(log: &str) -> String {
    format!(
        r#"
admin-keys = ["ak_logfaults_admin_0123456789"]
[log]
partitions = 2
{log}
[store]
checkpoint-interval = "100ms"
retry-max-backoff = "300ms"
[[tenants]]
name = "shop"
write-keys = ["{WRITE_KEY}"]
[[metrics]]
sql = "{METRIC}"
backfill = true
"#
    )
}

/// Writes `config` beside the data dir; returns the data dir and the `--config` argument.
fn setup(dir: &Path, config: &str) -> (PathBuf, String) {
    let path = dir.join("sluice.toml");
    std::fs::write(&path, config).unwrap();
    (dir.join("data"), path.display().to_string())
}

/// Sends `count` events named `prefix-i`, at `hour`:00 on, one a second, `batch` to a request.
fn send(server: &Server, dir: &Path, prefix: &str, count: usize, hour: u32, batch: u32) {
    let lines: Vec<String> = (0..count)
        .map(|i| {
            format!(
                r#"{{"type":"track","messageId":"{prefix}-{i}","anonymousId":"a{}","event":"Paid","properties":{{"amount":{}.50}},"timestamp":"2024-05-01T{hour:02}:{:02}:{:02}.000Z"}}"#,
                i % 17,
                i % 9,
                i / 60 % 60,
                i % 60
            )
        })
        .collect();
    let file = dir.join(format!("{prefix}.ndjson"));
    std::fs::write(&file, lines.join("\n")).unwrap();
    let output = Command::new(BIN)
        .args(["send", "--quiet", "--batch", &batch.to_string(), "--url"])
        .arg(format!("http://{}", server.addr))
        .args(["--write-key", WRITE_KEY])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn get(server: &Server, path: &str) -> (u16, Value) {
    let (status, body) = http_request(server.addr, "GET", path, &[("authorization", ADMIN)], b"");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let (status, text) = http_request(
        server.addr,
        "POST",
        path,
        &[
            ("authorization", ADMIN),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Polls `path` until `done` holds for its JSON, which it returns.
fn wait_for(server: &Server, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get(server, path);
        assert_eq!(status, 200, "{body}");
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the Prometheus sample whose line starts with `series` (name and labels in
/// any order they are rendered in: each `label="value"` must appear).
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

fn prometheus(server: &Server) -> String {
    let (status, body) = http_request(
        server.addr,
        "GET",
        "/metrics",
        &[("authorization", ADMIN)],
        b"",
    );
    assert_eq!(status, 200, "{body}");
    body
}

/// Writes `bytes` at `at` in `file`, in place (the server keeps reading the same file).
fn overwrite(file: &Path, at: usize, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::options().write(true).open(file).unwrap();
    file.write_all_at(bytes, at as u64).unwrap();
    file.sync_all().unwrap();
}

fn segments(partition_dir: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<_> = std::fs::read_dir(partition_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    segments
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_sealed_segment_fails_only_what_reads_it_visibly_until_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let (data, config_arg) = setup(
        dir.path(),
        &config(
            r#"segment-bytes = "4KiB"
max-batch-bytes = "4KiB"
max-record-bytes = "1KiB"
index-interval-bytes = "1KiB""#,
        ),
    );
    let server = Server::start_in(&data, &["--config", &config_arg]);
    send(&server, dir.path(), "early", 240, 12, 4);
    settled(server.addr, ADMIN, Some("per_minute"));

    // Behind the running server's back, bytes flip inside an early sealed segment of
    // partition 0 (its index stays: nothing notices until a read).
    let partition_dir = data.join("log/topics/events/0");
    let sealed = segments(&partition_dir);
    assert!(sealed.len() > 4, "{sealed:?}");
    let segment = sealed[1].clone();
    let original = std::fs::read(&segment).unwrap();
    let at = original.len() / 4;
    let flipped: Vec<u8> = original[at..at + 16].iter().map(|byte| !byte).collect();
    overwrite(&segment, at, &flipped);

    // A replay reads it: the replay says it failed, with the segment and the remedy.
    let (status, body) = post(
        &server,
        "/v1/admin/metrics/per_minute/replay",
        &serde_json::json!({}),
    );
    assert_eq!(status, 202, "{body}");
    let failed = wait_for(
        &server,
        "/v1/admin/metrics/per_minute",
        "replay failure",
        |m| m["replay"]["state"] == "failed",
    );
    let error = failed["replay"]["error"].as_str().unwrap();
    assert!(
        error.contains(&segment.display().to_string()) && error.contains("sluice log repair"),
        "{error}"
    );
    let partition = &failed["replay"]["partitions"][0];
    assert_eq!(partition["state"], "failed", "{failed}");
    assert_eq!(partition["reason_class"], "log_corrupt", "{failed}");
    assert!(
        partition["next_retry"].is_i64(),
        "it keeps trying: {failed}"
    );
    assert_ne!(
        failed["replay"]["partitions"][1]["state"], "failed",
        "{failed}"
    );
    assert!(failed["replay"]["progress"].as_f64().unwrap() < 1.0);
    assert_eq!(failed["generation"], 0, "no switch to a failed generation");

    // A metric defined now with backfill reads it too: it is `failed`, with the reason.
    let sql = "CREATE METRIC paid_per_hour AS SELECT COUNT(*) AS n FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' HOUR)";
    let (status, body) = post(
        &server,
        "/v1/admin/metrics",
        &serde_json::json!({ "sql": sql, "backfill": true }),
    );
    assert_eq!(status, 201, "{body}");
    let other = wait_for(
        &server,
        "/v1/admin/metrics/paid_per_hour",
        "metric failure",
        |m| m["state"] == "failed",
    );
    assert!(
        other["error"]
            .as_str()
            .unwrap()
            .contains(&segment.display().to_string()),
        "{other}"
    );
    assert_ne!(other["partitions"][1]["state"], "failed", "{other}");

    // Prometheus tells too.
    let metrics = prometheus(&server);
    for metric in ["per_minute", "paid_per_hour"] {
        let metric_label = format!("metric=\"{metric}\"");
        assert!(
            sample(
                &metrics,
                "sluice_pipeline_partition_failures_total",
                &[&metric_label, "reason_class=\"log_corrupt\""]
            )
            .is_some_and(|failures| failures >= 1.0),
            "{metric}: {metrics}"
        );
        assert!(
            sample(
                &metrics,
                "sluice_pipeline_partitions",
                &[&metric_label, "state=\"failed\""]
            )
            .is_some_and(|partitions| partitions >= 1.0),
            "{metric}: {metrics}"
        );
    }

    // Everything else keeps going: the server serves, the current results keep counting.
    assert_eq!(
        http_request(server.addr, "GET", "/healthz", &[], b"").0,
        200
    );
    send(&server, dir.path(), "later", 60, 14, 4);
    let current = wait_for(
        &server,
        "/v1/admin/metrics/per_minute",
        "current results",
        |m| m["lag"] == 0 && m["state"] == "running",
    );
    assert_eq!(current["replay"]["state"], "failed", "{current}");

    // Repaired, the failed partitions get through on their own: the replay finishes.
    overwrite(&segment, at, &original[at..at + 16]);
    wait_for(
        &server,
        "/v1/admin/metrics/per_minute",
        "replay finish",
        |m| m["generation"] == 1,
    );
    settled(server.addr, ADMIN, None);
    let output = server.interrupt();
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .lines()
            .any(|line| line.contains("ERROR") && line.contains(&segment.display().to_string())),
        "an ERROR line names the segment: {stderr}"
    );

    // And the results are exactly what the log says.
    let config = sluice::config::load(
        Some(Path::new(&config_arg)),
        &[("data-dir", toml::Value::String(data.display().to_string()))],
    )
    .unwrap();
    let plan = sluice_stream::sql::parse_metric(METRIC, &config.stream.metric_defaults()).unwrap();
    let records = events(&config).await;
    assert_exact(
        &plan,
        &stored(&config, &plan, "shop").await,
        &expected(&plan, &records),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_reuse_offsets_after_recovery_cut_a_torn_tail_are_all_counted() {
    let dir = tempfile::tempdir().unwrap();
    let log_and_archive = "ack = \"write\"\n[archive]\nenabled = true\nroll-age = \"1s\"";
    let (data, config_arg) = setup(dir.path(), &config(log_and_archive));
    let config = sluice::config::load(
        Some(Path::new(&config_arg)),
        &[("data-dir", toml::Value::String(data.display().to_string()))],
    )
    .unwrap();
    let server = Server::start_in(&data, &["--config", &config_arg]);
    send(&server, dir.path(), "before", 300, 12, 10);
    settled(server.addr, ADMIN, Some("per_minute"));
    let archive = data.join("archive");
    archived(&archive, 300);
    server.signal("KILL");
    let before = events(&config).await;

    // What a power loss can leave with `ack = "write"`: partition 0's active segment lost its
    // last third. Recovery cuts back to the last whole batch, and a new log epoch starts.
    let segment = data.join(format!("log/topics/events/0/{:020}.log", 0));
    let _ = std::fs::remove_file(segment.with_extension("idx"));
    let file = std::fs::File::options().write(true).open(&segment).unwrap();
    file.set_len(file.metadata().unwrap().len() * 2 / 3)
        .unwrap();
    drop(file);
    let cut: Vec<usize> = events(&config).await.iter().map(Vec::len).collect();
    let lost = before[0].len() - cut[0];
    assert!(lost > 0 && cut[1] == before[1].len(), "{cut:?}");

    // 400 new events, some of them at the offsets that were cut off: all are counted.
    let server = Server::start_in(&data, &["--config", &config_arg]);
    send(&server, dir.path(), "after", 400, 13, 10);
    let status = settled(server.addr, ADMIN, Some("per_minute"));
    let metrics = prometheus(&server);
    // The archive: every event sent before the cut (archived then) and every event sent after
    // it (at the offsets that were cut too), each once.
    archived(&archive, 700);
    let output = server.interrupt();
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let found: Value =
        serde_json::from_slice(&duckdb_archive(archive.as_os_str(), &[], &[])).unwrap();
    let mut ids: Vec<&str> = found["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["message_id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut sent: Vec<String> = (0..300)
        .map(|i| format!("before-{i}"))
        .chain((0..400).map(|i| format!("after-{i}")))
        .collect();
    sent.sort();
    assert_eq!(ids, sent, "every event archived once");
    assert!(
        stderr
            .lines()
            .any(|line| line.contains("ERROR") && line.contains("archiving again from")),
        "the archive's rewind is reported at ERROR: {stderr}"
    );

    // The results: every event sent before the cut (counted then; they happened) and every
    // event sent after it, each exactly once.
    let after = events(&config).await;
    let counted: Vec<Vec<StoredRecord>> = before
        .iter()
        .zip(&after)
        .zip(&cut)
        .map(|((before, after), &cut)| before.iter().chain(&after[cut..]).cloned().collect())
        .collect();
    assert_eq!(
        after
            .iter()
            .zip(&cut)
            .map(|(a, &c)| a.len() - c)
            .sum::<usize>(),
        400
    );
    let plan = sluice_stream::sql::parse_metric(METRIC, &config.stream.metric_defaults()).unwrap();
    assert_exact(
        &plan,
        &stored(&config, &plan, "shop").await,
        &expected(&plan, &counted),
    );

    // How many counted offsets the log lost is reported: status, /metrics, an ERROR line.
    assert_eq!(status["lost_offsets"], lost, "{status}");
    assert_eq!(status["partitions"][0]["lost_offsets"], lost, "{status}");
    assert_eq!(
        sample(
            &metrics,
            "sluice_pipeline_lost_offsets_total",
            &["metric=\"per_minute\""]
        ),
        Some(lost as f64),
        "{metrics}"
    );
    assert!(
        stderr.lines().any(
            |line| line.contains("ERROR") && line.contains("sluice replay --metric per_minute")
        ),
        "the rewind is reported at ERROR: {stderr}"
    );
}

/// Waits until DuckDB counts `rows` rows in the archive under `root`.
fn archived(root: &Path, rows: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count = duckdb_count(root);
        if count == rows {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{count} rows archived, not {rows}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
