//! The JSON types a schema accepts (`type`, narrowed by `enum` and `const`) and the values it
//! lists, with numbers compared by value.

use serde_json::Value;

/// The JSON types a schema accepts, as bits; `integer` is its own bit, `number` is both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Types(u8);

impl Types {
    pub(super) const NULL: Types = Types(1);
    pub(super) const BOOLEAN: Types = Types(2);
    pub(super) const OBJECT: Types = Types(4);
    pub(super) const ARRAY: Types = Types(8);
    /// Numbers with a fractional part.
    pub(super) const FRACTION: Types = Types(16);
    pub(super) const INTEGER: Types = Types(32);
    pub(super) const STRING: Types = Types(64);
    pub(super) const NUMBER: Types = Types(16 | 32);
    pub(super) const ALL: Types = Types(127);
    pub(super) const NONE: Types = Types(0);

    pub(super) fn named(name: &str) -> Option<Types> {
        Some(match name {
            "null" => Types::NULL,
            "boolean" => Types::BOOLEAN,
            "object" => Types::OBJECT,
            "array" => Types::ARRAY,
            "number" => Types::NUMBER,
            "integer" => Types::INTEGER,
            "string" => Types::STRING,
            _ => return None,
        })
    }

    pub(super) fn of(value: &Value) -> Types {
        match value {
            Value::Null => Types::NULL,
            Value::Bool(_) => Types::BOOLEAN,
            Value::Object(_) => Types::OBJECT,
            Value::Array(_) => Types::ARRAY,
            Value::String(_) => Types::STRING,
            Value::Number(n) if n.is_i64() || n.is_u64() => Types::INTEGER,
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 => Types::INTEGER,
                _ => Types::FRACTION,
            },
        }
    }

    pub(super) fn and(self, other: Types) -> Types {
        Types(self.0 & other.0)
    }

    pub(super) fn or(self, other: Types) -> Types {
        Types(self.0 | other.0)
    }

    pub(super) fn minus(self, other: Types) -> Types {
        Types(self.0 & !other.0)
    }

    pub(super) fn has(self, other: Types) -> bool {
        self.0 & other.0 != 0
    }

    pub(super) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The `type` names that spell these types.
    pub(super) fn names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        for (bit, name) in [
            (Types::NULL, "null"),
            (Types::BOOLEAN, "boolean"),
            (Types::OBJECT, "object"),
            (Types::ARRAY, "array"),
            (Types::STRING, "string"),
        ] {
            if self.has(bit) {
                names.push(name);
            }
        }
        if self.has(Types::FRACTION) {
            names.push("number");
        } else if self.has(Types::INTEGER) {
            names.push("integer");
        }
        names
    }
}

/// The types `schema`'s `type` keyword allows (all when absent).
pub(super) fn declared(schema: &Value) -> Types {
    match schema.get("type") {
        Some(Value::String(name)) => Types::named(name).unwrap_or(Types::NONE),
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .filter_map(Types::named)
            .fold(Types::NONE, Types::or),
        _ => Types::ALL,
    }
}

/// The values `schema` allows by `enum` and `const`, if it lists them.
pub(super) fn values(schema: &Value) -> Option<Vec<&Value>> {
    let listed: Option<Vec<&Value>> = schema
        .get("enum")
        .and_then(Value::as_array)
        .map(|v| v.iter().collect());
    match (schema.get("const"), listed) {
        (Some(constant), Some(listed)) => Some(
            listed
                .into_iter()
                .filter(|v| same_value(v, constant))
                .collect(),
        ),
        (Some(constant), None) => Some(vec![constant]),
        (None, listed) => listed,
    }
}

/// The types `schema` accepts, from `type`, `enum` and `const`.
pub(super) fn types(schema: &Value) -> Types {
    let declared = declared(schema);
    match values(schema) {
        Some(values) => declared.and(
            values
                .into_iter()
                .map(Types::of)
                .fold(Types::NONE, Types::or),
        ),
        None => declared,
    }
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
pub(super) fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(a), Some(b)) => a == b,
            _ => a.as_f64() == b.as_f64() && a.as_f64().is_some(),
        },
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_value(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, a)| b.get(key).is_some_and(|b| same_value(a, b)))
        }
        _ => a == b,
    }
}
