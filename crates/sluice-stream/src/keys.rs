//! Group keys: the tenant and the values of a metric's GROUP BY expressions, encoded as one
//! canonical byte string. The encoding is what the engine hashes and compares on the hot
//! path, and what the store keeps, so it is stable and documented:
//!
//! the tenant, then each key value, each as one tag byte and a payload —
//! `0` NULL; `1` FALSE; `2` TRUE; `3` a number: normalized (no trailing fractional zeros)
//! scale byte then zigzag-LEB128 mantissa; `4` text: LEB128 length then UTF-8 bytes.
//! Equal values encode equally (`1.50` and `1.5` are one key), different kinds never do.

use crate::agg::codec::{Reader, Writer};
use crate::decimal::Decimal;
use crate::error::StreamError;
use crate::value::Value;
use std::fmt;

/// The longest encoded key accepted when decoding (the text of one key value is bounded by
/// the collector's event limits; this bounds the whole key).
pub const MAX_KEY_BYTES: usize = 64 * 1024;

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const NUMBER: u8 = 3;
const TEXT: u8 = 4;

/// Appends the encoding of one value.
pub fn encode_value(value: &Value<'_>, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Number(number) => {
            let normal = number.normalized();
            let mut writer = Writer {
                bytes: std::mem::take(out),
            };
            writer.u8(NUMBER);
            writer.u8(normal.scale());
            writer.i128(normal.mantissa());
            *out = writer.bytes;
        }
        Value::Str(text) => encode_text(text, out),
    }
}

/// Appends the encoding of a text value given as UTF-8 bytes (how the tenant starts every
/// key). Bytes that are not UTF-8 make a key [`GroupKey::from_bytes`] rejects.
pub fn encode_text(text: &[u8], out: &mut Vec<u8>) {
    out.push(TEXT);
    let mut len = text.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(text);
}

/// One decoded key value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyValue {
    /// NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(Decimal),
    /// Text.
    Text(String),
}

impl fmt::Display for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyValue::Null => f.write_str("NULL"),
            KeyValue::Bool(value) => write!(f, "{value}"),
            KeyValue::Number(value) => write!(f, "{value}"),
            KeyValue::Text(text) => write!(f, "{text:?}"),
        }
    }
}

/// A tenant and group-key values, with their canonical encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKey {
    bytes: Box<[u8]>,
    tenant: String,
    values: Vec<KeyValue>,
}

impl GroupKey {
    /// Decodes and checks an encoded key.
    pub fn from_bytes(bytes: &[u8]) -> Result<GroupKey, StreamError> {
        decode(bytes).map_err(|reason| StreamError::Decode(format!("group key: {reason}")))
    }

    /// The encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The GROUP BY values, in plan order.
    pub fn values(&self) -> &[KeyValue] {
        &self.values
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.tenant)?;
        for value in &self.values {
            write!(f, " {value}")?;
        }
        Ok(())
    }
}

fn decode(bytes: &[u8]) -> Result<GroupKey, String> {
    if bytes.len() > MAX_KEY_BYTES {
        return Err(format!(
            "{} bytes is longer than {MAX_KEY_BYTES}",
            bytes.len()
        ));
    }
    let mut reader = Reader::new(bytes);
    let mut values = Vec::new();
    while !reader.is_empty() {
        let value = match reader.u8("value tag")? {
            NULL => KeyValue::Null,
            FALSE => KeyValue::Bool(false),
            TRUE => KeyValue::Bool(true),
            NUMBER => {
                let scale = reader.u8("number scale")?;
                let mantissa = reader.i128("number mantissa")?;
                let number = Decimal::new(mantissa, scale).ok_or("number scale too large")?;
                if number.normalized().scale() != scale {
                    return Err("number is not normalized".into());
                }
                KeyValue::Number(number)
            }
            TEXT => {
                let len = reader.usize_at_most(MAX_KEY_BYTES, "text length")?;
                let text = reader.raw(len, "text")?;
                KeyValue::Text(
                    String::from_utf8(text.to_vec()).map_err(|_| "text is not UTF-8".to_owned())?,
                )
            }
            tag => return Err(format!("unknown value tag {tag}")),
        };
        values.push(value);
    }
    let tenant = match values.first() {
        Some(KeyValue::Text(tenant)) => tenant.clone(),
        _ => return Err("a key starts with the tenant's name".into()),
    };
    values.remove(0);
    Ok(GroupKey {
        bytes: bytes.into(),
        tenant,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn keys_round_trip_and_equal_values_encode_equally() {
        let mut a = Vec::new();
        encode_text(b"shop", &mut a);
        encode_value(&Value::Str(Cow::Borrowed(b"/home")), &mut a);
        encode_value(&Value::Number(Decimal::parse_str("1.50").unwrap()), &mut a);
        encode_value(&Value::Null, &mut a);
        encode_value(&Value::Bool(true), &mut a);
        let mut b = Vec::new();
        encode_text(b"shop", &mut b);
        encode_value(&Value::Str(Cow::Borrowed(b"/home")), &mut b);
        encode_value(&Value::Number(Decimal::parse_str("1.5").unwrap()), &mut b);
        encode_value(&Value::Null, &mut b);
        encode_value(&Value::Bool(true), &mut b);
        assert_eq!(a, b);
        let key = GroupKey::from_bytes(&a).unwrap();
        assert_eq!(key.tenant(), "shop");
        assert_eq!(key.to_string(), "shop \"/home\" 1.5 NULL true");
        let mut text_one = Vec::new();
        encode_text(b"shop", &mut text_one);
        encode_value(&Value::Str(Cow::Borrowed(b"1")), &mut text_one);
        let mut number_one = Vec::new();
        encode_text(b"shop", &mut number_one);
        encode_value(&Value::Number(Decimal::from_i64(1)), &mut number_one);
        assert_ne!(text_one, number_one);
    }

    #[test]
    fn corrupt_keys_are_rejected() {
        assert!(GroupKey::from_bytes(&[9]).is_err());
        assert!(GroupKey::from_bytes(&[NULL]).is_err(), "no tenant");
        assert!(GroupKey::from_bytes(&[TEXT, 5, b'a']).is_err(), "truncated");
        assert!(GroupKey::from_bytes(&[TEXT, 1, 0xff]).is_err(), "not UTF-8");
        assert!(
            GroupKey::from_bytes(&[TEXT, 1, b'a', NUMBER, 1, 20]).is_err(),
            "10 at scale 1"
        );
    }
}
