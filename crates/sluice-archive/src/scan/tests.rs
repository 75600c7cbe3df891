use super::*;
use proptest::prelude::*;
use serde_json::Value;
use sluice_core::event::Event;

/// What deserializing the record as an [`Event`] makes of it, as [`Fields`].
fn expected(record: &str) -> Result<Fields<'_>, serde_json::Error> {
    // Fields borrow from the event; keep the event alive by leaking it (tests only).
    let event: Event<'_> = serde_json::from_str(record)?;
    Ok(Fields::of(Box::leak(Box::new(event))))
}

/// One JSON value of the kinds clients send in the nested fields.
fn nested() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(serde_json::json!({})),
        Just(serde_json::json!({"url": "/a\"b}", "n": 1.5, "deep": {"x": [1, null, true, "]"]}})),
        Just(serde_json::json!({"é": "\u{1F600}\\", "list": [[], {}]})),
        Just(serde_json::json!("browser")),
        Just(serde_json::json!("with \"quotes\" and \\")),
        Just(serde_json::json!(2)),
        Just(serde_json::json!(-0.5e-3)),
        Just(serde_json::json!(true)),
        Just(serde_json::json!([1, "two", {"three": 3}])),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 _./-]{0,20}",
        "\\PC{0,12}",
        "[\"\\\\\\t\\n\\u{0}-\\u{1f}a-z]{0,8}",
    ]
}

/// How a field is written: absent, `null`, or a value.
#[derive(Debug, Clone)]
enum Written {
    Absent,
    Null,
    Value(Value),
}

fn optional(value: impl Strategy<Value = Value>) -> impl Strategy<Value = Written> {
    prop_oneof![
        2 => Just(Written::Absent),
        1 => Just(Written::Null),
        3 => value.prop_map(Written::Value),
    ]
}

prop_compose! {
    /// An event record as any writer of JSON may lay it out: the keys in any order, unknown
    /// keys among them, optional fields absent or `null`, with or without whitespace.
    fn record()(
        message_id in text(),
        tenant in "[a-z0-9_-]{1,12}",
        kind in proptest::sample::select(EventType::ALL.to_vec()),
        texts in proptest::collection::vec(optional(text().prop_map(Value::from)), TEXT.len()),
        times in (any::<i64>(), any::<i64>()),
        optional_times in proptest::collection::vec(optional(any::<i64>().prop_map(Value::from)), 2),
        jsons in proptest::collection::vec(optional(nested()), JSON.len()),
        unknown in proptest::collection::vec(("[a-z_]{1,30}", nested()), 0..3),
        order in any::<proptest::sample::Index>(),
        shuffled in any::<bool>(),
        pretty in any::<bool>(),
    ) -> String {
        let mut members: Vec<(String, Written)> = vec![
            ("message_id".into(), Written::Value(message_id.into())),
            ("tenant".into(), Written::Value(tenant.into())),
            ("type".into(), Written::Value(kind.as_str().into())),
        ];
        members.extend(TEXT.iter().map(|key| key.to_string()).zip(texts));
        members.push(("timestamp".into(), Written::Value(times.0.into())));
        members.push(("received_at".into(), Written::Value(times.1.into())));
        members.extend(["sent_at", "original_timestamp"].map(String::from).into_iter().zip(optional_times));
        let json_keys = JSON.map(|key| if key == "metadata" { "_metadata" } else { key });
        members.extend(json_keys.map(String::from).into_iter().zip(jsons));
        members.extend(
            unknown
                .into_iter()
                // An unknown key never repeats a known one.
                .filter(|(key, _)| !KEYS.contains(&key.as_str()))
                .map(|(key, value)| (key, Written::Value(value))),
        );
        if shuffled {
            // A rotation and a swap: many orders, reproducible from the seed.
            let at = order.index(members.len());
            members.rotate_left(at);
            let last = members.len() - 1;
            members.swap(0, last - at);
        }
        let separator = if pretty { ",\n  " } else { "," };
        let colon = if pretty { " : " } else { ":" };
        let body: Vec<String> = members
            .into_iter()
            .filter_map(|(key, written)| {
                let value = match written {
                    Written::Absent => return None,
                    Written::Null => "null".to_owned(),
                    Written::Value(value) if pretty => serde_json::to_string_pretty(&value).unwrap(),
                    Written::Value(value) => value.to_string(),
                };
                Some(format!("{}{colon}{value}", Value::from(key)))
            })
            .collect();
        if pretty {
            format!("{{\n  {}\n}}", body.join(separator))
        } else {
            format!("{{{}}}", body.join(separator))
        }
    }
}

proptest! {
    /// Every record, in any layout, reads as deserializing it into an event does; one scanner
    /// reads them all in turn (its learned key order changing as the layouts do).
    #[test]
    fn a_record_reads_as_the_event_it_deserializes_into(
        records in proptest::collection::vec(record(), 1..6)
    ) {
        let mut scan = EventScan::default();
        for record in &records {
            let scanned = scan.fields(record.as_bytes());
            prop_assert_eq!(scanned, Ok(expected(record).unwrap()), "{}", record);
        }
    }
}

/// The collector's own records (`Event::write_json`), the common case, read the same.
#[test]
fn the_collectors_records_read_as_their_events() {
    let record = r#"{"message_id":"m\"1\u00e9","tenant":"shop","type":"page","name":"Home","user_id":"u1","anonymous_id":"a1","timestamp":1796651100000,"received_at":1796651100500,"sent_at":1796651100400,"properties":{"url":"/","n":1.5},"context":{"ip":"10.0.0.1"},"channel":"browser","_metadata":{"bundled":[]}}"#;
    let mut scan = EventScan::default();
    for _ in 0..3 {
        let fields = scan.fields(record.as_bytes()).unwrap();
        assert_eq!(fields, expected(record).unwrap());
        assert_eq!(fields.message_id, "m\"1é");
        assert_eq!(fields.json[4], Some(r#""browser""#));
        assert_eq!(fields.json[6], Some(r#"{"bundled":[]}"#));
        assert!(
            matches!(fields.tenant, Cow::Borrowed(_)),
            "no copy of a plain string"
        );
    }
}

/// What no event is, the scan refuses as deserializing refuses it, and says what is wrong.
#[test]
fn what_is_no_event_is_refused_with_the_reason() {
    let base = r#""message_id":"m","tenant":"shop","type":"track","timestamp":1,"received_at":2"#;
    let cases: Vec<(String, &str)> = vec![
        ("[1,2]".into(), "an object"),
        ("".into(), "an object"),
        (
            r#"{"message_id":"m","type":"track","timestamp":1,"received_at":2}"#.into(),
            "tenant is missing",
        ),
        (
            r#"{"message_id":"m","tenant":null,"type":"track","timestamp":1,"received_at":2}"#
                .into(),
            "tenant is missing",
        ),
        (
            r#"{"message_id":"m","tenant":"shop","timestamp":1,"received_at":2}"#.into(),
            "type is missing",
        ),
        (
            r#"{"message_id":"m","tenant":"shop","type":"track","received_at":2}"#.into(),
            "timestamp is missing",
        ),
        (
            r#"{"message_id":"m","tenant":"shop","type":"track","timestamp":1}"#.into(),
            "received_at is missing",
        ),
        (
            r#"{"tenant":"shop","type":"track","timestamp":1,"received_at":2}"#.into(),
            "message_id is missing",
        ),
        (
            format!("{{{}}}", base.replace("track", "bogus")),
            "no type of the Segment Spec",
        ),
        (
            format!(
                "{{{}}}",
                base.replace(r#""timestamp":1"#, r#""timestamp":1.5"#)
            ),
            "timestamp: not an integer",
        ),
        (
            format!(
                "{{{}}}",
                base.replace(r#""timestamp":1"#, r#""timestamp":"1""#)
            ),
            "timestamp: not an integer",
        ),
        (
            format!(
                "{{{}}}",
                base.replace(r#""timestamp":1"#, r#""timestamp":99999999999999999999"#)
            ),
            "timestamp: not an integer",
        ),
        (
            format!(r#"{{{base},"user_id":5}}"#),
            "user_id: not a string",
        ),
        (
            format!(r#"{{{base},"sent_at":"soon"}}"#),
            "sent_at: not an integer",
        ),
        (
            format!(r#"{{{base},"event":"bad \x escape"}}"#),
            "event: a string with invalid escapes",
        ),
        (
            format!(r#"{{{base},"properties":{{"a":1}}"#),
            "malformed event JSON",
        ),
    ];
    let mut scan = EventScan::default();
    for (record, reason) in &cases {
        let error = scan.fields(record.as_bytes()).unwrap_err();
        assert!(error.contains(reason), "{record}: {error}, not {reason}");
        assert!(
            serde_json::from_str::<Event<'_>>(record).is_err(),
            "deserializing accepts {record}"
        );
    }
    let mut invalid = format!("{{{base},\"event\":\"").into_bytes();
    invalid.extend_from_slice(&[0xff, b'"', b'}']);
    let error = scan.fields(&invalid).unwrap_err();
    assert!(error.starts_with("not UTF-8"), "{error}");
    // And the scanner still reads a good record after all that.
    let good = format!("{{{base}}}");
    assert_eq!(
        scan.fields(good.as_bytes()).unwrap(),
        expected(&good).unwrap()
    );
}

/// A derived stream's records: a session (`type: "session"`, no `received_at`) and a routed
/// event read with [`EventScan::derived`]; the events' scan refuses the session for both.
#[test]
fn a_derived_streams_records_may_have_any_type_and_no_received_at() {
    let session = r#"{"tenant":"shop","timestamp":1796648400000,"message_id":"5f1c0e2a9b7d3c41","type":"session","anonymous_id":"a1","properties":{"session_id":"5f1c0e2a9b7d3c41","duration_ms":60000,"bounce":0}}"#;
    let mut derived = EventScan::derived();
    let fields = derived.fields(session.as_bytes()).unwrap();
    assert_eq!(fields.kind, "session");
    assert_eq!(fields.received_at, None);
    assert_eq!(fields.anonymous_id(), Some("a1"));
    assert_eq!(
        fields.json[0],
        Some(r#"{"session_id":"5f1c0e2a9b7d3c41","duration_ms":60000,"bounce":0}"#)
    );
    let routed = r#"{"tenant":"shop","timestamp":5,"message_id":"m1","type":"track","event":"Order Completed","received_at":7,"properties":{"revenue":12.5}}"#;
    let fields = derived.fields(routed.as_bytes()).unwrap();
    assert_eq!((&*fields.kind, fields.received_at), ("track", Some(7)));

    let refused = EventScan::default().fields(session.as_bytes()).unwrap_err();
    assert!(refused.contains("no type of the Segment Spec"), "{refused}");
    let without_time = session.replace(r#""type":"session""#, r#""type":"track""#);
    let refused = EventScan::default()
        .fields(without_time.as_bytes())
        .unwrap_err();
    assert_eq!(refused, "received_at is missing");
    // What no derived record may be either: still refused.
    for bad in [
        r#"{"tenant":"shop","timestamp":5,"message_id":"m1"}"#,
        r#"{"tenant":"shop","timestamp":"5","message_id":"m1","type":"session"}"#,
        r#"{"tenant":"shop","timestamp":5,"message_id":"m1","type":"session","received_at":"x"}"#,
    ] {
        assert!(derived.fields(bad.as_bytes()).is_err(), "{bad}");
    }
}
