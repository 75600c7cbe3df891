//! `/openapi.json`: a valid OpenAPI 3.1 document, generated from the handlers, that covers
//! every route — each documented operation exists on the running server, and every route the
//! server has is documented.

use crate::harness::*;
use hyper::{Method, StatusCode};
use serde_json::Value;
use std::collections::BTreeSet;

/// Every route sluice serves, as (method, path template). Adding a route without documenting
/// it (or documenting one that does not exist) fails the test.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/track"),
    ("post", "/v1/page"),
    ("post", "/v1/screen"),
    ("post", "/v1/identify"),
    ("post", "/v1/group"),
    ("post", "/v1/alias"),
    ("post", "/v1/batch"),
    ("post", "/v1/import"),
    ("post", "/v1/t"),
    ("post", "/v1/p"),
    ("post", "/v1/s"),
    ("post", "/v1/i"),
    ("post", "/v1/g"),
    ("post", "/v1/a"),
    ("post", "/v1/b"),
    ("get", "/v1/metrics"),
    ("get", "/v1/metrics/{name}"),
    ("get", "/v1/metrics/{name}/export"),
    ("get", "/v1/sessions/{name}/open"),
    ("get", "/v1/users/{id}"),
    ("get", "/v1/live"),
    ("get", "/v1/graphql"),
    ("get", "/v1/admin/dead-letters"),
    ("get", "/v1/admin/erasures"),
    ("delete", "/v1/users/{id}"),
    ("get", "/v1/boards"),
    ("get", "/v1/boards/{name}"),
    ("put", "/v1/boards/{name}"),
    ("delete", "/v1/boards/{name}"),
    ("get", "/v1/alerts"),
    ("get", "/v1/alerts/history"),
    ("get", "/v1/alerts/rules"),
    ("post", "/v1/alerts/rules"),
    ("delete", "/v1/alerts/rules/{name}"),
    ("get", "/v1/alerts/silences"),
    ("post", "/v1/alerts/silences"),
    ("delete", "/v1/alerts/silences/{id}"),
    ("get", "/v1/alerts/channels"),
    ("post", "/v1/alerts/channels/{name}/test"),
    ("post", "/v1/graphql"),
    ("post", "/v1/admin/metrics"),
    ("get", "/v1/admin/metrics"),
    ("get", "/v1/admin/metrics/{name}"),
    ("delete", "/v1/admin/metrics/{name}"),
    ("post", "/v1/admin/metrics/{name}/replay"),
    ("post", "/v1/admin/tenants"),
    ("get", "/v1/admin/tenants"),
    ("get", "/v1/admin/tenants/{name}"),
    ("patch", "/v1/admin/tenants/{name}"),
    ("delete", "/v1/admin/tenants/{name}"),
    ("post", "/v1/admin/keys"),
    ("get", "/v1/admin/keys"),
    ("delete", "/v1/admin/keys/{id}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Every `$ref` in the document points at a component that exists.
fn check_refs(value: &Value, document: &Value, missing: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(target)) = object.get("$ref") {
                let found = target
                    .strip_prefix("#/")
                    .map(|path| {
                        path.split('/')
                            .try_fold(document, |node, part| node.get(part))
                            .is_some()
                    })
                    .unwrap_or(false);
                if !found {
                    missing.push(target.clone());
                }
            }
            for child in object.values() {
                check_refs(child, document, missing);
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| check_refs(item, document, missing)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_valid_and_matches_the_routes() {
    let h = Harness::start(&[]).await;
    let (status, _, reply) = h
        .request(Method::GET, "/openapi.json", &[], bytes::Bytes::new())
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(reply.body.to_vec()).unwrap();

    // Valid: an independent OpenAPI 3.1 parser reads it, every reference resolves, every
    // operation has a unique id and documents its answers.
    let spec = oas3::from_json(&text).expect("a valid OpenAPI 3.1 document");
    assert!(spec.openapi.starts_with("3.1"), "{}", spec.openapi);
    let document: Value = serde_json::from_str(&text).unwrap();
    let mut missing = Vec::new();
    check_refs(&document, &document, &mut missing);
    assert!(missing.is_empty(), "unresolved references: {missing:?}");
    let mut documented = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            documented.insert((method.to_owned(), path.clone()));
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(ids.insert(id.clone()), "operationId {id:?} is used twice");
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path} documents no answer"
            );
        }
    }
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());

    // Matches the routes: the same set, and each documented operation is served (an unknown
    // route is 404 with an empty body or 405; handlers answer JSON, upgrades or text).
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(documented, expected);
    for (method, path) in &documented {
        let concrete = path
            .replace("{name}", "views")
            .replace("{id}", "key_does_not_exist");
        let method: Method = method.to_uppercase().parse().unwrap();
        let (status, _, reply) = h
            .request(method.clone(), &concrete, &[], bytes::Bytes::new())
            .await;
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {concrete}"
        );
        assert!(
            !(status == StatusCode::NOT_FOUND && reply.body.is_empty()),
            "{method} {concrete} is documented but not served"
        );
    }
    // No undocumented method on a documented path: each answers 405 (so the probe above, which
    // refuses 405, tells served from unserved).
    let paths: BTreeSet<&String> = documented.iter().map(|(_, path)| path).collect();
    for path in paths {
        let concrete = path
            .replace("{name}", "views")
            .replace("{id}", "key_does_not_exist");
        for method in METHODS {
            if documented.contains(&(method.to_owned(), path.clone())) {
                continue;
            }
            let method: Method = method.to_uppercase().parse().unwrap();
            let (status, _, _) = h
                .request(method.clone(), &concrete, &[], bytes::Bytes::new())
                .await;
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {concrete} is served but not documented"
            );
        }
    }
    // And an undocumented path is indeed answered as unknown, so the probe above means something.
    let (status, _, reply) = h
        .request(Method::GET, "/v1/not-a-route", &[], bytes::Bytes::new())
        .await;
    assert_eq!((status, reply.body.len()), (StatusCode::NOT_FOUND, 0));
    h.stop().await;
}

/// With `telemetry.metrics-auth = "none"`, the document says `/metrics` needs no key (and the
/// route answers without one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_metrics_are_documented_as_needing_no_key() {
    let overrides = [("telemetry.metrics-auth", toml::Value::String("none".into()))];
    let h = Harness::start(&overrides).await;
    let (_, _, reply) = h
        .request(Method::GET, "/openapi.json", &[], bytes::Bytes::new())
        .await;
    let document: Value = serde_json::from_slice(&reply.body).unwrap();
    let operation = &document["paths"]["/metrics"]["get"];
    assert_eq!(operation["security"], serde_json::json!([]), "{operation}");
    assert!(operation["responses"].get("401").is_none(), "{operation}");
    let (status, _, _) = h
        .request(Method::GET, "/metrics", &[], bytes::Bytes::new())
        .await;
    assert_eq!(status, StatusCode::OK);
}
