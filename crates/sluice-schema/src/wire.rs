//! Confluent's wire format: how Kafka records written by Confluent serializers carry their
//! schema id, and their payload decoded into JSON.
//!
//! # Framing
//!
//! | bytes   | content                                                              |
//! |---------|----------------------------------------------------------------------|
//! | 0       | magic byte `0x00`                                                    |
//! | 1..5    | schema id, big-endian `u32`                                          |
//! | 5..     | payload: one Avro binary datum (no container header), or JSON text   |
//!
//! Protobuf framing (message indexes after the id) is not supported: sluice registers only Avro
//! and JSON Schema, so such a record fails as an Avro or JSON payload that does not decode.
//!
//! # Avro → JSON
//!
//! | Avro                                   | JSON                                                 |
//! |----------------------------------------|------------------------------------------------------|
//! | `null`, `boolean`, `string`            | `null`, `true`/`false`, string                       |
//! | `int`, `long`                          | number                                               |
//! | `float`, `double`                      | number; NaN and ±infinity → `null` (JSON has none)   |
//! | `bytes`, `fixed`                       | string, standard base64 with padding                 |
//! | `record`, `map`                        | object                                               |
//! | `array`                                | array                                                |
//! | `enum`                                 | the symbol, a string                                 |
//! | union                                  | the branch's value, unwrapped (`null` → `null`)      |
//! | `timestamp-millis`/`-micros`/`-nanos`, `local-timestamp-*` | RFC 3339 UTC string with milliseconds, `2026-12-06T10:00:00.123Z` (finer digits are dropped, rounding toward the past; local timestamps are read as UTC) |
//! | `date`                                 | `YYYY-MM-DD`                                         |
//! | `time-millis`, `time-micros`           | number (of the unit)                                 |
//! | `uuid`                                 | string                                               |
//! | `decimal`, `big-decimal`               | string in plain notation, `"-12.34"`, exact          |
//! | `duration`                             | object `{"months", "days", "milliseconds"}`          |
//!
//! Decimals are strings because a JSON number read as `f64` loses digits of money amounts.
//! Timestamps and dates outside years 0000–9999 cannot be written in RFC 3339 and are an
//! error. A `uuid` on `fixed(16)` is not supported (the schema parser does not keep that it
//! was fixed); Confluent's serializers write uuids as strings.
//!
//! # Bounds
//!
//! The payload is hostile until decoded. This module decodes Avro itself rather than through
//! `apache_avro::from_avro_datum`, which reads a truncated string, boolean or union as `null`
//! and has no bound on nesting. Here:
//! - every length (bytes, string, fixed) must fit in the bytes left, so a length prefix claiming
//!   2^40 bytes fails before anything is allocated;
//! - array and map blocks allocate as their items arrive, and all values together may number at
//!   most the payload's length plus 65,536 (only zero-size values, like `null` items, need the
//!   allowance);
//! - values nest at most 128 deep (recursive schemas), like serde_json's parser;
//! - bytes left after the datum are an error: the schema did not describe the whole payload.
//!
//! JSON payloads are parsed with serde_json, which rejects trailing data and nests at most 128.

mod avro;
mod text;

use crate::model::ParsedSchema;
use serde_json::Value;

/// The magic byte that starts every record a Confluent serializer writes.
pub const MAGIC: u8 = 0;
/// Magic byte and schema id.
pub const HEADER_LEN: usize = 5;

/// A record that is not Confluent-framed, or a payload that does not decode with its schema.
/// Every variant is caused by the record's bytes (or the producer's choice of schema), not by
/// sluice: retrying does not help.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Fewer than five bytes.
    #[error(
        "record of {len} bytes is too short for the Confluent wire format, which starts with a \
         magic byte and a 4-byte schema id: was it written by a Confluent serializer?"
    )]
    TooShort {
        /// The record's length.
        len: usize,
    },
    /// The first byte is not [`MAGIC`].
    #[error(
        "record starts with byte {found:#04x}, not the magic byte 0x00: it was not written by a \
         Confluent serializer (plain JSON or Avro without the schema id header?)"
    )]
    WrongMagic {
        /// The byte found.
        found: u8,
    },
    /// The Avro payload does not decode with the schema.
    #[error(
        "Avro payload does not decode with schema {schema}: {reason} at byte {offset} of the \
         payload{}; check that the producer wrote it with the schema registered under its id",
        at_path(path)
    )]
    Avro {
        /// The schema's full name, or its type for an unnamed schema.
        schema: String,
        /// What went wrong.
        reason: String,
        /// Where in the payload.
        offset: usize,
        /// Where in the value, as a JSON pointer (empty at the top).
        path: String,
    },
    /// The JSON payload is not one JSON value.
    #[error(
        "JSON payload is not a single valid JSON value: {0} (a Protobuf record would also fail \
         here; sluice does not decode Protobuf)"
    )]
    Json(#[source] serde_json::Error),
    /// A decoded value has no JSON form.
    #[error("the value at {path:?} cannot be written as JSON: {reason}")]
    NotRepresentable {
        /// Where in the value, as a JSON pointer.
        path: String,
        /// Why.
        reason: String,
    },
}

fn at_path(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" (value at {path:?})")
    }
}

/// A record's schema id and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed<'a> {
    /// The registry id of the schema the payload was written with.
    pub schema_id: u32,
    /// The bytes after the header.
    pub payload: &'a [u8],
}

/// The schema id and payload of a Confluent-framed record.
pub fn split(record: &[u8]) -> Result<Framed<'_>, WireError> {
    let Some((header, payload)) = record.split_first_chunk::<HEADER_LEN>() else {
        return Err(WireError::TooShort { len: record.len() });
    };
    let [magic, id @ ..] = *header;
    if magic != MAGIC {
        return Err(WireError::WrongMagic { found: magic });
    }
    Ok(Framed {
        schema_id: u32::from_be_bytes(id),
        payload,
    })
}

/// The payload decoded with its schema into JSON.
pub fn decode(schema: &ParsedSchema, payload: &[u8]) -> Result<Value, WireError> {
    match schema {
        ParsedSchema::Json(_) => serde_json::from_slice(payload).map_err(WireError::Json),
        ParsedSchema::Avro(schema) => avro::decode(schema, payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_reads_the_big_endian_id_and_rejects_other_framing() {
        let record = [0, 0, 0, 1, 2, b'{', b'}'];
        assert_eq!(
            split(&record).unwrap(),
            Framed {
                schema_id: 258,
                payload: b"{}"
            }
        );
        assert_eq!(
            split(&[0, 0, 0, 0, 7]).unwrap(),
            Framed {
                schema_id: 7,
                payload: &[]
            }
        );
        let short = split(&[0, 0, 1]).unwrap_err().to_string();
        assert!(
            short.starts_with("record of 3 bytes is too short"),
            "{short}"
        );
        let plain = split(br#"{"a":1}"#).unwrap_err().to_string();
        assert!(
            plain.starts_with("record starts with byte 0x7b, not the magic byte 0x00"),
            "{plain}"
        );
        assert!(
            plain.contains("not written by a Confluent serializer"),
            "{plain}"
        );
    }

    #[test]
    fn json_payloads_parse_and_reject_trailing_data() {
        let schema = ParsedSchema::Json(serde_json::json!({"type": "object"}));
        assert_eq!(
            decode(&schema, br#" {"a": [1, 2]} "#).unwrap(),
            serde_json::json!({"a": [1, 2]})
        );
        let trailing = decode(&schema, br#"{"a": 1} {"b": 2}"#)
            .unwrap_err()
            .to_string();
        assert!(
            trailing.starts_with("JSON payload is not a single valid JSON value: trailing"),
            "{trailing}"
        );
    }
}
