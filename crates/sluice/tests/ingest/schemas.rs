//! The schema registry over HTTP (Confluent's protocol, keys, tenants, bad input) and
//! validation at the collector: enforce rejects with every violation and dead-letters, warn
//! keeps and marks, unknown events, a new version applied without a restart, and everything
//! kept across a restart.

use super::api::{Harness, WRITE_KEY};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use sluice::client::basic_auth;

const ADMIN: &str = "ak_schema_test_0123456789";

/// Version 1 of the order schema: closed, revenue and currency required.
const ORDER_V1: &str = r#"{"type": "object", "additionalProperties": false,
  "properties": {"revenue": {"type": "number", "minimum": 0},
                 "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}},
  "required": ["revenue", "currency"]}"#;

/// Version 2: an optional coupon (backward compatible: a closed v1 document has none).
const ORDER_V2: &str = r#"{"type": "object", "additionalProperties": false,
  "properties": {"revenue": {"type": "number", "minimum": 0},
                 "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                 "coupon": {"type": "string"}},
  "required": ["revenue", "currency"]}"#;

async fn call(
    h: &Harness,
    method: Method,
    path: &str,
    key: &str,
    body: Value,
) -> (StatusCode, Value, String) {
    let auth = format!("Bearer {key}");
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, value, reply) = h
        .request(
            method,
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/vnd.schemaregistry.v1+json"),
            ],
            body,
        )
        .await;
    let content_type = reply
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, value, content_type)
}

async fn new_key(h: &Harness, role: &str, tenant: &str) -> String {
    let (status, key, _) = call(
        h,
        Method::POST,
        "/v1/admin/keys",
        ADMIN,
        json!({"role": role, "tenant": tenant}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    key["secret"].as_str().unwrap().to_owned()
}

fn order(id: &str, properties: Value) -> Value {
    json!({"type": "track", "event": "Order Completed", "userId": "u1", "messageId": id, "properties": properties})
}

async fn send(h: &Harness, events: Vec<Value>) -> Value {
    let auth = basic_auth(WRITE_KEY);
    let (status, reply, _) = h
        .request(
            Method::POST,
            "/v1/batch",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            json!({ "batch": events }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_speaks_confluents_protocol_per_tenant() {
    let mut h = Harness::start(&[("admin-keys", json_to_toml(json!([ADMIN])))]).await;
    let schema_key = new_key(&h, "schema", "shop").await;
    let read_key = new_key(&h, "read", "shop").await;
    let blog_read = new_key(&h, "read", "blog").await;
    let subject = "/schemas/subjects/Order%20Completed-value/versions";

    let (status, v1, content_type) = call(
        &h,
        Method::POST,
        subject,
        &schema_key,
        json!({"schema": ORDER_V1, "schemaType": "JSON"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v1}");
    assert_eq!(content_type, "application/vnd.schemaregistry.v1+json");
    assert_eq!(
        (v1["version"].as_u64(), v1["subject"].as_str()),
        (Some(1), Some("Order Completed-value"))
    );
    // The same schema written differently is the same version and id.
    let respaced: Value = serde_json::from_str(ORDER_V1).unwrap();
    let (_, again, _) = call(
        &h,
        Method::POST,
        subject,
        &schema_key,
        json!({"schema": respaced.to_string(), "schemaType": "JSON"}),
    )
    .await;
    assert_eq!(
        (again["id"].clone(), again["version"].clone()),
        (v1["id"].clone(), json!(1))
    );

    // A newly required property breaks BACKWARD: 409 naming the rule.
    let breaking = ORDER_V1.replace(r#"["revenue", "currency"]"#, r#"["revenue", "currency", "coupon"]"#)
        .replace(r#""currency": {"type": "string", "pattern": "^[A-Z]{3}$"}}"#, r#""currency": {"type": "string", "pattern": "^[A-Z]{3}$"}, "coupon": {"type": "string"}}"#);
    let (status, refused, _) = call(
        &h,
        Method::POST,
        subject,
        &schema_key,
        json!({"schema": breaking, "schemaType": "JSON"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error_code"], 409);
    assert!(
        refused["message"].as_str().unwrap().contains("REQUIRED_"),
        "{refused}"
    );
    let (status, verdict, _) = call(
        &h,
        Method::POST,
        "/schemas/compatibility/subjects/Order%20Completed-value/versions/latest?verbose=true",
        &read_key,
        json!({"schema": breaking, "schemaType": "JSON"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verdict["is_compatible"], false);
    assert!(!verdict["messages"].as_array().unwrap().is_empty());

    let (status, v2, _) = call(
        &h,
        Method::POST,
        subject,
        &schema_key,
        json!({"schema": ORDER_V2, "schemaType": "JSON"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v2}");
    assert_eq!(v2["version"], 2);
    assert_ne!(v2["id"], v1["id"]);

    // Reads: any key of the tenant; the admin key through the tenant's base URL.
    for key in [&read_key, WRITE_KEY, &schema_key] {
        let (status, subjects, _) =
            call(&h, Method::GET, "/schemas/subjects", key, Value::Null).await;
        assert_eq!(
            (status, subjects),
            (StatusCode::OK, json!(["Order Completed-value"]))
        );
    }
    let (_, versions, _) = call(
        &h,
        Method::GET,
        "/schemas/tenants/shop/subjects/Order%20Completed-value/versions",
        ADMIN,
        Value::Null,
    )
    .await;
    assert_eq!(versions, json!([1, 2]));
    let (status, answer, _) = call(&h, Method::GET, "/schemas/subjects", ADMIN, Value::Null).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let (status, answer, _) = call(
        &h,
        Method::GET,
        "/schemas/tenants/Not%20A%20Tenant/subjects",
        ADMIN,
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let (_, latest, _) = call(
        &h,
        Method::GET,
        "/schemas/subjects/Order%20Completed-value/versions/latest",
        &read_key,
        Value::Null,
    )
    .await;
    assert_eq!(
        (latest["version"].clone(), latest["schemaType"].clone()),
        (json!(2), json!("JSON"))
    );
    let path = format!("/schemas/schemas/ids/{}", v1["id"]);
    let (status, by_id, _) = call(&h, Method::GET, &path, &read_key, Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(by_id["schema"].as_str().unwrap()).unwrap(),
        respaced
    );
    let (status, lookup, _) = call(
        &h,
        Method::POST,
        "/schemas/subjects/Order%20Completed-value",
        WRITE_KEY,
        json!({"schema": ORDER_V1, "schemaType": "JSON"}),
    )
    .await;
    assert_eq!(
        (status, lookup["version"].clone()),
        (StatusCode::OK, json!(1))
    );

    // Another tenant sees none of it.
    let (_, subjects, _) = call(
        &h,
        Method::GET,
        "/schemas/subjects",
        &blog_read,
        Value::Null,
    )
    .await;
    assert_eq!(subjects, json!([]));
    let (status, missing, _) = call(&h, Method::GET, &path, &blog_read, Value::Null).await;
    assert_eq!(
        (status, missing["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40403))
    );
    let (status, missing, _) = call(
        &h,
        Method::GET,
        "/schemas/subjects/Order%20Completed-value/versions",
        &blog_read,
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, missing["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40401))
    );

    // Who may write; bad input.
    let (status, refused, _) = call(
        &h,
        Method::POST,
        subject,
        &read_key,
        json!({"schema": ORDER_V2, "schemaType": "JSON"}),
    )
    .await;
    assert_eq!(
        (status, refused["error_code"].clone()),
        (StatusCode::FORBIDDEN, json!(40301))
    );
    let (status, refused, _) = call(
        &h,
        Method::POST,
        subject,
        "sk_not_a_key_0123456789",
        json!({"schema": ORDER_V2}),
    )
    .await;
    assert_eq!(
        (status, refused["error_code"].clone()),
        (StatusCode::UNAUTHORIZED, json!(40101))
    );
    let (status, invalid, _) = call(
        &h,
        Method::POST,
        "/schemas/subjects/x-value/versions",
        &schema_key,
        json!({"schema": r#"{"type": "objekt"}"#, "schemaType": "JSON"}),
    )
    .await;
    assert_eq!(
        (status, invalid["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42201)),
        "{invalid}"
    );
    let (status, remote, _) = call(
        &h,
        Method::POST,
        "/schemas/subjects/x-value/versions",
        &schema_key,
        json!({"schema": r#"{"$ref": "http://example.com/s.json"}"#, "schemaType": "JSON"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        remote["message"]
            .as_str()
            .unwrap()
            .contains("fetches nothing"),
        "{remote}"
    );
    let huge = json!({"type": "object", "description": "x".repeat(300 * 1024)}).to_string();
    let (status, _, _) = call(
        &h,
        Method::POST,
        "/schemas/subjects/x-value/versions",
        &schema_key,
        json!({"schema": huge, "schemaType": "JSON"}),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, bad_avro, _) = call(
        &h,
        Method::POST,
        "/schemas/subjects/orders-value/versions",
        &schema_key,
        json!({"schema": r#"{"type": "record", "name": "Order"}"#}),
    )
    .await;
    assert_eq!(
        (status, bad_avro["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42201))
    );

    // Config: Confluent's levels and sluice's validation settings.
    let (status, config, _) =
        call(&h, Method::GET, "/schemas/config", &read_key, Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["compatibilityLevel"], "BACKWARD");
    let (status, refused, _) = call(
        &h,
        Method::PUT,
        "/schemas/config",
        &schema_key,
        json!({"compatibility": "SIDEWAYS"}),
    )
    .await;
    assert_eq!(
        (status, refused["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42203))
    );
    let (status, missing, _) = call(
        &h,
        Method::GET,
        "/schemas/config/Order%20Completed-value",
        &read_key,
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, missing["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40408))
    );
    let (status, _, _) = call(
        &h,
        Method::PUT,
        "/schemas/config/Order%20Completed-value",
        &schema_key,
        json!({"compatibility": "FULL"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, level, _) = call(
        &h,
        Method::GET,
        "/schemas/config/Order%20Completed-value",
        &read_key,
        Value::Null,
    )
    .await;
    assert_eq!(level["compatibilityLevel"], "FULL");

    // Deletes: soft first, then permanent; versions are never reused.
    let (status, refused, _) = call(
        &h,
        Method::DELETE,
        "/schemas/subjects/Order%20Completed-value/versions/1?permanent=true",
        &schema_key,
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, refused["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40407))
    );
    let (status, deleted, _) = call(
        &h,
        Method::DELETE,
        "/schemas/subjects/Order%20Completed-value/versions/1",
        &schema_key,
        Value::Null,
    )
    .await;
    assert_eq!((status, deleted), (StatusCode::OK, json!(1)));
    let (_, versions, _) = call(
        &h,
        Method::GET,
        "/schemas/subjects/Order%20Completed-value/versions",
        &read_key,
        Value::Null,
    )
    .await;
    assert_eq!(versions, json!([2]));
    let (_, versions, _) = call(
        &h,
        Method::GET,
        "/schemas/subjects/Order%20Completed-value/versions?deleted=true",
        &read_key,
        Value::Null,
    )
    .await;
    assert_eq!(versions, json!([1, 2]));
    let (status, deleted, _) = call(
        &h,
        Method::DELETE,
        "/schemas/subjects/Order%20Completed-value/versions/1?permanent=true",
        &schema_key,
        Value::Null,
    )
    .await;
    assert_eq!((status, deleted), (StatusCode::OK, json!(1)));

    // All of it survives a restart.
    h.restart().await;
    let (_, versions, _) = call(
        &h,
        Method::GET,
        "/schemas/subjects/Order%20Completed-value/versions?deleted=true",
        &read_key,
        Value::Null,
    )
    .await;
    assert_eq!(versions, json!([2]));
    let (_, level, _) = call(
        &h,
        Method::GET,
        "/schemas/config/Order%20Completed-value",
        &read_key,
        Value::Null,
    )
    .await;
    assert_eq!(level["compatibilityLevel"], "FULL");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_enforces_warns_and_applies_new_versions_at_once() {
    let h = Harness::start(&[("admin-keys", json_to_toml(json!([ADMIN])))]).await;
    let schema_key = new_key(&h, "schema", "shop").await;
    let subject = "/schemas/subjects/Order%20Completed-value/versions";
    let (status, _, _) = call(
        &h,
        Method::POST,
        subject,
        &schema_key,
        json!({"schema": ORDER_V1, "schemaType": "JSON"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Validation is off by default: anything goes.
    let reply = send(&h, vec![order("o0", json!({"revenue": "lots"}))]).await;
    assert_eq!(reply["accepted"], 1, "{reply}");

    let (status, _, _) = call(
        &h,
        Method::PUT,
        "/schemas/config",
        &schema_key,
        json!({"validation": "enforce", "unknownEvents": "reject"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let reply = send(
        &h,
        vec![
            order("o1", json!({"revenue": 12.5, "currency": "EUR"})),
            order(
                "o2",
                json!({"revenue": -1, "currency": "euro", "coupon": "X"}),
            ),
            json!({"type": "track", "event": "Cart Viewed", "userId": "u1", "messageId": "c1"}),
            json!({"type": "alias", "userId": "u1", "previousId": "a1", "messageId": "al1"}),
        ],
    )
    .await;
    assert_eq!(
        reply["accepted"], 2,
        "the valid order and the alias: {reply}"
    );
    let rejected = reply["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{reply}");
    assert_eq!(
        (rejected[0]["index"].clone(), rejected[0]["reason"].clone()),
        (json!(1), json!("schema_violation"))
    );
    assert_eq!(rejected[0]["path"], "batch[1].properties");
    let mut found: Vec<(String, String)> = rejected[0]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["path"].as_str().unwrap().to_owned(),
                v["keyword"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("/properties".to_owned(), "additionalProperties".to_owned()),
            ("/properties/currency".to_owned(), "pattern".to_owned()),
            ("/properties/revenue".to_owned(), "minimum".to_owned()),
        ]
    );
    assert_eq!(
        (rejected[1]["index"].clone(), rejected[1]["reason"].clone()),
        (json!(2), json!("unknown_event"))
    );
    assert!(
        rejected[1]["message"]
            .as_str()
            .unwrap()
            .contains("Cart Viewed-value")
    );

    let letters = h.records("events.dlq").await;
    let letter = letters
        .iter()
        .find(|l| l["index"] == 1 && l["reason"] == "schema_violation")
        .expect("dead letter");
    assert_eq!(
        letter["violations"].as_array().unwrap().len(),
        3,
        "{letter}"
    );
    assert!(letter["raw"].as_str().unwrap().contains("euro"));

    // A new version applies to the next request, no restart: the coupon is allowed now.
    let (status, _, _) = call(
        &h,
        Method::POST,
        subject,
        &schema_key,
        json!({"schema": ORDER_V2, "schemaType": "JSON"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let reply = send(
        &h,
        vec![order(
            "o3",
            json!({"revenue": 1, "currency": "USD", "coupon": "WELCOME"}),
        )],
    )
    .await;
    assert_eq!(reply["accepted"], 1, "{reply}");

    // Warn keeps the event and marks it.
    let (status, _, _) = call(
        &h,
        Method::PUT,
        "/schemas/config",
        &schema_key,
        json!({"validation": "warn"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let reply = send(&h, vec![order("o4", json!({"revenue": "free"}))]).await;
    assert_eq!(
        (reply["accepted"].clone(), reply["rejected"].clone()),
        (json!(1), json!([])),
        "{reply}"
    );
    let events = h.records("events").await;
    let marked = events.iter().find(|e| e["message_id"] == "o4").unwrap();
    let violations = marked["schema_violations"].as_array().unwrap();
    let keywords: Vec<&str> = violations
        .iter()
        .map(|v| v["keyword"].as_str().unwrap())
        .collect();
    assert!(
        keywords.contains(&"type") && keywords.contains(&"required"),
        "{marked}"
    );
    assert!(
        events
            .iter()
            .find(|e| e["message_id"] == "o1")
            .unwrap()
            .get("schema_violations")
            .is_none()
    );

    h.stop().await;
}

fn json_to_toml(value: Value) -> toml::Value {
    toml::Value::try_from(value).unwrap()
}

/// Confluent's own `SchemaRegistryClient` (confluent-kafka from PyPI, which `scripts/test.sh`
/// installs) registers, looks up, checks compatibility, reads and sets levels and deletes
/// against sluice, and gets Confluent's answers and error codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluents_registry_client_works_unchanged() {
    let python = crate::support::python();
    let probe = std::process::Command::new(&python)
        .args(["-c", "import confluent_kafka.schema_registry.avro"])
        .output();
    assert!(
        probe.as_ref().is_ok_and(|output| output.status.success()),
        "confluent-kafka is not importable with {python:?}; run scripts/test.sh (it installs it), \
         or set SLUICE_TEST_PYTHON to a python that has it"
    );
    let h = Harness::start(&[("admin-keys", json_to_toml(json!([ADMIN])))]).await;
    let schema_key = new_key(&h, "schema", "shop").await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/compat/confluent_registry.py"
    );
    let output = tokio::process::Command::new(&python)
        .args([
            script,
            "registry",
            &format!("http://{}", h.app().addr),
            &schema_key,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "the client failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    let id_v1 = seen["id_v1"].as_u64().unwrap();
    assert_eq!(seen["id_v1_again"], id_v1, "{seen}");
    assert_eq!(
        (
            seen["compatible_v2"].clone(),
            seen["compatible_bad"].clone()
        ),
        (json!(true), json!(false))
    );
    assert_eq!(seen["bad_error"][0], 409);
    assert!(
        seen["bad_error"][2]
            .as_str()
            .unwrap()
            .contains("READER_FIELD_MISSING_DEFAULT_VALUE"),
        "{seen}"
    );
    let id_v2 = seen["id_v2"].as_u64().unwrap();
    assert_ne!(id_v2, id_v1);
    assert_eq!(seen["latest"], json!([2, id_v2, "AVRO"]));
    assert_eq!(seen["versions"], json!([1, 2]));
    assert_eq!(seen["lookup_v1"], json!([1, id_v1]));
    assert_eq!(
        (seen["by_id_type"].clone(), seen["json_by_id_type"].clone()),
        (json!("AVRO"), json!("JSON"))
    );
    assert_eq!(
        seen["subjects"],
        json!(["Page Viewed-value", "orders-value"])
    );
    assert_eq!(seen["types"], json!(["AVRO", "JSON"]));
    assert_eq!(seen["subjects_of_v1"], json!(["orders-value"]));
    assert_eq!(
        (seen["global_level"].clone(), seen["subject_level"].clone()),
        (json!("BACKWARD"), json!("FULL"))
    );
    assert_eq!(seen["deleted_version"], 1);
    assert_eq!(seen["versions_after_delete"], json!([2]));
    assert_eq!(seen["deleted_version_error"], 40402);
    assert_eq!(
        (
            seen["deleted_subject"].clone(),
            seen["deleted_subject_permanently"].clone()
        ),
        (json!([1]), json!([1]))
    );
    assert_eq!(seen["subjects_after_delete"], json!(["orders-value"]));
    assert_eq!(seen["missing_id_error"], 40403);
    h.stop().await;
}
