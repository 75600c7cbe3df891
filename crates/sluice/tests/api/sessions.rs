//! Sessions through the admin API: visitors' events become one session record each when the
//! session closes, open sessions survive a restart, a metric counts sessions per campaign
//! source, and `sluice tail` shows each session once.

use crate::harness::*;
use crate::support;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_core::time::{Millis, format_millis, now_millis};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

const SESSIONS: &str = "CREATE SESSIONS visits GAP '10s'";
const BY_SOURCE: &str = "CREATE METRIC by_source AS SELECT utm_source, COUNT(*) AS sessions, \
     SUM(events) AS events, SUM(pages) AS pages, SUM(bounce) AS bounces, MAX(duration_ms) AS longest \
     FROM visits GROUP BY utm_source, TUMBLE(timestamp, INTERVAL '1' HOUR)";

/// A page view by visitor `anon` at `time`, from campaign `source` if given.
fn page(anon: &str, time: Millis, url: &str, source: Option<&str>) -> Value {
    let mut event = json!({
        "type": "page",
        "anonymousId": anon,
        "timestamp": format_millis(time),
        "properties": {"url": url},
        "context": {"userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"},
    });
    if let Some(source) = source {
        event["context"]["campaign"] = json!({"source": source, "medium": "email"});
    }
    event
}

/// Per `utm_source` of an answer: [sessions, events, pages, bounces, longest], summed over
/// windows.
fn by_source(answer: &Value) -> BTreeMap<String, Vec<i64>> {
    let mut out = BTreeMap::new();
    for series in answer["series"].as_array().into_iter().flatten() {
        let source = series["key"]["utm_source"].to_string();
        let entry: &mut Vec<i64> = out.entry(source).or_insert_with(|| vec![0; 5]);
        for point in series["points"].as_array().into_iter().flatten() {
            for (i, value) in point.as_array().unwrap()[3..].iter().enumerate() {
                let value = value.as_f64().unwrap_or(0.0) as i64;
                entry[i] = if i == 4 {
                    entry[i].max(value)
                } else {
                    entry[i] + value
                };
            }
        }
    }
    out
}

/// `GET /v1/sessions/visits/open` with `key`: the open sessions' count.
async fn open(h: &Harness, key: &str) -> u64 {
    let (status, answer) = h.get("/v1/sessions/visits/open", key).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["open"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_close_into_records_that_survive_a_restart_and_a_metric_counts() {
    let mut h =
        Harness::start(&[("stream.idle-timeout", toml::Value::String("500ms".into()))]).await;
    for sql in [SESSIONS, BY_SOURCE] {
        let (status, created) = h
            .call(
                Method::POST,
                "/v1/admin/metrics",
                ADMIN,
                &json!({"sql": sql}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
    }
    let (_, status) = h.get("/v1/admin/metrics/visits", ADMIN).await;
    assert_eq!(
        (&status["kind"], &status["source"]),
        (&json!("sessions"), &json!("events")),
        "{status}"
    );
    let t = now_millis() - 30_000;
    // In time order: the collector keeps each visitor's order, the watermark the rest.
    h.send_ok(
        SHOP_WRITE,
        vec![
            page("a3", t, "/old", None),
            page("a1", t + 10_000, "/landing", Some("news")),
            page("a2", t + 10_000, "/only", None),
        ],
    )
    .await;
    h.send_ok(
        BLOG_WRITE,
        vec![page("b1", t + 10_000, "/post", Some("social"))],
    )
    .await;
    // Open sessions are a live count: a1's and a2's last until 10 s after their events.
    eventually("a1's and a2's sessions open", || async {
        let seen = open(&h, SHOP_READ).await;
        (seen >= 2).then_some(()).ok_or(seen.to_string())
    })
    .await;
    eventually("b1's session open", || async {
        let seen = open(&h, BLOG_READ).await;
        (seen == 1).then_some(()).ok_or(seen.to_string())
    })
    .await;
    let (status, answer) = h.get("/v1/sessions/by_source/open", SHOP_READ).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "not_sessions", "{answer}");
    // a1's session is open across a restart: it is restored from the store.
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.restart().await;
    h.send_ok(
        SHOP_WRITE,
        vec![
            page("a3", t + 11_000, "/new", None),
            page("a1", t + 12_000, "/pricing", None),
            page("a1", t + 13_500, "/signup", None),
        ],
    )
    .await;
    // Shop: a1 one session of 3 pages from news, 3.5 s long; a2 a bounce; a3 two bounces
    // (11 s apart: more than the gap).
    let expected: BTreeMap<String, Vec<i64>> = [
        ("\"news\"".to_owned(), vec![1, 3, 3, 0, 3_500]),
        ("null".to_owned(), vec![3, 3, 3, 3, 0]),
    ]
    .into();
    eventually("the sessions closed and counted", || async {
        let (status, answer) = h.get("/v1/metrics/by_source?from=now-2h", SHOP_READ).await;
        if status != StatusCode::OK {
            return Err(format!("{status} {answer}"));
        }
        let seen = by_source(&answer);
        (seen == expected)
            .then_some(())
            .ok_or_else(|| format!("{seen:?}: {answer}"))
    })
    .await;
    eventually("blog's session", || async {
        let (_, answer) = h.get("/v1/metrics/by_source?from=now-2h", BLOG_READ).await;
        let seen = by_source(&answer);
        (seen == BTreeMap::from([("\"social\"".to_owned(), vec![1, 1, 1, 1, 0])]))
            .then_some(())
            .ok_or_else(|| format!("{seen:?}"))
    })
    .await;

    assert_eq!(open(&h, SHOP_READ).await, 0, "every session closed");
    // Sessions are not a metric to query.
    let (status, answer) = h.get("/v1/metrics/visits", SHOP_READ).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "stream", "{answer}");

    // Managed as a stream: not deleted while a metric reads it, not replayed, and listed by
    // an erasure among the topics that hold the user's events.
    let (status, answer) = h
        .call(
            Method::DELETE,
            "/v1/admin/metrics/visits",
            ADMIN,
            &Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "stream_in_use", "{answer}");
    let (status, answer) = h
        .call(
            Method::POST,
            "/v1/admin/metrics/visits/replay",
            ADMIN,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "stream_not_replayed", "{answer}");
    let (status, erased) = h
        .call(
            Method::DELETE,
            "/v1/users/a1?tenant=shop",
            ADMIN,
            &Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert!(
        erased["remaining"]["topics"]
            .as_array()
            .is_some_and(|topics| topics.contains(&json!("visits"))),
        "{erased}"
    );

    let output = Command::new(support::BIN)
        .args([
            "tail",
            "visits",
            "--from-beginning",
            "--no-follow",
            "--data-dir",
        ])
        .arg(&h.config.data_dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let mut sessions: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    sessions.sort_by_key(|line| {
        let value = &line["value"];
        (
            value["tenant"].to_string(),
            value["anonymous_id"].to_string(),
            value["properties"]["start"].as_i64(),
        )
    });
    assert_eq!(sessions.len(), 5, "each session once: {sessions:#?}");
    let a1 = &sessions[1];
    let id = a1["value"]["message_id"].as_str().unwrap();
    assert!(
        a1["headers"]["sluice-origin"]
            .as_str()
            .is_some_and(|origin| origin.ends_with(&format!("/session/{id}"))),
        "{a1}"
    );
    let properties = &a1["value"]["properties"];
    assert_eq!(properties["visitor"], "a1", "{a1}");
    assert_eq!(
        (
            &properties["entry_page"],
            &properties["exit_page"],
            &properties["utm_medium"],
            &properties["device"],
            &properties["start"],
        ),
        (
            &json!("/landing"),
            &json!("/signup"),
            &json!("email"),
            &json!("mobile"),
            &json!(t + 10_000),
        ),
        "{a1}"
    );
    h.stop().await;
}
