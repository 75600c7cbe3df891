//! Erasure: `DELETE /v1/users/{id}` drops the user's future events at the collector, per
//! tenant, across a restart; what was stored before is reported as remaining until retention.

use crate::harness::*;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_core::time::now_millis;

/// The `views` count of `url` over the last hours, as shop's read key sees it.
async fn views(h: &Harness, key: &str, url: &str) -> Vec<i64> {
    let (status, answer) = h.get("/v1/metrics/views?from=now-2h", key).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    points(&answer, url)
        .iter()
        .map(|point| point[3].as_i64().unwrap())
        .collect()
}

/// `DELETE path` with `key`.
async fn erase(h: &Harness, path: &str, key: &str) -> (StatusCode, Value) {
    h.call(Method::DELETE, path, key, &Value::Null).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_users_events_are_dropped_from_then_on_and_the_rest_is_reported() {
    let mut h = Harness::start(&[]).await;
    let now = now_millis();
    h.send_ok(SHOP_WRITE, vec![view("a1", "u1", "/before", now, "1")])
        .await;

    // Refusals first: no tenant, an unknown one, a tenant's own key.
    let (status, answer) = erase(&h, "/v1/users/u1", ADMIN).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer.to_string().contains("tenant=NAME"), "{answer}");
    let (status, _) = erase(&h, "/v1/users/u1?tenant=nope", ADMIN).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = erase(&h, "/v1/users/u1?tenant=shop", SHOP_READ).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, erased) = erase(&h, "/v1/users/u1?tenant=shop", ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert_eq!(erased["tenant"], "shop");
    assert_eq!(erased["id"], "u1");
    assert_eq!(erased["already_erased"], false);
    let erased_at = erased["erased_at"].as_i64().unwrap();
    assert_eq!(
        erased["remaining"]["topics"],
        json!(["events", "events.dlq", "events.late"])
    );
    assert_eq!(
        erased["remaining"]["removed_by"].as_i64(),
        Some(erased_at + 7 * 24 * 3_600_000),
        "the default log.retention-age, 7 days: {erased}"
    );
    assert!(
        erased["remaining"]["note"]
            .as_str()
            .unwrap()
            .contains("(log.retention-age 7d)"),
        "{erased}"
    );
    // Erasing an anonymous id works the same way; erasing again keeps the first time.
    erase(&h, "/v1/users/a9?tenant=shop", ADMIN).await;
    let (_, again) = erase(&h, "/v1/users/u1?tenant=shop", ADMIN).await;
    assert_eq!(again["already_erased"], true);
    assert_eq!(again["erased_at"].as_i64(), Some(erased_at));

    // u1's events (by user id) and a9's (by anonymous id) are dropped; u2's are kept; blog's
    // u1 is another user.
    let (status, reply) = h
        .send(
            SHOP_WRITE,
            vec![
                view("a1", "u1", "/after", now, "1"),
                view("a9", "u7", "/after", now, "1"),
                view("a2", "u2", "/after", now, "1"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        (reply["accepted"].clone(), reply["suppressed"].clone()),
        (json!(1), json!(2)),
        "{reply}"
    );
    h.send_ok(BLOG_WRITE, vec![view("b1", "u1", "/after", now, "1")])
        .await;
    // An erased user's invalid event is refused as any other, but its raw input is not kept
    // as a dead letter.
    let (_, reply) = h
        .send(
            SHOP_WRITE,
            vec![
                json!({"type": "track", "userId": "u1"}),
                json!({"type": "track", "userId": "u3"}),
            ],
        )
        .await;
    assert_eq!(reply["rejected"].as_array().unwrap().len(), 2, "{reply}");
    // A batch of an erased user's event and an invalid one is not "every event refused".
    let (status, reply) = h
        .send(
            SHOP_WRITE,
            vec![
                view("a1", "u1", "/after", now, "1"),
                json!({"type": "track", "userId": "u4"}),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        (reply["success"].clone(), reply["suppressed"].clone()),
        (json!(true), json!(1))
    );
    let (_, letters) = h.get("/v1/admin/dead-letters?tenant=shop", ADMIN).await;
    let raws: Vec<&str> = letters["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|letter| letter["raw"].as_str().unwrap())
        .collect();
    assert!(
        raws.len() == 2 && raws.iter().all(|raw| !raw.contains("\"u1\"")),
        "u3's and u4's dead letters, none of u1: {letters}"
    );
    eventually("the kept events counted", || async {
        let (shop, blog) = (
            views(&h, SHOP_READ, "/after").await,
            views(&h, BLOG_READ, "/after").await,
        );
        let before = views(&h, SHOP_READ, "/before").await;
        if shop == [1] && blog == [1] && before == [1] {
            Ok(())
        } else {
            Err(format!("shop {shop:?}, blog {blog:?}, before {before:?}"))
        }
    })
    .await;
    assert!(
        h.metrics()
            .await
            .contains("sluice_ingest_events_suppressed_total{tenant=\"shop\"} 3"),
        "the dropped events are counted"
    );

    // The list, and the erasure surviving a restart.
    let (_, list) = h.get("/v1/admin/erasures?tenant=shop", ADMIN).await;
    let ids: Vec<&str> = list["erasures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a9", "u1"], "{list}");
    // The command line does the same through the API.
    let url = format!("http://{}", h.app().addr);
    let sluice = |args: &[&str]| {
        std::process::Command::new(crate::support::BIN)
            .args(args)
            .args(["--admin-key", ADMIN, "--url", &url])
            .output()
            .unwrap()
    };
    let output = sluice(&["users", "erase", "u5", "--tenant", "shop"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("u5 of tenant shop erased at") && stdout.contains("gone from the log by"),
        "{stdout}"
    );
    let output = sluice(&["users", "erased", "--tenant", "shop"]);
    let listed = String::from_utf8_lossy(&output.stdout);
    let ids: Vec<&str> = listed
        .lines()
        .map(|line| line.split('\t').nth(1).unwrap())
        .collect();
    assert_eq!(ids, ["a9", "u1", "u5"], "{listed}");
    // `sluice send` says what was dropped.
    let file = h.config.data_dir.join("u5.ndjson");
    std::fs::write(
        &file,
        format!(
            "{}\n{}\n",
            view("a5", "u5", "/cli", now, "1"),
            view("a6", "u6", "/cli", now, "1")
        ),
    )
    .unwrap();
    let output = std::process::Command::new(crate::support::BIN)
        .args(["send", "--write-key", SHOP_WRITE, "--url", &url])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("sent 2 events: 1 accepted")
            && stdout.contains("1 of them were dropped: events of erased users"),
        "{stdout}"
    );
    let output = sluice(&["users", "erase", "u5", "--tenant", "nope"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("no tenant \"nope\""));
    h.restart().await;
    let (_, reply) = h
        .send(SHOP_WRITE, vec![view("a3", "u1", "/after", now, "1")])
        .await;
    assert_eq!(reply["suppressed"], 1, "{reply}");
    assert_eq!(reply["accepted"], 0, "{reply}");
    assert_eq!(
        reply["success"], true,
        "a dropped event is no error: {reply}"
    );
    h.stop().await;
}
