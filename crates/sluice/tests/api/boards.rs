//! `/v1/boards`: a tenant's read keys save, list, open, replace and delete boards; bad boards
//! get 400 naming what to change; another tenant sees none of them.

use crate::harness::*;
use hyper::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boards_are_saved_opened_and_kept_per_tenant() {
    let mut h = Harness::start(&[]).await;
    let board = json!({"title": "Traffic", "panels": [
        {"metric": "views", "value": "n", "filters": ["url:/home"], "range": "24h", "size": "large"},
        {"metric": "views", "value": "users", "chart": "table", "top": 5},
    ]});
    let (status, saved) = h
        .call(Method::PUT, "/v1/boards/traffic", SHOP_READ, &board)
        .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["name"], "traffic");
    assert_eq!(saved["title"], "Traffic");
    // Defaults are filled in, so the page draws every panel the same way.
    assert_eq!(saved["panels"][0]["resolution"], "raw");
    assert_eq!(saved["panels"][1]["range"], "1h");

    let (status, opened) = h.get("/v1/boards/traffic", SHOP_READ).await;
    assert_eq!(
        (status, opened["panels"].clone()),
        (StatusCode::OK, saved["panels"].clone())
    );
    let replaced = json!({"panels": [{"metric": "views", "value": "amount"}]});
    let (status, _) = h
        .call(Method::PUT, "/v1/boards/traffic", SHOP_READ, &replaced)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = h.get("/v1/boards", SHOP_READ).await;
    assert_eq!(list["boards"].as_array().unwrap().len(), 1);
    assert_eq!(list["boards"][0]["panels"][0]["value"], "amount");

    // Another tenant, and keys that are not read keys, see none of it.
    let (_, other) = h.get("/v1/boards", BLOG_READ).await;
    assert_eq!(other["boards"], json!([]));
    let (status, _) = h.get("/v1/boards/traffic", BLOG_READ).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h.get("/v1/boards", SHOP_WRITE).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Bad boards: 400 naming what to change.
    for (body, said) in [
        (
            json!({"panels": [{"metric": "nope", "value": "n"}]}),
            "panels[0].metric",
        ),
        (
            json!({"panels": [{"metric": "views", "value": "nope"}]}),
            "use one of n, users, amount",
        ),
        (
            json!({"panels": [{"metric": "views", "value": "n", "range": "1y"}]}),
            "panels[0].range",
        ),
        (
            json!({"panels": [{"metric": "views", "value": "n", "top": 0}]}),
            "panels[0].top",
        ),
        (
            json!({"panels": [{"metric": "views", "value": "n", "filters": ["no-colon"]}]}),
            "filters",
        ),
        (
            json!({"panels": [{"metric": "views", "value": "n", "colour": "red"}]}),
            "unknown field",
        ),
        (
            json!({"panels": vec![json!({"metric": "views", "value": "n"}); 25]}),
            "at most 24 panels",
        ),
    ] {
        let (status, answer) = h
            .call(Method::PUT, "/v1/boards/bad", SHOP_READ, &body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(said), "{said:?} not in {message:?}");
    }
    let (status, answer) = h
        .call(Method::PUT, "/v1/boards/Bad%20Name", SHOP_READ, &replaced)
        .await;
    assert_eq!(
        (status, answer["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_name"))
    );

    // Kept across a restart; deleted once.
    h.restart().await;
    let (status, _) = h.get("/v1/boards/traffic", SHOP_READ).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h
        .call(
            Method::DELETE,
            "/v1/boards/traffic",
            SHOP_READ,
            &serde_json::Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h
        .call(
            Method::DELETE,
            "/v1/boards/traffic",
            SHOP_READ,
            &serde_json::Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    h.stop().await;
}
