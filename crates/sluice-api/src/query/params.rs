//! What a query asks for, checked against the metric: the time range, the resolution, filters
//! on group keys and top-N. Every refusal says what to write instead.

use crate::error::ApiError;
use sluice_core::config::HumanDuration;
use sluice_core::time::{Millis, parse_rfc3339_millis};
use sluice_stream::decimal::Decimal;
use sluice_stream::keys::KeyValue;
use sluice_stream::plan::{MetricPlan, WindowSpec};
use sluice_stream::window::MAX_EVENT_TIME;

/// Most filters one query may carry.
pub const MAX_FILTERS: usize = 64;
/// Longest filter value.
pub const MAX_FILTER_BYTES: usize = 1024;
/// The range a query covers when it names no `from`.
pub const DEFAULT_SPAN: Millis = 3_600_000;

/// A query's parameters as received (REST query string, GraphQL arguments, CLI flags).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesParams {
    /// Start: RFC 3339, epoch milliseconds, `now` or `now-DURATION` (default `to` − 1h).
    pub from: Option<String>,
    /// End, exclusive (default `now`).
    pub to: Option<String>,
    /// `raw` (the metric's windows) or a duration like `1h` (default raw).
    pub resolution: Option<String>,
    /// Only the N group keys with the largest `by` over the range.
    pub top: Option<usize>,
    /// The aggregate `top` ranks by (default the first).
    pub by: Option<String>,
    /// `KEY:VALUE` filters on group keys: values of one key are alternatives, keys combine.
    pub filters: Vec<String>,
}

impl SeriesParams {
    /// Reads `from`, `to`, `resolution`, `top`, `by` and repeated `filter` from query-string
    /// pairs; any other name is refused.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<SeriesParams, ApiError> {
        let mut params = SeriesParams::default();
        for (name, value) in pairs {
            match name.as_str() {
                "from" => params.from = Some(value),
                "to" => params.to = Some(value),
                "resolution" => params.resolution = Some(value),
                "by" => params.by = Some(value),
                "top" => {
                    params.top = Some(value.parse().map_err(|_| {
                        ApiError::bad_request(
                            "invalid_top",
                            format!("top={value:?} is not a whole number like top=10"),
                        )
                    })?)
                }
                "filter" => params.filters.push(value),
                other => {
                    return Err(ApiError::bad_request(
                        "unknown_parameter",
                        format!(
                            "unknown parameter {other:?}: use from, to, resolution, top, by and filter=KEY:VALUE"
                        ),
                    ));
                }
            }
        }
        Ok(params)
    }
}

/// A value a filter accepts for one group key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum KeyMatch {
    /// Text equal to this.
    Text(String),
    /// A number equal to this (also matches text written the same).
    Number(Decimal, String),
}

impl KeyMatch {
    fn parse(text: &str) -> KeyMatch {
        match Decimal::parse_str(text) {
            Some(number) => KeyMatch::Number(number.normalized(), text.to_owned()),
            None => KeyMatch::Text(text.to_owned()),
        }
    }

    /// Whether a key value matches: text exactly, numbers by value, booleans as
    /// `true`/`false`, NULL as `null`.
    pub(crate) fn matches(&self, value: &KeyValue) -> bool {
        let text = match self {
            KeyMatch::Text(text) | KeyMatch::Number(_, text) => text,
        };
        match value {
            KeyValue::Text(value) => value == text,
            KeyValue::Number(number) => {
                matches!(self, KeyMatch::Number(wanted, _) if number.normalized() == *wanted)
            }
            KeyValue::Bool(value) => text == if *value { "true" } else { "false" },
            KeyValue::Null => text == "null",
        }
    }
}

/// A checked query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SeriesQuery {
    /// Windows starting at or after this (aligned down to the resolution).
    pub(crate) from: Millis,
    /// Windows starting before this (aligned up to the resolution).
    pub(crate) to: Millis,
    /// Bucket size, or `None` for the metric's own windows.
    pub(crate) resolution: Option<Millis>,
    /// Keep the N keys with the largest aggregate `by`.
    pub(crate) top: Option<usize>,
    /// The aggregate top-N ranks by.
    pub(crate) by: usize,
    /// Per group key index, the values accepted.
    pub(crate) filters: Vec<(usize, Vec<KeyMatch>)>,
}

impl SeriesQuery {
    /// Whether a group key's values pass every filter.
    pub(crate) fn accepts(&self, values: &[KeyValue]) -> bool {
        self.filters.iter().all(|(index, accepted)| {
            values
                .get(*index)
                .is_some_and(|value| accepted.iter().any(|wanted| wanted.matches(value)))
        })
    }
}

/// A duration like `90s`, `5m`, `1h`, `1d`, in milliseconds.
pub(crate) fn parse_duration(text: &str) -> Result<Millis, String> {
    let duration: HumanDuration = text.parse()?;
    Millis::try_from(duration.get().as_millis()).map_err(|_| format!("{text:?} is too long"))
}

/// An instant: RFC 3339, epoch milliseconds, `now` or `now-DURATION`.
pub(crate) fn parse_time(text: &str, now: Millis) -> Result<Millis, String> {
    let text = text.trim();
    let instant = if text == "now" {
        now
    } else if let Some(ago) = text.strip_prefix("now-") {
        now - parse_duration(ago)?
    } else if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<Millis>()
            .map_err(|_| format!("{text:?} is too large for epoch milliseconds"))?
    } else {
        parse_rfc3339_millis(text).map_err(|_| {
            format!(
                "{text:?} is not a time: write RFC 3339 (2024-05-01T12:00:00Z), epoch milliseconds, now or now-24h"
            )
        })?
    };
    if !(0..=MAX_EVENT_TIME).contains(&instant) {
        return Err(format!("{text:?} is outside 1970 to 9999"));
    }
    Ok(instant)
}

/// Checks `params` against the metric's plan at time `now`: the range, the resolution (and
/// the range aligned to it), top-N and its aggregate, the filters.
pub(crate) fn resolve(
    plan: &MetricPlan,
    params: &SeriesParams,
    now: Millis,
    max_series: usize,
) -> Result<SeriesQuery, ApiError> {
    let (from, to) = range(params, now)?;
    let resolution = resolution(plan, params.resolution.as_deref())?;
    let (from, to) = match resolution {
        Some(every) => (
            from - from.rem_euclid(every),
            to.saturating_add((every - to.rem_euclid(every)) % every),
        ),
        None => (from, to),
    };
    if let Some(top) = params.top
        && (top == 0 || top > max_series)
    {
        return Err(bad(
            "invalid_top",
            format!("top must be between 1 and {max_series} (api.max-series)"),
        ));
    }
    Ok(SeriesQuery {
        from,
        to,
        resolution,
        top: params.top,
        by: ranked_by(plan, params.by.as_deref())?,
        filters: filters(plan, &params.filters)?,
    })
}

fn bad(code: &'static str, message: String) -> ApiError {
    ApiError::bad_request(code, message)
}

/// `from` and `to` (default: the hour before now).
fn range(params: &SeriesParams, now: Millis) -> Result<(Millis, Millis), ApiError> {
    let to = match &params.to {
        Some(text) => parse_time(text, now).map_err(|m| bad("invalid_time", format!("to: {m}")))?,
        None => now,
    };
    let from = match &params.from {
        Some(text) => {
            parse_time(text, now).map_err(|m| bad("invalid_time", format!("from: {m}")))?
        }
        None => to.saturating_sub(DEFAULT_SPAN).max(0),
    };
    if from >= to {
        return Err(bad(
            "invalid_range",
            format!("from ({from}) must be before to ({to})"),
        ));
    }
    Ok((from, to))
}

/// The bucket size, `None` for the metric's own windows: a multiple of a tumbling window,
/// never for overlapping (hopping) windows, at least 1 s for sessions.
fn resolution(plan: &MetricPlan, text: Option<&str>) -> Result<Option<Millis>, ApiError> {
    let text = match text.map(str::trim) {
        None | Some("" | "raw") => return Ok(None),
        Some(text) => text,
    };
    let every =
        parse_duration(text).map_err(|m| bad("invalid_resolution", format!("resolution: {m}")))?;
    match plan.window {
        WindowSpec::Tumble { size } => {
            if every < size || every % size != 0 {
                return Err(bad(
                    "invalid_resolution",
                    format!(
                        "resolution {text} is not a multiple of the metric's {} windows: use raw or a multiple like {}",
                        HumanDuration(std::time::Duration::from_millis(size as u64)),
                        HumanDuration(std::time::Duration::from_millis((size * 60) as u64)),
                    ),
                ));
            }
            Ok((every != size).then_some(every))
        }
        WindowSpec::Hop { .. } => Err(bad(
            "invalid_resolution",
            "this metric's windows overlap (HOP): merging them would count events twice; use resolution=raw".into(),
        )),
        WindowSpec::Session { .. } => {
            if every < 1000 {
                return Err(bad(
                    "invalid_resolution",
                    "resolution must be at least 1s".into(),
                ));
            }
            Ok(Some(every))
        }
    }
}

/// The index of the aggregate top-N ranks by (default the first).
fn ranked_by(plan: &MetricPlan, name: Option<&str>) -> Result<usize, ApiError> {
    let Some(name) = name else {
        return Ok(0);
    };
    let aggregates = sluice_stream::render::aggregate_names(plan);
    aggregates.iter().position(|a| *a == name).ok_or_else(|| {
        bad(
            "unknown_aggregate",
            format!(
                "by={name:?}: the metric's aggregates are {}",
                aggregates.join(", ")
            ),
        )
    })
}

/// `KEY:VALUE` filters, grouped per group key (values of one key are alternatives).
fn filters(plan: &MetricPlan, given: &[String]) -> Result<Vec<(usize, Vec<KeyMatch>)>, ApiError> {
    if given.len() > MAX_FILTERS {
        return Err(bad(
            "too_many_filters",
            format!("at most {MAX_FILTERS} filters per query"),
        ));
    }
    let mut filters: Vec<(usize, Vec<KeyMatch>)> = Vec::new();
    for filter in given {
        let Some((name, value)) = filter.split_once(':') else {
            return Err(bad(
                "invalid_filter",
                format!("filter {filter:?} is not KEY:VALUE, like filter=url:/home"),
            ));
        };
        if value.len() > MAX_FILTER_BYTES {
            return Err(bad(
                "invalid_filter",
                format!("filter values are at most {MAX_FILTER_BYTES} bytes"),
            ));
        }
        let index = plan
            .key_names
            .iter()
            .position(|k| k == name)
            .ok_or_else(|| {
                let keys = if plan.key_names.is_empty() {
                    "none".to_owned()
                } else {
                    plan.key_names.join(", ")
                };
                bad(
                    "unknown_key",
                    format!("filter on {name:?}: the metric's group keys are {keys}"),
                )
            })?;
        let wanted = KeyMatch::parse(value);
        match filters.iter_mut().find(|(i, _)| *i == index) {
            Some((_, values)) => values.push(wanted),
            None => filters.push((index, vec![wanted])),
        }
    }
    Ok(filters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_stream::sql::{MetricDefaults, parse_metric};

    fn plan(sql: &str) -> MetricPlan {
        parse_metric(
            sql,
            &MetricDefaults {
                out_of_orderness: 0,
                allowed_lateness: 0,
                late: sluice_stream::plan::LatePolicy::Drop,
            },
        )
        .unwrap()
    }

    const VIEWS: &str = "CREATE METRIC views AS SELECT properties.url AS url, properties.n AS n, COUNT(*) AS hits, COUNT(DISTINCT user_id) AS users FROM events GROUP BY url, n, TUMBLE(timestamp, INTERVAL '1' MINUTE)";

    fn params(pairs: &[(&str, &str)]) -> SeriesParams {
        SeriesParams::from_pairs(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn times_are_rfc3339_epoch_millis_or_relative_to_now() {
        let now = 1_714_564_800_000;
        assert_eq!(parse_time("2024-05-01T12:00:00Z", now), Ok(now));
        assert_eq!(parse_time("1714564800000", now), Ok(now));
        assert_eq!(parse_time("now-1h", now), Ok(now - 3_600_000));
        assert!(
            parse_time("yesterday", now)
                .unwrap_err()
                .contains("RFC 3339")
        );
    }

    #[test]
    fn resolutions_align_the_range_and_must_fit_the_windows() {
        let plan = plan(VIEWS);
        let now = 1_714_564_800_000 + 90_000;
        let query = resolve(
            &plan,
            &params(&[("from", "now-2h"), ("resolution", "1h")]),
            now,
            10,
        )
        .unwrap();
        assert_eq!(query.resolution, Some(3_600_000));
        assert_eq!(query.from % 3_600_000, 0);
        assert_eq!(query.to % 3_600_000, 0);
        assert!(query.from <= now - 7_200_000 && query.to >= now);
        let raw = resolve(&plan, &params(&[("resolution", "1m")]), now, 10).unwrap();
        assert_eq!((raw.resolution, raw.to - raw.from), (None, DEFAULT_SPAN));
        let error = resolve(&plan, &params(&[("resolution", "90s")]), now, 10).unwrap_err();
        assert!(
            error.message().contains("not a multiple"),
            "{}",
            error.message()
        );
        let error = resolve(
            &plan,
            &params(&[("from", "now"), ("to", "now-1h")]),
            now,
            10,
        )
        .unwrap_err();
        assert_eq!(error.code(), "invalid_range");
    }

    #[test]
    fn filters_name_group_keys_and_match_text_numbers_and_null() {
        let plan = plan(VIEWS);
        let query = resolve(
            &plan,
            &params(&[
                ("filter", "url:/a"),
                ("filter", "url:/b"),
                ("filter", "n:1.50"),
                ("by", "users"),
                ("top", "3"),
            ]),
            1_000_000,
            10,
        )
        .unwrap();
        assert_eq!((query.by, query.top), (1, Some(3)));
        let number = KeyValue::Number(Decimal::parse_str("1.5").unwrap());
        assert!(query.accepts(&[KeyValue::Text("/b".into()), number.clone()]));
        assert!(!query.accepts(&[KeyValue::Text("/c".into()), number]));
        assert!(!query.accepts(&[KeyValue::Text("/a".into()), KeyValue::Null]));
        assert!(KeyMatch::parse("null").matches(&KeyValue::Null));
        assert!(KeyMatch::parse("true").matches(&KeyValue::Bool(true)));
        let error =
            resolve(&plan, &params(&[("filter", "country:fr")]), 1_000_000, 10).unwrap_err();
        assert!(
            error.message().contains("group keys are url, n"),
            "{}",
            error.message()
        );
        assert_eq!(
            resolve(&plan, &params(&[("filter", "url")]), 1_000_000, 10)
                .unwrap_err()
                .code(),
            "invalid_filter"
        );
        assert_eq!(
            resolve(&plan, &params(&[("top", "11")]), 1_000_000, 10)
                .unwrap_err()
                .code(),
            "invalid_top"
        );
        assert!(SeriesParams::from_pairs(vec![("form".into(), "x".into())]).is_err());
    }
}
