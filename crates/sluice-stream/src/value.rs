//! The value of an expression or a field during evaluation, as the evaluator, group keys and
//! the engine share it (its own module, so `eval` and `keys` do not import each other).

use crate::decimal::Decimal;
use std::borrow::Cow;

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(Decimal),
    /// Text, as UTF-8 bytes. Strings read from an event are not validated here (comparing,
    /// hashing and keying work on bytes); where characters matter (`LIKE`, `lower`, `upper`)
    /// text that is not UTF-8 is NULL, and a group key that is not UTF-8 is rejected when the
    /// key is first seen.
    Str(Cow<'a, [u8]>),
}

impl Value<'_> {
    /// The number a value stands for: a number, or text that reads as one (surrounding ASCII
    /// whitespace allowed).
    pub(crate) fn as_number(&self) -> Option<Decimal> {
        match self {
            Value::Number(number) => Some(*number),
            Value::Str(text) => Decimal::parse(text.trim_ascii()),
            _ => None,
        }
    }
}
