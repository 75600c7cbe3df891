//! Window functions in GROUP BY: `TUMBLE(timestamp, size)`, `HOP(timestamp, slide, size)`,
//! `SESSION(timestamp, gap)`, with sizes written as `INTERVAL '1' MINUTE` or
//! `INTERVAL '90 seconds'`.

use super::error_at;
use super::expr::{function_name, location, plain_args};
use crate::error::SqlError;
use crate::plan::WindowSpec;
use crate::window::MAX_WINDOWS_PER_EVENT;
use sluice_core::time::Millis;
use sqlparser::ast::{DateTimeField, Expr as AstExpr, Function, Interval, Value};
use sqlparser::tokenizer::Location;

/// The longest window or gap: 366 days.
const MAX_WINDOW: Millis = 366 * 86_400_000;

/// Lowers a window function call.
pub(super) fn lower_window(function: &Function, at: Location) -> Result<WindowSpec, SqlError> {
    let name = function_name(function).unwrap_or_default();
    let args = plain_args(function, at)?;
    let (expected, usage) = match name.as_str() {
        "TUMBLE" => (2, "TUMBLE(timestamp, INTERVAL '1' MINUTE)"),
        "HOP" => (
            3,
            "HOP(timestamp, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE) (slide, then size)",
        ),
        _ => (2, "SESSION(timestamp, INTERVAL '30' MINUTE)"),
    };
    if args.len() != expected {
        return Err(error_at(
            at,
            format!("{name} takes {expected} arguments: {usage}"),
        ));
    }
    let time_at = location(args[0], at);
    let is_timestamp = matches!(args[0], AstExpr::Identifier(ident) if ident.value.eq_ignore_ascii_case("timestamp"));
    if !is_timestamp {
        return Err(error_at(
            time_at,
            format!(
                "windows are over event time: the first argument of {name} must be timestamp, not `{}`",
                args[0]
            ),
        ));
    }
    let durations = args[1..]
        .iter()
        .map(|arg| {
            let arg_at = location(arg, at);
            let millis = match arg {
                AstExpr::Interval(interval) => interval_millis(interval, arg_at)?,
                other => {
                    return Err(error_at(
                        arg_at,
                        format!("expected an INTERVAL like INTERVAL '1' MINUTE, found `{other}`"),
                    ));
                }
            };
            if millis <= 0 || millis > MAX_WINDOW {
                return Err(error_at(
                    arg_at,
                    "window sizes, slides and gaps must be longer than 0 and at most 366 days",
                ));
            }
            Ok(millis)
        })
        .collect::<Result<Vec<_>, _>>()?;
    match (name.as_str(), durations.as_slice()) {
        ("TUMBLE", &[size]) => Ok(WindowSpec::Tumble { size }),
        ("HOP", &[slide, size]) => {
            if slide > size {
                return Err(error_at(
                    at,
                    "HOP's slide (second argument) must not be longer than its size (third)",
                ));
            }
            let windows = (size + slide - 1) / slide;
            if windows > MAX_WINDOWS_PER_EVENT as Millis {
                return Err(error_at(
                    at,
                    format!(
                        "HOP puts each event in {windows} windows; at most {MAX_WINDOWS_PER_EVENT} \
                         are allowed (make the slide longer)"
                    ),
                ));
            }
            Ok(WindowSpec::Hop { slide, size })
        }
        (_, &[gap]) => Ok(WindowSpec::Session { gap }),
        _ => Err(error_at(
            at,
            format!("{name} takes {expected} arguments: {usage}"),
        )),
    }
}

/// The length of `INTERVAL '<n>' <UNIT>` or `INTERVAL '<n> <unit>'`, in milliseconds.
pub(super) fn interval_millis(interval: &Interval, at: Location) -> Result<Millis, SqlError> {
    let usage = "write intervals like INTERVAL '1' MINUTE or INTERVAL '90 seconds'";
    if interval.last_field.is_some()
        || interval.leading_precision.is_some()
        || interval.fractional_seconds_precision.is_some()
    {
        return Err(error_at(
            at,
            format!("interval ranges and precisions are not supported; {usage}"),
        ));
    }
    let text = match interval.value.as_ref() {
        AstExpr::Value(value) => match &value.value {
            Value::SingleQuotedString(text) => text.clone(),
            Value::Number(text, _) => text.clone(),
            _ => return Err(error_at(at, usage)),
        },
        _ => return Err(error_at(at, usage)),
    };
    let (number, unit) = match &interval.leading_field {
        Some(field) => (text.trim().to_owned(), unit_millis_of_field(field)),
        None => {
            let mut parts = text.split_whitespace();
            let number = parts.next().unwrap_or_default().to_owned();
            let unit = parts.next().and_then(unit_millis_of_word);
            if parts.next().is_some() {
                return Err(error_at(
                    at,
                    format!("`{text}` is not one amount and unit; {usage}"),
                ));
            }
            (number, unit)
        }
    };
    let unit = unit.ok_or_else(|| {
        error_at(
            at,
            format!(
                "unsupported interval unit; use MILLISECOND, SECOND, MINUTE, HOUR or DAY ({usage})"
            ),
        )
    })?;
    let amount: Millis = number.parse().map_err(|_| {
        error_at(
            at,
            format!("`{number}` is not a whole number of units; {usage}"),
        )
    })?;
    amount
        .checked_mul(unit)
        .ok_or_else(|| error_at(at, "interval too long"))
}

fn unit_millis_of_field(field: &DateTimeField) -> Option<Millis> {
    match field {
        DateTimeField::Millisecond | DateTimeField::Milliseconds => Some(1),
        DateTimeField::Second | DateTimeField::Seconds => Some(1000),
        DateTimeField::Minute | DateTimeField::Minutes => Some(60_000),
        DateTimeField::Hour | DateTimeField::Hours => Some(3_600_000),
        DateTimeField::Day | DateTimeField::Days => Some(86_400_000),
        _ => None,
    }
}

fn unit_millis_of_word(word: &str) -> Option<Millis> {
    match word.to_ascii_lowercase().as_str() {
        "millisecond" | "milliseconds" | "ms" => Some(1),
        "second" | "seconds" | "s" => Some(1000),
        "minute" | "minutes" | "m" | "min" => Some(60_000),
        "hour" | "hours" | "h" => Some(3_600_000),
        "day" | "days" | "d" => Some(86_400_000),
        _ => None,
    }
}
