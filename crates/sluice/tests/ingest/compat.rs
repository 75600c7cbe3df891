//! Compatibility with a client no one here wrote: Segment's own Python SDK
//! (`segment-analytics-python` from PyPI) sends track, page and identify calls in gzip batches
//! to sluice; every field is checked in the log. `scripts/test.sh` installs the SDK in a
//! virtualenv and points `SLUICE_TEST_PYTHON` at it.

use super::api::{Harness, WRITE_KEY};
use serde_json::Value;
use std::collections::HashMap;
use std::process::Command;

use crate::support::python;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_python_sdk_sends_batches_that_arrive_field_for_field() {
    let probe = Command::new(python())
        .args(["-c", "import segment.analytics"])
        .output();
    assert!(
        probe.as_ref().is_ok_and(|output| output.status.success()),
        "the Segment Python SDK is not importable with {:?}; run scripts/test.sh (it installs segment-analytics-python), \
         or set SLUICE_TEST_PYTHON to a python that has it",
        python()
    );
    let h = Harness::start(&[]).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/compat/segment_python.py"
    );
    let host = format!("http://{}", h.app().addr);
    let output = tokio::process::Command::new(python())
        .args([script, &host, WRITE_KEY, "1"])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "SDK run failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sent: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(sent.len(), 23);

    let stored: HashMap<String, Value> = h
        .records("events")
        .await
        .into_iter()
        .map(|event| (event["message_id"].as_str().unwrap().to_owned(), event))
        .collect();
    assert_eq!(stored.len(), 23, "every call arrived once");
    for message in &sent {
        let id = message["messageId"].as_str().unwrap();
        let event = &stored[id];
        assert_eq!(event["tenant"], "shop");
        let added = assert_stored_as_sent(message, event, &["properties", "traits", "context"], id);
        assert_eq!(event["context"]["library"]["name"], "analytics-python");
        // No user agent or page: enrichment adds only the request's address, to the events
        // that do not forward one of their own (the track calls send context.ip).
        let expected = match message["context"].get("ip") {
            Some(_) => serde_json::json!({}),
            None => serde_json::json!({"ip": "127.0.0.1"}),
        };
        assert_eq!(added, expected, "{id}");
        let original =
            sluice_core::time::parse_rfc3339_millis(message["timestamp"].as_str().unwrap())
                .unwrap();
        assert_eq!(event["original_timestamp"].as_i64(), Some(original), "{id}");
        // The SDK's clock is this machine's, so the skew correction moves the time by at most the
        // time the batch spent in the SDK's queue and on the wire.
        let corrected = event["timestamp"].as_i64().unwrap();
        assert!(
            (corrected - original).abs() < 10_000,
            "{id}: corrected {corrected} vs sent {original}"
        );
        assert!(
            event["sent_at"].as_i64().is_some(),
            "{id}: the batch's sentAt was kept"
        );
    }
    h.stop().await;
}

/// The stored `event` has the Segment `message`'s type, ids and names under sluice's names, and
/// its `objects` verbatim — but for the objects enrichment adds to its `context` (never
/// changing what was sent), which are returned.
pub(crate) fn assert_stored_as_sent(
    message: &Value,
    event: &Value,
    objects: &[&str],
    what: &str,
) -> Value {
    assert_eq!(event["type"], message["type"], "{what}");
    for (theirs, ours) in [
        ("userId", "user_id"),
        ("anonymousId", "anonymous_id"),
        ("event", "event"),
        ("name", "name"),
        ("category", "category"),
        ("groupId", "group_id"),
        ("previousId", "previous_id"),
    ] {
        // SDKs send absent ids as null; sluice stores absent as absent.
        assert_eq!(
            event.get(ours),
            message.get(theirs).filter(|v| !v.is_null()),
            "{what}: {theirs}"
        );
    }
    let mut added = serde_json::Map::new();
    for field in objects {
        if *field != "context" {
            assert_eq!(event.get(field), message.get(field), "{what}: {field}");
            continue;
        }
        let sent = message.get("context").and_then(Value::as_object);
        let stored = event.get("context").and_then(Value::as_object);
        for (key, value) in stored.into_iter().flatten() {
            match sent.and_then(|sent| sent.get(key)) {
                Some(as_sent) => assert_eq!(value, as_sent, "{what}: context.{key}"),
                None => {
                    assert!(
                        [
                            "ip", "geo", "browser", "os", "device", "campaign", "referrer"
                        ]
                        .contains(&key.as_str()),
                        "{what}: context.{key} was neither sent nor is it enrichment's"
                    );
                    added.insert(key.clone(), value.clone());
                }
            }
        }
        for key in sent.into_iter().flatten().map(|(key, _)| key) {
            assert!(
                stored.is_some_and(|stored| stored.contains_key(key)),
                "{what}: context.{key} was lost"
            );
        }
    }
    Value::Object(added)
}
