//! A damaged store stops sluice with a clear error naming the file and what to do, and never
//! touches the log: moving the store away and starting again recomputes every result.

use super::results::{assert_exact, events, expected, stored};
use super::support::{BIN, Server, settled};
use std::process::Command;

const CONFIG: &str = r#"
admin-keys = ["ak_faults_admin_0123456789"]
[log]
partitions = 2
[store]
checkpoint-interval = "100ms"
[[tenants]]
name = "shop"
write-keys = ["wk_faults_shop_0123456789"]
[[metrics]]
sql = "CREATE METRIC per_minute AS SELECT COUNT(*) AS n, SUM(properties.amount) AS total FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)"
backfill = true
"#;

fn settle(server: &Server) {
    settled(server.addr, "Bearer ak_faults_admin_0123456789", None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_is_reported_and_the_log_rebuilds_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config_path = dir.path().join("sluice.toml");
    std::fs::write(&config_path, CONFIG).unwrap();
    let config_arg = config_path.display().to_string();
    let events_path = dir.path().join("events.ndjson");
    let lines: Vec<String> = (0..300)
        .map(|i| format!(r#"{{"type":"track","anonymousId":"a{}","event":"Paid","properties":{{"amount":{}.50}},"timestamp":"2024-05-01T12:{:02}:{:02}.000Z"}}"#, i % 17, i % 9, i / 60 % 60, i % 60))
        .collect();
    std::fs::write(&events_path, lines.join("\n")).unwrap();

    let server = Server::start_in(&data, &["--config", &config_arg]);
    let sent = Command::new(BIN)
        .args([
            "send",
            "--quiet",
            "--url",
            &format!("http://{}", server.addr),
            "--write-key",
            "wk_faults_shop_0123456789",
        ])
        .arg(&events_path)
        .args(["--config", &config_arg])
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    settle(&server);
    assert_eq!(server.interrupt().status.code(), Some(0));

    // Damage the store: its pages are overwritten with garbage.
    let store_path = data.join("store.db");
    let mut bytes = std::fs::read(&store_path).unwrap();
    for byte in bytes.iter_mut().take(4096) {
        *byte = 0x5a;
    }
    std::fs::write(&store_path, &bytes).unwrap();
    let _ = std::fs::remove_file(data.join("store.db-wal"));
    let output = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .args(["--config", &config_arg])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "a corrupt store is the operator's to fix"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&store_path.display().to_string()),
        "names the file: {stderr}"
    );
    assert!(
        stderr.contains("is corrupt") && stderr.contains("move the file away"),
        "says what to do: {stderr}"
    );

    // The log was not touched: all 300 events are still there.
    let config = sluice::config::load(
        Some(&config_path),
        &[("data-dir", toml::Value::String(data.display().to_string()))],
    )
    .unwrap();
    let records = events(&config).await;
    assert_eq!(records.iter().map(Vec::len).sum::<usize>(), 300);

    // Following the advice: the store is moved away, sluice starts, and the configured metric
    // (with backfill) recomputes everything from the log.
    std::fs::rename(&store_path, data.join("store.db.damaged")).unwrap();
    let server = Server::start_in(&data, &["--config", &config_arg]);
    settle(&server);
    assert_eq!(server.interrupt().status.code(), Some(0));
    let plan =
        sluice_stream::sql::parse_metric(&config.metrics[0].sql, &config.stream.metric_defaults())
            .unwrap();
    assert_exact(
        &plan,
        &stored(&config, &plan, "shop").await,
        &expected(&plan, &records),
    );
}
