//! Local `$ref`s: followed within their own document (`#`, `#/$defs/x`, `#/definitions/x`,
//! `#anchor`), with a bound on chains; a `$ref` with sibling keywords is `allOf` of the target
//! and the siblings. References to other documents are left for the caller to compare as text.

use super::{MAX_DEPTH, MAX_REF_CHAIN, Node, is_annotation};
use serde_json::{Map, Value, json};
use std::borrow::Cow;

/// `node` with its local `$ref`s followed within `root`; `$ref` with sibling keywords becomes
/// `allOf` of the two. External references are left as they are.
pub(super) fn resolve<'a>(root: &'a Value, node: Node<'a>) -> Result<Node<'a>, String> {
    let mut node = node;
    for _ in 0..MAX_REF_CHAIN {
        let Some(Value::String(reference)) = node.get("$ref") else {
            return Ok(node);
        };
        if !reference.starts_with('#') {
            return Ok(node);
        }
        let Some(found) = target(root, reference) else {
            return Err(format!(
                "`$ref` {reference:?} points at nothing in its document: fix the pointer or add \
                 the definition under `$defs`"
            ));
        };
        let siblings: Map<String, Value> = node
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(key, _)| *key != "$ref" && !is_annotation(key))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        if !siblings.is_empty() {
            let reference = json!({ "$ref": reference });
            return Ok(Cow::Owned(
                json!({ "allOf": [reference, Value::Object(siblings)] }),
            ));
        }
        node = Cow::Borrowed(found);
    }
    Err(format!(
        "`$ref`s here form a chain longer than {MAX_REF_CHAIN} or a loop: point the reference \
         at a schema"
    ))
}

/// What the local reference `reference` (`#…`) points at in `root`.
pub(super) fn target<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let fragment = percent_decode(reference.strip_prefix('#')?);
    if fragment.is_empty() {
        Some(root)
    } else if fragment.starts_with('/') {
        root.pointer(&fragment)
    } else {
        anchor(root, &fragment, 0)
    }
}

/// The subschema of `root` whose `$anchor` is `name`.
fn anchor<'a>(root: &'a Value, name: &str, depth: usize) -> Option<&'a Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    match root {
        Value::Object(map) => {
            if map.get("$anchor").and_then(Value::as_str) == Some(name) {
                return Some(root);
            }
            map.values()
                .find_map(|value| anchor(value, name, depth + 1))
        }
        Value::Array(items) => items
            .iter()
            .find_map(|value| anchor(value, name, depth + 1)),
        _ => None,
    }
}

/// `text` with `%XX` escapes decoded (a URI fragment); invalid escapes are kept as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok());
        match (
            bytes[i],
            hex.and_then(|pair| u8::from_str_radix(pair, 16).ok()),
        ) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Collects the local `$ref`s inside `value`.
pub(super) fn local_refs(value: &Value, found: &mut Vec<String>, depth: usize) {
    if depth > MAX_DEPTH || found.len() > 256 {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref")
                && reference.starts_with('#')
            {
                found.push(reference.clone());
            }
            map.values()
                .for_each(|value| local_refs(value, found, depth + 1));
        }
        Value::Array(items) => items
            .iter()
            .for_each(|value| local_refs(value, found, depth + 1)),
        _ => {}
    }
}
