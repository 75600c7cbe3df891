//! Alerts end to end: rules over the `views` metric, a receiver in the test (an HTTP server)
//! recording what it is sent. A threshold fires once and resolves once, signed; a silence
//! holds; bad rules get 400 with their place; a notification pending when the node is killed
//! (its receiver down) is delivered once after the restart, with the same id.

use crate::harness::*;
use crate::support::{Server, free_port, http_request};
use hmac::{Hmac, Mac};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_core::time::Millis;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "receiver-secret";

/// What the receiver got: each request's headers of interest and body.
#[derive(Debug, Clone)]
struct Delivery {
    id: String,
    signature: Option<String>,
    body: Vec<u8>,
}

impl Delivery {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP server recording every POST; answers 200.
struct Receiver {
    got: Arc<Mutex<Vec<Delivery>>>,
    stop: tokio_util::sync::CancellationToken,
}

impl Receiver {
    async fn start(port: u16) -> Receiver {
        let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let recorded = Arc::clone(&got);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let recorded = Arc::clone(&recorded);
                    async move {
                        let header = |name: &str| {
                            headers
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        };
                        recorded.lock().unwrap().push(Delivery {
                            id: header("x-sluice-notification-id").unwrap_or_default(),
                            signature: header("x-sluice-signature"),
                            body: body.to_vec(),
                        });
                        "ok"
                    }
                },
            ),
        );
        let stop = tokio_util::sync::CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(until.cancelled_owned())
                .await
                .unwrap();
        });
        Receiver { got, stop }
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The value of one series in a Prometheus text scrape (0 when absent).
fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// HMAC-SHA256 of `body` with the channel's secret, as a receiver checks it.
fn expected_signature(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Overrides for a channel `hook` to port `port` and the rules `rules` of tenant shop.
fn alerting(port: u16, rules: &[&str]) -> Vec<(&'static str, toml::Value)> {
    let channel: toml::Value = toml::from_str::<toml::Table>(&format!(
        r#"c = [{{ name = "hook", kind = "webhook", url = "http://127.0.0.1:{port}/hook", secret = "{SECRET}" }}]"#
    ))
    .unwrap()["c"]
        .clone();
    let rules = toml::Value::Array(
        rules
            .iter()
            .map(|sql| {
                toml::Value::Table(toml::Table::from_iter([
                    ("tenant".to_owned(), toml::Value::String("shop".into())),
                    ("sql".to_owned(), toml::Value::String((*sql).into())),
                    (
                        "channels".to_owned(),
                        toml::Value::Array(vec![toml::Value::String("hook".into())]),
                    ),
                ]))
            })
            .collect(),
    );
    vec![
        ("alert-channels", channel),
        ("alerts", rules),
        (
            "alerting.evaluate-interval",
            toml::Value::String("100ms".into()),
        ),
        (
            "alerting.retry-initial-interval",
            toml::Value::String("200ms".into()),
        ),
        (
            "alerting.retry-max-interval",
            toml::Value::String("1s".into()),
        ),
    ]
}

const BUSY: &str =
    "CREATE ALERT busy ON views WHERE url = '/a' WHEN n > 5 WITH (severity = 'critical')";

/// Views of `/a`: `count` at `time`.
fn views_of_a(time: Millis, count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| view(&format!("a-{i}"), &format!("u{i}"), "/a", time, "1"))
        .collect()
}

/// Makes the `busy` rule fire: something final first (the rule starts at the frontier), then
/// 10 views of /a in minute 1 and minute 2 on every partition, which makes minute 1 final.
async fn fire_busy(h: &Harness) {
    let base = hours_ago(3);
    h.send_ok(SHOP_WRITE, everywhere("/z", base, 8)).await;
    evaluated(h, "busy").await;
    h.send_ok(SHOP_WRITE, views_of_a(base + MINUTE + 1_000, 10))
        .await;
    h.send_ok(SHOP_WRITE, everywhere("/z", base + 2 * MINUTE + 1_000, 8))
        .await;
}

/// What `receiver` got, once it got something (30 s at most).
async fn first_deliveries(receiver: &Receiver) -> Vec<Delivery> {
    eventually("a delivery", || async {
        let got = receiver.deliveries();
        if got.is_empty() {
            Err("nothing yet".to_owned())
        } else {
            Ok(got)
        }
    })
    .await
}

/// Asserts that `receiver` still has `count` deliveries 1.5 s later: nothing is sent twice.
async fn nothing_more_than(receiver: &Receiver, count: usize) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = receiver.deliveries();
    assert_eq!(got.len(), count, "{got:?}");
}

/// The rule's instances once it has been evaluated once (it starts at the frontier then).
async fn evaluated(h: &Harness, rule: &str) -> Vec<Value> {
    eventually(&format!("rule {rule} evaluated"), || async {
        let (status, answer) = h.get("/v1/alerts", SHOP_READ).await;
        let instances: Vec<Value> = answer["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|alert| alert["rule"] == rule)
            .cloned()
            .collect();
        if status == StatusCode::OK && !instances.is_empty() {
            Ok(instances)
        } else {
            Err(format!("{status} {answer}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_fires_once_and_resolves_once_signed_and_delivered_once() {
    let port = free_port();
    let receiver = Receiver::start(port).await;
    let h = Harness::start(&alerting(port, &[BUSY])).await;
    let base = hours_ago(3);
    // Something final first, so the rule has a frontier to start from.
    h.send_ok(SHOP_WRITE, everywhere("/z", base, 8)).await;
    let instances = evaluated(&h, "busy").await;
    assert_eq!(instances[0]["state"], "ok", "{instances:?}");
    assert_eq!(instances[0]["severity"], "critical");

    // Minute 1: 10 views of /a (fires); minute 2: 1 (resolves); minute 3 closes minute 2.
    h.send_ok(SHOP_WRITE, views_of_a(base + MINUTE + 1_000, 10))
        .await;
    h.send_ok(SHOP_WRITE, views_of_a(base + 2 * MINUTE + 1_000, 1))
        .await;
    h.send_ok(SHOP_WRITE, everywhere("/z", base + 3 * MINUTE + 1_000, 8))
        .await;
    let deliveries = eventually("a firing and a resolved notification", || async {
        let got = receiver.deliveries();
        if got.len() >= 2 {
            Ok(got)
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
    let firing = deliveries[0].json();
    let resolved = deliveries[1].json();
    assert_eq!(
        (firing["status"].as_str(), resolved["status"].as_str()),
        (Some("firing"), Some("resolved")),
        "{firing} {resolved}"
    );
    assert_eq!(firing["rule"], "busy");
    assert_eq!(firing["tenant"], "shop");
    assert_eq!(firing["metric"], "views");
    assert_eq!(firing["value"], 10.0);
    assert_eq!(firing["severity"], "critical");
    assert_eq!(
        firing["at_ms"],
        base + 2 * MINUTE,
        "the end of the window that fired"
    );
    assert_eq!(resolved["at_ms"], base + 3 * MINUTE);
    assert_eq!(
        (firing["sequence"].as_u64(), resolved["sequence"].as_u64()),
        (Some(1), Some(2))
    );
    for delivery in &deliveries {
        assert_eq!(
            delivery.id,
            delivery.json()["id"],
            "the id header is the body's"
        );
        assert_eq!(
            delivery.signature.as_deref(),
            Some(expected_signature(&delivery.body).as_str()),
            "signed with the channel's secret"
        );
    }
    assert_ne!(deliveries[0].id, deliveries[1].id);
    assert!(
        deliveries[0].id.starts_with("shop/busy."),
        "{}",
        deliveries[0].id
    );

    // Nothing more comes: each transition is one notification, delivered once.
    nothing_more_than(&receiver, 2).await;
    let (_, history) = h.get("/v1/alerts/history", SHOP_READ).await;
    let rows = history["notifications"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{history}");
    for row in rows {
        assert_eq!(row["state"], "delivered", "{row}");
        assert_eq!(row["attempts"], 1, "{row}");
        assert_eq!(row["channel"], "hook");
    }
    assert_eq!(rows[0]["status"], "resolved", "newest first");
    let (_, states) = h.get("/v1/alerts", SHOP_READ).await;
    assert_eq!(states["alerts"][0]["state"], "resolved", "{states}");
    // Another tenant sees none of it.
    let (_, other) = h.get("/v1/alerts/history", BLOG_READ).await;
    assert_eq!(other["notifications"], json!([]));
    // (Counters are the test process's, shared with the other tests' apps: at least these.)
    let metrics = h.metrics().await;
    assert!(
        counter(
            &metrics,
            "sluice_alert_notifications_total{channel=\"hook\",outcome=\"delivered\"}"
        ) >= 2.0,
        "{metrics}"
    );
    assert!(metrics.contains("sluice_alerts_firing"), "{metrics}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_hold_rules_are_managed_and_bad_rules_get_400_with_their_place() {
    let port = free_port();
    let receiver = Receiver::start(port).await;
    let h = Harness::start(&alerting(port, &[])).await;
    // An alerts key of the tenant manages its rules; a read key may not.
    let (status, key) = h
        .call(
            Method::POST,
            "/v1/admin/keys",
            ADMIN,
            &json!({"role": "alerts", "tenant": "shop"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let alerts_key = key["secret"].as_str().unwrap().to_owned();
    let rule = json!({"sql": BUSY, "channels": ["hook"]});
    let (status, _) = h
        .call(Method::POST, "/v1/alerts/rules", SHOP_READ, &rule)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, created) = h
        .call(Method::POST, "/v1/alerts/rules", &alerts_key, &rule)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        (created["name"].as_str(), created["origin"].as_str()),
        (Some("busy"), Some("api"))
    );
    let (status, same) = h
        .call(Method::POST, "/v1/alerts/rules", &alerts_key, &rule)
        .await;
    assert_eq!(
        (status, &same["id"]),
        (StatusCode::OK, &created["id"]),
        "unchanged: kept"
    );

    // Bad rules: 400 naming the place and what to do.
    for (sql, code, line, column, said) in [
        (
            "CREATE ALERT x ON nope WHEN n > 1",
            "invalid_sql",
            1,
            19,
            "unknown metric",
        ),
        (
            "CREATE ALERT x ON views\nWHEN bogus > 1",
            "invalid_sql",
            2,
            6,
            "bogus",
        ),
        (
            "CREATE ALERT x ON views WHEN n > 1 FOR '400d'",
            "invalid_sql",
            1,
            40,
            "90d",
        ),
        (
            "CREATE ALERT x ON views WHEN n > 'a lot'",
            "invalid_sql",
            1,
            34,
            "",
        ),
        ("CREATE METRIC x", "invalid_sql", 1, 1, ""),
    ] {
        let (status, answer) = h
            .call(
                Method::POST,
                "/v1/alerts/rules",
                &alerts_key,
                &json!({"sql": sql}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sql}: {answer}");
        let error = &answer["error"];
        assert_eq!(error["code"], code, "{sql}: {answer}");
        assert_eq!(error["line"], line, "{sql}: {answer}");
        if column > 1 {
            assert_eq!(error["column"], column, "{sql}: {answer}");
        }
        assert!(
            error["message"].as_str().unwrap().contains(said),
            "{sql}: {answer}"
        );
    }
    for (channels, code) in [
        (json!(["pager"]), "unknown_channel"),
        (json!(["hook", "hook"]), "invalid_channels"),
    ] {
        let (status, answer) = h
            .call(
                Method::POST,
                "/v1/alerts/rules",
                &alerts_key,
                &json!({"sql": BUSY, "channels": channels}),
            )
            .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{answer}"
        );
    }

    // The channel test reaches the receiver.
    let (status, tested) = h
        .call(
            Method::POST,
            "/v1/alerts/channels/hook/test",
            &alerts_key,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tested}");
    assert_eq!(receiver.deliveries().len(), 1);
    assert_eq!(receiver.deliveries()[0].json()["status"], "test");

    // A silence of the rule (its every key: `{}`) holds: the transition is recorded, not sent.
    let (status, silence) = h
        .call(
            Method::POST,
            "/v1/alerts/silences",
            &alerts_key,
            &json!({"rule": "busy", "key": {}, "duration": "1h", "comment": "deploy"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{silence}");
    fire_busy(&h).await;
    let silenced = eventually("the firing notification silenced", || async {
        let (_, history) = h.get("/v1/alerts/history", SHOP_READ).await;
        match history["notifications"].as_array() {
            Some(rows) if rows.iter().any(|row| row["state"] == "silenced") => Ok(rows.clone()),
            _ => Err(history.to_string()),
        }
    })
    .await;
    assert_eq!(silenced.len(), 1, "{silenced:?}");
    assert_eq!(silenced[0]["status"], "firing");
    let (_, firing) = h.get("/v1/alerts?state=firing", SHOP_READ).await;
    assert_eq!(
        firing["alerts"].as_array().unwrap().len(),
        1,
        "it fires, silently: {firing}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.deliveries().len(),
        1,
        "only the test notification was sent"
    );

    // Deleting the silence and the rule.
    let id = silence["id"].as_str().unwrap();
    let (status, _) = h
        .call(
            Method::DELETE,
            &format!("/v1/alerts/silences/{id}"),
            &alerts_key,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h
        .call(
            Method::DELETE,
            "/v1/alerts/rules/busy",
            &alerts_key,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, rules) = h.get("/v1/alerts/rules", SHOP_READ).await;
    assert_eq!(rules["rules"], json!([]));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_pending_at_a_sigkill_is_delivered_once_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config_path = dir.path().join("sluice.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
tenants = [{{ name = "shop", write-keys = ["{SHOP_WRITE}"], read-keys = ["{SHOP_READ}"] }}]
admin-keys = ["{ADMIN}"]
metrics = [{{ sql = "{VIEWS}" }}]
[[alert-channels]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:{port}/hook"
secret = "{SECRET}"
[[alerts]]
tenant = "shop"
sql = "{BUSY}"
channels = ["hook"]
[alerting]
evaluate-interval = "100ms"
retry-initial-interval = "200ms"
retry-max-interval = "1s"
[log]
partitions = 2
[stream]
default-out-of-orderness = "0s"
[store]
checkpoint-interval = "50ms"
"#
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let config = config_path.to_str().unwrap().to_owned();
    let server = Server::start_in(&data, &["--config", &config]);
    let send = |server: &Server, events: Vec<Value>| {
        let auth = sluice::client::basic_auth(SHOP_WRITE);
        let body = json!({ "batch": events }).to_string();
        let (status, answer) = http_request(
            server.addr,
            "POST",
            "/v1/batch",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        );
        assert_eq!(status, 200, "{answer}");
    };
    let read = format!("Bearer {SHOP_READ}");
    let get = |server: &Server, path: &str| -> Value {
        let (status, body) =
            http_request(server.addr, "GET", path, &[("authorization", &read)], b"");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let wait = |what: &str, check: &mut dyn FnMut() -> Option<Value>| -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let base = hours_ago(3);
    send(&server, everywhere("/z", base, 8));
    wait("the rule evaluated", &mut || {
        let alerts = get(&server, "/v1/alerts");
        (!alerts["alerts"].as_array()?.is_empty()).then_some(alerts)
    });
    send(&server, views_of_a(base + MINUTE + 1_000, 10));
    send(&server, everywhere("/z", base + 2 * MINUTE + 1_000, 8));
    // The receiver is down: the notification is in the outbox, tried and pending.
    let pending = wait("a failed attempt", &mut || {
        let history = get(&server, "/v1/alerts/history");
        let row = history["notifications"].as_array()?.first()?.clone();
        (row["state"] == "pending" && row["attempts"].as_u64()? >= 1).then_some(row)
    });
    assert!(
        pending["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("127.0.0.1"),
        "the error says what failed: {pending}"
    );
    let output = server.signal("KILL");
    assert_eq!(output.status.code(), None, "killed by SIGKILL");

    let receiver = Receiver::start(port).await;
    let server = Server::start_in(&data, &["--config", &config]);
    let got = first_deliveries(&receiver).await;
    assert_eq!(got[0].id, pending["id"], "the id from before the kill");
    assert_eq!(got[0].json()["status"], "firing");
    nothing_more_than(&receiver, 1).await;
    let history = get(&server, "/v1/alerts/history");
    let rows = history["notifications"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        1,
        "one notification, not a second from the replay: {history}"
    );
    assert_eq!(rows[0]["state"], "delivered");
    assert!(rows[0]["attempts"].as_u64().unwrap() >= 2, "{history}");

    // The CLI reads the same: the firing instance, the delivered notification.
    let url = format!("http://{}", server.addr);
    let cli = |args: &[&str]| {
        crate::support::output_within(
            std::process::Command::new(crate::support::BIN)
                .args(args)
                .args(["--url", &url]),
            Duration::from_secs(20),
        )
    };
    let listed = cli(&["alerts", "list", "--read-key", SHOP_READ]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{listed:?}");
    assert!(
        text.contains("busy") && text.contains("firing") && text.contains("critical"),
        "{text}"
    );
    let listed = cli(&["alerts", "list", "--history", "--read-key", SHOP_READ]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("delivered") && text.contains("hook"),
        "{text}"
    );
    let created = cli(&[
        "alerts",
        "create",
        "CREATE ALERT quiet ON views WHEN n < 1",
        "--channel",
        "hook",
        "--key",
        ADMIN,
        "--tenant",
        "shop",
    ]);
    assert!(created.status.success(), "{created:?}");
    assert!(
        String::from_utf8_lossy(&created.stdout).contains("rule quiet on views stored"),
        "{created:?}"
    );
    let bad = cli(&[
        "alerts",
        "create",
        "CREATE ALERT bad ON views\nWHEN nope > 1",
        "--key",
        ADMIN,
        "--tenant",
        "shop",
    ]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("line 2"),
        "{bad:?}"
    );
    let deleted = cli(&[
        "alerts", "delete", "quiet", "--key", ADMIN, "--tenant", "shop",
    ]);
    assert!(deleted.status.success(), "{deleted:?}");
    let refused = cli(&["alerts", "test", "hook", "--key", SHOP_READ]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "a read key may not test: {refused:?}"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("an alerts key or an admin key"),
        "{refused:?}"
    );
    server.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_rule_fires_on_a_window_still_open() {
    let port = free_port();
    let receiver = Receiver::start(port).await;
    let live = "CREATE ALERT live_busy ON views WHERE url = '/a' WHEN n > 5 WITH (on = 'live')";
    let h = Harness::start(&alerting(port, &[live])).await;
    let base = hours_ago(3);
    h.send_ok(SHOP_WRITE, everywhere("/z", base, 8)).await;
    evaluated(&h, "live_busy").await;
    h.send_ok(SHOP_WRITE, views_of_a(base + MINUTE + 1_000, 10))
        .await;
    let deliveries = first_deliveries(&receiver).await;
    let firing = deliveries[0].json();
    assert_eq!(firing["status"], "firing", "{firing}");
    assert_eq!(firing["value"], 10.0);
    let at = firing["at_ms"].as_i64().unwrap();
    assert!(
        (base + MINUTE..base + 2 * MINUTE).contains(&at),
        "fired inside the window, at its watermark: {firing}"
    );
    // The window it fired on is still open.
    let path = format!(
        "/v1/metrics/views?from={}&to={}&filter=url:/a",
        base,
        base + 2 * MINUTE
    );
    let (_, answer) = h.get(&path, SHOP_READ).await;
    assert_eq!(points(&answer, "/a")[0][2], false, "{answer}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_gets_its_notification_dead_lettered_visibly() {
    let port = free_port(); // nothing listens there
    let mut overrides = alerting(port, &[BUSY]);
    overrides.push((
        "alerting.max-retry-duration",
        toml::Value::String("1s".into()),
    ));
    let h = Harness::start(&overrides).await;
    fire_busy(&h).await;
    let dead = eventually("the notification given up", || async {
        let (_, history) = h.get("/v1/alerts/history?state=dead", SHOP_READ).await;
        match history["notifications"].as_array() {
            Some(rows) if !rows.is_empty() => Ok(rows[0].clone()),
            _ => Err(history.to_string()),
        }
    })
    .await;
    assert_eq!(dead["status"], "firing");
    assert!(
        dead["attempts"].as_u64().unwrap() >= 2,
        "retried first: {dead}"
    );
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|error| error.contains(&format!("127.0.0.1:{port}"))),
        "{dead}"
    );
    assert_eq!(
        dead["next_attempt"],
        Value::Null,
        "never tried again: {dead}"
    );
    let metrics = h.metrics().await;
    assert!(
        counter(
            &metrics,
            "sluice_alert_notifications_total{channel=\"hook\",outcome=\"dead\"}"
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        counter(
            &metrics,
            "sluice_alert_notifications_total{channel=\"hook\",outcome=\"failed\"}"
        ) >= 1.0,
        "{metrics}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_while_gets_the_notification_once_it_is_back() {
    let port = free_port(); // the receiver starts later
    let h = Harness::start(&alerting(port, &[BUSY])).await;
    fire_busy(&h).await;
    let failed = eventually("attempts that failed", || async {
        let (_, history) = h.get("/v1/alerts/history", SHOP_READ).await;
        match history["notifications"]
            .as_array()
            .and_then(|rows| rows.first())
        {
            Some(row) if row["attempts"].as_u64().unwrap_or(0) >= 2 => Ok(row.clone()),
            _ => Err(history.to_string()),
        }
    })
    .await;
    assert_eq!(failed["state"], "pending", "{failed}");
    assert!(failed["next_attempt"].as_i64().is_some(), "{failed}");

    let receiver = Receiver::start(port).await;
    let got = first_deliveries(&receiver).await;
    assert_eq!(got[0].id, failed["id"], "the same notification");
    nothing_more_than(&receiver, 1).await;
    let (_, history) = h.get("/v1/alerts/history", SHOP_READ).await;
    assert_eq!(
        history["notifications"][0]["state"], "delivered",
        "{history}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_made_before_any_event_reads_every_window_from_the_first() {
    let port = free_port();
    let receiver = Receiver::start(port).await;
    let h = Harness::start(&alerting(port, &[BUSY])).await;
    // No event yet: the rule is saved reading from the first window on.
    let instances = evaluated(&h, "busy").await;
    assert_eq!(instances[0]["state"], "ok");
    // The first events of all: minute 1 is final as soon as minute 2's arrive, in one batch.
    let base = hours_ago(3);
    let mut events = views_of_a(base + MINUTE + 1_000, 10);
    events.extend(everywhere("/z", base + 2 * MINUTE + 1_000, 8));
    h.send_ok(SHOP_WRITE, events).await;
    let got = first_deliveries(&receiver).await;
    assert_eq!(got[0].json()["status"], "firing");
    assert_eq!(got[0].json()["at_ms"], base + 2 * MINUTE);
    h.stop().await;
}
