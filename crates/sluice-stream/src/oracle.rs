//! A brute-force reference evaluator of a metric over a whole stream, sharing nothing with the
//! engine but the typed plan. It is slow on purpose and exists to check the engine: the
//! property tests compare them on random streams, and the end-to-end crash tests compare the
//! store's results after many kills with it. Rules: events are parsed into `serde_json::Value` trees, expressions are
//! interpreted from scratch, numbers are exact micro-units (`i128` × 10⁻⁶), windows are found
//! by enumeration, sessions are rebuilt from their events, the watermark is recomputed per
//! event, and every aggregate is computed from the full list of its inputs.

use crate::agg::OutputValue;
use crate::plan::{AggregateKind, CompareOp, Expr, Literal, MetricPlan, WindowSpec};
use serde_json::Value as Json;
use sluice_log::StoredRecord;
use std::collections::{BTreeMap, BTreeSet};

/// A value under the dialect's typing rules.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Typed {
    Null,
    Bool(bool),
    /// Micro-units.
    Num(i128),
    Str(String),
}

/// Parses decimal text with at most 6 fractional digits into micro-units.
pub fn micros(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty()
        || frac.len() > 6
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    if digits.contains('.') && frac.is_empty() {
        return None;
    }
    let value =
        int.parse::<i128>().ok()? * 1_000_000 + format!("{frac:0<6}").parse::<i128>().ok()?;
    Some(if negative { -value } else { value })
}

fn from_json(json: Option<&Json>) -> Typed {
    match json {
        None | Some(Json::Null | Json::Array(_) | Json::Object(_)) => Typed::Null,
        Some(Json::Bool(b)) => Typed::Bool(*b),
        Some(Json::Number(n)) => micros(&n.to_string()).map_or(Typed::Null, Typed::Num),
        Some(Json::String(s)) => Typed::Str(s.clone()),
    }
}

fn literal(literal: &Literal) -> Typed {
    match literal {
        Literal::Null => Typed::Null,
        Literal::Bool(b) => Typed::Bool(*b),
        Literal::Number(n) => micros(&n.to_string()).map_or(Typed::Null, Typed::Num),
        Literal::String(s) => Typed::Str(s.clone()),
    }
}

fn number(v: &Typed) -> Option<i128> {
    match v {
        Typed::Num(n) => Some(*n),
        Typed::Str(s) => micros(s.trim()),
        _ => None,
    }
}

fn text(v: &Typed) -> Option<String> {
    match v {
        Typed::Null => None,
        Typed::Bool(b) => Some(b.to_string()),
        Typed::Str(s) => Some(s.clone()),
        Typed::Num(n) => {
            let mut s = format!(
                "{}{}.{:06}",
                if *n < 0 { "-" } else { "" },
                n.abs() / 1_000_000,
                n.abs() % 1_000_000
            );
            while s.ends_with('0') {
                s.pop();
            }
            if s.ends_with('.') {
                s.pop();
            }
            Some(s)
        }
    }
}

fn cmp(a: &Typed, b: &Typed) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Typed::Str(x), Typed::Str(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Typed::Bool(x), Typed::Bool(y)) => Some(x.cmp(y)),
        (Typed::Num(x), other) => number(other).map(|y| x.cmp(&y)),
        (other, Typed::Num(y)) => number(other).map(|x| x.cmp(y)),
        _ => None,
    }
}

fn like(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('%', rest)) => (0..=text.len()).any(|i| like(rest, &text[i..])),
        Some(('_', rest)) => !text.is_empty() && like(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && like(rest, &text[1..]),
    }
}

fn boolean(v: Option<bool>) -> Typed {
    v.map_or(Typed::Null, Typed::Bool)
}

pub fn eval(expr: &Expr, event: &Json) -> Typed {
    match expr {
        Expr::Field(field) => {
            let path = field.json_path();
            from_json(path.iter().try_fold(event, |v, key| v.get(key)))
        }
        Expr::Literal(l) => literal(l),
        Expr::Lower(e) => {
            text(&eval(e, event)).map_or(Typed::Null, |s| Typed::Str(s.to_lowercase()))
        }
        Expr::Upper(e) => {
            text(&eval(e, event)).map_or(Typed::Null, |s| Typed::Str(s.to_uppercase()))
        }
        Expr::Coalesce(args) => args
            .iter()
            .map(|a| eval(a, event))
            .find(|v| *v != Typed::Null)
            .unwrap_or(Typed::Null),
        Expr::Compare { op, left, right } => {
            let ordering = cmp(&eval(left, event), &eval(right, event));
            boolean(ordering.map(|o| match op {
                CompareOp::Eq => o.is_eq(),
                CompareOp::NotEq => o.is_ne(),
                CompareOp::Lt => o.is_lt(),
                CompareOp::LtEq => o.is_le(),
                CompareOp::Gt => o.is_gt(),
                CompareOp::GtEq => o.is_ge(),
            }))
        }
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            let v = eval(expr, event);
            if v == Typed::Null {
                return Typed::Null;
            }
            if list
                .iter()
                .any(|l| cmp(&v, &literal(l)).is_some_and(|o| o.is_eq()))
            {
                Typed::Bool(!negated)
            } else if list.contains(&Literal::Null) {
                Typed::Null
            } else {
                Typed::Bool(*negated)
            }
        }
        Expr::Like {
            expr,
            pattern,
            negated,
        } => match eval(expr, event) {
            Typed::Null | Typed::Bool(_) => Typed::Null,
            v => {
                let t: Vec<char> = text(&v).unwrap_or_default().chars().collect();
                let p: Vec<char> = pattern.chars().collect();
                Typed::Bool(like(&p, &t) != *negated)
            }
        },
        Expr::IsNull { expr, negated } => {
            Typed::Bool((eval(expr, event) == Typed::Null) != *negated)
        }
        Expr::And(a, b) => match (eval(a, event), eval(b, event)) {
            (Typed::Bool(false), _) | (_, Typed::Bool(false)) => Typed::Bool(false),
            (Typed::Bool(true), Typed::Bool(true)) => Typed::Bool(true),
            _ => Typed::Null,
        },
        Expr::Or(a, b) => match (eval(a, event), eval(b, event)) {
            (Typed::Bool(true), _) | (_, Typed::Bool(true)) => Typed::Bool(true),
            (Typed::Bool(false), Typed::Bool(false)) => Typed::Bool(false),
            _ => Typed::Null,
        },
        Expr::Not(e) => match eval(e, event) {
            Typed::Bool(b) => Typed::Bool(!b),
            _ => Typed::Null,
        },
    }
}

/// What the oracle expects of one aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    Count(u64),
    /// Sum of micro-units, `None` without numbers.
    Sum(Option<i128>),
    Min(Option<i128>),
    Max(Option<i128>),
    /// Exact sum (micro-units) and count.
    Avg(i128, u64),
    Distinct(u64),
    /// The exact value at the quantile's rank (micro-units), `None` without numbers.
    Percentile(Option<i128>),
    /// A first or last value's text (`None` without one).
    Value(Option<String>),
}

/// The key as the engine prints it: tenant, then each value.
fn key_text(tenant: &str, values: &[Typed]) -> String {
    let mut out = tenant.to_owned();
    for value in values {
        out.push(' ');
        match value {
            Typed::Null => out.push_str("NULL"),
            Typed::Bool(b) => out.push_str(&b.to_string()),
            Typed::Str(s) => out.push_str(&format!("{s:?}")),
            Typed::Num(_) => out.push_str(&text(value).unwrap_or_default()),
        }
    }
    out
}

type Window = (i64, i64);

/// The oracle's answer: every window's expected aggregates (after everything closed), and
/// the offsets of events reported late.
#[derive(Debug, Default)]
pub struct Answer {
    pub windows: BTreeMap<(String, Window), Vec<Expected>>,
    pub late: BTreeSet<u64>,
}

/// One counted event: its time and each aggregate's argument value (`None` where the
/// aggregate's `FILTER` is not true).
#[derive(Debug, Clone)]
struct Counted {
    time: i64,
    args: Vec<Option<Typed>>,
}

fn sessions(mut events: Vec<Counted>, gap: i64) -> Vec<(Window, Vec<Counted>)> {
    events.sort_by_key(|e| e.time);
    let mut out: Vec<(Window, Vec<Counted>)> = Vec::new();
    for event in events {
        match out.last_mut() {
            Some(((_, end), members)) if event.time < *end => {
                *end = (*end).max(event.time + gap);
                members.push(event);
            }
            _ => out.push(((event.time, event.time + gap), vec![event])),
        }
    }
    out
}

/// Evaluates `plan` over `stream` as the test driver feeds it: batch `i` is read at
/// processing time `100·(i+1)` plus the ticks' idle time, ticks follow their batch.
pub fn evaluate(
    plan: &MetricPlan,
    records: &[StoredRecord],
    batches: &[(usize, Option<i64>)],
    idle_timeout: i64,
) -> Answer {
    let mut answer = Answer::default();
    let mut clock: Option<i64> = None;
    let mut last_data: Option<(i64, i64)> = None;
    let mut now = 0i64;
    let mut fixed: BTreeMap<(String, Window), Vec<Counted>> = BTreeMap::new();
    let mut open: BTreeMap<String, Vec<Counted>> = BTreeMap::new();
    let mut closed: Vec<(String, Window, Vec<Counted>)> = Vec::new();
    let mut position = 0;
    for &(size, tick) in batches {
        now += 100;
        let mut any = false;
        for stored in &records[position..position + size] {
            let Ok(event) = serde_json::from_slice::<Json>(&stored.record.value) else {
                continue;
            };
            let (Some(tenant), Some(time)) = (
                event
                    .get("tenant")
                    .and_then(Json::as_str)
                    .filter(|t| !t.is_empty()),
                event
                    .get("timestamp")
                    .and_then(Json::as_i64)
                    .filter(|t| *t >= 0),
            ) else {
                continue;
            };
            any = true;
            clock = Some(clock.map_or(time, |c| c.max(time)));
            let watermark = clock.unwrap_or(i64::MIN) - plan.out_of_orderness;
            let passes = plan
                .filter
                .as_ref()
                .is_none_or(|f| eval(f, &event) == Typed::Bool(true));
            if !passes {
                continue;
            }
            let key = key_text(
                tenant,
                &plan
                    .keys
                    .iter()
                    .map(|k| eval(k, &event))
                    .collect::<Vec<_>>(),
            );
            let counted = Counted {
                time,
                args: plan
                    .aggregates
                    .iter()
                    .map(|a| {
                        let passes = a
                            .filter
                            .as_ref()
                            .is_none_or(|filter| eval(filter, &event) == Typed::Bool(true));
                        passes.then(|| {
                            a.arg
                                .as_ref()
                                .map_or(Typed::Bool(true), |arg| eval(arg, &event))
                        })
                    })
                    .collect(),
            };
            let lateness = plan.allowed_lateness;
            let is_closed = |end: i64| watermark >= end + lateness;
            match plan.window {
                WindowSpec::Tumble { size } => {
                    let start = time - time.rem_euclid(size);
                    if is_closed(start + size) {
                        answer.late.insert(stored.offset);
                    } else {
                        fixed
                            .entry((key, (start, start + size)))
                            .or_default()
                            .push(counted);
                    }
                }
                WindowSpec::Hop { slide, size } => {
                    let mut missed = false;
                    let first = (time - size).div_euclid(slide) - 1;
                    for k in first..=time.div_euclid(slide) + 1 {
                        let window = (k * slide, k * slide + size);
                        if !(window.0 <= time && time < window.1) {
                            continue;
                        }
                        if is_closed(window.1) {
                            missed = true;
                        } else {
                            fixed
                                .entry((key.clone(), window))
                                .or_default()
                                .push(counted.clone());
                        }
                    }
                    if missed {
                        answer.late.insert(stored.offset);
                    }
                }
                WindowSpec::Session { gap } => {
                    let events = open.entry(key.clone()).or_default();
                    let mut still_open = Vec::new();
                    for (window, members) in sessions(std::mem::take(events), gap) {
                        if is_closed(window.1) {
                            closed.push((key.clone(), window, members));
                        } else {
                            still_open.push((window, members));
                        }
                    }
                    let joins = still_open
                        .iter()
                        .any(|(w, _)| w.0 < time + gap && time < w.1);
                    *events = still_open.into_iter().flat_map(|(_, m)| m).collect();
                    if !joins && is_closed(time + gap) {
                        answer.late.insert(stored.offset);
                    } else {
                        events.push(counted);
                    }
                }
            }
        }
        if any {
            last_data = Some((now, clock.unwrap_or(i64::MIN)));
        }
        if let Some(idle) = tick {
            now += idle;
            if let Some((at, clock_then)) = last_data
                && now - at >= idle_timeout
            {
                clock = Some(clock.unwrap_or(i64::MIN).max(clock_then + (now - at)));
            }
        }
        position += size;
    }
    let mut all: Vec<(String, Window, Vec<Counted>)> =
        fixed.into_iter().map(|((k, w), m)| (k, w, m)).collect();
    all.extend(closed);
    if let WindowSpec::Session { gap } = plan.window {
        for (key, events) in open {
            for (window, members) in sessions(events, gap) {
                all.push((key.clone(), window, members));
            }
        }
    }
    for (key, window, members) in all {
        let expected = plan
            .aggregates
            .iter()
            .enumerate()
            .map(|(i, aggregate)| {
                aggregate_of(
                    &aggregate.kind,
                    members
                        .iter()
                        .filter_map(|m| m.args[i].as_ref().map(|arg| (m.time, arg))),
                )
            })
            .collect();
        let previous = answer.windows.insert((key.clone(), window), expected);
        assert!(previous.is_none(), "oracle produced {key} {window:?} twice");
    }
    answer
}

fn aggregate_of<'a>(
    kind: &AggregateKind,
    timed: impl Iterator<Item = (i64, &'a Typed)>,
) -> Expected {
    let timed: Vec<(i64, &Typed)> = timed.collect();
    let args: Vec<&Typed> = timed.iter().map(|(_, arg)| *arg).collect();
    let texts = || {
        timed
            .iter()
            .filter(|(_, arg)| **arg != Typed::Null)
            .map(|(time, arg)| (*time, text(arg).unwrap_or_default()))
    };
    let numbers: Vec<i128> = args.iter().filter_map(|v| number(v)).collect();
    match kind {
        AggregateKind::CountStar => Expected::Count(args.len() as u64),
        AggregateKind::Count => {
            Expected::Count(args.iter().filter(|v| ***v != Typed::Null).count() as u64)
        }
        AggregateKind::CountDistinct => Expected::Distinct(
            args.iter()
                .filter(|v| ***v != Typed::Null)
                .collect::<BTreeSet<_>>()
                .len() as u64,
        ),
        AggregateKind::Sum => Expected::Sum((!numbers.is_empty()).then(|| numbers.iter().sum())),
        AggregateKind::Min => Expected::Min(numbers.iter().min().copied()),
        AggregateKind::Max => Expected::Max(numbers.iter().max().copied()),
        AggregateKind::Avg => Expected::Avg(numbers.iter().sum(), numbers.len() as u64),
        AggregateKind::ApproxPercentile { quantile } => {
            let mut sorted = numbers.clone();
            sorted.sort();
            Expected::Percentile(
                (!sorted.is_empty())
                    .then(|| sorted[(quantile * (sorted.len() - 1) as f64).floor() as usize]),
            )
        }
        AggregateKind::First => Expected::Value(texts().min().map(|(_, text)| text)),
        AggregateKind::Last => Expected::Value(texts().max().map(|(_, text)| text)),
    }
}

/// Whether an engine value equals the oracle's exactly, for the exact aggregates (count, sum,
/// min, max, avg); `None` for the approximate ones (distinct counts and percentiles), whose
/// tolerances are the caller's to apply.
pub fn agrees_exactly(value: &OutputValue, expected: &Expected) -> Option<bool> {
    Some(match (value, expected) {
        (_, Expected::Distinct(_) | Expected::Percentile(_)) => return None,
        (OutputValue::Count(n), Expected::Count(e)) => n == e,
        (
            OutputValue::Decimal(d),
            Expected::Sum(Some(e)) | Expected::Min(Some(e)) | Expected::Max(Some(e)),
        ) => micros(&d.to_string()) == Some(*e),
        (OutputValue::Null, Expected::Sum(None) | Expected::Min(None) | Expected::Max(None)) => {
            true
        }
        (OutputValue::Null, Expected::Avg(_, 0)) => true,
        (OutputValue::Decimal(d), Expected::Avg(sum, count)) => {
            // Rounded half-even at the decimal's scale: |avg·count − sum| ≤ count/2 ulp.
            let scale = u32::from(d.scale());
            let ulp_sum = sum * 10i128.pow(scale.saturating_sub(6));
            (d.mantissa() * i128::from(*count) - ulp_sum).abs() * 2 <= i128::from(*count)
        }
        _ => false,
    })
}
