//! JSON text of keys, values and points, written straight into byte buffers: how every reader
//! of results shows them (the query API renders a final window's point once, when it enters its
//! cache, and copies it into every answer after; the PostgreSQL store writes a final row's key
//! and values with it for its BI views). Pure functions of decoded keys and finalized values.

use crate::agg::OutputValue;
use crate::keys::{GroupKey, KeyValue};
use crate::plan::MetricPlan;
use std::fmt::Write as _;

/// Appends `text` as a JSON string.
pub fn string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends one key value as JSON.
pub fn key_value(value: &KeyValue, out: &mut String) {
    match value {
        KeyValue::Null => out.push_str("null"),
        KeyValue::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
        KeyValue::Number(number) => {
            let _ = write!(out, "{number}");
        }
        KeyValue::Text(text) => string(text, out),
    }
}

/// `{"url":"/home","country":"fr"}`: a group key as an object of the metric's key names.
pub fn key_object(plan: &MetricPlan, key: &GroupKey) -> String {
    let mut out = String::from("{");
    for (index, (name, value)) in plan.key_names.iter().zip(key.values()).enumerate() {
        if index > 0 {
            out.push(',');
        }
        string(name, &mut out);
        out.push(':');
        key_value(value, &mut out);
    }
    out.push('}');
    out
}

/// Appends one aggregate value as JSON (exact decimals as written, `null` for no value,
/// `"overflow"` for a sum that left the decimal range).
pub fn value(value: &OutputValue, out: &mut String) {
    match value {
        OutputValue::Null => out.push_str("null"),
        OutputValue::Overflow => out.push_str(OVERFLOW),
        OutputValue::Count(count) => {
            let _ = write!(out, "{count}");
        }
        OutputValue::Decimal(number) => {
            let _ = write!(out, "{number}");
        }
        OutputValue::Float(number) if number.is_finite() => {
            let _ = write!(out, "{number}");
        }
        OutputValue::Float(_) => out.push_str("null"),
    }
}

/// `["/home",true]`: a group key's values (without the tenant) as a JSON array, in plan order.
pub fn key_array(key: &GroupKey) -> String {
    let mut out = String::from("[");
    for (index, item) in key.values().iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        key_value(item, &mut out);
    }
    out.push(']');
    out
}

/// `[12,49.90,null]`: a window's values as a JSON array, in plan order.
pub fn value_array(values: &[OutputValue]) -> String {
    let mut out = String::with_capacity(2 + 8 * values.len());
    out.push('[');
    for (index, item) in values.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        value(item, &mut out);
    }
    out.push(']');
    out
}

/// How an overflowed sum is written: a string where a number would be, so a client cannot
/// take it for one.
const OVERFLOW: &str = "\"overflow\"";

/// `[start,end,final,v1,v2,…]`: one point of a series.
pub fn point(start: i64, end: i64, is_final: bool, values: &[OutputValue]) -> String {
    let mut out = String::with_capacity(40 + 8 * values.len());
    let _ = write!(out, "[{start},{end},{is_final}");
    for item in values {
        out.push(',');
        value(item, &mut out);
    }
    out.push(']');
    out
}

/// One aggregate value as a JSON value (GraphQL and WebSocket messages).
pub fn value_json(value: &OutputValue) -> serde_json::Value {
    match value {
        OutputValue::Null => serde_json::Value::Null,
        OutputValue::Overflow => serde_json::Value::String("overflow".into()),
        OutputValue::Count(count) => serde_json::Value::from(*count),
        OutputValue::Decimal(number) => {
            let text = number.to_string();
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        }
        OutputValue::Float(number) => serde_json::Number::from_f64(*number)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
    }
}

/// The values of a window as an object of the metric's aggregate column names.
pub fn values_json(plan: &MetricPlan, values: &[OutputValue]) -> serde_json::Value {
    serde_json::Value::Object(
        aggregate_names(plan)
            .into_iter()
            .zip(values)
            .map(|(name, value)| (name.to_owned(), value_json(value)))
            .collect(),
    )
}

/// The names of the metric's aggregates, in plan order (the columns that carry them).
pub fn aggregate_names(plan: &MetricPlan) -> Vec<&str> {
    let mut names = vec![""; plan.aggregates.len()];
    for column in &plan.columns {
        if let crate::plan::ColumnSource::Aggregate(index) = column.source
            && let Some(slot) = names.get_mut(index)
        {
            *slot = &column.name;
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decimal::Decimal;

    #[test]
    fn points_and_values_are_json() {
        let values = [
            OutputValue::Count(12),
            OutputValue::Decimal(Decimal::parse_str("49.90").unwrap()),
            OutputValue::Null,
            OutputValue::Float(2.5),
            OutputValue::Float(f64::NAN),
            OutputValue::Overflow,
        ];
        let text = point(60_000, 120_000, true, &values);
        assert_eq!(
            text,
            "[60000,120000,true,12,49.90,null,2.5,null,\"overflow\"]"
        );
        assert_eq!(
            value_json(&OutputValue::Overflow),
            serde_json::json!("overflow")
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed[4], serde_json::json!(49.9));
        assert_eq!(
            value_array(&values),
            text.replace("[60000,120000,true,", "[")
        );
        let mut quoted = String::new();
        string("a\"b\\c\n\u{1}é", &mut quoted);
        assert_eq!(
            serde_json::from_str::<String>(&quoted).unwrap(),
            "a\"b\\c\n\u{1}é"
        );
    }

    #[test]
    fn keys_are_arrays_of_their_values_without_the_tenant() {
        use crate::keys::{encode_text, encode_value};
        use crate::value::Value;
        use std::borrow::Cow;
        let mut bytes = Vec::new();
        encode_text(b"shop", &mut bytes);
        encode_value(&Value::Str(Cow::Borrowed(b"/a\"b")), &mut bytes);
        encode_value(
            &Value::Number(Decimal::parse_str("1.50").unwrap()),
            &mut bytes,
        );
        encode_value(&Value::Bool(true), &mut bytes);
        encode_value(&Value::Null, &mut bytes);
        let key = GroupKey::from_bytes(&bytes).unwrap();
        assert_eq!(key_array(&key), r#"["/a\"b",1.5,true,null]"#);
    }
}
