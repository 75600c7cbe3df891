//! One Avro binary datum decoded straight into JSON by walking its schema, with the bounds
//! and the mapping the parent module documents.

use super::WireError;
use super::text::{base64, date, decimal_text, timestamp};
use apache_avro::Schema;
use apache_avro::schema::{Name, Namespace, ResolvedSchema, SchemaKind};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;

/// How deep decoded values may nest.
const MAX_DEPTH: usize = 128;
/// Values allowed beyond one per payload byte, for values that take no bytes (`null` items).
const ZERO_SIZE_VALUES: usize = 65_536;

/// `payload` as one datum of `schema`, all of it.
pub(super) fn decode(schema: &Schema, payload: &[u8]) -> Result<Value, WireError> {
    let mut reader = AvroReader {
        root: schema,
        bytes: payload,
        offset: 0,
        budget: payload.len().saturating_add(ZERO_SIZE_VALUES),
        names: None,
    };
    let failed = |reader: &AvroReader<'_, '_>, failure: Failure| match failure {
        Failure::Decode(reason, path) => WireError::Avro {
            schema: schema_name(schema),
            reason,
            offset: reader.offset,
            path: pointer(&path),
        },
        Failure::Json(reason, path) => WireError::NotRepresentable {
            path: pointer(&path),
            reason,
        },
    };
    let value = match reader.value(schema, &None, 0) {
        Ok(value) => value,
        Err(failure) => return Err(failed(&reader, failure)),
    };
    let left = reader.bytes.len() - reader.offset;
    if left > 0 {
        let reason = format!("{left} bytes are left after the datum");
        return Err(failed(&reader, Failure::Decode(reason, Vec::new())));
    }
    Ok(value)
}

/// A schema's full name, or its type when it has none.
fn schema_name(schema: &Schema) -> String {
    match schema.name() {
        Some(name) => name.fullname(None),
        None => format!("{:?}", SchemaKind::from(schema)).to_lowercase(),
    }
}

/// Why decoding stopped, with the path to the value (innermost segment first).
enum Failure {
    Decode(String, Vec<String>),
    Json(String, Vec<String>),
}

impl Failure {
    /// A value with no JSON form.
    fn json(reason: String) -> Failure {
        Failure::Json(reason, Vec::new())
    }

    fn decode(reason: impl Into<String>) -> Failure {
        Failure::Decode(reason.into(), Vec::new())
    }

    fn within(mut self, segment: impl Into<String>) -> Failure {
        match &mut self {
            Failure::Decode(_, path) | Failure::Json(_, path) => path.push(segment.into()),
        }
        self
    }
}

/// `segments` (innermost first) as a JSON pointer.
fn pointer(segments: &[String]) -> String {
    segments
        .iter()
        .rev()
        .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// Reads one Avro datum from `bytes`.
struct AvroReader<'s, 'b> {
    root: &'s Schema,
    bytes: &'b [u8],
    offset: usize,
    /// Values that may still be decoded.
    budget: usize,
    /// Named types by full name, collected the first time a schema refers to one by name.
    names: Option<HashMap<Name, &'s Schema>>,
}

impl<'s, 'b> AvroReader<'s, 'b> {
    fn value(
        &mut self,
        schema: &'s Schema,
        namespace: &Namespace,
        depth: usize,
    ) -> Result<Value, Failure> {
        if depth > MAX_DEPTH {
            return Err(Failure::decode(format!(
                "values nest deeper than {MAX_DEPTH} levels"
            )));
        }
        self.budget = self.budget.checked_sub(1).ok_or_else(|| {
            Failure::decode("the payload declares more values than its size allows")
        })?;
        Ok(match schema {
            Schema::Null => Value::Null,
            Schema::Boolean => match self.take(1)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                other => {
                    return Err(Failure::decode(format!(
                        "boolean byte {other:#04x} is neither 0 nor 1"
                    )));
                }
            },
            Schema::Int | Schema::TimeMillis => Value::from(self.int()?),
            Schema::Long | Schema::TimeMicros => Value::from(self.long()?),
            Schema::Float => {
                let bytes = self
                    .take(4)?
                    .try_into()
                    .map_err(|_| Failure::decode("short float"))?;
                float(
                    f32::from_le_bytes(bytes)
                        .to_string()
                        .parse()
                        .unwrap_or(f64::NAN),
                )
            }
            Schema::Double => {
                let bytes = self
                    .take(8)?
                    .try_into()
                    .map_err(|_| Failure::decode("short double"))?;
                float(f64::from_le_bytes(bytes))
            }
            Schema::Bytes => Value::String(base64(self.sized()?)),
            Schema::String | Schema::Uuid => Value::String(self.string()?),
            Schema::Fixed(fixed) => Value::String(base64(self.take(fixed.size)?)),
            Schema::Enum(e) => {
                let index = self.int()?;
                let symbol = usize::try_from(index).ok().and_then(|i| e.symbols.get(i));
                let symbol = symbol.ok_or_else(|| {
                    Failure::decode(format!(
                        "enum index {index} is not one of the {} symbols",
                        e.symbols.len()
                    ))
                })?;
                Value::String(symbol.clone())
            }
            Schema::Union(union) => {
                let index = self.long()?;
                let variants = union.variants();
                let branch = usize::try_from(index).ok().and_then(|i| variants.get(i));
                let branch = branch.ok_or_else(|| {
                    Failure::decode(format!(
                        "union branch {index} is not one of the {} branches",
                        variants.len()
                    ))
                })?;
                self.value(branch, namespace, depth + 1)?
            }
            Schema::Array(array) => {
                let mut items = Vec::new();
                while let Some(count) = self.block()? {
                    for _ in 0..count {
                        let at = items.len();
                        items.push(
                            self.value(&array.items, namespace, depth + 1)
                                .map_err(|f| f.within(at.to_string()))?,
                        );
                    }
                }
                Value::Array(items)
            }
            Schema::Map(map) => {
                let mut entries = Map::new();
                while let Some(count) = self.block()? {
                    for _ in 0..count {
                        let key = self.string()?;
                        let value = self
                            .value(&map.types, namespace, depth + 1)
                            .map_err(|f| f.within(key.clone()))?;
                        entries.insert(key, value);
                    }
                }
                Value::Object(entries)
            }
            Schema::Record(record) => {
                let inner = record.name.fully_qualified_name(namespace).namespace;
                let mut fields = Map::new();
                for field in &record.fields {
                    let value = self
                        .value(&field.schema, &inner, depth + 1)
                        .map_err(|f| f.within(field.name.clone()))?;
                    fields.insert(field.name.clone(), value);
                }
                Value::Object(fields)
            }
            Schema::Ref { name } => {
                let name = name.fully_qualified_name(namespace);
                let found = self.named(&name)?;
                return self.value(found, &name.namespace, depth + 1);
            }
            Schema::Decimal(decimal) => {
                let unscaled = match &*decimal.inner {
                    Schema::Fixed(fixed) => self.take(fixed.size)?,
                    _ => self.sized()?,
                };
                Value::String(decimal_text(unscaled, decimal.scale as u64).map_err(Failure::json)?)
            }
            Schema::BigDecimal => {
                let outer = self.sized()?;
                let mut inner = AvroReader {
                    root: self.root,
                    bytes: outer,
                    offset: 0,
                    budget: 1,
                    names: None,
                };
                let unscaled = inner.sized()?;
                let scale = u64::try_from(inner.long()?)
                    .map_err(|_| Failure::decode("negative big-decimal scale"))?;
                Value::String(decimal_text(unscaled, scale).map_err(Failure::json)?)
            }
            Schema::Date => Value::String(date(i64::from(self.int()?)).map_err(Failure::json)?),
            Schema::TimestampMillis | Schema::LocalTimestampMillis => {
                Value::String(timestamp(self.long()?, 1).map_err(Failure::json)?)
            }
            Schema::TimestampMicros | Schema::LocalTimestampMicros => {
                Value::String(timestamp(self.long()?, 1_000).map_err(Failure::json)?)
            }
            Schema::TimestampNanos | Schema::LocalTimestampNanos => {
                Value::String(timestamp(self.long()?, 1_000_000).map_err(Failure::json)?)
            }
            Schema::Duration => {
                let bytes = self.take(12)?;
                let part = |i: usize| {
                    u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]])
                };
                serde_json::json!({"months": part(0), "days": part(4), "milliseconds": part(8)})
            }
        })
    }

    /// The next `len` bytes.
    fn take(&mut self, len: usize) -> Result<&'b [u8], Failure> {
        let left = self.bytes.len() - self.offset;
        if len > left {
            return Err(Failure::decode(format!(
                "{len} bytes are needed but only {left} are left"
            )));
        }
        let bytes: &'b [u8] = self.bytes;
        let taken = &bytes[self.offset..self.offset + len];
        self.offset += len;
        Ok(taken)
    }

    /// A zig-zag varint of at most 10 bytes.
    fn long(&mut self) -> Result<i64, Failure> {
        let mut raw: u64 = 0;
        for i in 0..10 {
            let byte = self.take(1)?[0];
            raw |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(Failure::decode(
            "a variable-length integer runs past 10 bytes",
        ))
    }

    fn int(&mut self) -> Result<i32, Failure> {
        let long = self.long()?;
        i32::try_from(long).map_err(|_| Failure::decode(format!("{long} does not fit an Avro int")))
    }

    /// Length-prefixed bytes.
    fn sized(&mut self) -> Result<&'b [u8], Failure> {
        let len = self.long()?;
        let len =
            usize::try_from(len).map_err(|_| Failure::decode(format!("negative length {len}")))?;
        self.take(len)
    }

    fn string(&mut self) -> Result<String, Failure> {
        let bytes = self.sized()?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Failure::decode("a string is not valid UTF-8"))
    }

    /// The item count of the next array or map block, `None` at the end.
    fn block(&mut self) -> Result<Option<usize>, Failure> {
        let count = self.long()?;
        if count < 0 {
            // A negative count is followed by the block's size in bytes.
            let _size = self.long()?;
        }
        let count = usize::try_from(count.unsigned_abs())
            .map_err(|_| Failure::decode(format!("block of {count} items is too large")))?;
        if count > self.budget {
            return Err(Failure::decode(format!(
                "a block declares {count} items, more than the payload can hold"
            )));
        }
        Ok((count > 0).then_some(count))
    }

    /// The named type `name`.
    fn named(&mut self, name: &Name) -> Result<&'s Schema, Failure> {
        if self.names.is_none() {
            let resolved = ResolvedSchema::try_from(self.root).map_err(|error| {
                Failure::decode(format!("the schema's names do not resolve: {error}"))
            })?;
            self.names = Some(resolved.get_names().clone());
        }
        self.names
            .as_ref()
            .and_then(|names| names.get(name).copied())
            .ok_or_else(|| {
                Failure::decode(format!(
                    "the schema refers to {name}, which it does not define"
                ))
            })
    }
}

fn float(value: f64) -> Value {
    Number::from_f64(value).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::super::decode;
    use super::*;
    use crate::model::ParsedSchema;
    use apache_avro::types::Value as Avro;

    fn avro(text: &str) -> ParsedSchema {
        ParsedSchema::Avro(Schema::parse_str(text).expect("test schema parses"))
    }

    /// A zig-zag varint.
    fn long(n: i64) -> Vec<u8> {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            if z < 0x80 {
                out.push(z as u8);
                return out;
            }
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
    }

    fn encoded(schema: &ParsedSchema, value: Avro) -> Vec<u8> {
        let ParsedSchema::Avro(schema) = schema else {
            unreachable!("an Avro schema")
        };
        apache_avro::to_avro_datum(schema, value).expect("test value encodes")
    }

    fn decode_error(schema: &ParsedSchema, payload: &[u8]) -> String {
        decode(schema, payload)
            .expect_err("payload must not decode")
            .to_string()
    }

    #[test]
    fn records_unions_enums_maps_and_arrays_map_to_plain_json() {
        let schema = avro(
            r#"{"type":"record","name":"Order","namespace":"shop","fields":[
                {"name":"id","type":"long"},
                {"name":"note","type":["null","string"]},
                {"name":"state","type":{"type":"enum","name":"State","symbols":["NEW","PAID"]}},
                {"name":"tags","type":{"type":"map","values":"int"}},
                {"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line",
                    "fields":[{"name":"sku","type":"string"}]}}},
                {"name":"again","type":["null","Line"]}]}"#,
        );
        let line = || Avro::Record(vec![("sku".into(), Avro::String("a-1".into()))]);
        let value = Avro::Record(vec![
            ("id".into(), Avro::Long(-7)),
            ("note".into(), Avro::Union(0, Box::new(Avro::Null))),
            ("state".into(), Avro::Enum(1, "PAID".into())),
            (
                "tags".into(),
                Avro::Map([("x".to_string(), Avro::Int(3))].into()),
            ),
            ("lines".into(), Avro::Array(vec![line()])),
            ("again".into(), Avro::Union(1, Box::new(line()))),
        ]);
        let payload = encoded(&schema, value);
        assert_eq!(
            decode(&schema, &payload).unwrap(),
            serde_json::json!({"id": -7, "note": null, "state": "PAID", "tags": {"x": 3},
                               "lines": [{"sku": "a-1"}], "again": {"sku": "a-1"}})
        );
    }

    #[test]
    fn bytes_are_base64_and_floats_without_json_form_are_null() {
        assert_eq!(
            [
                base64(b""),
                base64(b"f"),
                base64(b"fo"),
                base64(b"foo"),
                base64(&[0xfb, 0xff])
            ],
            ["", "Zg==", "Zm8=", "Zm9v", "+/8="]
        );
        let schema = avro(
            r#"{"type":"record","name":"F","fields":[{"name":"a","type":"float"},
            {"name":"b","type":"double"},{"name":"c","type":"bytes"}]}"#,
        );
        let value = Avro::Record(vec![
            ("a".into(), Avro::Float(0.1)),
            ("b".into(), Avro::Double(f64::NAN)),
            ("c".into(), Avro::Bytes(b"foo".to_vec())),
        ]);
        let payload = encoded(&schema, value);
        assert_eq!(
            decode(&schema, &payload).unwrap(),
            serde_json::json!({"a": 0.1, "b": null, "c": "Zm9v"})
        );
    }

    #[test]
    fn a_hostile_length_prefix_fails_without_allocating() {
        let schema = avro(r#""string""#);
        let mut payload = long(1 << 40);
        payload.extend_from_slice(b"abc");
        let error = decode_error(&schema, &payload);
        assert_eq!(
            error,
            "Avro payload does not decode with schema string: 1099511627776 bytes are needed but \
             only 3 are left at byte 6 of the payload; check that the producer wrote it with the \
             schema registered under its id"
        );
    }

    #[test]
    fn item_counts_beyond_the_payload_fail() {
        let schema = avro(r#"{"type":"array","items":"null"}"#);
        let mut payload = long(1 << 40);
        payload.push(0);
        let error = decode_error(&schema, &payload);
        assert!(
            error.contains("a block declares 1099511627776 items, more than the payload can hold"),
            "{error}"
        );
        let mut payload = long(60_000);
        payload.extend(long(60_000));
        payload.push(0);
        let error = decode_error(&schema, &payload);
        // The first 60,000 nulls fit the allowance for zero-size values; the next block does not.
        let expected = "a block declares 60000 items, more than the payload can hold at byte 6";
        assert!(error.contains(expected), "{error}");
    }

    #[test]
    fn truncated_and_trailing_payloads_fail() {
        let schema = avro(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},
            {"name":"b","type":["null","string"]}]}"#,
        );
        let mut payload = long(3);
        payload.extend_from_slice(b"abc");
        let error = decode_error(&schema, &payload);
        assert!(
            error.contains("1 bytes are needed but only 0 are left at byte 4"),
            "{error}"
        );
        assert!(error.contains("(value at \"/b\")"), "{error}");
        payload.extend(long(0));
        payload.push(9);
        let error = decode_error(&schema, &payload);
        assert!(
            error.contains("schema R: 1 bytes are left after the datum"),
            "{error}"
        );
    }

    #[test]
    fn bad_indexes_and_booleans_fail() {
        let error = decode_error(&avro(r#"["null","int"]"#), &long(2));
        assert!(
            error.contains("union branch 2 is not one of the 2 branches"),
            "{error}"
        );
        let error = decode_error(
            &avro(r#"{"type":"enum","name":"E","symbols":["A"]}"#),
            &long(-1),
        );
        assert!(
            error.contains("schema E: enum index -1 is not one of the 1 symbols"),
            "{error}"
        );
        let error = decode_error(&avro(r#""boolean""#), &[2]);
        assert!(
            error.contains("boolean byte 0x02 is neither 0 nor 1"),
            "{error}"
        );
    }

    #[test]
    fn deeply_nested_recursive_values_fail_without_overflowing_the_stack() {
        let schema = avro(
            r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}"#,
        );
        let mut payload = Vec::new();
        for _ in 0..10_000 {
            payload.extend(long(1));
        }
        payload.extend(long(0));
        let error = decode_error(&schema, &payload);
        assert!(
            error.contains("values nest deeper than 128 levels"),
            "{error}"
        );
        // Shallow recursion decodes.
        let payload = [long(1), long(1), long(0)].concat();
        assert_eq!(
            decode(&schema, &payload).unwrap(),
            serde_json::json!({"next": {"next": {"next": null}}})
        );
    }
}
