//! The collector's fast path: a schema of the shape most event schemas have — an object of
//! scalar (or array of scalar) properties with types, bounds and required fields — checked
//! straight on the event's JSON text, without building a `serde_json::Value` (which costs
//! more than the check itself).
//!
//! [`Flat::compile`] takes a schema only if every keyword in it is one this module decides
//! exactly as the JSON Schema specification (and `jsonschema`) does; anything else (nested
//! `properties`, combinators, `$ref`, non-string `enum`s, an older draft…) leaves the schema
//! to the full validator. [`Flat::accepts`] answers only "valid"
//! (`true`) or "not sure" (`false`): an event it does not accept goes through the full
//! validator, which decides and lists the violations, so the fast path can never reject a
//! valid event, and a proptest checks that it never accepts an invalid one.
//!
//! | keyword | where | decided as |
//! |---|---|---|
//! | `type` | root (`object`), properties, items | one type or a list; `integer` takes numbers with no fraction (`1.0`) |
//! | `properties`, `required`, `additionalProperties: true\|false` | root | at most 64 properties; a property twice in the text is "not sure" |
//! | `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` | properties, items | numeric comparison as `f64`; only integers within ±2^53 and finite numbers |
//! | `minLength`, `maxLength` | properties, items | Unicode code points |
//! | `enum`, `const` of strings | properties, items | exact text |
//! | `pattern`, `format` | properties, items | by the full validator, on the string alone (same engine, same options) |
//! | `items` (one schema), `minItems`, `maxItems` | properties | each item as above |
//! | annotations (`title`, `description`, `default`, `examples`, `$comment`, `deprecated`, `readOnly`, `writeOnly`, `$id`, `$schema` of 2019-09 or 2020-12) | anywhere | ignored |

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// The most properties a flat schema lists (required ones are tracked in one `u64`).
const MAX_PROPERTIES: usize = 64;

/// Keywords that change nothing about validity.
const ANNOTATIONS: [&str; 9] = [
    "title",
    "description",
    "default",
    "examples",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$id",
];

/// JSON types as bits.
const NULL: u8 = 1;
const BOOLEAN: u8 = 2;
const INTEGER: u8 = 4;
const NUMBER: u8 = 8;
const STRING: u8 = 16;
const ARRAY: u8 = 32;
const OBJECT: u8 = 64;
const ANY: u8 = 127;

/// One property's (or array item's) rules.
#[derive(Debug, Clone, Default)]
struct Rules {
    types: u8,
    minimum: Option<(f64, bool)>,
    maximum: Option<(f64, bool)>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    strings: Option<Vec<String>>,
    /// `pattern` and `format`, decided by the full validator on the string alone.
    text_rules: Option<Arc<jsonschema::Validator>>,
    /// A `pattern` with no `\` (and no `format` beside it): the full validator runs it as the
    /// `regex` crate's regex of the same text and size limit (it translates only `\`
    /// escapes of ECMA-262), so it is run here directly.
    regex: Option<regex::Regex>,
    items: Option<Box<Rules>>,
    min_items: Option<usize>,
    max_items: Option<usize>,
}

/// A flat schema, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Flat {
    /// Sorted by name.
    properties: Vec<(String, Rules)>,
    /// Per property, its name's length and first 8 bytes: most keys that are not it differ
    /// there, so finding a key compares two integers per property before any text.
    prefixes: Vec<(usize, u64)>,
    /// Bit `i`: `properties[i]` is required.
    required: u64,
    /// Whether properties not listed are allowed.
    additional: bool,
    /// Whether the instance must be an object (`"type": "object"`); the collector's objects
    /// always are.
    object: bool,
}

impl Flat {
    /// The fast form of `schema`, if it has one.
    pub(crate) fn compile(schema: &Value) -> Option<Flat> {
        let root = schema.as_object()?;
        let mut flat = Flat {
            properties: Vec::new(),
            prefixes: Vec::new(),
            required: 0,
            additional: true,
            object: false,
        };
        let mut required: Vec<&str> = Vec::new();
        for (key, value) in root {
            match key.as_str() {
                "$schema" => {
                    let known = [
                        "https://json-schema.org/draft/2020-12/schema",
                        "https://json-schema.org/draft/2019-09/schema",
                    ];
                    if !known.contains(&value.as_str()?.trim_end_matches('#')) {
                        return None;
                    }
                }
                "type" => {
                    if value.as_str()? != "object" {
                        return None;
                    }
                    flat.object = true;
                }
                "properties" => {
                    let properties = value.as_object()?;
                    if properties.len() > MAX_PROPERTIES {
                        return None;
                    }
                    for (name, rules) in properties {
                        flat.properties.push((name.clone(), rules_of(rules, true)?));
                    }
                }
                "required" => {
                    for name in value.as_array()? {
                        required.push(name.as_str()?);
                    }
                }
                "additionalProperties" => flat.additional = value.as_bool()?,
                other if ANNOTATIONS.contains(&other) => {}
                _ => return None,
            }
        }
        flat.properties.sort_by(|a, b| a.0.cmp(&b.0));
        flat.prefixes = flat
            .properties
            .iter()
            .map(|(name, _)| (name.len(), prefix(name)))
            .collect();
        for name in required {
            // A required property the schema does not describe: leave it to the full validator.
            let index = flat.position(name)?;
            flat.required |= 1 << index;
        }
        Some(flat)
    }

    fn position(&self, name: &str) -> Option<usize> {
        let wanted = (name.len(), prefix(name));
        self.prefixes
            .iter()
            .zip(&self.properties)
            // Names of up to 8 bytes are their prefix: equal prefixes say it all.
            .position(|(&candidate, (text, _))| {
                candidate == wanted && (name.len() <= 8 || text == name)
            })
    }

    /// Whether the JSON text `instance` (an object, or absent: `{}`) is valid; `false` also
    /// means "not sure".
    pub(crate) fn accepts(&self, instance: Option<&str>) -> bool {
        let Some(text) = instance else {
            return self.required == 0;
        };
        let mut deserializer = serde_json::Deserializer::from_str(text);
        matches!(
            deserializer.deserialize_map(ObjectCheck { flat: self }),
            Ok(true)
        ) && deserializer.end().is_ok()
    }
}

/// The rules of one property (`nested`: may have `items`).
fn rules_of(schema: &Value, nested: bool) -> Option<Rules> {
    let mut rules = Rules {
        types: ANY,
        ..Rules::default()
    };
    if let Value::Bool(true) = schema {
        return Some(rules);
    }
    let map: &Map<String, Value> = schema.as_object()?;
    for (key, value) in map {
        match key.as_str() {
            "type" => {
                rules.types = match value {
                    Value::String(name) => type_bit(name)?,
                    Value::Array(names) => names
                        .iter()
                        .map(|n| n.as_str().and_then(type_bit))
                        .try_fold(0, |all, bit| bit.map(|bit| all | bit))?,
                    _ => return None,
                }
            }
            "minimum" => rules.minimum = Some((exact(value)?, false)),
            "exclusiveMinimum" => rules.minimum = Some((exact(value)?, true)),
            "maximum" => rules.maximum = Some((exact(value)?, false)),
            "exclusiveMaximum" => rules.maximum = Some((exact(value)?, true)),
            "minLength" => rules.min_length = Some(usize::try_from(value.as_u64()?).ok()?),
            "maxLength" => rules.max_length = Some(usize::try_from(value.as_u64()?).ok()?),
            "enum" => {
                let texts: Option<Vec<String>> = value
                    .as_array()?
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect();
                rules.strings = Some(texts?);
            }
            "const" => rules.strings = Some(vec![value.as_str()?.to_owned()]),
            "pattern" | "format" => {}
            "items" if nested => rules.items = Some(Box::new(rules_of(value, false)?)),
            "minItems" if nested => rules.min_items = Some(usize::try_from(value.as_u64()?).ok()?),
            "maxItems" if nested => rules.max_items = Some(usize::try_from(value.as_u64()?).ok()?),
            other if ANNOTATIONS.contains(&other) => {}
            _ => return None,
        }
    }
    // Two keywords for one rule (minimum and exclusiveMinimum, enum and const) are left to
    // the full validator: the loop above kept only one of them.
    let pairs = [
        ["minimum", "exclusiveMinimum"],
        ["maximum", "exclusiveMaximum"],
        ["enum", "const"],
    ];
    if pairs
        .iter()
        .any(|pair| pair.iter().all(|k| map.contains_key(*k)))
    {
        return None;
    }
    let text_keywords: Map<String, Value> = map
        .iter()
        .filter(|(key, _)| matches!(key.as_str(), "pattern" | "format"))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    match (map.get("pattern"), map.get("format")) {
        (Some(Value::String(pattern)), None) if !pattern.contains('\\') => {
            // The full validator must take it too (same engine, same limits).
            crate::validate::compile(&Value::Object(text_keywords)).ok()?;
            let regex = regex::RegexBuilder::new(pattern)
                .size_limit(crate::validate::PATTERN_SIZE_LIMIT)
                .build()
                .ok()?;
            rules.regex = Some(regex);
        }
        _ if !text_keywords.is_empty() => {
            let validator = crate::validate::compile(&Value::Object(text_keywords)).ok()?;
            rules.text_rules = Some(Arc::new(validator));
        }
        _ => {}
    }
    Some(rules)
}

/// A name's first 8 bytes as an integer (zero-padded).
fn prefix(name: &str) -> u64 {
    let mut bytes = [0u8; 8];
    let head = &name.as_bytes()[..name.len().min(8)];
    bytes[..head.len()].copy_from_slice(head);
    u64::from_le_bytes(bytes)
}

fn type_bit(name: &str) -> Option<u8> {
    Some(match name {
        "null" => NULL,
        "boolean" => BOOLEAN,
        "integer" => INTEGER,
        "number" => NUMBER | INTEGER,
        "string" => STRING,
        "array" => ARRAY,
        "object" => OBJECT,
        _ => return None,
    })
}

/// A bound as an `f64`, when it is one exactly.
fn exact(value: &Value) -> Option<f64> {
    let number = value.as_number()?;
    if let Some(n) = number.as_i64() {
        return (n.unsigned_abs() <= 1 << 53).then_some(n as f64);
    }
    if number.as_u64().is_some() {
        return None;
    }
    number.as_f64().filter(|f| f.is_finite())
}

thread_local! {
    /// The string a `pattern` or `format` is checked on, as the full validator takes it.
    static SCRATCH: std::cell::RefCell<Value> = const {
        std::cell::RefCell::new(Value::String(String::new()))
    };
}

/// Checks an object against a flat schema as it is read.
struct ObjectCheck<'f> {
    flat: &'f Flat,
}

impl<'de> Visitor<'de> for ObjectCheck<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut seen = 0u64;
        let mut valid = true;
        while let Some(key) = map.next_key_seed(KeySeed { flat: self.flat })? {
            match key {
                Some(index) => {
                    if seen & (1 << index) != 0 {
                        // Twice: which one counts is the parser's business; not sure.
                        valid = false;
                    }
                    seen |= 1 << index;
                    let rules = &self.flat.properties[index].1;
                    valid &= map.next_value_seed(ValueCheck { rules })?;
                }
                None => {
                    valid &= self.flat.additional;
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(valid && seen & self.flat.required == self.flat.required)
    }
}

/// Reads a key as the index of its property, without copying it.
struct KeySeed<'f> {
    flat: &'f Flat,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a property name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.flat.position(key))
    }
}

/// Checks one value against its rules as it is read.
struct ValueCheck<'r> {
    rules: &'r Rules,
}

impl<'de> DeserializeSeed<'de> for ValueCheck<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl ValueCheck<'_> {
    /// `integral`: whether the number has no fraction, asked only when the type is `integer`.
    fn number(&self, value: f64, integral: impl FnOnce() -> bool) -> bool {
        let rules = self.rules;
        let typed = rules.types & NUMBER != 0 || (rules.types & INTEGER != 0 && integral());
        let above = rules.minimum.is_none_or(|(bound, exclusive)| {
            if exclusive {
                value > bound
            } else {
                value >= bound
            }
        });
        let below = rules.maximum.is_none_or(|(bound, exclusive)| {
            if exclusive {
                value < bound
            } else {
                value <= bound
            }
        });
        typed && above && below
    }

    fn integer(&self, value: Option<f64>) -> bool {
        // Beyond ±2^53 an f64 comparison may be wrong: not sure.
        value.is_some_and(|v| self.number(v, || true))
    }

    fn text(&self, text: &str) -> bool {
        let rules = self.rules;
        if rules.types & STRING == 0 {
            return false;
        }
        if let Some(allowed) = &rules.strings
            && !allowed.iter().any(|a| a == text)
        {
            return false;
        }
        if let Some(regex) = &rules.regex
            && !regex.is_match(text)
        {
            return false;
        }
        if let Some(validator) = &rules.text_rules
            && !SCRATCH.with_borrow_mut(|scratch| {
                // One string value per thread, refilled: no allocation per check.
                if let Value::String(buffer) = scratch {
                    buffer.clear();
                    buffer.push_str(text);
                }
                validator.is_valid(scratch)
            })
        {
            return false;
        }
        if rules.min_length.is_none() && rules.max_length.is_none() {
            return true;
        }
        let length = text.chars().count();
        rules.min_length.is_none_or(|min| length >= min)
            && rules.max_length.is_none_or(|max| length <= max)
    }

    /// A value other than a string while `enum`/`const` lists strings fails.
    fn no_strings_required(&self) -> bool {
        self.rules.strings.is_none()
    }
}

fn small(n: i64) -> Option<f64> {
    (n.unsigned_abs() <= 1 << 53).then_some(n as f64)
}

impl<'de> Visitor<'de> for ValueCheck<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(self.rules.types & NULL != 0 && self.no_strings_required())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(self.rules.types & BOOLEAN != 0 && self.no_strings_required())
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<bool, E> {
        Ok(self.integer(small(n)) && self.no_strings_required())
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<bool, E> {
        let value = i64::try_from(n).ok().and_then(small);
        Ok(self.integer(value) && self.no_strings_required())
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<bool, E> {
        // A number with no fraction (1.0) is an integer in JSON Schema.
        let integral = || n.fract() == 0.0 && n.abs() <= (1u64 << 53) as f64;
        Ok(n.is_finite() && self.number(n, integral) && self.no_strings_required())
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<bool, E> {
        Ok(self.text(text))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let rules = self.rules;
        let mut valid = rules.types & ARRAY != 0 && self.no_strings_required();
        let mut count = 0usize;
        match &rules.items {
            Some(items) => {
                while let Some(item) = seq.next_element_seed(ValueCheck { rules: items })? {
                    valid &= item;
                    count += 1;
                }
            }
            None => {
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    count += 1;
                }
            }
        }
        Ok(valid
            && rules.min_items.is_none_or(|min| count >= min)
            && rules.max_items.is_none_or(|max| count <= max))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(self.rules.types & OBJECT != 0 && self.no_strings_required())
    }
}

#[cfg(test)]
mod tests;
