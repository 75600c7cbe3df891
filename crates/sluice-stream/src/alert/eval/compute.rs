//! What a compiled condition computes over one window: numbers (NULL is `None`), SQL's
//! three-valued truth, and the sentence a transition carries.

use crate::alert::MIN_BASELINE_POINTS;
use crate::alert::baseline::{Band, History, band, median};
use crate::alert::check::{Cond, Num, Program, ValueRef};
use crate::alert::rule::{ArithOp, Condition, Operand, RangeFn};
use std::fmt::Write as _;

/// What a condition reads while one window is evaluated.
pub(super) struct View<'a> {
    /// The current window's values, by aggregate.
    pub(super) values: &'a [Option<f64>],
    pub(super) history: &'a History,
    /// The current window's index.
    pub(super) window: i64,
}

impl View<'_> {
    #[inline]
    fn at(&self, value: ValueRef, back: i64) -> Option<f64> {
        if back == 0 {
            self.values
                .get(value.aggregate)
                .copied()
                .flatten()
                .filter(|v| v.is_finite())
        } else {
            self.history.get(self.window - back, value.column)
        }
    }
}

/// SQL's three-valued logic: `None` is unknown (a NULL was compared).
pub(super) fn truth(
    condition: &Cond,
    view: &View<'_>,
    program: &Program,
    scratch: &mut Vec<f64>,
) -> Option<bool> {
    match condition {
        Cond::Compare { op, left, right } => {
            let left = number(left, view, scratch)?;
            let right = number(right, view, scratch)?;
            Some(op.holds(left.total_cmp(&right)))
        }
        Cond::Between {
            value,
            low,
            high,
            negated,
        } => {
            let value = number(value, view, scratch)?;
            let low = number(low, view, scratch)?;
            let high = number(high, view, scratch)?;
            Some((low <= value && value <= high) != *negated)
        }
        Cond::Anomaly(value) => {
            let current = view.at(*value, 0)?;
            let band = band(
                view.history,
                view.window,
                value.column,
                &program.anomaly,
                scratch,
            )?;
            Some(band.outside(current))
        }
        Cond::And(left, right) => {
            match (
                truth(left, view, program, scratch),
                truth(right, view, program, scratch),
            ) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            }
        }
        Cond::Or(left, right) => {
            match (
                truth(left, view, program, scratch),
                truth(right, view, program, scratch),
            ) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            }
        }
        Cond::Not(inner) => truth(inner, view, program, scratch).map(|t| !t),
    }
}

/// A number-valued expression; `None` is NULL (missing input, division by 0, not finite).
fn number(num: &Num, view: &View<'_>, scratch: &mut Vec<f64>) -> Option<f64> {
    let result = match num {
        Num::Const(value) => *value,
        Num::At { value, back } => view.at(*value, *back)?,
        Num::Range {
            function,
            value,
            windows,
        } => {
            let (mut count, mut sum) = (0u32, 0.0);
            let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
            for back in 0..*windows {
                if let Some(v) = view.at(*value, back) {
                    count += 1;
                    sum += v;
                    low = low.min(v);
                    high = high.max(v);
                }
            }
            if count == 0 {
                return None;
            }
            match function {
                RangeFn::Sum => sum,
                RangeFn::Avg => sum / f64::from(count),
                RangeFn::Min => low,
                RangeFn::Max => high,
            }
        }
        Num::Baseline { value, windows } => {
            scratch.clear();
            scratch.extend((1..=*windows).filter_map(|back| view.at(*value, back)));
            if scratch.len() < MIN_BASELINE_POINTS {
                return None;
            }
            median(scratch)?
        }
        Num::Change(value, reference) => {
            let value = number(value, view, scratch)?;
            let reference = number(reference, view, scratch)?;
            if reference == 0.0 {
                return None;
            }
            (value - reference) / reference.abs() * 100.0
        }
        Num::Neg(inner) => -number(inner, view, scratch)?,
        Num::Arith { op, left, right } => {
            let left = number(left, view, scratch)?;
            let right = number(right, view, scratch)?;
            match op {
                ArithOp::Add => left + right,
                ArithOp::Sub => left - right,
                ArithOp::Mul => left * right,
                ArithOp::Div if right == 0.0 => return None,
                ArithOp::Div => left / right,
            }
        }
    };
    result.is_finite().then_some(result)
}

/// The value a condition is about and a sentence for people: `errors > 100 (errors = 153)`.
pub(super) fn describe(
    written: &Condition,
    compiled: &Cond,
    view: &View<'_>,
    program: &Program,
    scratch: &mut Vec<f64>,
) -> (Option<f64>, String) {
    // The written and compiled trees have the same shape: follow both to the first leaf.
    let (mut written_leaf, mut compiled_leaf) = (written, compiled);
    while let (Condition::And(w, _) | Condition::Or(w, _), Cond::And(c, _) | Cond::Or(c, _))
    | (Condition::Not(w), Cond::Not(c)) = (written_leaf, compiled_leaf)
    {
        (written_leaf, compiled_leaf) = (w, c);
    }
    let mut text = written.to_string();
    let value = match (written_leaf, compiled_leaf) {
        // `100 < errors` is about errors.
        (
            Condition::Compare {
                left: constant,
                right: label,
                ..
            },
            Cond::Compare { right: num, .. },
        ) if !has_terms(constant) => {
            let value = number(num, view, scratch);
            let _ = write!(text, " ({label} = {})", show(value));
            value
        }
        (Condition::Compare { left: label, .. }, Cond::Compare { left: num, .. })
        | (Condition::Between { value: label, .. }, Cond::Between { value: num, .. }) => {
            let value = number(num, view, scratch);
            let _ = write!(text, " ({label} = {})", show(value));
            value
        }
        (Condition::Anomaly { value: label, .. }, Cond::Anomaly(reference)) => {
            let value = view.at(*reference, 0);
            let _ = write!(text, " ({label} = {}", show(value));
            match band(
                view.history,
                view.window,
                reference.column,
                &program.anomaly,
                scratch,
            ) {
                Some(Band {
                    median,
                    half_width,
                    points,
                }) => {
                    let _ = write!(
                        text,
                        ", expected {} to {}: median {} of {points} baseline windows)",
                        show(Some(median - half_width)),
                        show(Some(median + half_width)),
                        show(Some(median))
                    );
                }
                None => text.push_str(", too little history for a baseline)"),
            }
            value
        }
        _ => None,
    };
    (value, text)
}

fn has_terms(operand: &Operand) -> bool {
    let mut found = false;
    operand.for_each_term(&mut |_| found = true);
    found
}

/// A number for people: at most 4 decimals, no trailing zeros.
fn show(value: Option<f64>) -> String {
    let Some(value) = value else {
        return "NULL".to_owned();
    };
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}
