//! The metric admin API and `sluice replay`, through a real server process.

use super::results::{assert_exact, events, expected, stored};
use super::support::{BIN, Server, http_request, settled};
use serde_json::{Value, json};
use sluice_store::Catalogue;
use std::process::Command;
use std::time::{Duration, Instant};

const ADMIN: &str = "Bearer ak_admin_test_0123456789";
const CONFIG: &str = r#"
admin-keys = ["ak_admin_test_0123456789"]
# The metrics this test defines through the API only, also for `sluice replay`.
default-metrics = false
[log]
partitions = 2
[store]
checkpoint-interval = "100ms"
[[tenants]]
name = "shop"
write-keys = ["wk_admin_shop_0123456789"]
read-keys = ["rk_admin_shop_0123456789"]
"#;
const METRIC: &str = "CREATE METRIC spend AS SELECT properties.plan AS plan, COUNT(*) AS n, SUM(properties.amount) AS total \
                      FROM events WHERE event = 'Paid' GROUP BY plan, TUMBLE(timestamp, INTERVAL '1' MINUTE)";

fn call(
    server: &Server,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = auth {
        headers.push(("authorization", auth));
    }
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let (status, text) = http_request(server.addr, method, path, &headers, &body);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn send(server: &Server, dir: &std::path::Path, name: &str, count: usize, minute_offset: usize) {
    let lines: Vec<String> = (0..count)
        .map(|i| {
            let second = i % 60;
            let minute = minute_offset + i / 60;
            format!(
                r#"{{"type":"track","anonymousId":"a{}","event":"Paid","properties":{{"plan":"{}","amount":{}.25}},"timestamp":"2024-05-01T10:{minute:02}:{second:02}.000Z"}}"#,
                i % 13,
                ["free", "pro"][i % 2],
                i % 50
            )
        })
        .collect();
    let file = dir.join(name);
    std::fs::write(&file, lines.join("\n")).unwrap();
    let output = Command::new(BIN)
        .args([
            "send",
            "--quiet",
            "--url",
            &format!("http://{}", server.addr),
            "--write-key",
            "wk_admin_shop_0123456789",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn settle(server: &Server, metric: &str) -> Value {
    settled(server.addr, ADMIN, Some(metric))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_defined_backfilled_replayed_and_deleted_at_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config_path = dir.path().join("sluice.toml");
    std::fs::write(&config_path, CONFIG).unwrap();
    let config_arg = config_path.display().to_string();
    let server = Server::start_in(&data, &["--config", &config_arg]);
    send(&server, dir.path(), "history.ndjson", 240, 0);

    // Keys: none, a read key, a write key — only admin keys administer.
    let create = json!({ "sql": METRIC, "backfill": true });
    assert_eq!(
        call(&server, "POST", "/v1/admin/metrics", None, &create).0,
        401
    );
    let (status, body) = call(
        &server,
        "POST",
        "/v1/admin/metrics",
        Some("Bearer rk_admin_shop_0123456789"),
        &create,
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        call(
            &server,
            "POST",
            "/v1/admin/metrics",
            Some("Bearer wk_admin_shop_0123456789"),
            &create
        )
        .0,
        403
    );

    // Invalid SQL is refused with the position of the problem.
    let bad = json!({ "sql": "CREATE METRIC broken AS SELECT COUNT(*) FROM events\nGROUP BY user_id HAVING COUNT(*) > 1" });
    let (status, body) = call(&server, "POST", "/v1/admin/metrics", Some(ADMIN), &bad);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_sql");
    assert_eq!(body["error"]["line"], 2, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("HAVING"),
        "{body}"
    );

    // A backfilled metric computes the history already in the log.
    let (status, body) = call(&server, "POST", "/v1/admin/metrics", Some(ADMIN), &create);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "spend");
    assert_eq!(body["backfill"], true);
    assert_eq!(
        call(&server, "POST", "/v1/admin/metrics", Some(ADMIN), &create).0,
        409
    );
    let settled = settle(&server, "spend");
    assert_eq!(settled["backfill_progress"], 1.0, "{settled}");
    assert_eq!(settled["partitions"].as_array().unwrap().len(), 2);

    // A second metric without backfill starts at the end of the log.
    let live = json!({ "sql": "CREATE METRIC later AS SELECT COUNT(*) AS n FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' HOUR)" });
    assert_eq!(
        call(&server, "POST", "/v1/admin/metrics", Some(ADMIN), &live).0,
        201
    );
    send(&server, dir.path(), "more.ndjson", 120, 4);
    settle(&server, "spend");
    settle(&server, "later");
    let (_, list) = call(
        &server,
        "GET",
        "/v1/admin/metrics",
        Some(ADMIN),
        &Value::Null,
    );
    let names: Vec<&str> = list["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["later", "spend"]);

    // A replay through the API switches to a new generation with the same results.
    let (status, body) = call(
        &server,
        "POST",
        "/v1/admin/metrics/spend/replay",
        Some(ADMIN),
        &json!({}),
    );
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while call(
        &server,
        "GET",
        "/v1/admin/metrics/spend",
        Some(ADMIN),
        &Value::Null,
    )
    .1["generation"]
        != 1
    {
        assert!(Instant::now() < deadline, "replay did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    settle(&server, "spend");

    // `sluice replay` beside the running server goes through the admin API.
    let output = Command::new(BIN)
        .args([
            "replay",
            "--metric",
            "spend",
            "--from-time",
            "2024-05-01T10:03:00Z",
            "--config",
            &config_arg,
            "--data-dir",
        ])
        .arg(&data)
        .env("SLUICE__SERVER__LISTEN", server.addr.to_string())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("generation 2 is current"));
    settle(&server, "spend");

    // Deleting a metric stops it and removes its results; the other keeps running.
    let (status, _) = call(
        &server,
        "DELETE",
        "/v1/admin/metrics/later",
        Some(ADMIN),
        &Value::Null,
    );
    assert_eq!(status, 204);
    assert_eq!(
        call(
            &server,
            "GET",
            "/v1/admin/metrics/later",
            Some(ADMIN),
            &Value::Null
        )
        .0,
        404
    );
    assert_eq!(
        call(
            &server,
            "DELETE",
            "/v1/admin/metrics/later",
            Some(ADMIN),
            &Value::Null
        )
        .0,
        404
    );
    assert_eq!(server.interrupt().status.code(), Some(0));

    // `sluice replay` with no server runs the pipelines itself.
    let output = Command::new(BIN)
        .args([
            "replay",
            "--metric",
            "spend",
            "--config",
            &config_arg,
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("generation 3 is current"));
    let output = Command::new(BIN)
        .args([
            "replay",
            "--metric",
            "nope",
            "--config",
            &config_arg,
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no metric named \"nope\""));

    // After three replays the results are still exactly the oracle's.
    let config = sluice::config::load(
        Some(&config_path),
        &[("data-dir", toml::Value::String(data.display().to_string()))],
    )
    .unwrap();
    let records = events(&config).await;
    let plan = sluice_stream::sql::parse_metric(METRIC, &config.stream.metric_defaults()).unwrap();
    let store =
        sluice_store::SqliteStore::open(&config.store.sqlite_path(&config.data_dir).unwrap())
            .unwrap();
    assert_eq!(
        store
            .metrics()
            .await
            .unwrap()
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["spend"]
    );
    drop(store);
    assert_exact(
        &plan,
        &stored(&config, &plan, "shop").await,
        &expected(&plan, &records),
    );
}
