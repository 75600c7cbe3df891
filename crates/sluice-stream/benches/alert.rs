//! Alert evaluation: the cost of one changed window for one rule (issue 19's target: ≤ 1 µs),
//! for a threshold rule with `FOR` over 1,000 keys (`BY KEY`), a change against the same
//! window a day before, and a seasonal anomaly rule. Reported per window.

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

criterion_group!(benches, threshold, change, anomaly);
criterion_main!(benches);
