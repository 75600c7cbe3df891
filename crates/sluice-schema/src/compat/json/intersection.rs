//! Two questions about the documents several schemas accept together: [`merge`] writes an
//! `allOf` as one schema when its conjuncts do not interact, and [`disjoint`] tells when two
//! schemas can share no document (for `oneOf` and `not`).

use super::types::{Types, declared, same_value, types, values};
use super::{Node, is_annotation, refs::resolve, rejects_everything};
use serde_json::{Map, Value};

/// Whether no document can be valid under both `a` (in `a_root`) and `b` (in `b_root`):
/// different JSON types, disjoint `enum`/`const`, or — for objects — a property both require
/// whose schemas are disjoint (a discriminator).
pub(super) fn disjoint(a_root: &Value, a: &Value, b_root: &Value, b: &Value, depth: usize) -> bool {
    if depth > super::MAX_DEPTH {
        return false;
    }
    let (Ok(a), Ok(b)) = (
        resolve(a_root, std::borrow::Cow::Borrowed(a)),
        resolve(b_root, std::borrow::Cow::Borrowed(b)),
    ) else {
        return false;
    };
    if rejects_everything(&a) || rejects_everything(&b) {
        return true;
    }
    let shared = types(&a).and(types(&b));
    if shared.is_empty() {
        return true;
    }
    if let (Some(a_values), Some(b_values)) = (values(&a), values(&b))
        && !a_values
            .iter()
            .any(|x| b_values.iter().any(|y| same_value(x, y)))
    {
        return true;
    }
    if shared != Types::OBJECT {
        return false;
    }
    let required = |schema: &Value| -> Vec<String> {
        schema
            .get("required")
            .and_then(Value::as_array)
            .map(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let b_required = required(&b);
    required(&a)
        .into_iter()
        .filter(|name| b_required.contains(name))
        .any(|name| {
            let property =
                |schema: &Value| schema.get("properties").and_then(|p| p.get(&name)).cloned();
            match (property(&a), property(&b)) {
                (Some(x), Some(y)) => disjoint(a_root, &x, b_root, &y, depth + 1),
                _ => false,
            }
        })
}

/// Keywords whose meaning depends on other keywords of the same schema: a conjunct holding one
/// cannot be merged with others.
const INTERACTING: [&str; 7] = [
    "additionalProperties",
    "patternProperties",
    "unevaluatedProperties",
    "unevaluatedItems",
    "additionalItems",
    "prefixItems",
    "$ref",
];

/// The conjunction of `parts` as one schema, or `None` when a keyword of one part would change
/// the meaning of another's (see [`INTERACTING`]) or two parts disagree on a keyword that
/// cannot be combined.
pub(super) fn merge(parts: &[Node<'_>]) -> Option<Value> {
    let mut merged = Map::new();
    let mut accepted = Types::ALL;
    let mut listed: Option<Vec<Value>> = None;
    let mut properties: Map<String, Value> = Map::new();
    let mut required: Vec<Value> = Vec::new();
    for part in parts {
        let map = match &**part {
            Value::Bool(true) => continue,
            Value::Bool(false) => return Some(Value::Bool(false)),
            Value::Object(map) => map,
            _ => return None,
        };
        if let Some(values) = values(part) {
            let values: Vec<Value> = values.into_iter().cloned().collect();
            listed = Some(match listed {
                None => values,
                Some(kept) => kept
                    .into_iter()
                    .filter(|v| values.iter().any(|w| same_value(v, w)))
                    .collect(),
            });
        }
        for (keyword, value) in map {
            if is_annotation(keyword) {
                continue;
            }
            if INTERACTING.contains(&keyword.as_str()) || (keyword == "items" && value.is_array()) {
                return None;
            }
            match keyword.as_str() {
                "type" => accepted = accepted.and(declared(part)),
                "enum" | "const" => {}
                "properties" => {
                    for (name, schema) in value.as_object()? {
                        let combined = match properties.remove(name) {
                            None => schema.clone(),
                            Some(kept) if kept == *schema => kept,
                            Some(kept) => serde_json::json!({ "allOf": [kept, schema] }),
                        };
                        properties.insert(name.clone(), combined);
                    }
                }
                "required" => {
                    for name in value.as_array()? {
                        if !required.contains(name) {
                            required.push(name.clone());
                        }
                    }
                }
                _ => merge_keyword(&mut merged, keyword, value)?,
            }
        }
    }
    if accepted.is_empty() || listed.as_ref().is_some_and(Vec::is_empty) {
        return Some(Value::Bool(false));
    }
    if accepted != Types::ALL {
        let names = accepted.names().into_iter().map(Value::from).collect();
        merged.insert("type".to_string(), Value::Array(names));
    }
    if let Some(listed) = listed {
        merged.insert("enum".to_string(), Value::Array(listed));
    }
    if !properties.is_empty() {
        merged.insert("properties".to_string(), Value::Object(properties));
    }
    if !required.is_empty() {
        merged.insert("required".to_string(), Value::Array(required));
    }
    Some(Value::Object(merged))
}

/// Adds one keyword of a conjunct: bounds take the tighter value, anything else must agree.
fn merge_keyword(merged: &mut Map<String, Value>, keyword: &str, value: &Value) -> Option<()> {
    let Some(kept) = merged.get(keyword) else {
        merged.insert(keyword.to_string(), value.clone());
        return Some(());
    };
    if kept == value {
        return Some(());
    }
    let lower = [
        "minimum",
        "exclusiveMinimum",
        "minLength",
        "minItems",
        "minProperties",
    ];
    let upper = [
        "maximum",
        "exclusiveMaximum",
        "maxLength",
        "maxItems",
        "maxProperties",
    ];
    let (kept_number, number) = (kept.as_f64()?, value.as_f64()?);
    let tighter = if lower.contains(&keyword) {
        number > kept_number
    } else if upper.contains(&keyword) {
        number < kept_number
    } else {
        return None;
    };
    if tighter {
        merged.insert(keyword.to_string(), value.clone());
    }
    Some(())
}
