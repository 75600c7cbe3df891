//! A schema's text checked, bounded and parsed, and its canonical form.
//!
//! Every schema comes from outside, so before anything else: its size is within
//! `schemas.max-schema-bytes` (413 otherwise), it is JSON nested at most [`MAX_DEPTH`] deep,
//! and a JSON Schema refers only to itself (`$ref` starting with `#`): the registry never
//! fetches anything. A JSON Schema must be valid against its draft's meta-schema and compile
//! (patterns use a linear-time regex engine with a size limit, so no pattern can make
//! validation slow); an Avro schema must parse. Confluent's schema `references` are not
//! supported: a schema is self-contained.
//!
//! **Canonical form.** The JSON text re-serialized compactly with object keys sorted. Two
//! registrations of the same schema written differently (spacing, key order) are the same
//! schema with the same id; it is also the text the registry answers with.

use crate::SchemaError;
use crate::model::{ParsedSchema, SchemaType};
use serde_json::Value;

/// How deep a schema's JSON may nest.
pub const MAX_DEPTH: usize = 64;

/// A schema parsed and checked, with its canonical text.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The schema in its language's model.
    pub parsed: ParsedSchema,
    /// Its canonical text.
    pub canonical: String,
}

/// Parses and checks `text` as a schema of `kind` at most `max_bytes` long.
pub fn parse(kind: SchemaType, text: &str, max_bytes: usize) -> Result<Checked, SchemaError> {
    if text.len() > max_bytes {
        return Err(SchemaError::TooLarge {
            size: text.len(),
            limit: max_bytes,
        });
    }
    let value: Value = serde_json::from_str(text).map_err(|error| {
        SchemaError::InvalidSchema(format!(
            "not JSON at line {} column {}: {error}",
            error.line(),
            error.column()
        ))
    })?;
    check_depth(&value, 0, "#")?;
    let canonical = canonical(&value);
    let parsed = match kind {
        SchemaType::Json => {
            check_refs(&value, "#")?;
            crate::validate::compile(&value).map_err(SchemaError::InvalidSchema)?;
            ParsedSchema::Json(value)
        }
        SchemaType::Avro => {
            ParsedSchema::Avro(apache_avro::Schema::parse(&value).map_err(|error| {
                SchemaError::InvalidSchema(format!("not an Avro schema: {error}"))
            })?)
        }
    };
    Ok(Checked { parsed, canonical })
}

/// The canonical text of a schema's JSON: compact, object keys sorted.
pub fn canonical(value: &Value) -> String {
    // serde_json's map is a BTreeMap in this workspace (no `preserve_order`), so
    // serializing sorts the keys.
    value.to_string()
}

fn check_depth(value: &Value, depth: usize, path: &str) -> Result<(), SchemaError> {
    if depth > MAX_DEPTH {
        return Err(SchemaError::InvalidSchema(format!(
            "nested more than {MAX_DEPTH} levels deep at {path}"
        )));
    }
    match value {
        Value::Object(map) => map
            .iter()
            .try_for_each(|(key, value)| check_depth(value, depth + 1, &pointer(path, key))),
        Value::Array(items) => items.iter().enumerate().try_for_each(|(index, value)| {
            check_depth(value, depth + 1, &pointer(path, &index.to_string()))
        }),
        _ => Ok(()),
    }
}

/// Refuses any `$ref` (or `$dynamicRef`) that leaves the document.
fn check_refs(value: &Value, path: &str) -> Result<(), SchemaError> {
    match value {
        Value::Object(map) => {
            for key in ["$ref", "$dynamicRef"] {
                if let Some(Value::String(target)) = map.get(key)
                    && !target.starts_with('#')
                {
                    return Err(SchemaError::InvalidSchema(format!(
                        "{key} {target:?} at {path} refers outside the schema: the registry fetches nothing, so put the definition in $defs and refer to it as \"#/$defs/…\""
                    )));
                }
            }
            map.iter()
                .try_for_each(|(key, value)| check_refs(value, &pointer(path, key)))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(index, value)| check_refs(value, &pointer(path, &index.to_string()))),
        _ => Ok(()),
    }
}

fn pointer(path: &str, key: &str) -> String {
    format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(kind: SchemaType, text: &str) -> String {
        match parse(kind, text, 64 * 1024) {
            Err(SchemaError::InvalidSchema(message)) => message,
            other => panic!("{text}: expected an invalid schema, got {other:?}"),
        }
    }

    #[test]
    fn the_same_schema_written_differently_has_one_canonical_form() {
        let a = parse(
            SchemaType::Json,
            r#"{"type": "object",  "properties": {"b": {}, "a": {}}}"#,
            1024,
        )
        .unwrap();
        let b = parse(
            SchemaType::Json,
            r#"{"properties":{"a":{},"b":{}},"type":"object"}"#,
            1024,
        )
        .unwrap();
        assert_eq!(a.canonical, b.canonical);
        assert_eq!(
            a.canonical,
            r#"{"properties":{"a":{},"b":{}},"type":"object"}"#
        );
    }

    #[test]
    fn bad_schemas_are_refused_with_where_and_why() {
        assert!(invalid(SchemaType::Json, "{\"type\": ").contains("line 1"));
        assert!(invalid(SchemaType::Json, r#"{"type": "objekt"}"#).len() > 10);
        let remote = invalid(
            SchemaType::Json,
            r#"{"properties": {"a": {"$ref": "https://example.com/s.json"}}}"#,
        );
        assert!(remote.contains("#/properties/a"), "{remote}");
        assert!(remote.contains("fetches nothing"), "{remote}");
        let deep = format!(
            "{}{}",
            "{\"items\":".repeat(70),
            "{}".to_owned() + &"}".repeat(70)
        );
        assert!(invalid(SchemaType::Json, &deep).contains("nested more than 64"));
        assert!(invalid(SchemaType::Avro, r#"{"type": "record"}"#).contains("Avro"));
        assert!(matches!(
            parse(SchemaType::Json, &format!("\"{}\"", "x".repeat(100)), 50),
            Err(SchemaError::TooLarge {
                size: 102,
                limit: 50
            })
        ));
    }

    #[test]
    fn avro_schemas_parse() {
        let checked = parse(
            SchemaType::Avro,
            r#"{"type":"record","name":"Order","fields":[{"name":"revenue","type":"double"}]}"#,
            1024,
        )
        .unwrap();
        assert!(matches!(checked.parsed, ParsedSchema::Avro(_)));
    }
}
