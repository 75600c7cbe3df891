//! The Confluent wire format against bytes written by Confluent's own serializers:
//! `fixtures/wire.json`, made by `fixtures/make_wire.py` with confluent-kafka's
//! `AvroSerializer` and `JSONSerializer` (its header names the versions). No Python is needed
//! here; rerun the script to regenerate the file.

use serde_json::Value;
use sluice_schema::model::ParsedSchema;
use sluice_schema::wire;

/// One serialized record and what it must decode to.
struct Case {
    name: String,
    schema: ParsedSchema,
    schema_id: u64,
    record: Vec<u8>,
    expected: Value,
}

fn cases() -> Vec<Case> {
    let document: Value =
        serde_json::from_str(include_str!("fixtures/wire.json")).expect("wire.json is JSON");
    let generator = &document["generator"];
    assert!(
        generator["confluent_kafka"].is_string(),
        "wire.json names the confluent-kafka version that wrote it"
    );
    let cases = document["cases"]
        .as_array()
        .expect("wire.json has a list of cases");
    cases.iter().map(case).collect()
}

fn case(case: &Value) -> Case {
    let text = |key: &str| {
        case[key]
            .as_str()
            .unwrap_or_else(|| panic!("case has no {key}: {case}"))
    };
    let name = text("name").to_string();
    let schema = match text("schemaType") {
        "AVRO" => ParsedSchema::Avro(
            apache_avro::Schema::parse_str(text("schema"))
                .unwrap_or_else(|e| panic!("{name}: Avro schema does not parse: {e}")),
        ),
        "JSON" => ParsedSchema::Json(
            serde_json::from_str(text("schema"))
                .unwrap_or_else(|e| panic!("{name}: JSON schema does not parse: {e}")),
        ),
        other => panic!("{name}: unexpected schemaType {other}"),
    };
    let record = hex(text("bytes")).unwrap_or_else(|| panic!("{name}: bytes are not hex"));
    Case {
        schema_id: case["schemaId"].as_u64().expect("case has a schemaId"),
        expected: case["expected"].clone(),
        name,
        schema,
        record,
    }
}

fn hex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Every difference between `expected` and `got`, by JSON pointer.
fn differences(expected: &Value, got: &Value, path: &str, found: &mut Vec<String>) {
    match (expected, got) {
        (Value::Object(e), Value::Object(g)) => {
            for key in e.keys().chain(g.keys().filter(|k| !e.contains_key(*k))) {
                let (e, g) = (&e.get(key).cloned(), &g.get(key).cloned());
                let at = format!("{path}/{key}");
                match (e, g) {
                    (Some(e), Some(g)) => differences(e, g, &at, found),
                    _ => found.push(format!("{at}: expected {e:?}, got {g:?}")),
                }
            }
        }
        (Value::Array(e), Value::Array(g)) if e.len() == g.len() => {
            for (i, (e, g)) in e.iter().zip(g).enumerate() {
                differences(e, g, &format!("{path}/{i}"), found);
            }
        }
        (Value::Number(e), Value::Number(g)) if e.is_f64() || g.is_f64() => {
            if e.as_f64() != g.as_f64() {
                found.push(format!("{path}: expected {e}, got {g}"));
            }
        }
        _ if expected == got => {}
        _ => found.push(format!("{path}: expected {expected}, got {got}")),
    }
}

#[test]
fn decodes_what_confluent_serializers_wrote() {
    let cases = cases();
    let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert!(names.len() >= 7, "{names:?}");
    let mut found = Vec::new();
    for case in &cases {
        let framed = wire::split(&case.record)
            .unwrap_or_else(|e| panic!("{}: does not split: {e}", case.name));
        assert_eq!(u64::from(framed.schema_id), case.schema_id, "{}", case.name);
        match wire::decode(&case.schema, framed.payload) {
            Ok(got) => differences(&case.expected, &got, &case.name, &mut found),
            Err(error) => found.push(format!("{}: does not decode: {error}", case.name)),
        }
    }
    assert!(
        found.is_empty(),
        "{} differences:\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn truncated_or_extended_real_payloads_fail_cleanly() {
    for case in cases() {
        let payload = wire::split(&case.record).expect("fixture splits").payload;
        for cut in 0..payload.len() {
            assert!(
                wire::decode(&case.schema, &payload[..cut]).is_err(),
                "{}: a prefix of {cut} bytes decoded",
                case.name
            );
        }
        let mut extended = payload.to_vec();
        extended.push(b'x');
        assert!(
            wire::decode(&case.schema, &extended).is_err(),
            "{}: a trailing byte was accepted",
            case.name
        );
    }
}
