//! `WITH (option = value, …)` and the rules about a statement as a whole.

use super::{OptionValue, Parser};
use crate::alert::rule::{AlertOptions, Condition, DurationArg, Evaluate, Position, Severity};
use crate::alert::{MAX_HISTORY, MAX_SEASONS, MIN_BASELINE_POINTS, error};
use crate::error::SqlError;
use sluice_core::config::HumanDuration;
use sqlparser::tokenizer::Token;

/// The options of `WITH (…)`, for error messages.
const OPTIONS: &str = "on, resolve_after, severity, sensitivity, history, seasonality, seasons, \
                       min_deviation";

/// The most consecutive false evaluations `resolve_after` may ask for.
const MAX_RESOLVE_AFTER: u64 = 10_000;

impl Parser {
    /// `WITH (name = value, …)`, after `WITH`; also returns which options were set, where.
    pub(super) fn options(&mut self) -> Result<(AlertOptions, Vec<(String, Position)>), SqlError> {
        let mut options = AlertOptions::default();
        let mut set: Vec<(String, Position)> = Vec::new();
        self.expect(&Token::LParen, "after WITH: WITH (option = value, …)")?;
        loop {
            let name = self.name("an option name")?;
            let key = name.name.to_ascii_lowercase();
            if set.iter().any(|(seen, _)| *seen == key) {
                return Err(error(name.at, format!("option {key} is set twice")));
            }
            self.expect(&Token::Eq, &format!("after {key}: {key} = value"))?;
            let at = self.position();
            let negative = self.eat(&Token::Minus);
            let value = match self.peek().clone() {
                Token::Number(text, _) if negative => OptionValue::Number(format!("-{text}")),
                Token::Number(text, _) => OptionValue::Number(text),
                Token::SingleQuotedString(text) if !negative => OptionValue::Text(text),
                _ => {
                    return Err(self.error_here(format!(
                        "expected a number or a 'string' as the value of {key}, found {}",
                        self.describe()
                    )));
                }
            };
            self.advance();
            apply_option(&mut options, &key, name.at, &value, at)?;
            set.push((key, name.at));
            if !self.eat(&Token::Comma) {
                break;
            }
        }
        self.expect(&Token::RParen, "to close WITH (…)")?;
        Ok((options, set))
    }
}

/// Sets one `WITH` option.
fn apply_option(
    options: &mut AlertOptions,
    name: &str,
    name_at: Position,
    value: &OptionValue,
    at: Position,
) -> Result<(), SqlError> {
    let text = |choices: &str| match value {
        OptionValue::Text(text) => Ok(text.to_ascii_lowercase()),
        OptionValue::Number(number) => Err(error(
            at,
            format!("{name} is one of {choices}, in quotes; not {number}"),
        )),
    };
    let number = |low: f64, high: f64| {
        let parsed = match value {
            OptionValue::Number(text) => text.parse::<f64>().ok(),
            OptionValue::Text(_) => None,
        };
        parsed
            .filter(|n| (low..=high).contains(n))
            .ok_or_else(|| error(at, format!("{name} is a number from {low} to {high}")))
    };
    let whole = |low: u64, high: u64| {
        let parsed = match value {
            OptionValue::Number(text) => text.parse::<u64>().ok(),
            OptionValue::Text(_) => None,
        };
        parsed
            .filter(|n| (low..=high).contains(n))
            .ok_or_else(|| error(at, format!("{name} is a whole number from {low} to {high}")))
    };
    match name {
        "on" => {
            options.on = match text("'final' or 'live'")?.as_str() {
                "final" => Evaluate::Final,
                "live" => Evaluate::Live,
                other => {
                    return Err(error(
                        at,
                        format!(
                            "on is 'final' (evaluate settled windows) or 'live' (open windows \
                             too), not '{other}'"
                        ),
                    ));
                }
            }
        }
        "severity" => {
            options.severity = match text("'info', 'warning' or 'critical'")?.as_str() {
                "info" => Severity::Info,
                "warning" => Severity::Warning,
                "critical" => Severity::Critical,
                other => {
                    return Err(error(
                        at,
                        format!("severity is 'info', 'warning' or 'critical', not '{other}'"),
                    ));
                }
            }
        }
        "resolve_after" => options.resolve_after = whole(1, MAX_RESOLVE_AFTER)? as u32,
        "sensitivity" => options.anomaly.sensitivity = number(0.5, 20.0)?,
        "history" => {
            options.anomaly.history =
                whole(MIN_BASELINE_POINTS as u64, MAX_HISTORY as u64)? as usize
        }
        "seasons" => options.anomaly.seasons = whole(1, MAX_SEASONS as u64)? as usize,
        "min_deviation" => options.anomaly.min_deviation = number(0.0, f64::MAX)?,
        "seasonality" => {
            options.anomaly.seasonality = match text("'1d', '7d' or 'none'")?.as_str() {
                "none" => None,
                other => match other.parse::<HumanDuration>().map(|d| d.get().as_millis()) {
                    Ok(86_400_000) => Some(86_400_000),
                    Ok(604_800_000) => Some(604_800_000),
                    _ => {
                        return Err(error(
                            at,
                            format!(
                                "seasonality is '1d' (daily), '7d' (weekly) or 'none', not \
                                 '{other}'"
                            ),
                        ));
                    }
                },
            }
        }
        _ => {
            return Err(error(
                name_at,
                format!("unknown option {name}; the options are {OPTIONS}"),
            ));
        }
    }
    Ok(())
}

/// Rules about the statement as a whole.
pub(super) fn validate(
    condition: &Condition,
    hold: Option<DurationArg>,
    set: &[(String, Position)],
    options: &AlertOptions,
) -> Result<(), SqlError> {
    if let Some(at) = condition.absent() {
        if !matches!(condition, Condition::Absent { .. }) {
            return Err(error(
                at,
                "absent cannot be combined with other conditions: write it alone, \
                 WHEN absent FOR '10m', in a rule of its own",
            ));
        }
        if hold.is_none() {
            return Err(error(
                at,
                "absent needs FOR 'duration': how long without a window counts as absent, \
                 like WHEN absent FOR '10m'",
            ));
        }
    }
    let has_anomaly = !condition.anomalies().is_empty();
    for (name, at) in set {
        let anomaly_only = matches!(
            name.as_str(),
            "sensitivity" | "history" | "seasonality" | "seasons" | "min_deviation"
        );
        if anomaly_only && !has_anomaly {
            return Err(error(
                *at,
                format!("{name} tunes anomaly(…), and this rule's condition has no anomaly(…)"),
            ));
        }
        if name == "seasons" && options.anomaly.seasonality.is_none() {
            return Err(error(
                *at,
                "seasons counts the previous periods of seasonality; set seasonality = '1d' or \
                 '7d' too",
            ));
        }
    }
    Ok(())
}
