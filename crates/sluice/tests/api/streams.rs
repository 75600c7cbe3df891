//! Derived streams through the admin API: a stream routes events into its own topic, a metric
//! reads it, the refusals say what to do, and `sluice tail` shows only committed records.

use crate::harness::*;
use crate::support;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_core::time::now_millis;
use sluice_log::{Log, Record};
use std::process::Command;

const STREAM: &str = "CREATE STREAM big_views AS SELECT properties.url AS url, properties.amount \
     FROM events WHERE event = 'Page Viewed' AND properties.amount > 5";
/// The stream's columns by their names (`url` is the records' `properties.url`).
const BIG: &str = "CREATE METRIC big AS SELECT url, COUNT(*) AS n, SUM(amount) AS amount \
     FROM big_views GROUP BY url, TUMBLE(timestamp, INTERVAL '1' MINUTE)";

async fn admin(h: &Harness, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
    h.call(method, path, ADMIN, &body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_routes_events_a_metric_counts_them_and_tail_shows_the_committed_ones() {
    let h = Harness::start(&[]).await;
    let now = now_millis();
    // Sent before the stream exists: its backfill routes them.
    h.send_ok(
        SHOP_WRITE,
        vec![
            view("a1", "u1", "/a", now, "7"),
            view("a2", "u2", "/a", now, "1"),
        ],
    )
    .await;
    let (status, created) = admin(
        &h,
        Method::POST,
        "/v1/admin/metrics",
        json!({"sql": STREAM, "backfill": true}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        (&created["kind"], &created["source"]),
        (&json!("stream"), &json!("events"))
    );

    // A metric FROM a name that is no stream is refused, saying what to do.
    let (status, refused) = admin(
        &h,
        Method::POST,
        "/v1/admin/metrics",
        json!({"sql": BIG.replace("FROM big_views", "FROM big_vews")}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"]["code"], "unknown_stream", "{refused}");
    assert!(
        refused.to_string().contains("CREATE STREAM big_vews"),
        "{refused}"
    );
    let (status, created) = admin(
        &h,
        Method::POST,
        "/v1/admin/metrics",
        json!({"sql": BIG, "backfill": true}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        (&created["kind"], &created["source"]),
        (&json!("metric"), &json!("big_views"))
    );

    h.send_ok(
        SHOP_WRITE,
        vec![
            view("a3", "u3", "/a", now, "9"),
            view("a4", "u4", "/b", now, "6.5"),
            view("a5", "u5", "/b", now, "5"),
        ],
    )
    .await;
    h.send_ok(BLOG_WRITE, vec![view("b1", "u1", "/a", now, "100")])
        .await;
    let row = |answer: &Value, url: &str| -> Vec<Value> {
        points(answer, url)
            .iter()
            .map(|point| json!([point[3], point[4]]))
            .collect()
    };
    eventually("the routed views counted", || async {
        let (status, answer) = h.get("/v1/metrics/big?from=now-2h", SHOP_READ).await;
        if status != StatusCode::OK {
            return Err(format!("{status} {answer}"));
        }
        let (a, b) = (row(&answer, "/a"), row(&answer, "/b"));
        if a == [json!([2, 16])] && b == [json!([1, 6.5])] {
            Ok(())
        } else {
            Err(format!("/a {a:?}, /b {b:?}: {answer}"))
        }
    })
    .await;
    eventually("blog's own", || async {
        let (_, answer) = h.get("/v1/metrics/big?from=now-2h", BLOG_READ).await;
        (row(&answer, "/a") == [json!([1, 100])])
            .then_some(())
            .ok_or_else(|| answer.to_string())
    })
    .await;

    // A stream is not a metric to query, is not replayed, and goes only once nothing reads it.
    let (status, answer) = h.get("/v1/metrics/big_views", SHOP_READ).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "stream", "{answer}");
    let (_, listed) = h.get("/v1/metrics", SHOP_READ).await;
    assert!(!listed.to_string().contains("big_views"), "{listed}");
    let (status, answer) = admin(
        &h,
        Method::POST,
        "/v1/admin/metrics/big_views/replay",
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "stream_not_replayed");
    // An erasure reports the stream's topic among those that may hold the user's events.
    let (status, erased) = admin(&h, Method::DELETE, "/v1/users/u3?tenant=shop", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert_eq!(
        erased["remaining"]["topics"],
        json!(["events", "events.dlq", "events.late", "big_views"]),
        "{erased}"
    );
    let (status, answer) = admin(
        &h,
        Method::DELETE,
        "/v1/admin/metrics/big_views",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(answer.to_string().contains("read by big"), "{answer}");

    // A writer that appended and died before its commit leaves records no reader may see:
    // put some between the committed ones, then route more events after them.
    for partition in 0..2 {
        // As a routed record would look: counted, it would show in /b.
        let orphan = format!(
            r#"{{"tenant":"shop","timestamp":{now},"type":"track","event":"Page Viewed","properties":{{"url":"/b","amount":1000}}}}"#
        );
        let orphan = Record::new(None, orphan.into_bytes(), now);
        h.app()
            .log
            .append("big_views", partition, vec![orphan])
            .await
            .unwrap();
    }
    h.send_ok(SHOP_WRITE, vec![view("a6", "u6", "/b", now, "8")])
        .await;
    eventually("the view routed after the orphans counted", || async {
        let (_, answer) = h.get("/v1/metrics/big?from=now-2h", SHOP_READ).await;
        (row(&answer, "/b") == [json!([2, 14.5])])
            .then_some(())
            .ok_or_else(|| answer.to_string())
    })
    .await;
    let data = h.config.data_dir.clone();
    let output = Command::new(support::BIN)
        .args([
            "tail",
            "big_views",
            "--from-beginning",
            "--no-follow",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let mut lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    lines.sort_by_key(|line| line["value"]["properties"]["amount"].to_string());
    let routed: Vec<(Value, Value, Value)> = lines
        .iter()
        .map(|line| {
            let value = &line["value"];
            assert_eq!(value["event"], "Page Viewed");
            assert!(
                line["headers"]["sluice-origin"]
                    .as_str()
                    .is_some_and(|origin| origin.starts_with("events/")),
                "{line}"
            );
            (
                value["tenant"].clone(),
                value["properties"]["url"].clone(),
                value["properties"]["amount"].clone(),
            )
        })
        .collect();
    assert_eq!(
        routed,
        [
            (json!("blog"), json!("/a"), json!(100)),
            (json!("shop"), json!("/b"), json!(6.5)),
            (json!("shop"), json!("/a"), json!(7)),
            (json!("shop"), json!("/b"), json!(8)),
            (json!("shop"), json!("/a"), json!(9)),
        ],
        "the five views above 5, once each, and no orphan"
    );
    h.stop().await;
}
