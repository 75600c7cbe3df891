//! The collector's HTTP behaviour: the real app on 127.0.0.1:0, spoken to over HTTP, checked
//! against what lands in the log.

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use sluice::app::App;
use sluice::client::{Connection, Reply, Target, basic_auth};
use sluice_core::time::now_millis;
use sluice_ingest::dedup::{Claim, fingerprint};
use sluice_log::{Log, LogBackend, ReadOptions};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

pub(crate) const WRITE_KEY: &str = "wk_test_shop_0123456789";
pub(crate) const OTHER_KEY: &str = "wk_test_blog_0123456789";

pub(crate) struct Harness {
    app: Option<App>,
    pub(crate) target: Target,
    config: sluice::config::Config,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub(crate) async fn start(overrides: &[(&str, toml::Value)]) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let tenants: toml::Value = toml::from_str::<toml::Table>(&format!(
            "t = [{{ name = \"shop\", write-keys = [\"{WRITE_KEY}\"] }}, {{ name = \"blog\", write-keys = [\"{OTHER_KEY}\"] }}]"
        ))
        .unwrap()["t"]
            .clone();
        let mut all = vec![
            (
                "data-dir",
                toml::Value::String(dir.path().display().to_string()),
            ),
            ("server.listen", toml::Value::String("127.0.0.1:0".into())),
            ("tenants", tenants),
            ("log.partitions", toml::Value::Integer(4)),
        ];
        all.extend(overrides.iter().cloned());
        let config = sluice::config::load(None, &all).unwrap();
        let app = App::start(&config).await.unwrap();
        let target = Target::parse(&format!("http://{}", app.addr)).unwrap();
        Harness {
            app: Some(app),
            target,
            config,
            _dir: dir,
        }
    }

    /// Stops the server and starts it again on the same data dir (and a new port).
    pub(crate) async fn restart(&mut self) {
        let app = self.app.take().unwrap();
        app.stop(Duration::from_secs(5)).await.unwrap();
        let app = App::start(&self.config).await.unwrap();
        self.target = Target::parse(&format!("http://{}", app.addr)).unwrap();
        self.app = Some(app);
    }

    pub(crate) fn app(&self) -> &App {
        self.app.as_ref().unwrap()
    }

    async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (StatusCode, Value, Reply) {
        self.request(Method::POST, path, headers, body).await
    }

    /// A request; the answer parsed as JSON when it is.
    pub(crate) async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (StatusCode, Value, Reply) {
        let mut connection = Connection::open(&self.target).await.unwrap();
        let reply = connection
            .send(method, path, headers, body.into())
            .await
            .unwrap();
        let value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        (reply.status, value, reply)
    }

    async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let auth = basic_auth(WRITE_KEY);
        let (status, value, _) = self
            .post(
                path,
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                body.to_string(),
            )
            .await;
        (status, value)
    }

    /// Every record of a topic, values parsed as JSON.
    pub(crate) async fn records(&self, topic: &str) -> Vec<Value> {
        topic_values(&*self.app().log, topic).await
    }

    pub(crate) async fn stop(mut self) {
        self.app
            .take()
            .unwrap()
            .stop(Duration::from_secs(5))
            .await
            .unwrap();
    }
}

/// The log of a stopped server: its data dir opened with its config file (recovering it).
pub(crate) async fn open_log(config: &Path, data: &Path) -> LogBackend {
    let config = sluice::config::load(
        Some(config),
        &[("data-dir", toml::Value::String(data.display().to_string()))],
    )
    .unwrap();
    LogBackend::open(&config.log, &config.data_dir)
        .await
        .unwrap()
}

/// Every record of `topic` in `log`, values parsed as JSON.
pub(crate) async fn topic_values<L: Log>(log: &L, topic: &str) -> Vec<Value> {
    let mut values = Vec::new();
    for partition in &log.describe(Some(topic)).await.unwrap()[0].partitions {
        let mut offset = partition.start_offset;
        while offset < partition.end_offset {
            let options = ReadOptions {
                max_bytes: 4 << 20,
                max_wait: Duration::ZERO,
            };
            let batch = log
                .read(topic, partition.partition, offset, options)
                .await
                .unwrap();
            offset = batch.next_offset(offset);
            values.extend(
                batch
                    .records
                    .iter()
                    .map(|r| serde_json::from_slice::<Value>(&r.record.value).unwrap()),
            );
        }
    }
    values
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn error_message(value: &Value) -> &str {
    value["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_segment_call_type_is_accepted_and_stored_normalized() {
    let h = Harness::start(&[]).await;
    let calls = [
        (
            "track",
            json!({"userId": "u1", "event": "Order Completed", "properties": {"revenue": 9.99}, "messageId": "t-1"}),
        ),
        (
            "page",
            json!({"anonymousId": "a1", "name": "Home", "category": "Docs", "properties": {"url": "/"}}),
        ),
        ("screen", json!({"userId": "u1", "name": "Settings"})),
        (
            "identify",
            json!({"userId": "u1", "traits": {"plan": "pro"}}),
        ),
        (
            "group",
            json!({"userId": "u1", "groupId": "acme", "traits": {"seats": 10}}),
        ),
        ("alias", json!({"userId": "u1", "previousId": "a1"})),
    ];
    for (kind, body) in &calls {
        let (status, reply) = h.post_json(&format!("/v1/{kind}"), body).await;
        assert_eq!(status, StatusCode::OK, "{kind}: {reply}");
        assert_eq!(
            reply,
            json!({"success": true, "accepted": 1, "duplicates": 0, "rejected": []})
        );
    }
    let events = h.records("events").await;
    assert_eq!(events.len(), 6);
    for (kind, _) in &calls {
        let event = events
            .iter()
            .find(|e| e["type"] == *kind)
            .unwrap_or_else(|| panic!("no {kind} event"));
        assert_eq!(event["tenant"], "shop");
        assert!(event["timestamp"].as_i64().unwrap() > 1_700_000_000_000);
    }
    let track = events.iter().find(|e| e["type"] == "track").unwrap();
    assert_eq!(track["message_id"], "t-1");
    assert_eq!(track["properties"], json!({"revenue": 9.99}));
    let group = events.iter().find(|e| e["type"] == "group").unwrap();
    assert_eq!(group["group_id"], "acme");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_keys_are_required_and_checked() {
    let h = Harness::start(&[]).await;
    let body = json!({"userId": "u", "event": "e"}).to_string();
    let (status, reply, _) = h.post("/v1/track", &[], body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        error_message(&reply).starts_with("missing write key: send it as the HTTP Basic username"),
        "{reply}"
    );

    let (status, reply, _) = h
        .post(
            "/v1/track",
            &[("authorization", &basic_auth("wk_nobody_0123456789"))],
            body.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        error_message(&reply).starts_with("unknown write key"),
        "{reply}"
    );

    let (status, reply, _) = h
        .post(
            "/v1/track",
            &[("authorization", "Bearer abc")],
            body.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        error_message(&reply).starts_with("malformed Authorization header"),
        "{reply}"
    );

    // writeKey in the body, as browser snippets send it; the event belongs to that key's tenant.
    let with_key =
        json!({"writeKey": OTHER_KEY, "batch": [{"type": "track", "userId": "u", "event": "e"}]});
    let (status, reply, _) = h.post("/v1/batch", &[], with_key.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let events = h.records("events").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["tenant"], "blog");
    assert!(
        h.records("events.dlq").await.is_empty(),
        "unauthenticated input is not attributed to anyone"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_accepts_the_valid_and_reports_and_dead_letters_the_invalid() {
    let h = Harness::start(&[]).await;
    let batch = json!({"batch": [
        {"type": "track", "userId": "u1", "event": "Signed Up"},
        {"type": "track", "event": "No Id"},
        {"type": "purchase", "userId": "u2"},
        {"type": "identify", "userId": "u3", "timestamp": "not a time"},
        {"type": "page", "anonymousId": "a4", "name": "Pricing"},
    ]});
    let (status, reply) = h.post_json("/v1/batch", &batch).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["accepted"], 2);
    let rejected = reply["rejected"].as_array().unwrap();
    let summary: Vec<(i64, &str, &str)> = rejected
        .iter()
        .map(|r| {
            (
                r["index"].as_i64().unwrap(),
                r["path"].as_str().unwrap(),
                r["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "batch[1].userId", "missing_field"),
            (2, "batch[2].type", "unknown_type"),
            (3, "batch[3].timestamp", "invalid_timestamp")
        ]
    );
    assert!(
        rejected[1]["message"]
            .as_str()
            .unwrap()
            .contains("expected one of track, page, screen, identify, group, alias")
    );

    let events = h.records("events").await;
    assert_eq!(events.len(), 2);
    let dead = h.records("events.dlq").await;
    assert_eq!(dead.len(), 3);
    let letter = dead.iter().find(|d| d["index"] == 2).unwrap();
    assert_eq!(letter["tenant"], "shop");
    assert_eq!(letter["reason"], "unknown_type");
    assert_eq!(letter["endpoint"], "/v1/batch");
    assert_eq!(
        serde_json::from_str::<Value>(letter["raw"].as_str().unwrap()).unwrap(),
        json!({"type": "purchase", "userId": "u2"})
    );

    // A batch where every event is invalid is a 400 with the same per-event report.
    let (status, reply) = h
        .post_json("/v1/batch", &json!({"batch": [{"type": "track"}]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reply["success"], false);
    assert_eq!(reply["rejected"][0]["path"], "batch[0].userId");
    // A single invalid event too.
    let (status, reply) = h.post_json("/v1/track", &json!({"userId": "u"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply["rejected"][0]["message"],
        "event: track calls need an event name, like \"Order Completed\""
    );
    assert_eq!(reply["rejected"][0]["index"], 0);
    // A single event with a field of the wrong type, or that is not an object, is rejected in
    // the same shape as in a batch (not refused as a body), and dead-lettered.
    let letters = h.records("events.dlq").await.len();
    for (body, path) in [
        (json!({"userId": "u", "event": 5}), "event"),
        (
            json!({"userId": "u", "event": "Typed", "timestamp": 12}),
            "timestamp",
        ),
        (
            json!({"userId": "u", "event": "Typed", "properties": []}),
            "properties",
        ),
        (json!(["not", "an", "event"]), ""),
    ] {
        let (status, reply) = h.post_json("/v1/track", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        assert_eq!(reply["success"], false, "{reply}");
        assert_eq!(reply["accepted"], 0, "{reply}");
        assert_eq!(reply["duplicates"], 0, "{reply}");
        assert!(reply.get("error").is_none(), "{reply}");
        let rejection = &reply["rejected"][0];
        assert_eq!(
            (&rejection["index"], &rejection["path"]),
            (&json!(0), &json!(path)),
            "{reply}"
        );
        assert!(
            ["wrong_type", "not_an_object"].contains(&rejection["reason"].as_str().unwrap()),
            "{reply}"
        );
        assert!(!rejection["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(h.records("events.dlq").await.len(), letters + 4);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversize_bodies_are_refused_with_the_position_or_the_limit() {
    let h = Harness::start(&[(
        "limits.max-batch-bytes",
        toml::Value::String("64KiB".into()),
    )])
    .await;
    let auth = basic_auth(WRITE_KEY);
    let headers = [("authorization", auth.as_str())];

    let (status, reply, _) = h
        .post("/v1/batch", &headers, "{\"batch\": [\n  {\"type\": }]}")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reply["error"]["code"], "malformed_json");
    assert_eq!(
        error_message(&reply),
        "malformed JSON at line 2, column 12: expected value"
    );
    let (status, reply, _) = h.post("/v1/batch", &headers, "{\"events\": []}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error_message(&reply).contains("a batch request is {\"batch\": [...]}"),
        "{reply}"
    );
    assert_eq!(
        h.records("events.dlq").await.len(),
        2,
        "bodies that are not batches are dead-lettered too"
    );

    let big = format!(
        "{{\"batch\":[{}]}}",
        vec![r#"{"type":"track","userId":"u","event":"e"}"#; 2000].join(",")
    );
    let (status, reply, _) = h.post("/v1/batch", &headers, big.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        error_message(&reply),
        "request body is larger than the limit of 65536 bytes (limits.max-batch-bytes)"
    );

    let gz = [
        ("authorization", auth.as_str()),
        ("content-encoding", "gzip"),
    ];
    let (status, reply, _) = h.post("/v1/batch", &gz, gzip(big.as_bytes())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{reply}");
    assert_eq!(
        error_message(&reply),
        "request body is larger than the limit of 65536 bytes (limits.max-batch-bytes) after decompression"
    );

    let event = json!({"userId": "u", "event": "e", "properties": {"blob": "x".repeat(40_000)}})
        .to_string();
    let (status, reply, _) = h.post("/v1/track", &headers, event).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        error_message(&reply).contains("(limits.max-event-bytes)"),
        "{reply}"
    );

    let (status, reply, _) = h.post("/v1/batch", &gz, "not gzip").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error_message(&reply)
            .starts_with("Content-Encoding is gzip but the body is not valid gzip"),
        "{reply}"
    );
    let br = [("authorization", auth.as_str()), ("content-encoding", "br")];
    let (status, reply, _) = h.post("/v1/batch", &br, "{}").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        error_message(&reply).contains("unsupported Content-Encoding \"br\""),
        "{reply}"
    );
    assert!(h.records("events").await.is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_batch_is_accepted() {
    let h = Harness::start(&[]).await;
    let auth = basic_auth(WRITE_KEY);
    let messages: Vec<Value> = (0..50).map(|i| json!({"type": "track", "anonymousId": format!("a{i}"), "event": "Gzipped", "properties": {"i": i}})).collect();
    let body = gzip(json!({"batch": messages}).to_string().as_bytes());
    let (status, reply, _) = h
        .post(
            "/v1/batch",
            &[("authorization", &auth), ("content-encoding", "gzip")],
            body,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["accepted"], 50);
    let events = h.records("events").await;
    let mut seen: Vec<i64> = events
        .iter()
        .map(|e| e["properties"]["i"].as_i64().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..50).collect::<Vec<_>>());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_creates_no_duplicates() {
    let h = Harness::start(&[]).await;
    let batch = json!({"batch": (0..20).map(|i| json!({
        "type": "track", "userId": format!("u{i}"), "event": "Retried", "messageId": format!("retry-{i}")
    })).collect::<Vec<_>>()});
    let (status, first) = h.post_json("/v1/batch", &batch).await;
    assert_eq!(
        (status, first["accepted"].as_i64()),
        (StatusCode::OK, Some(20))
    );
    let (status, second) = h.post_json("/v1/batch", &batch).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (second["accepted"].as_i64(), second["duplicates"].as_i64()),
        (Some(0), Some(20))
    );
    // A retry that adds new events appends only those; repeats inside one batch count once.
    let mut extended = batch.clone();
    extended["batch"].as_array_mut().unwrap().push(
        json!({"type": "track", "userId": "new", "event": "Retried", "messageId": "retry-new"}),
    );
    extended["batch"].as_array_mut().unwrap().push(
        json!({"type": "track", "userId": "new", "event": "Retried", "messageId": "retry-new"}),
    );
    let (_, third) = h.post_json("/v1/batch", &extended).await;
    assert_eq!(
        (third["accepted"].as_i64(), third["duplicates"].as_i64()),
        (Some(1), Some(21))
    );
    assert_eq!(h.records("events").await.len(), 21);
    // The same messageId from another tenant is a different event.
    let other = json!({"writeKey": OTHER_KEY, "batch": [{"type": "track", "userId": "u0", "event": "Retried", "messageId": "retry-0"}]});
    let (_, reply, _) = h.post("/v1/batch", &[], other.to_string()).await;
    assert_eq!(reply["accepted"], 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_retried_after_a_restart_creates_no_duplicates() {
    // A collector that crashed after appending but before answering gets the client's retry
    // after it restarts: the ids appended within the dedup window are remembered from the log.
    let mut h = Harness::start(&[]).await;
    let event = |i: usize| json!({"type": "track", "userId": format!("u{i}"), "event": "Retried", "messageId": format!("again-{i}")});
    let first = json!({"batch": (0..30).map(event).collect::<Vec<_>>()});
    let (status, reply) = h.post_json("/v1/batch", &first).await;
    assert_eq!(
        (status, reply["accepted"].as_i64()),
        (StatusCode::OK, Some(30))
    );
    h.restart().await;
    let retry = json!({"batch": (0..40).map(event).collect::<Vec<_>>()});
    let (status, reply) = h.post_json("/v1/batch", &retry).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        (reply["accepted"].as_i64(), reply["duplicates"].as_i64()),
        (Some(10), Some(30))
    );
    let mut ids: Vec<String> = h
        .records("events")
        .await
        .iter()
        .map(|e| e["message_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40);
    assert_eq!(h.records("events").await.len(), 40);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_and_concurrent_retries_answer_with_retry_after() {
    let h = Harness::start(&[
        (
            "ingest.max-in-flight-bytes",
            toml::Value::String("64KiB".into()),
        ),
        ("ingest.retry-after", toml::Value::String("2s".into())),
        // This harness has no admin key to read /metrics with.
        ("telemetry.metrics-auth", toml::Value::String("none".into())),
    ])
    .await;
    let event = json!({"userId": "u", "event": "e", "messageId": "busy-1"});

    // While the in-flight budget is spent, requests are refused at once, not queued.
    let held = h.app().collector.reserve(64 * 1024).unwrap();
    let (status, reply, raw) = h
        .post(
            "/v1/track",
            &[("authorization", &basic_auth(WRITE_KEY))],
            event.to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply["error"]["code"], "overloaded");
    assert_eq!(raw.headers.get("retry-after").unwrap(), "2");
    drop(held);

    // While another request holds the same messageId, a retry is told to come back.
    let dedup = h.app().collector.dedup();
    let id = fingerprint("shop", "busy-1");
    assert_eq!(dedup.claim(id, now_millis()), Claim::Claimed);
    let (status, reply, raw) = h
        .post(
            "/v1/track",
            &[("authorization", &basic_auth(WRITE_KEY))],
            event.to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply["error"]["code"], "busy");
    assert_eq!(raw.headers.get("retry-after").unwrap(), "2");
    assert!(h.records("events").await.is_empty(), "nothing was appended");
    dedup.release(id);

    let (status, _) = h.post_json("/v1/track", &event).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.records("events").await.len(), 1);

    let (_, metrics, _) = {
        let mut connection = Connection::open(&h.target).await.unwrap();
        let reply = connection
            .send(Method::GET, "/metrics", &[], Bytes::new())
            .await
            .unwrap();
        (
            reply.status,
            String::from_utf8(reply.body.to_vec()).unwrap(),
            (),
        )
    };
    for expected in [
        "sluice_ingest_requests_refused_total{reason=\"overloaded\"}",
        "sluice_ingest_requests_refused_total{reason=\"busy\"}",
        "sluice_ingest_events_accepted_total{tenant=\"shop\"}",
        "sluice_ingest_bytes_total",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from /metrics"
        );
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_get_cors_preflight_answers() {
    let h = Harness::start(&[]).await;
    let mut connection = Connection::open(&h.target).await.unwrap();
    let reply = connection
        .send(
            Method::OPTIONS,
            "/v1/batch",
            &[
                ("origin", "https://shop.example"),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "content-type,authorization",
                ),
            ],
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.headers.get("access-control-allow-origin").unwrap(),
        "https://shop.example"
    );
    let methods = reply
        .headers
        .get("access-control-allow-methods")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(methods.contains("POST"), "{methods}");
    h.stop().await;

    let h = Harness::start(&[(
        "ingest.cors-allowed-origins",
        toml::Value::Array(vec!["https://shop.example".into()]),
    )])
    .await;
    let mut connection = Connection::open(&h.target).await.unwrap();
    let preflight = |origin: &'static str| {
        [
            ("origin", origin),
            ("access-control-request-method", "POST"),
        ]
    };
    let allowed = connection
        .send(
            Method::OPTIONS,
            "/v1/track",
            &preflight("https://shop.example"),
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        allowed.headers.get("access-control-allow-origin").unwrap(),
        "https://shop.example"
    );
    let denied = connection
        .send(
            Method::OPTIONS,
            "/v1/track",
            &preflight("https://evil.example"),
            Bytes::new(),
        )
        .await
        .unwrap();
    assert!(denied.headers.get("access-control-allow-origin").is_none());
    h.stop().await;
}

/// What `@segment/analytics-next` and `navigator.sendBeacon` do, byte for byte where it
/// matters: short paths, `text/plain` bodies with the key inside, its own request headers, and
/// answers it must be able to read (errors and 404s too) from another origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sdks_reach_every_route_and_read_every_answer() {
    let h = Harness::start(&[]).await;
    let origin = ("origin", "http://site.example:3000");
    let plain = ("content-type", "text/plain");
    let mut connection = Connection::open(&h.target).await.unwrap();
    // A retry's preflight asks for X-Retry-Count; any header an SDK adds is allowed.
    let preflight = connection
        .send(
            Method::OPTIONS,
            "/v1/t",
            &[
                origin,
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization,content-type,x-retry-count",
                ),
            ],
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(preflight.status, StatusCode::OK);
    let allowed = preflight.headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("x-retry-count"), "{allowed}");

    // Every type by its short path, key in the body, text/plain, one with X-Retry-Count.
    let calls = [
        (
            "t",
            json!({"event": "Clicked", "properties": {"button": "buy"}}),
        ),
        ("p", json!({"name": "Home", "properties": {"path": "/"}})),
        ("s", json!({"name": "Settings"})),
        ("i", json!({"traits": {"plan": "pro"}})),
        ("g", json!({"groupId": "acme"})),
        ("a", json!({"userId": "u2", "previousId": "anon-1"})),
    ];
    for (path, mut body) in calls {
        body["anonymousId"] = json!("anon-1");
        body["writeKey"] = json!(WRITE_KEY);
        body["messageId"] = json!(format!("short-{path}"));
        let (status, reply, answer) = h
            .post(
                &format!("/v1/{path}"),
                &[origin, plain, ("x-retry-count", "1")],
                body.to_string(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "/v1/{path}: {reply}");
        assert_eq!(answer.headers["access-control-allow-origin"], origin.1);
    }
    let batch = json!({"writeKey": WRITE_KEY, "sentAt": "2024-05-01T12:00:00Z", "batch": [
        {"type": "track", "anonymousId": "anon-1", "event": "Batched", "messageId": "short-b",
         "writeKey": WRITE_KEY},
    ]});
    let (status, reply, _) = h.post("/v1/b", &[origin, plain], batch.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let mut kinds: Vec<String> = h
        .records("events")
        .await
        .iter()
        .map(|event| format!("{}:{}", event["message_id"], event["type"]))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            r#""short-a":"alias""#,
            r#""short-b":"track""#,
            r#""short-g":"group""#,
            r#""short-i":"identify""#,
            r#""short-p":"page""#,
            r#""short-s":"screen""#,
            r#""short-t":"track""#,
        ]
    );

    // Errors and unknown paths carry CORS too, and Retry-After is readable by the page.
    let (status, _, answer) = h.post("/v1/track", &[origin, plain], "{}").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.headers["access-control-allow-origin"], origin.1);
    let exposed = answer.headers["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("retry-after"), "{exposed}");
    for path in ["/v1/m", "/v1/nope", "/nothing/here"] {
        let (status, _, answer) = h.post(path, &[origin, plain], "{}").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            answer.headers["access-control-allow-origin"], origin.1,
            "{path}"
        );
    }
    // So do the server's own refusals, outside the collector: a body over
    // server.max-request-bytes (1 MiB).
    let huge = "x".repeat(1_100_000);
    let (status, _, answer) = h.post("/v1/b", &[origin, plain], huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.headers["access-control-allow-origin"], origin.1);
    // The query API is not the collector's to open to pages of other origins.
    let read = Connection::open(&h.target)
        .await
        .unwrap()
        .send(
            Method::GET,
            "/v1/metrics",
            &[origin, ("authorization", "Bearer rk_nope")],
            Bytes::new(),
        )
        .await
        .unwrap();
    assert!(
        !read.headers.contains_key("access-control-allow-origin"),
        "{:?}",
        read.headers
    );

    // A key in the body of an invalid message: the sender hears what is wrong, not 401.
    let invalid =
        json!({"writeKey": WRITE_KEY, "anonymousId": "a", "event": "e", "properties": [1]});
    let (status, reply, answer) = h.post("/v1/t", &[origin, plain], invalid.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(reply["rejected"][0]["reason"], "not_an_object", "{reply}");
    assert_eq!(answer.headers["access-control-allow-origin"], origin.1);
    let not_json = format!(r#"{{"writeKey": "{WRITE_KEY}", "batch": 7}}"#);
    let (status, reply, _) = h.post("/v1/b", &[origin, plain], not_json).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    h.stop().await;
}

/// Segment accepts any event of up to 32 KB whatever its strings, and keeps `integrations`,
/// `channel`, `version` and `_metadata`: so do the defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_sized_events_are_accepted_with_their_top_level_fields() {
    let h = Harness::start(&[]).await;
    let long = "x".repeat(20 * 1024);
    let body = json!({
        "userId": "u1", "event": "Long", "messageId": "long-1",
        "properties": {"text": long},
        "integrations": {"All": true, "Mixpanel": false},
        "channel": "browser", "version": 2,
        "_metadata": {"bundled": ["Segment.io"], "unbundled": [], "retryCount": 1},
    });
    let (status, reply) = h.post_json("/v1/track", &body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["accepted"], 1, "{reply}");
    let events = h.records("events").await;
    assert_eq!(
        events[0]["properties"]["text"].as_str(),
        Some(long.as_str())
    );
    for field in ["integrations", "channel", "version", "_metadata"] {
        assert_eq!(events[0][field], body[field], "{field}");
    }
    // Over the event limit is still refused, with the limit named.
    let body =
        json!({"userId": "u1", "event": "Huge", "properties": {"text": "x".repeat(40 * 1024)}});
    let (status, reply) = h.post_json("/v1/track", &body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{reply}");
    assert!(
        error_message(&reply).contains("limits.max-event-bytes"),
        "{reply}"
    );
    h.stop().await;
}
