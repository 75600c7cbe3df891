//! Alert evaluation: the cost of one changed window for one rule (issue 19's target: ≤ 1 µs),
//! for a threshold rule with `FOR` over 1,000 keys (`BY KEY`), a change against the same
//! window a day before, and a seasonal anomaly rule. Reported per window. Then the scale of
//! the target's second half: one round of 10,000 threshold rules over 1,000 keys (what the
//! server's alert runner does when a minute of a 1,000-key metric becomes final, in its
//! order: rule after rule over a page of rows, keys by number), and one
//! rule's checkpoint (its snapshot as JSON, as the runner stores it).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_stream::alert::{Evaluator, parse_alert};
use sluice_stream::keys::KeyValue;
use sluice_stream::plan::LatePolicy;
use sluice_stream::sql::{MetricDefaults, parse_metric};
use sluice_stream::window::Window;
use std::sync::Arc;

const MINUTE: i64 = 60_000;
const KEYS: usize = 1000;

const API: &str = "CREATE METRIC api AS SELECT properties.route AS route, COUNT(*) AS requests,
    SUM(properties.errors) AS errors FROM events
    GROUP BY route, TUMBLE(timestamp, INTERVAL '1' MINUTE)";

/// Evaluates `rule` over `KEYS` keys, one final window per key and minute, after `warm`
/// minutes of history; the measured iteration is one more minute of every key.
fn bench_rule(c: &mut Criterion, name: &str, rule: &str, warm: i64) {
    let defaults = MetricDefaults {
        out_of_orderness: 0,
        allowed_lateness: 0,
        late: LatePolicy::Drop,
    };
    let plan = parse_metric(API, &defaults).unwrap();
    let mut evaluator = Evaluator::new(Arc::new(parse_alert(rule).unwrap()), &plan).unwrap();
    let keys: Vec<Vec<KeyValue>> = (0..KEYS)
        .map(|k| vec![KeyValue::Text(format!("/route/{k}"))])
        .collect();
    let value = |minute: i64, k: usize| -> f64 {
        let day = (minute % 1440) as f64 / 1440.0 * std::f64::consts::TAU;
        100.0 + 40.0 * day.sin() + ((minute * 7 + k as i64 * 13) % 11) as f64
    };
    let mut out = Vec::new();
    let mut minute = 0;
    let step = |evaluator: &mut Evaluator, out: &mut Vec<_>, minute: i64| {
        let window = Window {
            start: minute * MINUTE,
            end: (minute + 1) * MINUTE,
        };
        for (k, key) in keys.iter().enumerate() {
            let values = [Some(1.0), Some(value(minute, k))];
            evaluator.window(key, window, &values, true, out);
        }
        out.clear();
    };
    while minute < warm {
        step(&mut evaluator, &mut out, minute);
        minute += 1;
    }
    let mut group = c.benchmark_group("alert");
    group.throughput(Throughput::Elements(KEYS as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            step(&mut evaluator, &mut out, minute);
            minute += 1;
        })
    });
    group.finish();
}

fn threshold(c: &mut Criterion) {
    bench_rule(
        c,
        "threshold_for_by_key_1000",
        "CREATE ALERT errors_high ON api BY KEY WHEN errors > 140 FOR '2m'",
        10,
    );
}

fn change(c: &mut Criterion) {
    bench_rule(
        c,
        "change_vs_day_before_by_key_1000",
        "CREATE ALERT errors_up ON api BY KEY WHEN change(errors, offset(errors, '1d')) > 50",
        1441,
    );
}

fn anomaly(c: &mut Criterion) {
    bench_rule(
        c,
        "anomaly_seasonal_by_key_1000",
        "CREATE ALERT errors_odd ON api BY KEY WHEN anomaly(errors) \
         WITH (seasonality = '1d', seasons = 3, history = 51)",
        3 * 1440 + 10,
    );
}

/// Rules in the many-rules round.
const RULES: usize = 10_000;

fn many_rules(c: &mut Criterion) {
    let defaults = MetricDefaults {
        out_of_orderness: 0,
        allowed_lateness: 0,
        late: LatePolicy::Drop,
    };
    let plan = parse_metric(API, &defaults).unwrap();
    let mut evaluators: Vec<Evaluator> = (0..RULES)
        .map(|r| {
            let rule = format!(
                "CREATE ALERT rule_{r} ON api BY KEY WHEN errors > {} FOR '2m'",
                100 + r % 50
            );
            Evaluator::new(Arc::new(parse_alert(&rule).unwrap()), &plan).unwrap()
        })
        .collect();
    let keys: Vec<Vec<KeyValue>> = (0..KEYS)
        .map(|k| vec![KeyValue::Text(format!("/route/{k}"))])
        .collect();
    let mut out = Vec::new();
    let mut minute = 0;
    // As the server's runner feeds a page of final rows: values computed once per row, then
    // rule after rule over the page, each finding a key's instance by the key's number.
    let mut round = |evaluators: &mut [Evaluator], minute: i64| {
        let window = Window {
            start: minute * MINUTE,
            end: (minute + 1) * MINUTE,
        };
        let values: Vec<[Option<f64>; 2]> = (0..KEYS)
            .map(|k| {
                [
                    Some(1.0),
                    Some(100.0 + ((minute * 7 + k as i64 * 13) % 60) as f64),
                ]
            })
            .collect();
        for evaluator in evaluators.iter_mut() {
            for (k, key) in keys.iter().enumerate() {
                evaluator.window_by_id(k as u32, key, window, &values[k], true, &mut out);
            }
        }
        out.clear();
    };
    for _ in 0..3 {
        round(&mut evaluators, minute);
        minute += 1;
    }
    let mut group = c.benchmark_group("alert_round");
    group.sample_size(10);
    group.throughput(Throughput::Elements((RULES * KEYS) as u64));
    group.bench_function("threshold_10000_rules_by_key_1000", |b| {
        b.iter(|| {
            round(&mut evaluators, minute);
            minute += 1;
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("checkpoint_one_rule_1000_keys_json", |b| {
        b.iter(|| serde_json::to_vec(&evaluators[0].snapshot()).unwrap().len())
    });
    group.finish();
}

criterion_group!(benches, threshold, change, anomaly, many_rules);
criterion_main!(benches);
