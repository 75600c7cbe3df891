//! Enrichment at the collector, through the whole server: a geo database of the test's own,
//! a proxy header, per-tenant address policies, and a metric that groups by enriched fields
//! and is answered by the query API.

use super::api::{Harness, OTHER_KEY, WRITE_KEY};
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const READ_KEY: &str = "rk_test_shop_enrich_0123456789";
const FIREFOX: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1";

/// A City database: 203.0.113.0/24 is Berlin, 198.51.100.0/24 France (no city).
fn write_geo_database(path: &std::path::Path) {
    use maxminddb_writer::paths::IpAddrWithMask;
    let mut database = maxminddb_writer::Database::default();
    database.metadata.database_type = "Test-City".into();
    database.metadata.binary_format_major_version = 2;
    let berlin = database
        .insert_value(json!({
            "city": {"names": {"en": "Berlin"}},
            "country": {"iso_code": "DE", "names": {"en": "Germany"}}
        }))
        .unwrap();
    let france = database
        .insert_value(json!({"country": {"iso_code": "FR", "names": {"en": "France"}}}))
        .unwrap();
    database.insert_node("203.0.113.0/24".parse::<IpAddrWithMask>().unwrap(), berlin);
    database.insert_node("198.51.100.0/24".parse::<IpAddrWithMask>().unwrap(), france);
    database
        .write_to(std::fs::File::create(path).unwrap())
        .unwrap();
}

fn page(id: &str, user_agent: &str, url: &str, referrer: &str) -> Value {
    json!({
        "type": "page", "messageId": id, "anonymousId": format!("a-{id}"), "name": "Home",
        "timestamp": "2024-05-01T12:00:00Z",
        "context": {"userAgent": user_agent, "page": {"url": url, "referrer": referrer}}
    })
}

async fn post(h: &Harness, key: &str, forwarded: &str, body: &Value) -> Value {
    let auth = sluice::client::basic_auth(key);
    let (status, reply, _) = h
        .request(
            Method::POST,
            "/v1/batch",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("x-forwarded-for", forwarded),
            ],
            body.to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_enriched_before_they_are_stored_and_metrics_group_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("city.mmdb");
    write_geo_database(&database);
    let tenants: toml::Value = toml::from_str::<toml::Table>(&format!(
        "t = [{{ name = \"shop\", write-keys = [\"{WRITE_KEY}\"], read-keys = [\"{READ_KEY}\"] }}, \
              {{ name = \"blog\", write-keys = [\"{OTHER_KEY}\"] }}]"
    ))
    .unwrap()["t"]
        .clone();
    let metric = "CREATE METRIC visits AS SELECT context.geo.country AS country, \
        context.browser.name AS browser, context.referrer.type AS source, COUNT(*) AS views \
        FROM events WHERE type = 'page' \
        GROUP BY country, browser, source, TUMBLE(timestamp, INTERVAL '1' MINUTE)";
    let metrics: toml::Value = toml::Value::Array(vec![toml::Value::Table(
        [("sql".to_owned(), toml::Value::String(metric.into()))]
            .into_iter()
            .collect(),
    )]);
    let blog: toml::Table = toml::from_str("ip = \"drop\"\nuser-agent = false").unwrap();
    let h = Harness::start(&[
        ("tenants", tenants),
        ("metrics", metrics),
        (
            "enrichment.geoip-database",
            toml::Value::String(database.display().to_string()),
        ),
        ("enrichment.ip", toml::Value::String("truncate".into())),
        ("telemetry.metrics-auth", toml::Value::String("none".into())),
        (
            "enrichment.client-ip-header",
            toml::Value::String("x-forwarded-for".into()),
        ),
        (
            "enrichment.tenants",
            toml::Value::Table(
                [("blog".to_owned(), toml::Value::Table(blog))]
                    .into_iter()
                    .collect(),
            ),
        ),
    ])
    .await;

    // Two visitors from Berlin (one from a Google search, one from a campaign), one from
    // France who typed the address; the proxy header names them.
    let berlin = json!({"batch": [
        page("p1", FIREFOX, "https://shop.example/", "https://www.google.de/"),
        page("p2", IPHONE, "https://shop.example/?utm_source=news&utm_medium=email", "https://mail.example/"),
    ]});
    post(&h, WRITE_KEY, "203.0.113.40, 10.0.0.1", &berlin).await;
    let france = json!({"batch": [page("p3", FIREFOX, "https://shop.example/", "")]});
    post(&h, WRITE_KEY, "198.51.100.7", &france).await;
    // A server-side event forwarding its visitor's address keeps its own (truncated).
    let forwarded = json!({"batch": [{
        "type": "track", "messageId": "t1", "userId": "u1", "event": "Order Completed",
        "context": {"ip": "198.51.100.99", "library": {"name": "analytics-python"}}
    }]});
    post(&h, WRITE_KEY, "203.0.113.1", &forwarded).await;
    // Tenant blog drops addresses and does not parse user agents.
    let blog = json!({"batch": [page("b1", FIREFOX, "https://blog.example/", "")]});
    post(&h, OTHER_KEY, "203.0.113.41", &blog).await;

    let stored: BTreeMap<String, Value> = h
        .records("events")
        .await
        .into_iter()
        .map(|event| (event["message_id"].as_str().unwrap().to_owned(), event))
        .collect();
    let context = |id: &str| stored[id]["context"].clone();
    let p1 = context("p1");
    assert_eq!(p1["ip"], "203.0.113.0", "truncated after the lookup: {p1}");
    assert_eq!(
        p1["geo"],
        json!({"country": "DE", "country_name": "Germany", "city": "Berlin"})
    );
    assert_eq!(
        p1["browser"],
        json!({"name": "Firefox", "version": "121.0"})
    );
    assert_eq!(p1["os"]["name"], "Windows");
    assert_eq!(p1["device"], json!({"type": "desktop"}));
    assert_eq!(
        p1["referrer"],
        json!({"type": "search", "name": "Google", "host": "www.google.de"})
    );
    assert!(p1.get("campaign").is_none(), "{p1}");
    let p2 = context("p2");
    assert_eq!(p2["campaign"], json!({"source": "news", "medium": "email"}));
    assert_eq!(p2["referrer"]["type"], "campaign");
    assert_eq!(p2["device"]["type"], "mobile");
    assert_eq!(p2["os"]["name"], "iOS");
    let p3 = context("p3");
    assert_eq!(p3["ip"], "198.51.100.0");
    assert_eq!(p3["geo"]["country"], "FR");
    assert_eq!(p3["referrer"], json!({"type": "direct"}));
    let t1 = context("t1");
    assert_eq!(t1["ip"], "198.51.100.0", "the event's own address: {t1}");
    assert_eq!(t1["geo"]["country"], "FR");
    assert!(t1.get("referrer").is_none() && t1.get("device").is_none());
    let b1 = context("b1");
    assert!(b1.get("ip").is_none(), "dropped for blog: {b1}");
    assert_eq!(b1["geo"]["country"], "DE");
    assert!(b1.get("browser").is_none(), "{b1}");
    // No full address reached the log.
    for event in stored.values() {
        let text = event.to_string();
        for full in [
            "203.0.113.40",
            "198.51.100.7",
            "198.51.100.99",
            "203.0.113.41",
        ] {
            assert!(!text.contains(full), "{full} stored: {text}");
        }
    }

    // The metric groups by the enriched fields.
    let mut series = Value::Null;
    for _ in 0..100 {
        let (status, answer, _) = h
            .request(
                Method::GET,
                "/v1/metrics/visits?from=0",
                &[("authorization", &format!("Bearer {READ_KEY}"))],
                "",
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        series = answer["series"].clone();
        if series.as_array().is_some_and(|s| s.len() == 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut found: Vec<(Value, Value)> = series
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["key"].clone(), s["points"][0][3].clone()))
        .collect();
    found.sort_by_key(|(key, _)| key.to_string());
    assert_eq!(
        found,
        [
            (
                json!({"country": "DE", "browser": "Firefox", "source": "search"}),
                json!(1)
            ),
            (
                json!({"country": "FR", "browser": "Firefox", "source": "direct"}),
                json!(1)
            ),
            (
                json!({"country": "DE", "browser": "Mobile Safari", "source": "campaign"}),
                json!(1)
            ),
        ]
    );
    // Every event had an address the database covers: five lookups found a place (the
    // recorder is the process's, shared with other tests: at least five).
    let (_, _, metrics) = h.request(Method::GET, "/metrics", &[], "").await;
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    let found = metrics
        .lines()
        .find(|line| line.starts_with("sluice_enrichment_geo_lookups_total{result=\"found\"}"))
        .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(found.is_some_and(|found| found >= 5.0), "{found:?}");
    h.stop().await;
}
