//! Engine versus oracle on random streams, for every window kind and every aggregate; and
//! partials of partitions merged versus the whole stream.

use crate::generator::{Stream, stream};
use proptest::prelude::*;
use sluice_stream::agg::hll::{SPARSE_MAX, STANDARD_ERROR};
use sluice_stream::agg::{OutputValue, PartialState};
use sluice_stream::config::ProcessorConfig;
use sluice_stream::engine::output::{Outputs, UpdateKind};
use sluice_stream::engine::{Message, Processor};
use sluice_stream::oracle::{self, Expected, micros};
use sluice_stream::plan::{LatePolicy, MetricPlan};
use sluice_stream::sql::{MetricDefaults, parse_metric};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const IDLE_TIMEOUT: i64 = 5_000;

const AGGREGATES: &str = "COUNT(*) AS n, COUNT(properties.duration_ms) AS timed, \
    COUNT(DISTINCT user_id) AS users, SUM(properties.revenue) AS revenue, \
    MIN(properties.duration_ms) AS fastest, MAX(properties.duration_ms) AS slowest, \
    AVG(properties.revenue) AS avg_revenue, APPROX_PERCENTILE(properties.duration_ms, 0.9) AS p90, \
    COUNT(*) FILTER (WHERE type = 'page') AS pages, \
    SUM(properties.revenue) FILTER (WHERE properties.url IN ('/', '/pricing')) AS home_revenue";

const WINDOWS: [(&str, &str); 3] = [
    (
        "properties.url AS url",
        "url, TUMBLE(timestamp, INTERVAL '5' SECOND)",
    ),
    (
        "lower(properties.url) AS url",
        "url, HOP(timestamp, INTERVAL '2' SECOND, INTERVAL '6' SECOND)",
    ),
    (
        "user_id",
        "user_id, SESSION(timestamp, INTERVAL '1500' MILLISECOND)",
    ),
];

const FILTERS: [&str; 3] = [
    "",
    "WHERE event IN ('Page Viewed', 'Order Completed') OR type = 'page'",
    "WHERE properties.url LIKE '/%' AND NOT (properties.duration_ms < 100)",
];

fn metric(window: usize, filter: usize, ooo: i64, lateness: i64, drop: bool) -> Arc<MetricPlan> {
    let (key, group) = WINDOWS[window];
    let sql = format!(
        "CREATE METRIC m{window} AS SELECT {key}, {AGGREGATES} FROM events {} GROUP BY {group} \
         WITH (out_of_orderness = '{ooo}ms', allowed_lateness = '{lateness}ms', late = '{}')",
        FILTERS[filter],
        if drop { "drop" } else { "topic" }
    );
    let defaults = MetricDefaults {
        out_of_orderness: 0,
        allowed_lateness: 0,
        late: LatePolicy::Topic,
    };
    Arc::new(parse_metric(&sql, &defaults).unwrap_or_else(|e| panic!("{sql}: {e}")))
}

type Finals = BTreeMap<(String, String, (i64, i64)), PartialState>;

struct EngineRun {
    finals: Finals,
    late: BTreeMap<String, BTreeSet<u64>>,
    dropped: u64,
}

/// Feeds the stream as the oracle assumes: batch `i` at processing time 100·(i+1) plus the
/// idle time of earlier ticks; then one tick far in the future closes every window.
fn run_engine(plans: &[Arc<MetricPlan>], stream: &Stream, records: Option<&[usize]>) -> EngineRun {
    let config = ProcessorConfig {
        idle_timeout: IDLE_TIMEOUT,
        max_open_windows: 100_000,
    };
    let mut processor = Processor::new(0, 0, config);
    for plan in plans {
        processor.add_metric(plan.clone()).unwrap();
    }
    let selected: Vec<_> = match records {
        None => stream.records.clone(),
        Some(indexes) => indexes.iter().map(|&i| stream.records[i].clone()).collect(),
    };
    let mut out = Outputs::default();
    let mut now = 0;
    let mut position = 0;
    for &(size, tick) in &stream.batches {
        if records.is_some() {
            break;
        }
        now += 100;
        processor
            .handle(
                Message::Data {
                    records: &selected[position..position + size],
                    now,
                },
                &mut out,
            )
            .unwrap();
        position += size;
        if let Some(idle) = tick {
            now += idle;
            processor.handle(Message::Tick { now }, &mut out).unwrap();
        }
    }
    if records.is_some() {
        for chunk in selected.chunks(7) {
            now += 100;
            processor
                .handle(
                    Message::Data {
                        records: chunk,
                        now,
                    },
                    &mut out,
                )
                .unwrap();
        }
    }
    processor
        .handle(
            Message::Tick {
                now: now + 1_000_000_000_000,
            },
            &mut out,
        )
        .unwrap();
    let mut finals = Finals::new();
    for update in out
        .updates
        .into_iter()
        .filter(|u| u.kind == UpdateKind::Final)
    {
        let key = (
            update.metric.to_string(),
            update.key.to_string(),
            (update.window.start, update.window.end),
        );
        let previous = finals.insert(key.clone(), update.state.unwrap());
        assert!(previous.is_none(), "two final versions of {key:?}");
    }
    for plan in plans {
        assert!(
            processor.open_windows(&plan.name, None).unwrap().is_empty(),
            "everything closed"
        );
    }
    let mut late: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for event in out.late {
        late.entry(event.metric.to_string())
            .or_default()
            .insert(event.offset);
    }
    EngineRun {
        finals,
        late,
        dropped: processor.stats().late_dropped,
    }
}

fn check(
    plan: &MetricPlan,
    finals: &Finals,
    expected: &oracle::Answer,
) -> Result<(), TestCaseError> {
    let kinds: Vec<_> = plan.aggregates.iter().map(|a| a.kind).collect();
    let mine: BTreeMap<(String, (i64, i64)), &PartialState> = finals
        .iter()
        .filter(|((metric, ..), _)| *metric == plan.name)
        .map(|((_, key, window), state)| ((key.clone(), *window), state))
        .collect();
    let engine_windows: Vec<_> = mine.keys().collect();
    let oracle_windows: Vec<_> = expected.windows.keys().collect();
    prop_assert_eq!(
        engine_windows,
        oracle_windows,
        "{}: the same windows",
        plan.name
    );
    for (window, expectations) in &expected.windows {
        let values = mine[window].finalize(&kinds);
        for ((value, expected), kind) in values.iter().zip(expectations).zip(&kinds) {
            let ok = match (value, expected) {
                (OutputValue::Count(n), Expected::Count(e)) => n == e,
                (OutputValue::Count(n), Expected::Distinct(e)) => {
                    if *e as usize <= SPARSE_MAX {
                        n == e
                    } else {
                        (*n as f64 - *e as f64).abs() <= 5.0 * STANDARD_ERROR * *e as f64
                    }
                }
                (
                    OutputValue::Decimal(d),
                    Expected::Sum(Some(e)) | Expected::Min(Some(e)) | Expected::Max(Some(e)),
                ) => micros(&d.to_string()) == Some(*e),
                (
                    OutputValue::Null,
                    Expected::Sum(None)
                    | Expected::Min(None)
                    | Expected::Max(None)
                    | Expected::Percentile(None),
                ) => true,
                (OutputValue::Null, Expected::Avg(_, 0)) => true,
                (OutputValue::Decimal(d), Expected::Avg(sum, count)) => {
                    // Rounded half-even at the decimal's scale: |avg·count − sum| ≤ count/2 ulp.
                    let scale = u32::from(d.scale());
                    let ulp_sum = sum * 10i128.pow(scale - 6);
                    (d.mantissa() * i128::from(*count) - ulp_sum).abs() * 2 <= i128::from(*count)
                }
                (OutputValue::Float(f), Expected::Percentile(Some(e))) => {
                    let truth = *e as f64 / 1e6;
                    (f - truth).abs() <= 0.01 * truth.abs() + 1e-9
                }
                _ => false,
            };
            prop_assert!(
                ok,
                "{} {:?} {:?}: engine {} vs oracle {:?}",
                plan.name,
                window,
                kind,
                value,
                expected
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Every window kind and aggregate, with disorder, late events, lateness, idle ticks.
    #[test]
    fn engine_matches_the_oracle(
        stream in stream(300),
        window in 0usize..3,
        filter in 0usize..3,
        ooo in prop_oneof![Just(0i64), Just(1_000), Just(3_000)],
        lateness in prop_oneof![Just(0i64), Just(2_000), Just(20_000)],
        drop in any::<bool>(),
    ) {
        let plan = metric(window, filter, ooo, lateness, drop);
        let engine = run_engine(std::slice::from_ref(&plan), &stream, None);
        let expected = oracle::evaluate(&plan, &stream.records, &stream.batches, IDLE_TIMEOUT);
        check(&plan, &engine.finals, &expected)?;
        if drop {
            prop_assert!(engine.late.is_empty());
            prop_assert_eq!(engine.dropped, expected.late.len() as u64);
        } else {
            let late = engine.late.get(&plan.name).cloned().unwrap_or_default();
            prop_assert_eq!(late, expected.late);
        }
    }

    /// All three metrics at once in one processor give what each gives alone.
    #[test]
    fn metrics_sharing_a_processor_match_the_oracle(stream in stream(200), lateness in prop_oneof![Just(0i64), Just(5_000)]) {
        let plans: Vec<_> = (0..3).map(|w| metric(w, w, 1_000, lateness, false)).collect();
        let engine = run_engine(&plans, &stream, None);
        for plan in &plans {
            let expected = oracle::evaluate(plan, &stream.records, &stream.batches, IDLE_TIMEOUT);
            check(plan, &engine.finals, &expected)?;
            prop_assert_eq!(engine.late.get(&plan.name).cloned().unwrap_or_default(), expected.late);
        }
    }

    /// Events partitioned by user and processed separately merge into exactly the partials
    /// of the whole stream (no event late: out-of-orderness exceeds the disorder).
    #[test]
    fn partition_partials_merge_into_the_whole(stream in stream(300), partitions in 2u32..4) {
        let mut stream = stream;
        let records: Vec<_> = stream
            .records
            .iter()
            .filter(|r| {
                let json: serde_json::Value = serde_json::from_slice(&r.record.value).unwrap();
                json["timestamp"].as_i64().unwrap() + 5_000 > 1_700_000_000_000 + r.offset as i64 * 250
            })
            .cloned()
            .enumerate()
            .map(|(i, mut r)| { r.offset = i as u64; r })
            .collect();
        stream.records = records;
        let plans: Vec<_> = (0..3).map(|w| metric(w, 0, 5_000, 0, false)).collect();
        let whole = run_engine(&plans, &stream, Some(&(0..stream.records.len()).collect::<Vec<_>>()));
        prop_assert!(whole.late.is_empty());
        let mut merged = Finals::new();
        for partition in 0..partitions {
            let mine: Vec<usize> = (0..stream.records.len())
                .filter(|&i| {
                    let key = stream.records[i].record.key.as_ref().unwrap();
                    sluice_log::partition_for_key(key, partitions) == partition
                })
                .collect();
            let run = run_engine(&plans, &stream, Some(&mine));
            prop_assert!(run.late.is_empty());
            for (key, state) in run.finals {
                match merged.get_mut(&key) {
                    Some(existing) => existing.merge(&state).unwrap(),
                    None => { merged.insert(key, state); }
                }
            }
        }
        prop_assert_eq!(merged, whole.finals);
    }
}
