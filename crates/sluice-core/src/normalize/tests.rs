use super::*;
use crate::config::ByteSize;
use proptest::prelude::*;

fn limits() -> Limits {
    Limits {
        max_event_bytes: ByteSize(32 * 1024),
        max_batch_bytes: ByteSize(500 * 1024),
        max_depth: 8,
        max_string_bytes: ByteSize(64),
        max_id_bytes: ByteSize(32),
        max_name_bytes: ByteSize(48),
    }
}

const RECEIVED: Millis = 1_714_564_800_000; // 2024-05-01T12:00:00Z

fn ctx(limits: &Limits, endpoint: Option<EventType>, index: Option<usize>) -> NormalizeContext<'_> {
    NormalizeContext {
        tenant: "shop",
        received_at: RECEIVED,
        limits,
        endpoint,
        batch_sent_at: None,
        batch_context: None,
        index,
    }
}

fn track(json: &str) -> Result<Event<'static>, EventError> {
    normalize(
        json.as_bytes(),
        &ctx(&limits(), Some(EventType::Track), None),
    )
    .map(Event::into_owned)
}

fn in_batch(json: &str) -> Result<Event<'static>, EventError> {
    normalize(json.as_bytes(), &ctx(&limits(), None, Some(3))).map(Event::into_owned)
}

#[test]
fn a_track_call_keeps_every_field() {
    let event = track(
        r#"{"userId":"u1","anonymousId":"a1","event":"Order Completed","messageId":"m-1",
            "properties":{"revenue":12.5,"items":[{"sku":"x"}]},"context":{"ip":"1.2.3.4"},
            "timestamp":"2024-05-01T11:59:00Z","integrations":{"All":true}}"#,
    )
    .unwrap();
    assert_eq!(event.kind, EventType::Track);
    assert_eq!(event.tenant, "shop");
    assert_eq!(event.message_id, "m-1");
    assert_eq!(event.event.as_deref(), Some("Order Completed"));
    assert_eq!(event.user_id.as_deref(), Some("u1"));
    assert_eq!(event.anonymous_id.as_deref(), Some("a1"));
    assert_eq!(
        event.timestamp,
        RECEIVED - 60_000,
        "no sentAt: the client's timestamp as is"
    );
    assert_eq!(event.received_at, RECEIVED);
    assert_eq!(
        event.properties.as_ref().unwrap().get(),
        r#"{"revenue":12.5,"items":[{"sku":"x"}]}"#
    );
    assert_eq!(event.context.as_ref().unwrap().get(), r#"{"ip":"1.2.3.4"}"#);
    assert_eq!(event.partition_key(), "a1");
    let json = event.to_json();
    let stored: Event<'_> = serde_json::from_slice(&json).unwrap();
    assert_eq!(stored.to_json(), json, "the stored form round-trips");
}

#[test]
fn missing_ids_are_rejected_with_the_rule() {
    let error = track(r#"{"event":"Signed Up"}"#).unwrap_err();
    assert_eq!(error.path, "userId");
    assert_eq!(error.kind.reason(), "missing_field");
    assert_eq!(
        error.to_string(),
        "userId: userId or anonymousId is required (send at least one, as a non-empty string)"
    );
    let error = in_batch(r#"{"type":"page","userId":"","anonymousId":null}"#).unwrap_err();
    assert_eq!(
        error.path, "batch[3].userId",
        "empty strings count as absent"
    );
}

#[test]
fn either_or_both_ids_are_accepted_and_numbers_become_text() {
    let event = track(r#"{"userId":42,"event":"e"}"#).unwrap();
    assert_eq!(event.user_id.as_deref(), Some("42"));
    assert_eq!(event.anonymous_id, None);
    assert_eq!(event.partition_key(), "42");
    let event = track(r#"{"anonymousId":"anon","event":"e"}"#).unwrap();
    assert_eq!(
        (event.user_id, event.anonymous_id.as_deref()),
        (None, Some("anon"))
    );
    let both = track(r#"{"userId":"u","anonymousId":"a","event":"e"}"#).unwrap();
    assert_eq!(
        (both.user_id.as_deref(), both.anonymous_id.as_deref()),
        (Some("u"), Some("a"))
    );
    assert_eq!(
        both.message_id.len(),
        36,
        "a UUIDv7 is generated when messageId is absent"
    );
}

#[test]
fn clock_skew_is_corrected_from_sent_at() {
    // The device clock is 1 hour fast: it stamped the event 2 s before sending.
    let event = track(
        r#"{"userId":"u","event":"e","timestamp":"2024-05-01T12:59:58Z","sentAt":"2024-05-01T13:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!(event.timestamp, RECEIVED - 2_000);
    assert_eq!(event.original_timestamp, Some(RECEIVED + 3_600_000 - 2_000));
    assert_eq!(event.sent_at, Some(RECEIVED + 3_600_000));

    // A batch's sentAt applies to messages without their own.
    let limits = limits();
    let mut context = ctx(&limits, None, Some(0));
    context.batch_sent_at = Some(RECEIVED - 10 * 60_000 + 5_000);
    let json =
        r#"{"type":"track","userId":"u","event":"e","originalTimestamp":"2024-05-01T11:50:00Z"}"#;
    let event = normalize(json.as_bytes(), &context).unwrap();
    assert_eq!(event.timestamp, RECEIVED - 5_000);

    // No timestamp at all: the event happened when it arrived.
    assert_eq!(
        track(r#"{"userId":"u","event":"e"}"#).unwrap().timestamp,
        RECEIVED
    );
}

#[test]
fn an_oversize_event_names_the_limit() {
    let padding = "x".repeat(40);
    let items: Vec<String> = (0..1000)
        .map(|i| format!(r#""k{i}":"{padding}""#))
        .collect();
    let json = format!(
        r#"{{"userId":"u","event":"e","properties":{{{}}}}}"#,
        items.join(",")
    );
    let error = in_batch(&json).unwrap_err();
    assert_eq!(error.path, "batch[3]");
    assert_eq!(
        error.to_string(),
        format!(
            "batch[3]: event is {} bytes, larger than the limit of 32768 bytes (limits.max-event-bytes)",
            json.len()
        )
    );
}

#[test]
fn an_oversize_batch_names_the_limit() {
    let body = format!(
        r#"{{"batch":[{}]}}"#,
        vec![r#"{"type":"track"}"#; 40_000].join(",")
    );
    let error = parse_batch(body.as_bytes(), &limits()).unwrap_err();
    assert_eq!(error.kind.reason(), "too_large");
    assert_eq!(
        error.to_string(),
        format!(
            "request body is {} bytes, larger than the limit of 512000 bytes (limits.max-batch-bytes)",
            body.len()
        )
    );
}

#[test]
fn deep_nesting_names_the_deepest_allowed_path() {
    // The event is level 1, properties level 2, ... the object under "g" would be level 9.
    let json = r#"{"userId":"u","event":"e","properties":{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":1}}}}}}}}}"#;
    let error = track(json).unwrap_err();
    assert_eq!(error.path, "properties.a.b.c.d.e.f.g");
    assert_eq!(
        error.to_string(),
        "properties.a.b.c.d.e.f.g: nested deeper than the limit of 8 levels (limits.max-depth); flatten the data"
    );
    let shallow =
        r#"{"userId":"u","event":"e","properties":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}"#;
    assert!(track(shallow).is_ok(), "exactly at the limit is fine");
}

#[test]
fn long_strings_and_ids_name_their_limit() {
    let long = "y".repeat(65);
    let error = track(&format!(
        r#"{{"userId":"u","event":"e","traits":{{"list":["ok","{long}"]}}}}"#
    ))
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "traits.list[1]: string is 65 bytes, longer than the limit of 64 bytes (limits.max-string-bytes)"
    );
    let error = track(&format!(r#"{{"userId":"{}","event":"e"}}"#, "u".repeat(33))).unwrap_err();
    assert_eq!(
        error.to_string(),
        "userId: id is 33 bytes, longer than the limit of 32 bytes (limits.max-id-bytes)"
    );
}

#[test]
fn without_a_string_limit_a_string_is_bounded_by_its_event_only() {
    // Segment accepts any event up to 32 KB whatever its strings: so does the default (0).
    let limits = Limits {
        max_string_bytes: ByteSize(0),
        ..limits()
    };
    let long = "y".repeat(15_000);
    let json = format!(r#"{{"userId":"u","event":"e","properties":{{"{long}":"{long}"}}}}"#);
    let event = normalize(json.as_bytes(), &ctx(&limits, Some(EventType::Track), None)).unwrap();
    assert!(event.properties.unwrap().get().contains(&long));
    let json = format!(r#"{{"userId":"u","event":"e","properties":{{"a":"{long}{long}{long}"}}}}"#);
    let error =
        normalize(json.as_bytes(), &ctx(&limits, Some(EventType::Track), None)).unwrap_err();
    assert_eq!(error.kind.reason(), "too_large", "{error}");
}

#[test]
fn integrations_channel_version_and_metadata_are_kept_verbatim() {
    let event = in_batch(
        r#"{"type":"page","anonymousId":"a","integrations":{"All":false,"Mixpanel":true},
            "channel":"browser","version":2,"_metadata":{"bundled":["Segment.io"],"unbundled":[]},
            "writeKey":"wk_not_kept","options":{"x":1}}"#,
    )
    .unwrap();
    assert_eq!(
        event.integrations.as_ref().unwrap().get(),
        r#"{"All":false,"Mixpanel":true}"#
    );
    assert_eq!(event.channel.as_ref().unwrap().get(), r#""browser""#);
    assert_eq!(event.version.as_ref().unwrap().get(), "2");
    assert_eq!(
        event.metadata.as_ref().unwrap().get(),
        r#"{"bundled":["Segment.io"],"unbundled":[]}"#
    );
    let json = String::from_utf8(event.to_json()).unwrap();
    assert!(
        json.ends_with(r#","integrations":{"All":false,"Mixpanel":true},"channel":"browser","version":2,"_metadata":{"bundled":["Segment.io"],"unbundled":[]}}"#),
        "{json}"
    );
    assert!(!json.contains("wk_not_kept"), "the write key is not stored");
    assert!(!json.contains("options"), "{json}");

    // null is absent; the kept fields are bounded like the others.
    let event = track(r#"{"userId":"u","event":"e","channel":null,"_metadata":null}"#).unwrap();
    assert!(event.channel.is_none() && event.metadata.is_none());
    let error = track(&format!(
        r#"{{"userId":"u","event":"e","channel":"{}"}}"#,
        "c".repeat(65)
    ))
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "channel: string is 65 bytes, longer than the limit of 64 bytes (limits.max-string-bytes)"
    );
    let error = in_batch(
        r#"{"type":"track","userId":"u","event":"e","integrations":{"a":{"b":{"c":{"d":{"e":{"f":{"g":{}}}}}}}}}"#,
    )
    .unwrap_err();
    assert_eq!(error.path, "batch[3].integrations.a.b.c.d.e.f.g");
}

#[test]
fn events_stored_before_the_kept_fields_still_decode() {
    // A record of the events topic as sluice wrote it before it kept integrations & co.
    let stored = br#"{"message_id":"m","tenant":"shop","type":"track","event":"e","user_id":"u","timestamp":1,"received_at":2,"properties":{"a":1},"context":{"ip":"1.2.3.4"}}"#;
    let event: Event<'_> = serde_json::from_slice(stored).unwrap();
    let kept = [
        &event.integrations,
        &event.channel,
        &event.version,
        &event.metadata,
    ];
    assert!(kept.iter().all(|field| field.is_none()));
    assert_eq!(event.to_json(), stored.to_vec(), "and write back unchanged");
}

#[test]
fn invalid_timestamps_say_what_is_expected() {
    let error = track(r#"{"userId":"u","event":"e","timestamp":"last tuesday"}"#).unwrap_err();
    assert_eq!(error.path, "timestamp");
    assert_eq!(error.kind.reason(), "invalid_timestamp");
    assert!(
        error.to_string().starts_with(
            "timestamp: invalid timestamp: \"last tuesday\" is not an ISO-8601 timestamp like 2024-05-01T12:00:00.000Z"
        ),
        "{error}"
    );
    let error =
        in_batch(r#"{"type":"page","userId":"u","sentAt":"2024-13-01T00:00:00Z"}"#).unwrap_err();
    assert_eq!(error.path, "batch[3].sentAt");
}

#[test]
fn unknown_and_mismatched_types_list_the_valid_ones() {
    let error = in_batch(r#"{"type":"purchase","userId":"u"}"#).unwrap_err();
    assert_eq!(
        error.to_string(),
        "batch[3].type: unknown type \"purchase\"; expected one of track, page, screen, identify, group, alias"
    );
    let error = in_batch(r#"{"userId":"u"}"#).unwrap_err();
    assert_eq!(error.path, "batch[3].type");
    let error = track(r#"{"type":"page","userId":"u"}"#).unwrap_err();
    assert_eq!(
        error.to_string(),
        "type: type \"page\" was sent to /v1/track; send it to /v1/page or /v1/batch"
    );
}

#[test]
fn per_type_requirements() {
    let error = track(r#"{"userId":"u"}"#).unwrap_err();
    assert_eq!(
        error.to_string(),
        "event: track calls need an event name, like \"Order Completed\""
    );
    let error = in_batch(r#"{"type":"group","userId":"u"}"#).unwrap_err();
    assert_eq!(error.path, "batch[3].groupId");
    let error = in_batch(r#"{"type":"alias","anonymousId":"a","previousId":"p"}"#).unwrap_err();
    assert_eq!(
        error.to_string(),
        "batch[3].userId: alias calls need the userId to merge into"
    );
    let page = in_batch(
        r#"{"type":"page","userId":"u","name":"Home","category":"Docs","event":"ignored"}"#,
    )
    .unwrap();
    assert_eq!(
        (page.name.as_deref(), page.category.as_deref(), page.event),
        (Some("Home"), Some("Docs"), None)
    );
    let identify = in_batch(r#"{"type":"identify","userId":"u","traits":{"plan":"pro"}}"#).unwrap();
    assert_eq!(identify.traits.unwrap().get(), r#"{"plan":"pro"}"#);
}

#[test]
fn wrong_json_types_and_syntax_errors_are_located() {
    let error = track(r#"{"userId":"u","event":5}"#).unwrap_err();
    assert_eq!(error.path, "event");
    assert_eq!(
        error.to_string(),
        "event: wrong type: found integer `5`, expected a string"
    );
    let error = track(r#"{"userId":"u","event":"e","properties":[1]}"#).unwrap_err();
    assert_eq!(
        error.to_string(),
        "properties: expected an object, found an array"
    );
    let error = track("{\"userId\":\"u\",\n\"event\":}").unwrap_err();
    assert_eq!(
        error.kind,
        EventErrorKind::MalformedJson {
            line: 2,
            column: 9,
            message: "expected value".into()
        }
    );
    let error = in_batch("[1,2]").unwrap_err();
    assert_eq!(
        error.to_string(),
        "batch[3]: wrong type: found an array, expected an object (a Segment message)"
    );
    let error = parse_batch(br#"{"events":[]}"#, &limits()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("a batch request is {\"batch\": [...]}"),
        "{error}"
    );
}

#[test]
fn batch_context_is_merged_under_the_message_context() {
    let limits = limits();
    let shared =
        RawValue::from_string(r#"{"library":{"name":"py"},"ip":"1.1.1.1"}"#.into()).unwrap();
    let mut context = ctx(&limits, None, Some(0));
    context.batch_context = Some(&shared);
    let json = r#"{"type":"track","userId":"u","event":"e","context":{"ip":"2.2.2.2"}}"#;
    let event = normalize(json.as_bytes(), &context).unwrap();
    let merged: serde_json::Value = serde_json::from_str(event.context.unwrap().get()).unwrap();
    assert_eq!(
        merged,
        serde_json::json!({"library":{"name":"py"},"ip":"2.2.2.2"})
    );
}

proptest! {
    /// Shifting the device clock moves `timestamp` and `sentAt` together, and the corrected time
    /// does not move at all.
    #[test]
    fn correction_is_independent_of_the_client_clock_offset(
        age in 0i64..86_400_000,
        offset in -10_000_000_000i64..10_000_000_000,
        received in 1_000_000_000_000i64..2_000_000_000_000,
    ) {
        let true_time = received - age;
        let timestamp = true_time + offset;
        let sent_at = received + offset;
        prop_assert_eq!(corrected_event_time(Some(timestamp), Some(sent_at), received), true_time);
    }

    /// Any message with an id and an event name normalizes, and keeps its fields exactly.
    #[test]
    fn valid_messages_round_trip(
        user in proptest::option::of("[a-zA-Z0-9_-]{1,32}"),
        anon in "[a-f0-9]{1,32}",
        event_name in "[A-Za-z ]{1,48}",
        revenue in 0u32..1_000_000,
        url in "/[a-z/]{0,60}",
    ) {
        let body = serde_json::json!({
            "userId": user, "anonymousId": anon, "event": event_name,
            "properties": {"revenue": revenue, "url": url},
        });
        let event = track(&body.to_string()).unwrap();
        prop_assert_eq!(event.user_id.map(|id| id.into_owned()), user);
        prop_assert_eq!(event.anonymous_id.as_deref(), Some(anon.as_str()));
        prop_assert_eq!(event.event.as_deref(), Some(event_name.as_str()));
        let properties: serde_json::Value = serde_json::from_str(event.properties.unwrap().get()).unwrap();
        prop_assert_eq!(properties, body["properties"].clone());
    }

    /// Arbitrary bytes never panic: they normalize or yield an error with a reason.
    #[test]
    fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = in_batch(&String::from_utf8_lossy(&bytes));
        let _ = parse_batch(&bytes, &limits());
    }

    /// Messages built from random JSON fragments either normalize or report a non-empty path
    /// that starts with the message's own path.
    #[test]
    fn errors_are_always_located(
        user in prop_oneof![Just("\"u\"".to_owned()), Just("null".to_owned()), Just("[1]".to_owned()), Just("7".to_owned())],
        kind in prop_oneof![Just("\"track\""), Just("\"nope\""), Just("3")],
        props in prop_oneof![Just("{}"), Just("[]"), Just("{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{}}}}}}}}")],
    ) {
        let json = format!(r#"{{"type":{kind},"userId":{user},"event":"e","properties":{props}}}"#);
        if let Err(error) = in_batch(&json) {
            prop_assert!(error.path.starts_with("batch[3]"), "{}", error);
            prop_assert!(!error.to_string().is_empty());
        }
    }
}
