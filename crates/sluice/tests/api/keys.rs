//! Keys and tenants: 401 and 403, the admin API, tenant isolation, rate limits and quotas.

use crate::harness::*;
use hyper::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_checked_by_role() {
    let h = Harness::start(&[]).await;
    let (status, _, _) = h
        .request(Method::GET, "/v1/metrics", &[], bytes::Bytes::new())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, answer, _) = h
        .request(
            Method::GET,
            "/v1/metrics",
            &[("authorization", "Basic abc")],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let (status, answer) = h.get("/v1/metrics", "rk_not_a_key_0123456789").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"]["code"], "unauthorized");
    let (status, answer) = h.get("/v1/metrics", SHOP_WRITE).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs a read key")
    );
    let (status, answer) = h.get("/v1/metrics", ADMIN).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "admin keys read no tenant's data"
    );
    assert_eq!(
        answer["error"]["message"],
        "this is an admin key: reading metrics needs a read key"
    );
    let (status, _) = h.get("/v1/admin/tenants", SHOP_READ).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = h.get("/v1/admin/metrics", SHOP_READ).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = h.get("/v1/admin/metrics", "ak_unknown_0123456789").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, answer) = h.get("/v1/admin/tenants", ADMIN).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["tenants"][0]["name"], "shop");
    assert_eq!(answer["tenants"][0]["origin"], "config");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_never_reads_another_tenants_metrics() {
    let h = Harness::start(&[]).await;
    let start = hours_ago(1);
    h.send_ok(
        SHOP_WRITE,
        vec![
            view("a1", "secret-user", "/shop-secret", start, "99"),
            view("a2", "u2", "/shared", start + 1_000, "1"),
        ],
    )
    .await;
    h.send_ok(
        BLOG_WRITE,
        vec![view("a3", "b1", "/shared", start + 2_000, "5")],
    )
    .await;
    // A tenant made at runtime, with keys made at runtime: the collector takes its write key.
    let (status, tenant) = h
        .call(
            Method::POST,
            "/v1/admin/tenants",
            ADMIN,
            &json!({"name": "news"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tenant}");
    let (status, write) = h
        .call(
            Method::POST,
            "/v1/admin/keys",
            ADMIN,
            &json!({"role": "write", "tenant": "news"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{write}");
    let (_, read) = h
        .call(
            Method::POST,
            "/v1/admin/keys",
            ADMIN,
            &json!({"role": "read", "tenant": "news", "label": "wall screen"}),
        )
        .await;
    let news_write = write["secret"].as_str().unwrap().to_owned();
    let news_read = read["secret"].as_str().unwrap().to_owned();
    assert!(news_write.starts_with("wk_") && news_read.starts_with("rk_"));
    h.send_ok(
        &news_write,
        vec![view("a4", "n1", "/shared", start + 3_000, "7")],
    )
    .await;

    let path = format!("/v1/metrics/views?from={}&to={}", start, start + HOUR);
    let shop = eventually("shop's two urls", || async {
        let (_, answer) = h.get(&path, SHOP_READ).await;
        if urls(&answer).len() == 2 {
            Ok(answer)
        } else {
            Err(answer.to_string())
        }
    })
    .await;
    assert_eq!(urls(&shop), ["/shared", "/shop-secret"]);
    let news = eventually("news's view", || async {
        let (_, answer) = h.get(&path, &news_read).await;
        if urls(&answer).len() == 1 {
            Ok(answer)
        } else {
            Err(answer.to_string())
        }
    })
    .await;
    assert_eq!(points(&news, "/shared")[0][3], 1);
    assert_eq!(points(&news, "/shared")[0][5], 7);
    assert_eq!(news["tenant"], "news");

    // Blog sees its own /shared only, however it asks.
    let blog = eventually("blog's view", || async {
        let (_, answer) = h.get(&path, BLOG_READ).await;
        if urls(&answer).len() == 1 {
            Ok(answer)
        } else {
            Err(answer.to_string())
        }
    })
    .await;
    assert_eq!(points(&blog, "/shared")[0][3], 1);
    assert_eq!(points(&blog, "/shared")[0][5], 5);
    for guess in [
        format!("{path}&filter=url:/shop-secret"),
        format!("{path}&top=100&by=amount"),
        format!("{path}&resolution=1d"),
        "/v1/metrics/views?from=0&to=now&filter=url:/shop-secret".to_owned(),
    ] {
        let (status, answer) = h.get(&guess, BLOG_READ).await;
        assert_eq!(status, StatusCode::OK, "{guess}: {answer}");
        assert_eq!(answer["tenant"], "blog");
        assert!(
            !answer.to_string().contains("shop-secret"),
            "{guess}: {answer}"
        );
        for url in urls(&answer) {
            assert_eq!(url, "/shared", "{guess}: {answer}");
            assert!(
                points(&answer, &url).iter().all(|p| p[5] != 99),
                "{guess}: {answer}"
            );
        }
    }
    let (status, answer) = h.get(&format!("{path}&tenant=shop"), BLOG_READ).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    // Revoked keys and deleted tenants stop working at once, for the collector too.
    let id = read["id"].as_str().unwrap();
    let (status, _) = h
        .call(
            Method::DELETE,
            &format!("/v1/admin/keys/{id}"),
            ADMIN,
            &json!(null),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(h.get(&path, &news_read).await.0, StatusCode::UNAUTHORIZED);
    let (status, _) = h
        .call(
            Method::DELETE,
            "/v1/admin/tenants/news",
            ADMIN,
            &json!(null),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h
        .send(&news_write, vec![view("a", "b", "/c", start, "1")])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Config tenants are changed in the config.
    let (status, answer) = h
        .call(
            Method::DELETE,
            "/v1/admin/tenants/shop",
            ADMIN,
            &json!(null),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let (status, keys) = h.get("/v1/admin/keys?tenant=shop", ADMIN).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
    assert!(
        !keys.to_string().contains(SHOP_READ),
        "secrets are never listed"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_429_with_retry_after_and_are_counted() {
    let h = Harness::start(&[]).await;
    let (status, answer) = h
        .call(
            Method::POST,
            "/v1/admin/tenants",
            ADMIN,
            &json!({"name": "tiny", "requests_per_second": 1, "events_per_day": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(
        answer["effective"],
        json!({"requests_per_second": 1, "events_per_day": 3})
    );
    let (_, read) = h
        .call(
            Method::POST,
            "/v1/admin/keys",
            ADMIN,
            &json!({"role": "read", "tenant": "tiny"}),
        )
        .await;
    let read = read["secret"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {read}");
    // One request per second: within a few back-to-back requests one is refused.
    let mut refused = None;
    for _ in 0..20 {
        let (status, answer, reply) = h
            .request(
                Method::GET,
                "/v1/metrics",
                &[("authorization", &auth)],
                bytes::Bytes::new(),
            )
            .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some((answer, reply));
            break;
        }
        assert_eq!(status, StatusCode::OK);
    }
    let (answer, reply) = refused.expect("a second request within the second is refused");
    assert_eq!(answer["error"]["code"], "requests_per_second");
    assert_eq!(reply.headers["retry-after"], "1");

    // The daily quota, on the collector: a batch that would cross it is refused whole.
    let (status, _) = h
        .call(
            Method::PATCH,
            "/v1/admin/tenants/tiny",
            ADMIN,
            &json!({"requests_per_second": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, write) = h
        .call(
            Method::POST,
            "/v1/admin/keys",
            ADMIN,
            &json!({"role": "write", "tenant": "tiny"}),
        )
        .await;
    let write = write["secret"].as_str().unwrap().to_owned();
    let start = hours_ago(1);
    h.send_ok(
        &write,
        vec![
            view("a", "u", "/", start, "1"),
            view("a", "u", "/", start, "1"),
        ],
    )
    .await;
    let auth = sluice::client::basic_auth(&write);
    let body = json!({"batch": [view("a", "u", "/", start, "1"), view("a", "u", "/", start, "1")]});
    let (status, answer, reply) = h
        .request(
            Method::POST,
            "/v1/batch",
            &[("authorization", &auth)],
            body.to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert_eq!(answer["error"]["code"], "events_per_day");
    let retry: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry), "until UTC midnight: {retry}");
    h.send_ok(&write, vec![view("a", "u", "/", start, "1")])
        .await;

    let text = h.metrics().await;
    assert!(
        text.lines()
            .any(|line| line.starts_with("sluice_rate_limited_total{")
                && line.contains("tenant=\"tiny\"")
                && line.contains("limit=\"events_per_day\"")),
        "{text}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_an_admin_key() {
    let h = Harness::start(&[]).await;
    let (status, answer, _) = h
        .request(Method::GET, "/metrics", &[], bytes::Bytes::new())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("admin key") && message.contains("telemetry.metrics-auth"),
        "{message}"
    );
    let (status, answer) = h.get("/metrics", SHOP_READ).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, answer) = h.get("/metrics", "ak_unknown_0123456789").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert!(h.metrics().await.contains("sluice_build_info"));
    h.stop().await;
}

/// The ids of the config's keys, by hint (the secret's first characters).
async fn config_key_ids(h: &Harness) -> std::collections::BTreeMap<String, String> {
    let (status, answer) = h.get("/v1/admin/keys", ADMIN).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|key| key["origin"] == "config")
        .map(|key| {
            (
                key["hint"].as_str().unwrap().to_owned(),
                key["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_key_ids_tell_nothing_about_their_secrets_and_survive_a_restart() {
    let mut h = Harness::start(&[]).await;
    let ids = config_key_ids(&h).await;
    assert_eq!(ids.len(), 5, "{ids:?}");
    for (secret, hint) in [(SHOP_WRITE, "wk_sho"), (ADMIN, "ak_adm")] {
        let id = &ids[hint];
        let sha256: String = sluice_core::access::digest(secret)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let hex = id.strip_prefix("cfg_").unwrap();
        assert_eq!(hex.len(), 16, "{id}");
        assert!(
            !sha256.starts_with(hex),
            "{id} is a prefix of the key's SHA-256 ({sha256}): anyone can test guesses at it"
        );
    }
    h.restart().await;
    assert_eq!(
        config_key_ids(&h).await,
        ids,
        "the same ids after a restart"
    );
    h.stop().await;
}

/// Data dirs from before keyed ids kept today's event counts under `cfg_` + SHA-256 prefix:
/// the count carries over to the key's new id, so a restart after the upgrade renews no quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_saved_under_a_former_config_key_id_still_counts() {
    let dir = tempfile::tempdir().unwrap();
    let overrides = [("quotas.events-per-day", toml::Value::Integer(10))];
    let config = Harness::config(dir.path(), &overrides);
    let store = sluice_store::StoreBackend::open(&config.store, &config.data_dir)
        .await
        .unwrap();
    let today = (sluice_core::time::now_millis() / 86_400_000) as u64;
    let former = sluice_core::access::legacy_config_key_id(SHOP_WRITE);
    store.add_key_usage(vec![(former, today, 9)]).await.unwrap();
    drop(store);

    let h = Harness::start_in(dir, &overrides).await;
    let start = hours_ago(1);
    h.send_ok(SHOP_WRITE, vec![view("a", "u", "/", start, "1")])
        .await;
    let (status, answer) = h
        .send(SHOP_WRITE, vec![view("a", "u", "/", start, "1")])
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert_eq!(answer["error"]["code"], "events_per_day");
    h.stop().await;
}
