//! Tests of the alert rules: the grammar and its errors (`parse`), the evaluator's terms
//! and state machine (`eval`), `anomaly` on a synthetic seasonal week (`anomaly`), and
//! checkpoints (`snapshot`).

mod anomaly;
mod eval;
mod parse;
mod snapshot;

use super::*;
use crate::keys::KeyValue;
use crate::plan::{LatePolicy, MetricPlan};
use crate::sql::{MetricDefaults, parse_metric};
use crate::window::Window;
use std::sync::Arc;

const MINUTE: i64 = 60_000;

/// Per route and region, per minute.
const API: &str =
    "CREATE METRIC api AS SELECT properties.route AS route, properties.region AS region,
    COUNT(*) AS requests, SUM(properties.errors) AS errors, AVG(properties.latency) AS latency
    FROM events GROUP BY route, region, TUMBLE(timestamp, INTERVAL '1' MINUTE)";

/// The same, as one total series.
const TOTAL: &str = "CREATE METRIC total AS SELECT
    COUNT(*) AS requests, SUM(properties.errors) AS errors, AVG(properties.latency) AS latency
    FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)";

fn metric(sql: &str) -> MetricPlan {
    let defaults = MetricDefaults {
        out_of_orderness: 0,
        allowed_lateness: 0,
        late: LatePolicy::Drop,
    };
    parse_metric(sql, &defaults).unwrap_or_else(|error| panic!("{sql}\n→ {error}"))
}

fn rule(sql: &str) -> AlertRule {
    parse_alert(sql).unwrap_or_else(|error| panic!("{sql}\n→ {error}"))
}

fn evaluator(sql: &str, plan: &MetricPlan) -> Evaluator {
    Evaluator::new(Arc::new(rule(sql)), plan).unwrap_or_else(|error| panic!("{sql}\n→ {error}"))
}

fn minute(index: i64) -> Window {
    Window {
        start: index * MINUTE,
        end: (index + 1) * MINUTE,
    }
}

fn key(route: &str, region: &str) -> Vec<KeyValue> {
    vec![
        KeyValue::Text(route.to_owned()),
        KeyValue::Text(region.to_owned()),
    ]
}

/// Final windows of the total series: `(minute, errors)`; requests and latency NULL.
fn feed_errors(evaluator: &mut Evaluator, windows: &[(i64, f64)]) -> Vec<Transition> {
    let mut out = Vec::new();
    for &(index, errors) in windows {
        evaluator.window(
            &[],
            minute(index),
            &[None, Some(errors), None],
            true,
            &mut out,
        );
    }
    out
}

/// `(from, to, minute whose end it is at, sequence)` of each transition.
fn summary(transitions: &[Transition]) -> Vec<(AlertState, AlertState, i64, u64)> {
    transitions
        .iter()
        .map(|t| (t.from, t.to, t.at_ms / MINUTE - 1, t.sequence))
        .collect()
}
