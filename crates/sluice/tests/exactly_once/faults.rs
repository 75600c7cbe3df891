//! A damaged store stops sluice with a clear error naming the file and what to do, and never
//! touches the log: moving the store away and starting again recomputes every result.

use super::results::{assert_exact, events, expected, stored};
use super::support::{BIN, Server, output_within, settled};
use std::process::Command;
use std::time::Duration;

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

    // Damage the store in the ways a disk or a careless hand does: every kind is the same
    // clear error, exit 2, naming the file and the remedy.
    let store_path = data.join("store.db");
    // Fold the write-ahead log into the file, so the damage lands on the rows themselves.
    rusqlite::Connection::open(&store_path)
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let intact = std::fs::read(&store_path).unwrap();
    let page = 16_384;
    let damages: [(&str, Vec<u8>); 4] = [
        ("a flipped bit in the schema's text (a column renamed)", {
            let at = intact
                .windows(10)
                .position(|w| w == b"label TEXT")
                .expect("the schema is in the file");
            let mut bytes = intact.clone();
            bytes[at + 2] ^= 0x01;
            bytes
        }),
        ("a byte flipped in every page's content", {
            let mut bytes = intact.clone();
            for (i, start) in (0..bytes.len()).step_by(page).enumerate() {
                bytes[start + page - 64 - (i * 7919) % 1024] ^= 0x20;
            }
            bytes
        }),
        (
            "the file cut short",
            intact[..intact.len() / 2 / page * page].to_vec(),
        ),
        ("the first page overwritten", {
            let mut bytes = intact.clone();
            bytes[..4096].fill(0x5a);
            bytes
        }),
    ];
    for (damage, bytes) in damages {
        std::fs::write(&store_path, &bytes).unwrap();
        let _ = std::fs::remove_file(data.join("store.db-wal"));
        let output = output_within(
            Command::new(BIN)
                .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(&data)
                .args(["--config", &config_arg]),
            Duration::from_secs(60),
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{damage}: a corrupt store is the operator's to fix: {stderr}"
        );
        assert!(
            stderr.contains(&store_path.display().to_string()),
            "{damage}: names the file: {stderr}"
        );
        assert!(
            stderr.contains("is corrupt") && stderr.contains("move the file away"),
            "{damage}: says what to do: {stderr}"
        );
    }

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
