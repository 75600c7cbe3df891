//! Identity through the whole server: identify calls link devices to a user, a metric `FROM`
//! the identity counts people rather than devices, the graph survives a restart, profiles are
//! read by any id of the person, the changes are a topic, and an erasure deletes the profile.

use crate::harness::*;
use crate::support;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_core::time::{Millis, format_millis, now_millis};
use std::process::Command;

const IDENTITY: &str = "CREATE IDENTITY people";
const AUDIENCE: &str = "CREATE METRIC audience AS SELECT COUNT(DISTINCT resolved_user_id) AS people, \
     COUNT(DISTINCT anonymous_id) AS devices, COUNT(*) AS events \
     FROM people GROUP BY TUMBLE(timestamp, INTERVAL '1' HOUR)";

fn page(anon: Option<&str>, user: Option<&str>, time: Millis) -> Value {
    let mut event =
        json!({"type": "page", "timestamp": format_millis(time), "properties": {"url": "/"}});
    if let Some(anon) = anon {
        event["anonymousId"] = json!(anon);
    }
    if let Some(user) = user {
        event["userId"] = json!(user);
    }
    event
}

fn identify(anon: &str, user: &str, time: Millis, traits: Value) -> Value {
    json!({"type": "identify", "anonymousId": anon, "userId": user,
           "timestamp": format_millis(time), "traits": traits})
}

/// `sluice tail TOPIC` of the test server's data: the records' values.
fn tail(h: &Harness, topic: &str) -> Vec<Value> {
    let output = Command::new(support::BIN)
        .args([
            "tail",
            topic,
            "--from-beginning",
            "--no-follow",
            "--data-dir",
        ])
        .arg(&h.config.data_dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["value"].clone())
        .collect()
}

/// The profile of `id` once it has `events` events.
async fn profile(h: &Harness, id: &str, events: u64) -> Value {
    eventually(&format!("{id}'s profile with {events} events"), || async {
        let (status, answer) = h.get(&format!("/v1/users/{id}"), SHOP_READ).await;
        (status == StatusCode::OK && answer["events"] == events)
            .then(|| answer.clone())
            .ok_or(format!("{status} {answer}"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_counts_people_keeps_profiles_across_a_restart_and_erases_them() {
    let mut h = Harness::start(&[]).await;
    for sql in [IDENTITY, AUDIENCE] {
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
    let (_, status) = h.get("/v1/admin/metrics/people", ADMIN).await;
    assert_eq!(status["kind"], "identity", "{status}");
    // One hour's window, well in the past, so every event is in it.
    let hour = (now_millis() / 3_600_000 - 2) * 3_600_000;
    let t = hour + 60_000;
    h.send_ok(
        SHOP_WRITE,
        vec![
            identify("a1", "u1", t, json!({"name": "Ann", "plan": "free"})),
            page(Some("a1"), None, t + 1_000),
            page(Some("a3"), None, t + 1_000),
        ],
    )
    .await;
    let first = profile(&h, "u1", 2).await;
    assert_eq!(first["anonymous_ids"], json!(["a1"]), "{first}");

    // The graph is state: after a restart a1's anonymous events are still u1's.
    h.restart().await;
    h.send_ok(
        SHOP_WRITE,
        vec![
            page(Some("a1"), None, t + 2_000),
            page(Some("a2"), Some("u1"), t + 3_000),
            page(Some("a2"), None, t + 4_000),
            identify("a2", "u1", t + 5_000, json!({"plan": "pro"})),
            page(None, Some("u1"), t + 6_000),
        ],
    )
    .await;
    h.send_ok(BLOG_WRITE, vec![page(Some("a1"), None, t)]).await;

    let u1 = profile(&h, "u1", 7).await;
    assert_eq!(
        (
            &u1["user_id"],
            &u1["first_seen"],
            &u1["last_seen"],
            &u1["traits"],
            &u1["anonymous_ids"],
            &u1["identity"],
        ),
        (
            &json!("u1"),
            &json!(t),
            &json!(t + 6_000),
            &json!({"name": "Ann", "plan": "pro"}),
            &json!(["a1", "a2"]),
            &json!("people"),
        ),
        "{u1}"
    );
    let (status, by_device) = h.get("/v1/users/a2", SHOP_READ).await;
    assert_eq!(status, StatusCode::OK, "{by_device}");
    assert_eq!(
        (
            &by_device["id"],
            &by_device["user_id"],
            &by_device["events"]
        ),
        (&json!("a2"), &json!("u1"), &json!(7))
    );
    let (status, a3) = h.get("/v1/users/a3", SHOP_READ).await;
    assert_eq!(
        (status, &a3["user_id"], &a3["events"]),
        (StatusCode::OK, &json!("a3"), &json!(1)),
        "a visitor never identified"
    );
    // Tenants are apart: blog's a1 is nobody's, and blog's key cannot read shop's u1.
    let (status, blog_a1) = h.get("/v1/users/a1", BLOG_READ).await;
    assert_eq!(
        (status, &blog_a1["user_id"]),
        (StatusCode::OK, &json!("a1")),
        "{blog_a1}"
    );
    let (status, answer) = h.get("/v1/users/u1", BLOG_READ).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (status, answer) = h.get("/v1/users/u1?tenant=blog", SHOP_READ).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, answer) = h.get("/v1/users/u1?tenant=shop", ADMIN).await;
    assert_eq!(
        (status, &answer["events"]),
        (StatusCode::OK, &json!(7)),
        "{answer}"
    );

    // People, not devices: a1, a2 and a3 are three devices of two people.
    eventually("the audience metric", || async {
        let (status, answer) = h.get("/v1/metrics/audience?from=now-3h", SHOP_READ).await;
        let point = &answer["series"][0]["points"][0];
        (status == StatusCode::OK && point[3] == 2 && point[4] == 3 && point[5] == 8)
            .then_some(())
            .ok_or(format!("{status} {answer}"))
    })
    .await;

    // Every event once in the identity's topic, with its person.
    let mut resolved: Vec<(String, String)> = tail(&h, "people")
        .iter()
        .filter(|event| event["tenant"] == "shop")
        .map(|event| {
            (
                event["anonymous_id"].as_str().unwrap_or("-").to_owned(),
                event["resolved_user_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    resolved.sort();
    let mut expected: Vec<(String, String)> = [
        ("a1", "u1"),
        ("a1", "u1"),
        ("a3", "a3"),
        ("a1", "u1"),
        ("a2", "u1"),
        ("a2", "u1"),
        ("a2", "u1"),
        ("-", "u1"),
    ]
    .iter()
    .map(|(a, u)| (a.to_string(), u.to_string()))
    .collect();
    expected.sort();
    assert_eq!(resolved, expected);
    // The changes (sorted): a1 linked with traits, a2's pro plan, a2 linked.
    let mut changes: Vec<Value> = tail(&h, "people.changes")
        .into_iter()
        .map(|change| {
            json!([
                change["anonymous_id"],
                change["properties"]["linked"],
                change["properties"]["traits"]
            ])
        })
        .collect();
    changes.sort_by_key(Value::to_string);
    assert_eq!(
        changes,
        [
            json!(["a1", true, {"name": "Ann", "plan": "free"}]),
            json!(["a2", false, {"plan": "pro"}]),
            json!(["a2", true, {}]),
        ]
    );

    // Erasure: the profile is gone at once from reads, and from the store at the next
    // checkpoint (a1, which only u1's rows knew, is then nobody).
    let (status, erased) = h
        .call(
            Method::DELETE,
            "/v1/users/u1?tenant=shop",
            ADMIN,
            &Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    let topics = &erased["remaining"]["topics"];
    assert!(
        [json!("people"), json!("people.changes")]
            .iter()
            .all(|topic| topics.as_array().unwrap().contains(topic)),
        "{erased}"
    );
    let (status, answer) = h.get("/v1/users/u1", SHOP_READ).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("erased"),
        "{answer}"
    );
    eventually("u1's rows deleted", || async {
        let (status, answer) = h.get("/v1/users/a1", SHOP_READ).await;
        (status == StatusCode::NOT_FOUND)
            .then_some(())
            .ok_or(format!("{status} {answer}"))
    })
    .await;
    let (status, answer) = h.get("/v1/users/a3", SHOP_READ).await;
    assert_eq!(status, StatusCode::OK, "others stay: {answer}");
    h.stop().await;
}
