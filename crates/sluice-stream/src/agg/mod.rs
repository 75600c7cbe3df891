//! Mergeable partial aggregate states: what one window of one group key holds.
//!
//! Every state merges associatively and commutatively, and the exact ones (count, sum, min,
//! max, avg) merge exactly: partials computed per partition and merged at query time equal
//! the state computed over the whole stream, bit for bit (the decimal sum is canonical; the
//! sketches are functions of the set/multiset of inputs, see [`hll`] and [`ddsketch`]).
//!
//! # Encoding (format version 1)
//! A [`PartialState`] encodes as: one version byte (`1`), the number of states (LEB128),
//! each state as a kind tag byte and its payload, then a CRC-32C (little-endian) of all the
//! preceding bytes. Integers are LEB128 varints, signed ones zigzag-encoded.
//!
//! | tag | state | payload |
//! |---|---|---|
//! | 1 | count | count |
//! | 2 | sum | flags (bit 0: has a value, bit 1: overflowed); if a value: scale byte, mantissa |
//! | 3 / 4 | min / max | 0, or 1 then scale byte and mantissa |
//! | 5 | avg | a sum payload, then the count |
//! | 6 | HyperLogLog | 0 + n + delta-coded sorted hashes, or 1 + precision (12) + 4096 registers |
//! | 7 | DDSketch | mapping (1: logarithmic, α = 1 %), zero count, positive then negative store as bin count, offset, counts |
//! | 8 / 9 | first / last value | 0, or 1 then the event time (zigzag) and the value's JSON text (length, bytes) |
//!
//! Decoding rejects a bad checksum, an unknown version or tag, truncation, trailing bytes and
//! impossible values, with a message saying which.

pub(crate) mod codec;
pub mod ddsketch;
pub mod hll;

use crate::decimal::Decimal;
use crate::error::StreamError;
use crate::plan::AggregateKind;
use codec::{MAX_U64_BYTES, Reader, WRITE_SLACK, Writer};
use ddsketch::DdSketch;
use hll::Hll;
use sluice_core::time::Millis;
use std::fmt;

/// The encoding's format version.
pub const FORMAT_VERSION: u8 = 1;

/// The most states one partial may hold (aggregates per metric).
pub const MAX_AGGREGATES: usize = 64;

/// One aggregate's input from one event, already typed for the aggregate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Input {
    /// The argument is NULL (or not of the aggregate's type): ignored, as in SQL.
    Null,
    /// A number outside the exact decimal range (`9.99e300`): not aggregated, and counted by
    /// the engine (`sluice_stream_values_out_of_range_total`) so it is never silently lost.
    OutOfRange,
    /// `COUNT(*)`, or `COUNT(x)` with `x` not NULL.
    Present,
    /// A number, for sum, min, max, avg and percentiles.
    Number(Decimal),
    /// A value's XXH3 hash, for distinct counts.
    Hash(u64),
    /// A value as the event wrote it, for first and last values: its text is
    /// `bytes[start..end]` of the event the input was taken from (a string's text without
    /// its quotes, when `quoted`).
    Json {
        /// The event's time.
        time: Millis,
        /// Where the text starts in the event.
        start: u32,
        /// Where it ends.
        end: u32,
        /// Whether the value is a string (its quotes are not in the span).
        quoted: bool,
    },
}

/// The most bytes of a value a first or last value keeps: a longer one is cut at this
/// length (at a character boundary for strings, and closed as a string), so a state stays
/// small whatever events hold.
pub const MAX_VALUE_BYTES: usize = 1024;

/// A first or last value: the JSON text of the value and the time of its event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamped {
    /// The event time.
    pub time: Millis,
    /// The value as JSON, as the event wrote it (strings with their quotes).
    pub json: Vec<u8>,
}

impl Stamped {
    /// Orders `(time, json)` against a candidate without building its JSON.
    fn cmp_candidate(&self, time: Millis, raw: &[u8], quoted: bool) -> std::cmp::Ordering {
        let quote: &[u8] = if quoted { b"\"" } else { b"" };
        self.time
            .cmp(&time)
            .then_with(|| self.json.iter().cmp(quote.iter().chain(raw).chain(quote)))
    }

    /// Replaces the value with a candidate's, reusing the memory.
    fn set(&mut self, time: Millis, raw: &[u8], quoted: bool) {
        self.time = time;
        self.json.clear();
        write_bounded(raw, quoted, &mut self.json);
    }

    /// A value given as JSON text, bounded like the aggregates' values (a string longer
    /// than [`MAX_VALUE_BYTES`] is cut, a longer object or array becomes `null`).
    pub fn bounded(time: Millis, json: &[u8]) -> Stamped {
        match json {
            [b'"', inner @ .., b'"'] => Stamped::from_candidate(time, inner, true),
            other => Stamped::from_candidate(time, other, false),
        }
    }

    fn from_candidate(time: Millis, raw: &[u8], quoted: bool) -> Stamped {
        let mut stamped = Stamped {
            time,
            json: Vec::with_capacity(raw.len() + 2),
        };
        stamped.set(time, raw, quoted);
        stamped
    }
}

/// Appends a value's JSON, at most [`MAX_VALUE_BYTES`] of its text. A cut string ends at a
/// UTF-8 boundary outside any escape; a cut non-string (an object or array) becomes `null`,
/// since half of one is no JSON.
fn write_bounded(raw: &[u8], quoted: bool, out: &mut Vec<u8>) {
    if raw.len() <= MAX_VALUE_BYTES {
        if quoted {
            out.push(b'"');
        }
        out.extend_from_slice(raw);
        if quoted {
            out.push(b'"');
        }
        return;
    }
    if !quoted {
        out.extend_from_slice(b"null");
        return;
    }
    // Whole characters and whole escapes only (a surrogate pair's two escapes together).
    let (mut at, mut cut) = (0, 0);
    while at < raw.len() {
        let step = match raw[at] {
            b'\\' if raw.get(at + 1) == Some(&b'u') => {
                let high = raw.get(at + 2..at + 4).is_some_and(|hex| {
                    matches!(hex, [b'd' | b'D', b'8'..=b'9' | b'a'..=b'b' | b'A'..=b'B'])
                });
                if high { 12 } else { 6 }
            }
            b'\\' => 2,
            byte if byte < 0x80 => 1,
            byte if byte >= 0xF0 => 4,
            byte if byte >= 0xE0 => 3,
            _ => 2,
        };
        if at + step > MAX_VALUE_BYTES {
            break;
        }
        at += step;
        cut = at;
    }
    out.push(b'"');
    out.extend_from_slice(&raw[..cut]);
    out.push(b'"');
}

/// An exact sum: NULL until the first number; an overflow (beyond `i128` at the sum's
/// scale) is sticky and finalizes as [`OutputValue::Overflow`], also once merged with other
/// partials (the encoding has kept the flag since version 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sum {
    value: Option<Decimal>,
    overflowed: bool,
}

impl Sum {
    fn add(&mut self, number: Decimal) {
        if self.overflowed {
            return;
        }
        match self.value {
            None => self.value = Some(number),
            Some(sum) => match sum.checked_add(number) {
                Some(total) => self.value = Some(total),
                None => {
                    self.value = None;
                    self.overflowed = true;
                }
            },
        }
    }

    fn merge(&mut self, other: &Sum) {
        if other.overflowed {
            *self = *other;
        } else if let Some(value) = other.value {
            self.add(value);
        }
    }

    /// The sum, unless nothing was added or it overflowed.
    pub fn value(&self) -> Option<Decimal> {
        self.value
    }

    /// Whether the sum left the representable range.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    fn encode(&self, out: &mut Writer) {
        out.u8(u8::from(self.value.is_some()) | (u8::from(self.overflowed) << 1));
        if let Some(value) = self.value {
            encode_decimal(value, out);
        }
    }

    fn decode(input: &mut Reader<'_>) -> Result<Sum, String> {
        let flags = input.u8("sum flags")?;
        if flags > 2 {
            return Err(format!("sum flags {flags} are invalid"));
        }
        let value = (flags & 1 == 1)
            .then(|| decode_decimal(input))
            .transpose()?;
        Ok(Sum {
            value,
            overflowed: flags & 2 == 2,
        })
    }
}

fn encode_decimal(value: Decimal, out: &mut Writer) {
    out.u8(value.scale());
    out.i128(value.mantissa());
}

fn decode_decimal(input: &mut Reader<'_>) -> Result<Decimal, String> {
    let scale = input.u8("decimal scale")?;
    let mantissa = input.i128("decimal mantissa")?;
    Decimal::new(mantissa, scale).ok_or_else(|| format!("decimal scale {scale} is too large"))
}

/// The partial state of one aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum AggState {
    /// `COUNT(*)` and `COUNT(x)`.
    Count(u64),
    /// `SUM(x)`.
    Sum(Sum),
    /// `MIN(x)`.
    Min(Option<Decimal>),
    /// `MAX(x)`.
    Max(Option<Decimal>),
    /// `AVG(x)`: exact sum and count of the numbers.
    Avg {
        /// Sum of the numbers.
        sum: Sum,
        /// How many numbers.
        count: u64,
    },
    /// `COUNT(DISTINCT x)`.
    Distinct(Hll),
    /// `APPROX_PERCENTILE(x, q)`.
    Percentile(DdSketch),
    /// The first value by event time.
    First(Option<Stamped>),
    /// The last value by event time.
    Last(Option<Stamped>),
}

impl AggState {
    /// The empty state for `kind`.
    pub fn new(kind: &AggregateKind) -> AggState {
        match kind {
            AggregateKind::CountStar | AggregateKind::Count => AggState::Count(0),
            AggregateKind::CountDistinct => AggState::Distinct(Hll::default()),
            AggregateKind::Sum => AggState::Sum(Sum::default()),
            AggregateKind::Min => AggState::Min(None),
            AggregateKind::Max => AggState::Max(None),
            AggregateKind::Avg => AggState::Avg {
                sum: Sum::default(),
                count: 0,
            },
            AggregateKind::ApproxPercentile { .. } => AggState::Percentile(DdSketch::default()),
            AggregateKind::First => AggState::First(None),
            AggregateKind::Last => AggState::Last(None),
        }
    }

    /// Folds one event's input in; `event` is the event the input was taken from (only
    /// [`Input::Json`] reads it).
    #[inline]
    pub fn update_from(&mut self, input: Input, event: &[u8]) {
        if let Input::Json {
            time,
            start,
            end,
            quoted,
        } = input
        {
            let raw = event.get(start as usize..end as usize).unwrap_or_default();
            let wanted = match self {
                AggState::First(_) => std::cmp::Ordering::Greater,
                AggState::Last(_) => std::cmp::Ordering::Less,
                _ => return,
            };
            let (AggState::First(value) | AggState::Last(value)) = self else {
                return;
            };
            match value {
                None => *value = Some(Stamped::from_candidate(time, raw, quoted)),
                Some(current) if current.cmp_candidate(time, raw, quoted) == wanted => {
                    current.set(time, raw, quoted)
                }
                Some(_) => {}
            }
            return;
        }
        self.update(input);
    }

    /// Folds one event's input in (any but [`Input::Json`], which needs the event: see
    /// [`AggState::update_from`]).
    #[inline]
    pub fn update(&mut self, input: Input) {
        match (self, input) {
            (_, Input::Null | Input::OutOfRange) => {}
            (AggState::Count(count), Input::Present) => *count += 1,
            (AggState::Sum(sum), Input::Number(n)) => sum.add(n),
            (AggState::Min(min), Input::Number(n)) if min.is_none_or(|current| n < current) => {
                *min = Some(n)
            }
            (AggState::Max(max), Input::Number(n)) if max.is_none_or(|current| n > current) => {
                *max = Some(n)
            }
            (AggState::Avg { sum, count }, Input::Number(n)) => {
                sum.add(n);
                *count += 1;
            }
            (AggState::Distinct(hll), Input::Hash(hash)) => hll.insert(hash),
            (AggState::Percentile(sketch), Input::Number(n)) => sketch.insert(n.to_f64()),
            // The evaluator produces the input each aggregate takes; other pairs cannot occur.
            _ => {}
        }
    }

    /// Folds another partial of the same aggregate in.
    pub fn merge(&mut self, other: &AggState) -> Result<(), StreamError> {
        match (self, other) {
            (AggState::Count(a), AggState::Count(b)) => *a += b,
            (AggState::Sum(a), AggState::Sum(b)) => a.merge(b),
            (AggState::Min(a), AggState::Min(b)) => {
                if let Some(b) = b
                    && a.is_none_or(|a| *b < a)
                {
                    *a = Some(*b);
                }
            }
            (AggState::Max(a), AggState::Max(b)) => {
                if let Some(b) = b
                    && a.is_none_or(|a| *b > a)
                {
                    *a = Some(*b);
                }
            }
            (
                AggState::Avg { sum, count },
                AggState::Avg {
                    sum: other_sum,
                    count: other_count,
                },
            ) => {
                sum.merge(other_sum);
                *count += other_count;
            }
            (AggState::Distinct(a), AggState::Distinct(b)) => a.merge(b),
            (AggState::Percentile(a), AggState::Percentile(b)) => a.merge(b),
            (AggState::First(a), AggState::First(b)) => {
                if let Some(b) = b
                    && a.as_ref().is_none_or(|a| b < a)
                {
                    *a = Some(b.clone());
                }
            }
            (AggState::Last(a), AggState::Last(b)) => {
                if let Some(b) = b
                    && a.as_ref().is_none_or(|a| b > a)
                {
                    *a = Some(b.clone());
                }
            }
            (mine, theirs) => {
                return Err(StreamError::Decode(format!(
                    "cannot merge a {} state into a {} state",
                    theirs.name(),
                    mine.name()
                )));
            }
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        match self {
            AggState::Count(_) => "count",
            AggState::Sum(_) => "sum",
            AggState::Min(_) => "min",
            AggState::Max(_) => "max",
            AggState::Avg { .. } => "avg",
            AggState::Distinct(_) => "distinct-count",
            AggState::Percentile(_) => "percentile",
            AggState::First(_) => "first",
            AggState::Last(_) => "last",
        }
    }

    /// A first or last value's JSON text (`None` for other states, or without a value).
    pub fn json(&self) -> Option<&[u8]> {
        match self {
            AggState::First(value) | AggState::Last(value) => {
                value.as_ref().map(|value| value.json.as_slice())
            }
            _ => None,
        }
    }

    /// The aggregate's value.
    pub fn finalize(&self, kind: &AggregateKind) -> OutputValue {
        match (self, kind) {
            (AggState::Count(count), _) => OutputValue::Count(*count),
            (AggState::Sum(sum), _) if sum.overflowed() => OutputValue::Overflow,
            (AggState::Sum(sum), _) => sum.value().map_or(OutputValue::Null, OutputValue::Decimal),
            (AggState::Min(value) | AggState::Max(value), _) => {
                value.map_or(OutputValue::Null, OutputValue::Decimal)
            }
            (AggState::Avg { sum, .. }, _) if sum.overflowed() => OutputValue::Overflow,
            (AggState::Avg { sum, count }, _) => sum
                .value()
                .and_then(|sum| sum.div_count(*count))
                .map_or(OutputValue::Null, OutputValue::Decimal),
            (AggState::Distinct(hll), _) => OutputValue::Count(hll.estimate().round() as u64),
            (AggState::Percentile(sketch), AggregateKind::ApproxPercentile { quantile }) => sketch
                .quantile(*quantile)
                .map_or(OutputValue::Null, OutputValue::Float),
            (AggState::Percentile(_), _) => OutputValue::Null,
            // Text, not a number: sessions write it into their records (see `json`).
            (AggState::First(_) | AggState::Last(_), _) => OutputValue::Null,
        }
    }

    fn tag(&self) -> u8 {
        match self {
            AggState::Count(_) => 1,
            AggState::Sum(_) => 2,
            AggState::Min(_) => 3,
            AggState::Max(_) => 4,
            AggState::Avg { .. } => 5,
            AggState::Distinct(_) => 6,
            AggState::Percentile(_) => 7,
            AggState::First(_) => 8,
            AggState::Last(_) => 9,
        }
    }

    /// At least the bytes [`AggState::encode`] appends: a tag, then at most one decimal
    /// (a scale byte and a 128-bit varint of up to 19 bytes) and one count, or a sketch.
    fn encoded_len_bound(&self) -> usize {
        const DECIMAL: usize = 2 + 19;
        1 + match self {
            AggState::Count(_) => MAX_U64_BYTES,
            AggState::Sum(_) | AggState::Min(_) | AggState::Max(_) => DECIMAL,
            AggState::Avg { .. } => DECIMAL + MAX_U64_BYTES,
            AggState::Distinct(hll) => hll.encoded_len_bound(),
            AggState::Percentile(sketch) => sketch.encoded_len_bound(),
            AggState::First(value) | AggState::Last(value) => {
                1 + MAX_U64_BYTES * 2 + value.as_ref().map_or(0, |v| v.json.len())
            }
        }
    }

    fn encode(&self, out: &mut Writer) {
        out.u8(self.tag());
        match self {
            AggState::Count(count) => out.u64(*count),
            AggState::Sum(sum) => sum.encode(out),
            AggState::Min(value) | AggState::Max(value) => match value {
                None => out.u8(0),
                Some(value) => {
                    out.u8(1);
                    encode_decimal(*value, out);
                }
            },
            AggState::Avg { sum, count } => {
                sum.encode(out);
                out.u64(*count);
            }
            AggState::Distinct(hll) => hll.encode(out),
            AggState::Percentile(sketch) => sketch.encode(out),
            AggState::First(value) | AggState::Last(value) => match value {
                None => out.u8(0),
                Some(value) => {
                    out.u8(1);
                    out.i64(value.time);
                    out.u64(value.json.len() as u64);
                    out.raw(&value.json);
                }
            },
        }
    }

    fn decode(input: &mut Reader<'_>) -> Result<AggState, String> {
        let stamped = |input: &mut Reader<'_>| -> Result<Option<Stamped>, String> {
            match input.u8("value presence")? {
                0 => Ok(None),
                1 => {
                    let time = input.i64("value time")?;
                    let len = input.usize_at_most(MAX_VALUE_BYTES + 2, "value length")?;
                    let json = input.raw(len, "value")?.to_vec();
                    Ok(Some(Stamped { time, json }))
                }
                other => Err(format!("value presence byte {other} is invalid")),
            }
        };
        let optional = |input: &mut Reader<'_>| -> Result<Option<Decimal>, String> {
            match input.u8("min/max presence")? {
                0 => Ok(None),
                1 => decode_decimal(input).map(Some),
                other => Err(format!("min/max presence byte {other} is invalid")),
            }
        };
        Ok(match input.u8("state tag")? {
            1 => AggState::Count(input.u64("count")?),
            2 => AggState::Sum(Sum::decode(input)?),
            3 => AggState::Min(optional(input)?),
            4 => AggState::Max(optional(input)?),
            5 => AggState::Avg {
                sum: Sum::decode(input)?,
                count: input.u64("avg count")?,
            },
            6 => AggState::Distinct(Hll::decode(input)?),
            7 => AggState::Percentile(DdSketch::decode(input)?),
            8 => AggState::First(stamped(input)?),
            9 => AggState::Last(stamped(input)?),
            tag => return Err(format!("unknown state tag {tag}")),
        })
    }

    /// Whether this state is the one `kind` uses.
    pub fn fits(&self, kind: &AggregateKind) -> bool {
        self.tag() == AggState::new(kind).tag()
    }
}

/// All aggregate states of one (metric, tenant, group key, window, partition).
#[derive(Debug, Clone, PartialEq)]
pub struct PartialState {
    /// One state per aggregate of the metric, in plan order.
    pub states: Vec<AggState>,
}

impl PartialState {
    /// The empty partial for aggregates of `kinds`.
    pub fn new<'a>(kinds: impl IntoIterator<Item = &'a AggregateKind>) -> PartialState {
        PartialState {
            states: kinds.into_iter().map(AggState::new).collect(),
        }
    }

    /// Folds another partial of the same metric in.
    pub fn merge(&mut self, other: &PartialState) -> Result<(), StreamError> {
        if self.states.len() != other.states.len() {
            return Err(StreamError::Decode(format!(
                "cannot merge a partial of {} aggregates into one of {}",
                other.states.len(),
                self.states.len()
            )));
        }
        for (mine, theirs) in self.states.iter_mut().zip(&other.states) {
            mine.merge(theirs)?;
        }
        Ok(())
    }

    /// The aggregates' values.
    pub fn finalize<'a>(
        &self,
        kinds: impl IntoIterator<Item = &'a AggregateKind>,
    ) -> Vec<OutputValue> {
        self.states
            .iter()
            .zip(kinds)
            .map(|(state, kind)| state.finalize(kind))
            .collect()
    }

    /// The versioned, checksummed encoding (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.encode_into(&mut bytes);
        bytes
    }

    /// [`PartialState::encode`] into `bytes` (cleared first), reusing its memory: grown at
    /// most once, by the computed bound, never step by step.
    pub fn encode_into(&self, bytes: &mut Vec<u8>) {
        bytes.clear();
        self.encode_append(bytes);
    }

    /// [`PartialState::encode`] appended to `bytes`, which grows at most once (room for the
    /// computed bound past its end is reserved first): many states encode into one buffer
    /// without an allocation each.
    pub fn encode_append(&self, bytes: &mut Vec<u8>) {
        let start = bytes.len();
        bytes.reserve(self.encoded_len_bound());
        let mut out = Writer {
            bytes: std::mem::take(bytes),
        };
        out.u8(FORMAT_VERSION);
        out.u64(self.states.len() as u64);
        for state in &self.states {
            state.encode(&mut out);
        }
        let checksum = crc32c::crc32c(&out.bytes[start..]);
        out.raw(&checksum.to_le_bytes());
        *bytes = out.bytes;
    }

    /// At least the bytes [`PartialState::encode`] returns: the version, the state count,
    /// the states and the checksum, and the writer's momentary slack.
    pub(crate) fn encoded_len_bound(&self) -> usize {
        1 + MAX_U64_BYTES
            + WRITE_SLACK
            + self
                .states
                .iter()
                .map(AggState::encoded_len_bound)
                .sum::<usize>()
            + 4
    }

    /// Decodes a partial, checking that it holds the states `kinds` use (when given).
    pub fn decode(
        bytes: &[u8],
        kinds: Option<&[AggregateKind]>,
    ) -> Result<PartialState, StreamError> {
        Self::decode_inner(bytes, kinds).map_err(StreamError::Decode)
    }

    fn decode_inner(bytes: &[u8], kinds: Option<&[AggregateKind]>) -> Result<PartialState, String> {
        if bytes.len() < 5 {
            return Err(format!(
                "{} bytes are too few for a partial state",
                bytes.len()
            ));
        }
        let (body, checksum) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes([checksum[0], checksum[1], checksum[2], checksum[3]]);
        let actual = crc32c::crc32c(body);
        if stored != actual {
            return Err(format!(
                "checksum mismatch (stored {stored:08x}, computed {actual:08x})"
            ));
        }
        let mut input = Reader::new(body);
        let version = input.u8("format version")?;
        if version != FORMAT_VERSION {
            return Err(format!(
                "format version {version} is not supported (this sluice reads version {FORMAT_VERSION})"
            ));
        }
        let len = input.usize_at_most(MAX_AGGREGATES, "number of states")?;
        let states = (0..len)
            .map(|_| AggState::decode(&mut input))
            .collect::<Result<Vec<_>, _>>()?;
        if !input.is_empty() {
            return Err("trailing bytes after the last state".into());
        }
        if let Some(kinds) = kinds {
            let fits = kinds.len() == states.len()
                && states
                    .iter()
                    .zip(kinds)
                    .all(|(state, kind)| state.fits(kind));
            if !fits {
                return Err(format!(
                    "the states ({}) do not match the metric's aggregates",
                    states
                        .iter()
                        .map(AggState::name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Ok(PartialState { states })
    }
}

/// A finalized aggregate value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OutputValue {
    /// No input (SUM, MIN, MAX, AVG of nothing).
    Null,
    /// A SUM, or the sum of an AVG, that left the exact decimal range (beyond about
    /// `1.7e38 / 10^scale`): rendered as `"overflow"`, never as a wrong number or a NULL.
    Overflow,
    /// Counts and distinct-count estimates.
    Count(u64),
    /// Exact numbers: sums, minimums, maximums, averages.
    Decimal(Decimal),
    /// Percentile estimates.
    Float(f64),
}

impl fmt::Display for OutputValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputValue::Null => f.write_str("NULL"),
            OutputValue::Overflow => f.write_str("overflow"),
            OutputValue::Count(count) => write!(f, "{count}"),
            OutputValue::Decimal(value) => write!(f, "{value}"),
            OutputValue::Float(value) => write!(f, "{value}"),
        }
    }
}

#[cfg(test)]
mod tests;
