//! Evaluating a metric's expressions over one scanned event.
//!
//! Expressions are compiled once per metric ([`Compiled`]): fields become slot numbers of the
//! processor's [`crate::json::FieldSet`], `LIKE` patterns are pre-split, literals pre-typed.
//! Evaluation borrows from the event bytes and allocates only for `lower`/`upper` of text
//! that changes and for strings written with escapes.
//!
//! # Typing rules ("typed on use")
//! - A missing field, `null`, and an object or array are NULL.
//! - Comparisons: text with text compares bytewise (Unicode code point order); numbers with
//!   numbers exactly; text with a number converts the text to a number (a JSON string
//!   `"12.50"` equals `12.5`) and is NULL if it is not one; booleans compare with booleans;
//!   anything else, and anything with NULL, is NULL. `WHERE` keeps an event only when TRUE.
//! - `IN` is `=` against each constant (NULL if nothing matched and the list holds NULL);
//!   `LIKE` applies to text and to numbers as written.
//! - `SUM`, `MIN`, `MAX`, `AVG` and `APPROX_PERCENTILE` take numbers and numeric strings;
//!   other values are ignored, like NULL. `COUNT(x)` counts non-NULL values;
//!   `COUNT(DISTINCT x)` hashes text, numbers (by value: `1.50` = `1.5`) and booleans
//!   as different kinds (`"1"` ≠ `1`).
//! - A number outside the exact decimal range (`9.99e300`, as a JSON number or a numeric
//!   string) is NULL to filters and keys; an aggregate that needs its value gets
//!   [`Input::OutOfRange`] (skipped and counted), and `COUNT(x)` counts it (it is present).

use crate::agg::Input;
use crate::decimal::{Decimal, is_number_text};
use crate::json::{Kind, Slot, unescape};
use crate::keys;
use crate::plan::{AggregateKind, CompareOp, ENVELOPE, Expr, Field, Literal, MetricPlan};
use crate::value::Value;
use std::borrow::Cow;
use std::cmp::Ordering;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The XXH3 seeds that keep kinds apart in distinct counts.
const SEED_TEXT: u64 = 0x7478_7400;
const SEED_NUMBER: u64 = 0x6e75_6d00;
const SEED_BOOL: u64 = 0x626f_6f00;

/// The stable 64-bit hash of a value for `COUNT(DISTINCT …)`: XXH3-64 of the text's UTF-8
/// bytes, of a normalized number's mantissa (16 bytes little-endian) and scale, or of a
/// boolean's byte, each with its own seed. `None` for NULL.
pub fn distinct_hash(value: &Value<'_>) -> Option<u64> {
    match value {
        Value::Null => None,
        Value::Str(text) => Some(xxh3_64_with_seed(text, SEED_TEXT)),
        Value::Number(number) => {
            let normal = number.normalized();
            let mut bytes = [0u8; 17];
            bytes[..16].copy_from_slice(&normal.mantissa().to_le_bytes());
            bytes[16] = normal.scale();
            Some(xxh3_64_with_seed(&bytes, SEED_NUMBER))
        }
        Value::Bool(value) => Some(xxh3_64_with_seed(&[u8::from(*value)], SEED_BOOL)),
    }
}

/// The value of one scanned slot.
pub fn slot_value<'a>(bytes: &'a [u8], slot: &Slot) -> Value<'a> {
    let text = slot.text(bytes);
    match slot.kind {
        Kind::Missing | Kind::Null | Kind::Composite => Value::Null,
        Kind::True => Value::Bool(true),
        Kind::False => Value::Bool(false),
        Kind::Number => Decimal::parse(text).map_or(Value::Null, Value::Number),
        Kind::String => Value::Str(Cow::Borrowed(text)),
        Kind::EscapedString => {
            let mut out = Vec::new();
            if unescape(text, &mut out) {
                Value::Str(Cow::Owned(out))
            } else {
                Value::Null
            }
        }
    }
}

/// A `LIKE` pattern split into pieces.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    /// Text that must match exactly.
    Text(String),
    /// `_`: one character.
    One,
    /// `%`: any run of characters.
    Any,
}

fn compile_like(pattern: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    for ch in pattern.chars() {
        match (ch, pieces.last_mut()) {
            ('%', Some(Piece::Any)) => {}
            ('%', _) => pieces.push(Piece::Any),
            ('_', _) => pieces.push(Piece::One),
            (ch, Some(Piece::Text(text))) => text.push(ch),
            (ch, _) => pieces.push(Piece::Text(ch.to_string())),
        }
    }
    pieces
}

/// Whether `text` matches the pattern (backtracking only to the last `%`).
fn like(pieces: &[Piece], text: &str) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut resume: Option<(usize, usize)> = None;
    loop {
        let advanced = match pieces.get(p) {
            None if t == text.len() => return true,
            Some(Piece::Any) => {
                resume = Some((p, t));
                p += 1;
                true
            }
            Some(Piece::One) => match text[t..].chars().next() {
                Some(ch) => {
                    p += 1;
                    t += ch.len_utf8();
                    true
                }
                None => false,
            },
            Some(Piece::Text(piece)) if text[t..].starts_with(piece.as_str()) => {
                p += 1;
                t += piece.len();
                true
            }
            _ => false,
        };
        if advanced {
            continue;
        }
        // Let the last `%` swallow one more character and retry from there.
        match resume {
            Some((star, at)) => match text[at..].chars().next() {
                Some(ch) => {
                    resume = Some((star, at + ch.len_utf8()));
                    p = star + 1;
                    t = at + ch.len_utf8();
                }
                None => return false,
            },
            None => return false,
        }
    }
}

/// A compiled expression.
#[derive(Debug, Clone, PartialEq)]
enum CExpr {
    Slot(usize),
    Literal(Value<'static>),
    Lower(Box<CExpr>),
    Upper(Box<CExpr>),
    Coalesce(Vec<CExpr>),
    Compare(CompareOp, Box<CExpr>, Box<CExpr>),
    /// `slot op 'text'`: the same as `Compare`, with a shortcut for a plain string in the slot
    /// (the usual `event = 'Page Viewed'`).
    CompareText(CompareOp, usize, Box<[u8]>),
    InList(Box<CExpr>, Vec<Value<'static>>, bool),
    Like(Box<CExpr>, Vec<Piece>, bool),
    IsNull(Box<CExpr>, bool),
    And(Box<CExpr>, Box<CExpr>),
    Or(Box<CExpr>, Box<CExpr>),
    Not(Box<CExpr>),
}

fn literal_value(literal: &Literal) -> Value<'static> {
    match literal {
        Literal::Null => Value::Null,
        Literal::Bool(value) => Value::Bool(*value),
        Literal::Number(number) => Value::Number(*number),
        Literal::String(text) => Value::Str(Cow::Owned(text.clone().into_bytes())),
    }
}

fn compile(expr: &Expr, slot_of: &impl Fn(&Field) -> usize) -> CExpr {
    let boxed = |e: &Expr| Box::new(compile(e, slot_of));
    match expr {
        Expr::Field(field) => CExpr::Slot(slot_of(field)),
        Expr::Literal(literal) => CExpr::Literal(literal_value(literal)),
        Expr::Lower(inner) => CExpr::Lower(boxed(inner)),
        Expr::Upper(inner) => CExpr::Upper(boxed(inner)),
        Expr::Coalesce(args) => CExpr::Coalesce(args.iter().map(|a| compile(a, slot_of)).collect()),
        Expr::Compare { op, left, right } => match (&**left, &**right) {
            (Expr::Field(field), Expr::Literal(Literal::String(text))) => {
                CExpr::CompareText(*op, slot_of(field), text.as_bytes().into())
            }
            (Expr::Literal(Literal::String(text)), Expr::Field(field)) => {
                CExpr::CompareText(op.flipped(), slot_of(field), text.as_bytes().into())
            }
            _ => CExpr::Compare(*op, boxed(left), boxed(right)),
        },
        Expr::InList {
            expr,
            list,
            negated,
        } => CExpr::InList(
            boxed(expr),
            list.iter().map(literal_value).collect(),
            *negated,
        ),
        Expr::Like {
            expr,
            pattern,
            negated,
        } => CExpr::Like(boxed(expr), compile_like(pattern), *negated),
        Expr::IsNull { expr, negated } => CExpr::IsNull(boxed(expr), *negated),
        Expr::And(left, right) => CExpr::And(boxed(left), boxed(right)),
        Expr::Or(left, right) => CExpr::Or(boxed(left), boxed(right)),
        Expr::Not(inner) => CExpr::Not(boxed(inner)),
    }
}

fn compare(left: &Value<'_>, right: &Value<'_>) -> Option<Ordering> {
    match (left, right) {
        (Value::Str(a), Value::Str(b)) => Some(a.as_ref().cmp(b.as_ref())),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Number(a), b) => b.as_number().map(|b| a.cmp(&b)),
        (a, Value::Number(b)) => a.as_number().map(|a| a.cmp(b)),
        _ => None,
    }
}

/// A value as text, for string functions: `None` for NULL and for text that is not UTF-8.
fn text_of<'a>(value: Value<'a>) -> Option<Cow<'a, str>> {
    match value {
        Value::Str(Cow::Borrowed(bytes)) => std::str::from_utf8(bytes).ok().map(Cow::Borrowed),
        Value::Str(Cow::Owned(bytes)) => String::from_utf8(bytes).ok().map(Cow::Owned),
        Value::Number(number) => Some(Cow::Owned(number.to_string())),
        Value::Bool(value) => Some(Cow::Borrowed(if value { "true" } else { "false" })),
        Value::Null => None,
    }
}

fn text_value(text: Cow<'_, str>) -> Value<'_> {
    Value::Str(match text {
        Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
        Cow::Owned(text) => Cow::Owned(text.into_bytes()),
    })
}

fn truth(value: Option<bool>) -> Value<'static> {
    value.map_or(Value::Null, Value::Bool)
}

fn as_bool(value: &Value<'_>) -> Option<bool> {
    match value {
        Value::Bool(value) => Some(*value),
        _ => None,
    }
}

impl CExpr {
    fn eval<'a>(&'a self, bytes: &'a [u8], slots: &[Slot]) -> Value<'a> {
        match self {
            CExpr::Slot(slot) => slot_value(bytes, &slots[*slot]),
            CExpr::Literal(value) => match value {
                Value::Str(text) => Value::Str(Cow::Borrowed(text)),
                other => other.clone(),
            },
            CExpr::Lower(inner) => match text_of(inner.eval(bytes, slots)) {
                Some(text) if text.chars().any(char::is_uppercase) => {
                    text_value(Cow::Owned(text.to_lowercase()))
                }
                Some(text) => text_value(text),
                None => Value::Null,
            },
            CExpr::Upper(inner) => match text_of(inner.eval(bytes, slots)) {
                Some(text) if text.chars().any(char::is_lowercase) => {
                    text_value(Cow::Owned(text.to_uppercase()))
                }
                Some(text) => text_value(text),
                None => Value::Null,
            },
            CExpr::Coalesce(args) => args
                .iter()
                .map(|arg| arg.eval(bytes, slots))
                .find(|value| *value != Value::Null)
                .unwrap_or(Value::Null),
            CExpr::Compare(op, left, right) => {
                let ordering = compare(&left.eval(bytes, slots), &right.eval(bytes, slots));
                truth(ordering.map(|o| op.holds(o)))
            }
            CExpr::CompareText(op, slot, text) => {
                let slot = &slots[*slot];
                let ordering = match slot.kind {
                    Kind::String => Some(slot.text(bytes).cmp(text)),
                    _ => compare(&slot_value(bytes, slot), &Value::Str(Cow::Borrowed(text))),
                };
                truth(ordering.map(|o| op.holds(o)))
            }
            CExpr::InList(inner, list, negated) => {
                let value = inner.eval(bytes, slots);
                if value == Value::Null {
                    return Value::Null;
                }
                let mut saw_null = false;
                for item in list {
                    match compare(&value, item) {
                        Some(Ordering::Equal) => return Value::Bool(!negated),
                        None => saw_null |= *item == Value::Null,
                        Some(_) => {}
                    }
                }
                if saw_null {
                    Value::Null
                } else {
                    Value::Bool(*negated)
                }
            }
            CExpr::Like(inner, pieces, negated) => match inner.eval(bytes, slots) {
                Value::Bool(_) | Value::Null => Value::Null,
                value => match text_of(value) {
                    Some(text) => Value::Bool(like(pieces, &text) != *negated),
                    None => Value::Null,
                },
            },
            CExpr::IsNull(inner, negated) => {
                Value::Bool((inner.eval(bytes, slots) == Value::Null) != *negated)
            }
            CExpr::And(left, right) => {
                let a = as_bool(&left.eval(bytes, slots));
                if a == Some(false) {
                    return Value::Bool(false);
                }
                match (a, as_bool(&right.eval(bytes, slots))) {
                    (_, Some(false)) => Value::Bool(false),
                    (Some(true), Some(true)) => Value::Bool(true),
                    _ => Value::Null,
                }
            }
            CExpr::Or(left, right) => {
                let a = as_bool(&left.eval(bytes, slots));
                if a == Some(true) {
                    return Value::Bool(true);
                }
                match (a, as_bool(&right.eval(bytes, slots))) {
                    (_, Some(true)) => Value::Bool(true),
                    (Some(false), Some(false)) => Value::Bool(false),
                    _ => Value::Null,
                }
            }
            CExpr::Not(inner) => truth(as_bool(&inner.eval(bytes, slots)).map(|v| !v)),
        }
    }
}

/// What an aggregate needs from its argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArgUse {
    Star,
    Present,
    Number,
    Hash,
    /// The value as written, for first and last values.
    Json,
}

/// One aggregate's argument, compiled: how its value is used, the argument (none for
/// `COUNT(*)`) and its `FILTER`.
type Arg = (ArgUse, Option<CExpr>, Option<CExpr>);

/// A metric's expressions compiled against a processor's slots.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    filter: Option<CExpr>,
    keys: Vec<CExpr>,
    args: Vec<Arg>,
    /// For each argument, an earlier argument with the same expression, use and filter, whose input
    /// is reused (`AVG(x)` and `APPROX_PERCENTILE(x, q)` parse `x` once).
    same_as: Vec<Option<usize>>,
    /// A derived stream's record: the envelope's slots with their keys, then the columns.
    record: Option<RecordShape>,
}

/// How a derived stream writes one record (see [`Compiled::write_record`]).
#[derive(Debug, Clone, PartialEq)]
struct RecordShape {
    /// `,"key":` of each envelope field, and its slot.
    envelope: Vec<(Vec<u8>, usize)>,
    /// `"name":` of each column (a comma before all but the first), and its expression.
    columns: Vec<(Vec<u8>, CExpr)>,
}

/// Appends `text` as a JSON string.
fn write_json_text(text: &[u8], out: &mut Vec<u8>) {
    let text = String::from_utf8_lossy(text);
    // Writing a string into a vector cannot fail.
    let _ = serde_json::to_writer(&mut *out, text.as_ref());
}

/// Appends one scanned value as JSON, as it was written in the event: text stays text (escapes
/// and all), numbers keep their digits, objects and arrays are copied whole.
fn write_slot(bytes: &[u8], slot: &Slot, out: &mut Vec<u8>) {
    let text = slot.text(bytes);
    match slot.kind {
        Kind::String | Kind::EscapedString => {
            out.push(b'"');
            out.extend_from_slice(text);
            out.push(b'"');
        }
        Kind::True | Kind::False | Kind::Number => out.extend_from_slice(text),
        // An object whose own fields were scanned has no span of its own.
        Kind::Composite if !text.is_empty() => out.extend_from_slice(text),
        Kind::Composite | Kind::Missing | Kind::Null => out.extend_from_slice(b"null"),
    }
}

/// Appends a computed value as JSON.
fn write_value(value: &Value<'_>, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => {
            use std::io::Write;
            // Writing into a vector cannot fail.
            let _ = write!(out, "{number}");
        }
        Value::Str(text) => write_json_text(text, out),
    }
}

impl Compiled {
    /// Compiles `plan`; `slot_of` gives each field's slot in the processor's field set.
    pub fn new(plan: &MetricPlan, slot_of: impl Fn(&Field) -> usize) -> Compiled {
        let args = plan
            .aggregates
            .iter()
            .map(|aggregate| {
                let usage = match aggregate.kind {
                    AggregateKind::CountStar => ArgUse::Star,
                    AggregateKind::Count => ArgUse::Present,
                    AggregateKind::CountDistinct => ArgUse::Hash,
                    AggregateKind::First | AggregateKind::Last => ArgUse::Json,
                    _ => ArgUse::Number,
                };
                (
                    usage,
                    aggregate.arg.as_ref().map(|arg| compile(arg, &slot_of)),
                    aggregate.filter.as_ref().map(|f| compile(f, &slot_of)),
                )
            })
            .collect::<Vec<Arg>>();
        let same_as = (0..args.len())
            .map(|i| (0..i).find(|&j| args[j] == args[i]))
            .collect();
        let record = plan.records().map(|columns| {
            let key = |name: &str, comma: bool| {
                let mut key = Vec::with_capacity(name.len() + 4);
                if comma {
                    key.push(b',');
                }
                write_json_text(name.as_bytes(), &mut key);
                key.push(b':');
                key
            };
            RecordShape {
                envelope: ENVELOPE
                    .iter()
                    .map(|field| (key(&field.to_string(), true), slot_of(field)))
                    .collect(),
                columns: columns
                    .iter()
                    .enumerate()
                    .map(|(index, column)| {
                        (
                            key(&column.name, index > 0),
                            compile(&column.expr, &slot_of),
                        )
                    })
                    .collect(),
            }
        });
        Compiled {
            same_as,
            record,
            filter: plan.filter.as_ref().map(|f| compile(f, &slot_of)),
            keys: plan.keys.iter().map(|k| compile(k, &slot_of)).collect(),
            args,
        }
    }

    /// Whether the event passes `WHERE`.
    #[inline]
    pub fn matches(&self, bytes: &[u8], slots: &[Slot]) -> bool {
        match &self.filter {
            None => true,
            Some(filter) => filter.eval(bytes, slots) == Value::Bool(true),
        }
    }

    /// Appends a derived stream's record for this event to `out` (nothing for a metric):
    /// `tenant` and `timestamp` (slots `tenant` and `time`), the envelope fields the event has
    /// ([`ENVELOPE`]: `message_id`, `type`, `event`, `name`, `user_id`, `anonymous_id`,
    /// `received_at`), all as written in it, then `properties` holding the columns: a column
    /// that is a field keeps the value as written (objects and arrays included); a computed
    /// one is written from its value; a missing one is `null`.
    pub fn write_record(
        &self,
        bytes: &[u8],
        slots: &[Slot],
        tenant: usize,
        time: usize,
        out: &mut Vec<u8>,
    ) {
        let Some(shape) = &self.record else {
            return;
        };
        out.extend_from_slice(b"{\"tenant\":");
        write_slot(bytes, &slots[tenant], out);
        out.extend_from_slice(b",\"timestamp\":");
        write_slot(bytes, &slots[time], out);
        for (key, slot) in &shape.envelope {
            let slot = &slots[*slot];
            if !matches!(slot.kind, Kind::Missing | Kind::Null) {
                out.extend_from_slice(key);
                write_slot(bytes, slot, out);
            }
        }
        out.extend_from_slice(b",\"properties\":{");
        for (key, expr) in &shape.columns {
            out.extend_from_slice(key);
            match expr {
                CExpr::Slot(slot) => write_slot(bytes, &slots[*slot], out),
                other => write_value(&other.eval(bytes, slots), out),
            }
        }
        out.extend_from_slice(b"}}");
    }

    /// Appends the encoded group key values (after the tenant) to `out`.
    #[inline]
    pub fn encode_key(&self, bytes: &[u8], slots: &[Slot], out: &mut Vec<u8>) {
        for key in &self.keys {
            keys::encode_value(&key.eval(bytes, slots), out);
        }
    }

    /// The aggregates' inputs from this event (of event time `time`), into `out`; whether
    /// any is [`Input::OutOfRange`] (so the caller counts them only then). An aggregate
    /// whose `FILTER` is not TRUE gets [`Input::Null`].
    #[inline]
    pub fn inputs(&self, bytes: &[u8], slots: &[Slot], time: i64, out: &mut Vec<Input>) -> bool {
        out.clear();
        let mut out_of_range = false;
        for (index, (usage, arg, filter)) in self.args.iter().enumerate() {
            if let Some(earlier) = self.same_as[index] {
                out.push(out[earlier]);
                continue;
            }
            if let Some(filter) = filter
                && filter.eval(bytes, slots) != Value::Bool(true)
            {
                out.push(Input::Null);
                continue;
            }
            if let (ArgUse::Json, Some(CExpr::Slot(slot))) = (usage, arg) {
                let slot = &slots[*slot];
                out.push(match slot.kind {
                    Kind::Missing | Kind::Null => Input::Null,
                    // An object whose own fields were scanned has no span of its own.
                    Kind::Composite if slot.start == slot.end => Input::Null,
                    kind => Input::Json {
                        time,
                        start: slot.start,
                        end: slot.end,
                        quoted: matches!(kind, Kind::String | Kind::EscapedString),
                    },
                });
                continue;
            }
            let value = arg.as_ref().map(|arg| arg.eval(bytes, slots));
            let input = match (usage, value) {
                (ArgUse::Star, _) => Input::Present,
                // First and last values take fields only (what sessions give them).
                (ArgUse::Json, _) => Input::Null,
                (_, None) => Input::Null,
                (_, Some(Value::Null)) => match arg {
                    // NULL from a JSON number: one out of the decimal range.
                    Some(CExpr::Slot(slot)) if slots[*slot].kind == Kind::Number => match usage {
                        ArgUse::Present => Input::Present,
                        _ => Input::OutOfRange,
                    },
                    _ => Input::Null,
                },
                (ArgUse::Present, Some(_)) => Input::Present,
                (ArgUse::Number, Some(value)) => match value.as_number() {
                    Some(number) => Input::Number(number),
                    None => match &value {
                        Value::Str(text) if is_number_text(text.trim_ascii()) => Input::OutOfRange,
                        _ => Input::Null,
                    },
                },
                (ArgUse::Hash, Some(value)) => {
                    distinct_hash(&value).map_or(Input::Null, Input::Hash)
                }
            };
            out_of_range |= input == Input::OutOfRange;
            out.push(input);
        }
        out_of_range
    }
}

#[cfg(test)]
mod tests;
