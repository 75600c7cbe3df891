//! `/v1/admin/dead-letters`: the latest refused events, newest first, with their reasons, for
//! admin keys only.

use crate::harness::*;
use hyper::StatusCode;
use serde_json::json;
use sluice_core::time::now_millis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_dead_letters_come_newest_first_with_their_reasons() {
    let h = Harness::start(&[]).await;
    let (status, reply) = h
        .send(
            SHOP_WRITE,
            vec![
                json!({"type": "track", "event": "No Identity"}),
                view("a1", "u1", "/ok", now_millis(), "1"),
            ],
        )
        .await;
    assert_eq!(
        (status, reply["accepted"].clone()),
        (StatusCode::OK, json!(1))
    );
    let (_, reply) = h
        .send(BLOG_WRITE, vec![json!({"type": "track", "userId": "u2"})])
        .await;
    assert_eq!(reply["rejected"][0]["reason"], "missing_field", "{reply}");

    let (status, answer) = h.get("/v1/admin/dead-letters", ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let letters = answer["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 2, "{answer}");
    assert!(
        letters[0]["received_at"].as_i64() >= letters[1]["received_at"].as_i64(),
        "newest first: {answer}"
    );
    let shop = letters.iter().find(|l| l["tenant"] == "shop").unwrap();
    assert_eq!(shop["index"], 0);
    assert_eq!(shop["path"], "batch[0].userId");
    assert_eq!(shop["reason"], "missing_field");
    assert!(shop["raw"].as_str().unwrap().contains("No Identity"));
    assert!(shop["offset"].is_u64() && shop["partition"].is_u64());
    assert!(letters.iter().any(|l| l["tenant"] == "blog"));

    let (_, only) = h
        .get("/v1/admin/dead-letters?tenant=shop&limit=5", ADMIN)
        .await;
    assert_eq!(only["dead_letters"].as_array().unwrap().len(), 1, "{only}");
    let (status, answer) = h.get("/v1/admin/dead-letters?limit=0", ADMIN).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, _) = h.get("/v1/admin/dead-letters", SHOP_READ).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a tenant's key reads no dead letters"
    );
    h.stop().await;
}
