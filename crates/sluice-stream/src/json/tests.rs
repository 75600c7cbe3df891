use super::*;
use proptest::prelude::*;
use serde_json::Value;

fn scan(json: &str, paths: &[&str]) -> Result<Vec<(Kind, String)>, ScanError> {
    let paths: Vec<Vec<&str>> = paths.iter().map(|p| p.split('.').collect()).collect();
    let set = FieldSet::new(&paths);
    let mut slots = Vec::new();
    set.scan(json.as_bytes(), &mut slots)?;
    Ok(slots
        .iter()
        .map(|s| {
            (
                s.kind,
                String::from_utf8_lossy(s.text(json.as_bytes())).into_owned(),
            )
        })
        .collect())
}

#[test]
fn finds_top_level_and_nested_fields() {
    let json = r#"{"tenant":"shop","type":"track","event":"Page Viewed","timestamp":1714564740000,
        "properties":{"url":"/a\"b","duration_ms":12.5,"nested":{"x":true},"list":[1,{"url":"no"}]},
        "context":{"ip":null}}"#;
    let found = scan(
        json,
        &[
            "tenant",
            "timestamp",
            "properties.url",
            "properties.duration_ms",
            "properties.nested.x",
            "properties.list",
            "context.ip",
            "properties.missing",
            "traits.plan",
        ],
    )
    .unwrap();
    assert_eq!(found[0], (Kind::String, "shop".into()));
    assert_eq!(found[1], (Kind::Number, "1714564740000".into()));
    assert_eq!(found[2], (Kind::EscapedString, r#"/a\"b"#.into()));
    assert_eq!(found[3], (Kind::Number, "12.5".into()));
    assert_eq!(found[4], (Kind::True, "true".into()));
    assert_eq!(found[5].0, Kind::Composite);
    assert_eq!(found[6], (Kind::Null, "null".into()));
    assert_eq!(found[7].0, Kind::Missing);
    assert_eq!(found[8].0, Kind::Missing);
}

#[test]
fn stops_once_every_field_is_found() {
    // The tail is garbage: a scan that stops early never sees it.
    let json = r#"{"tenant":"t","timestamp":5,"context": GARBAGE"#;
    assert_eq!(
        scan(json, &["tenant", "timestamp"]).unwrap()[1],
        (Kind::Number, "5".into())
    );
    assert!(scan(json, &["tenant", "timestamp", "context.x"]).is_err());
}

#[test]
fn first_duplicate_wins_and_escaped_keys_match() {
    let json = r#"{"a":1,"a":2,"\u0062":"yes"}"#;
    let found = scan(json, &["a", "b"]).unwrap();
    assert_eq!(found[0].1, "1");
    assert_eq!(found[1], (Kind::String, "yes".into()));
}

#[test]
fn malformed_input_is_an_error() {
    for bad in [
        "",
        "[]",
        "{",
        r#"{"a"}"#,
        r#"{"a":}"#,
        r#"{"a":tru}"#,
        r#"{"a":"x"#,
        r#"{"a":{"b":[1,2}"#,
        r#"{"a":1 "b":2}"#,
        r#"{"a\"#,
    ] {
        assert!(scan(bad, &["zz"]).is_err(), "{bad:?}");
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-c\"\\\\é\n ]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]{1,2}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("tenant".to_owned()),
        Just("timestamp".to_owned()),
        Just("event".to_owned()),
        Just("user_id".to_owned()),
        Just("properties".to_owned()),
        Just("context".to_owned()),
        Just("original_timestamp".to_owned()),
        Just("original_timestamps".to_owned()),
        Just("original_timezone".to_owned()),
        Just("received_at".to_owned()),
        Just("url".to_owned()),
        Just("duration_ms".to_owned()),
        Just("page".to_owned()),
        Just("path".to_owned()),
        Just("".to_owned()),
        "[a-z_\"é]{1,20}",
    ]
}

fn event_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[ -~é\n\t\\\"]{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// Whether `slot` holds what serde_json found at `path` (`expected`).
fn check_slot(
    path: &[&str],
    expected: Option<&Value>,
    slot: &Slot,
    text: &str,
) -> Result<(), TestCaseError> {
    match (expected, slot.kind) {
        (None, Kind::Missing) => {}
        (Some(Value::Null), Kind::Null)
        | (Some(Value::Bool(true)), Kind::True)
        | (Some(Value::Bool(false)), Kind::False) => {}
        (Some(Value::Array(_) | Value::Object(_)), Kind::Composite) => {}
        (Some(Value::Number(n)), Kind::Number) => {
            let text = std::str::from_utf8(slot.text(text.as_bytes())).unwrap();
            prop_assert_eq!(text.parse::<f64>().unwrap(), n.as_f64().unwrap());
        }
        (Some(Value::String(s)), Kind::String | Kind::EscapedString) => {
            let mut out = Vec::new();
            prop_assert!(unescape(slot.text(text.as_bytes()), &mut out));
            prop_assert_eq!(String::from_utf8(out).unwrap(), s.clone());
        }
        (expected, kind) => {
            prop_assert!(
                false,
                "{:?}: expected {:?}, scanned {:?}",
                path,
                expected,
                kind
            )
        }
    }
    Ok(())
}

#[test]
fn keys_sharing_their_first_eight_bytes_are_told_apart() {
    let json = r#"{"original_timezone":"x","original_timestamp":5,"original_timestamps":6}"#;
    let found = scan(
        json,
        &["original_timestamps", "original_timestamp", "original_time"],
    )
    .unwrap();
    assert_eq!(found[0], (Kind::Number, "6".into()));
    assert_eq!(found[1], (Kind::Number, "5".into()));
    assert_eq!(found[2].0, Kind::Missing);
    // Same length too: no hash table can tell them apart, the lookup goes one by one.
    let json = r#"{"original_bbbb":1,"original_aaaa":2,"original_cccc":3}"#;
    let paths = ["original_aaaa", "original_bbbb", "x"];
    let split: Vec<Vec<&str>> = paths.iter().map(|p| vec![*p]).collect();
    assert!(FieldSet::new(&split).nodes[0].table.is_empty());
    let found = scan(json, &paths).unwrap();
    assert_eq!(found[0], (Kind::Number, "2".into()));
    assert_eq!(found[1], (Kind::Number, "1".into()));
}

/// The paths the shape tests look for.
const SHAPE_PATHS: [&str; 9] = [
    "tenant",
    "timestamp",
    "event",
    "properties.url",
    "properties.duration_ms",
    "properties",
    "url",
    "context.page.path",
    "original_timestamp",
];

/// Scans `text` with `shape` and checks every path against serde_json.
fn check_with_shape(
    set: &FieldSet,
    shape: &mut KeyOrder,
    text: &str,
    gate_mask: u64,
) -> Result<(), TestCaseError> {
    let value: Value = serde_json::from_str(text).unwrap();
    let mut slots = Vec::new();
    let mut stopped = false;
    set.scan_with(text.as_bytes(), &mut slots, shape, gate_mask, &mut |_| {
        stopped = true;
        true
    })
    .unwrap();
    let mut plain = Vec::new();
    let mut plain_stopped = false;
    set.scan_gated(text.as_bytes(), &mut plain, gate_mask, &mut |_| {
        plain_stopped = true;
        true
    })
    .unwrap();
    // The shape changes the speed, never the result.
    prop_assert_eq!(&slots, &plain);
    prop_assert_eq!(stopped, plain_stopped);
    if !stopped {
        for (path, slot) in SHAPE_PATHS.iter().zip(&slots) {
            let path: Vec<&str> = path.split('.').collect();
            let expected = path.iter().try_fold(&value, |v, key| v.get(key));
            check_slot(&path, expected, slot, text)?;
        }
    }
    Ok(())
}

/// An event as the collector writes it, with `properties` of one of three kinds.
fn collector_event(kind: u8, n: u64) -> String {
    let properties = match kind % 4 {
        0 => format!(
            r#"{{"url":"/p/{n}","title":"P {n}","duration_ms":{}}}"#,
            n * 7
        ),
        1 => format!(r#"{{"button":"b{n}","url":"/p/{n}"}}"#),
        2 => format!(r#"{{"order_id":"o{n}","revenue":{n}.5}}"#),
        _ => "null".to_owned(),
    };
    format!(
        r#"{{"message_id":"m-{n}","tenant":"shop","type":"track","event":"E{kind}","user_id":"u{n}","timestamp":{},"original_timestamp":{n},"properties":{properties},"url":"top","context":{{"page":{{"path":"/x{n}"}}}}}}"#,
        1_714_564_800_000 + n
    )
}

#[test]
fn a_shape_follows_events_that_change_kind() {
    let paths: Vec<Vec<&str>> = SHAPE_PATHS.iter().map(|p| p.split('.').collect()).collect();
    let set = FieldSet::new(&paths);
    let mut shape = KeyOrder::default();
    for n in 0..200u64 {
        let kind = [0, 0, 1, 0, 2, 3, 3, 0, 1][n as usize % 9];
        check_with_shape(&set, &mut shape, &collector_event(kind, n), 0).unwrap();
    }
    // The same events, pretty-printed, through the same shape; then compact again.
    for n in 0..20u64 {
        let value: Value = serde_json::from_str(&collector_event(n as u8, n)).unwrap();
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        check_with_shape(&set, &mut shape, &pretty, 0).unwrap();
        check_with_shape(&set, &mut shape, &collector_event(n as u8, n), 0).unwrap();
    }
    // A shape learned with another set is not used by this one.
    let other = FieldSet::new(&[vec!["url"]]);
    let mut slots = Vec::new();
    other
        .scan_with(
            collector_event(0, 1).as_bytes(),
            &mut slots,
            &mut shape,
            0,
            &mut |_| false,
        )
        .unwrap();
    assert_eq!(slots[0].text(collector_event(0, 1).as_bytes()), b"top");
}

#[test]
fn a_key_that_looks_like_an_expected_one_in_another_object_is_not_taken_for_it() {
    let paths: Vec<Vec<&str>> = SHAPE_PATHS.iter().map(|p| p.split('.').collect()).collect();
    let set = FieldSet::new(&paths);
    let mut shape = KeyOrder::default();
    let nested =
        r#"{"tenant":"t","properties":{"url":"/nested","pad":"xxxxxxxxxxxxxxxxxxxxxxxx"},"z":1}"#;
    let flat =
        r#"{"tenant":"t","properties":null,"url":"/top","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
    for text in [nested, flat, nested, flat] {
        check_with_shape(&set, &mut shape, text, 0).unwrap();
    }
}

proptest! {
    /// A sequence of events through one shape: each scan agrees with serde_json and with a
    /// scan without a shape, gated or not.
    #[test]
    fn shapes_never_change_results(
        events in prop::collection::vec((0u8..6, 0u64..1000, any::<bool>(), 0usize..3), 1..30),
        gate_mask in prop_oneof![Just(0u64), Just(0b101u64), Just(0b1_0000u64)],
    ) {
        let paths: Vec<Vec<&str>> = SHAPE_PATHS.iter().map(|p| p.split('.').collect()).collect();
        let set = FieldSet::new(&paths);
        let mut shape = KeyOrder::default();
        for (kind, n, pretty, cut) in events {
            let mut text = collector_event(kind, n);
            if pretty {
                let value: Value = serde_json::from_str(&text).unwrap();
                text = serde_json::to_string_pretty(&value).unwrap();
            }
            // Vary the keys: drop one, or write one with an escape.
            match cut {
                1 => text = text.replacen(r#""type":"track","#, "", 1),
                2 => text = text.replacen(r#""tenant""#, r#""tena\u006et""#, 1),
                _ => {}
            }
            check_with_shape(&set, &mut shape, &text, gate_mask)?;
        }
    }

    /// The scan agrees with serde_json on every path of random documents.
    #[test]
    fn agrees_with_serde_json(map in prop::collection::btree_map("[a-c]{1,2}", json_value(), 0..5), pretty in any::<bool>()) {
        let value = Value::Object(map.into_iter().collect());
        let text = if pretty { serde_json::to_string_pretty(&value).unwrap() } else { value.to_string() };
        let paths: Vec<String> = ["a", "b", "c", "a.a", "a.b", "b.c.a", "ab", "c.ca"].iter().map(|s| s.to_string()).collect();
        let split: Vec<Vec<&str>> = paths.iter().map(|p| p.split('.').collect()).collect();
        let set = FieldSet::new(&split);
        let mut slots = Vec::new();
        set.scan(text.as_bytes(), &mut slots).unwrap();
        for (path, slot) in split.iter().zip(&slots) {
            let expected = path.iter().try_fold(&value, |v, key| v.get(key));
            match (expected, slot.kind) {
                (None, Kind::Missing) => {}
                (Some(Value::Null), Kind::Null) | (Some(Value::Bool(true)), Kind::True) | (Some(Value::Bool(false)), Kind::False) => {}
                (Some(Value::Array(_) | Value::Object(_)), Kind::Composite) => {}
                (Some(Value::Number(n)), Kind::Number) => {
                    let text = std::str::from_utf8(slot.text(text.as_bytes())).unwrap();
                    prop_assert_eq!(text.parse::<f64>().unwrap(), n.as_f64().unwrap());
                }
                (Some(Value::String(s)), Kind::String | Kind::EscapedString) => {
                    let mut out = Vec::new();
                    prop_assert!(unescape(slot.text(text.as_bytes()), &mut out));
                    prop_assert_eq!(String::from_utf8(out).unwrap(), s.clone());
                }
                (expected, kind) => prop_assert!(false, "{:?}: expected {:?}, scanned {:?}", path, expected, kind),
            }
        }
    }

    /// Event-shaped documents: long and short keys (some written with escapes), keys that
    /// share their first 8 bytes, every kind of number, strings with escapes, compact or
    /// pretty.
    #[test]
    fn agrees_with_serde_json_on_event_shapes(
        entries in prop::collection::vec((key(), event_value()), 0..12),
        pretty in any::<bool>(),
        escape_keys in any::<bool>(),
    ) {
        let mut value = serde_json::Map::new();
        for (key, item) in entries {
            value.entry(key).or_insert(item);
        }
        let value = Value::Object(value);
        let mut text = if pretty { serde_json::to_string_pretty(&value).unwrap() } else { value.to_string() };
        if escape_keys {
            // `"properties"` written as `"propert\u0069es"`: the same key to a JSON reader.
            text = text.replace("\"properties\"", "\"propert\\u0069es\"");
        }
        let paths: Vec<Vec<&str>> = [
            "tenant", "timestamp", "event", "user_id", "properties.url", "properties.duration_ms",
            "original_timestamp", "original_timestamps", "context.page.path", "properties",
            "x", "received_at", "properties.original_timestamp",
        ].iter().map(|p| p.split('.').collect()).collect();
        let set = FieldSet::new(&paths);
        let mut slots = Vec::new();
        set.scan(text.as_bytes(), &mut slots).unwrap();
        for (path, slot) in paths.iter().zip(&slots) {
            let expected = path.iter().try_fold(&value, |v, key| v.get(key));
            check_slot(path, expected, slot, &text)?;
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let set = FieldSet::new(&[vec!["a"], vec!["b", "c"]]);
        let mut slots = Vec::new();
        let _ = set.scan(&bytes, &mut slots);
    }
}
