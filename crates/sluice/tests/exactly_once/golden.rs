//! Golden end to end: events and metric definitions in, windows out, through the whole
//! binary — once straight, once killed mid-way and restored — against a text file.

use super::results::stored;
use super::support::Server;
use sluice_stream::agg::OutputValue;
use sluice_stream::plan::ColumnSource;
use std::fmt::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const CASE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/orders");

/// Runs the case: sends `events.ndjson` in two halves (killing the server with SIGKILL
/// between them when `kill` is set), waits for the metrics to settle, stops the server and
/// renders the stored results.
async fn run(kill: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config_path = Path::new(CASE).join("sluice.toml");
    let config_arg = config_path.display().to_string();
    let events = std::fs::read_to_string(Path::new(CASE).join("events.ndjson")).unwrap();
    let lines: Vec<&str> = events.lines().filter(|l| !l.trim().is_empty()).collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    for file in [("first.ndjson", first), ("second.ndjson", second)] {
        std::fs::write(dir.path().join(file.0), file.1.join("\n")).unwrap();
    }
    let send = |server: &Server, file: &str| {
        let output = Command::new(super::support::BIN)
            .args([
                "send",
                "--quiet",
                "--url",
                &format!("http://{}", server.addr),
                "--write-key",
                "wk_golden_shop_0123456789",
                "--batch",
                "7",
            ])
            .arg(dir.path().join(file))
            .args(["--config", &config_arg])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let server = Server::start_in(&data, &["--config", &config_arg]);
    send(&server, "first.ndjson");
    let server = if kill {
        // Let a checkpoint or two happen, then die without a last one.
        tokio::time::sleep(Duration::from_millis(400)).await;
        server.signal("KILL");
        Server::start_in(&data, &["--config", &config_arg])
    } else {
        server
    };
    send(&server, "second.ndjson");
    let config = sluice::config::load(
        Some(&config_path),
        &[("data-dir", toml::Value::String(data.display().to_string()))],
    )
    .unwrap();
    super::support::settled(server.addr, "Bearer ak_golden_admin_0123456789", None);
    assert_eq!(server.interrupt().status.code(), Some(0));

    let mut out = String::new();
    for metric in &config.metrics {
        let plan = sluice_stream::sql::parse_metric(&metric.sql, &config.stream.metric_defaults())
            .unwrap();
        for ((key, (start, end)), values) in stored(&config, &plan, "shop").await {
            let _ = write!(
                out,
                "{} {key} [{}, {})",
                plan.name,
                sluice_core::time::format_millis(start),
                sluice_core::time::format_millis(end)
            );
            for (index, value) in values.iter().enumerate() {
                let name = plan
                    .columns
                    .iter()
                    .find(|column| column.source == ColumnSource::Aggregate(index))
                    .map_or("?", |column| column.name.as_str());
                let shown = match value {
                    OutputValue::Null => "NULL".to_owned(),
                    other => other.to_string(),
                };
                let _ = write!(out, " {name}={shown}");
            }
            out.push('\n');
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_orders_straight_and_killed_mid_way() {
    let expected_path = Path::new(CASE).join("expected.txt");
    let straight = run(false).await;
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(&expected_path, &straight).unwrap();
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap();
    assert_eq!(
        straight,
        expected,
        "straight run vs {}",
        expected_path.display()
    );
    let killed = run(true).await;
    assert_eq!(
        killed,
        expected,
        "a run killed mid-way and restored vs {}",
        expected_path.display()
    );
}
