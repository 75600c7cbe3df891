//! Reading a stopped server's results from its store and events from its log, and asking the
//! oracle what the results should be.

use sluice::config::Config;
use sluice_log::{Log, LogBackend, ReadOptions, StoredRecord};
use sluice_pipelines::partial_row;
use sluice_store::StoreBackend;
use sluice_store::model::RowQuery;
use sluice_stream::agg::{OutputValue, PartialState};
use sluice_stream::oracle::{self, Expected};
use sluice_stream::plan::MetricPlan;
use std::collections::BTreeMap;
use std::time::Duration;

pub(crate) type Window = (i64, i64);

/// A metric's results: per (key as the engine prints it, window), each aggregate's value.
pub(crate) type Results = BTreeMap<(String, Window), Vec<OutputValue>>;

/// Every record of the events topic, per partition, in offset order.
pub(crate) async fn events(config: &Config) -> Vec<Vec<StoredRecord>> {
    topic(config, &config.ingest.events_topic).await
}

/// Every record of `name`, per partition (none if the topic does not exist).
pub(crate) async fn topic(config: &Config, name: &str) -> Vec<Vec<StoredRecord>> {
    // A broker busy with the other tests may miss the connect timeout once or twice.
    let mut attempts = 0;
    let log = loop {
        match LogBackend::open(&config.log, &config.data_dir).await {
            Ok(log) => break log,
            Err(error) if attempts < 3 => {
                attempts += 1;
                eprintln!("opening the log to read it back: {error}; trying again");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            Err(error) => panic!("opening the log to read it back: {error}"),
        }
    };
    let mut records = Vec::new();
    let info = log.describe(Some(name)).await.unwrap_or_default();
    for partition in info.iter().flat_map(|topic| &topic.partitions) {
        let mut offset = partition.start_offset;
        let mut partition_records = Vec::new();
        while offset < partition.end_offset {
            let batch = log
                .read(
                    name,
                    partition.partition,
                    offset,
                    ReadOptions {
                        max_bytes: 8 << 20,
                        max_wait: Duration::ZERO,
                    },
                )
                .await
                .unwrap();
            offset = batch.next_offset(offset);
            partition_records.extend(batch.records);
        }
        records.push(partition_records);
    }
    log.close().await.unwrap();
    records
}

/// The committed results of a metric, merged over partitions.
pub(crate) async fn stored(config: &Config, plan: &MetricPlan, tenant: &str) -> Results {
    let store = StoreBackend::open(&config.store, &config.data_dir)
        .await
        .unwrap();
    let generation = store
        .metrics()
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.name == plan.name)
        .unwrap()
        .generation;
    let query = RowQuery {
        metric: plan.name.clone(),
        generation,
        tenant: tenant.into(),
        from: i64::MIN,
        to: i64::MAX,
    };
    let mut merged: BTreeMap<(String, Window), PartialState> = BTreeMap::new();
    for row in store.query_rows(query).await.unwrap() {
        let partial = partial_row(&row, plan).unwrap();
        let key = (partial.key.to_string(), (row.window_start, row.window_end));
        match merged.get_mut(&key) {
            Some(state) => state.merge(&partial.state).unwrap(),
            None => {
                merged.insert(key, partial.state);
            }
        }
    }
    let kinds: Vec<_> = plan.aggregates.iter().map(|a| a.kind).collect();
    merged
        .into_iter()
        .map(|(key, state)| (key, state.finalize(&kinds)))
        .collect()
}

/// What the oracle says the results are: each partition's records evaluated as its own
/// stream (as the engine computes them, with per-partition watermarks) in one batch, and
/// merged. The tests send no late events, so batch boundaries and processing time do not
/// matter.
pub(crate) fn expected(
    plan: &MetricPlan,
    partitions: &[Vec<StoredRecord>],
) -> BTreeMap<(String, Window), Vec<Expected>> {
    let mut merged: BTreeMap<(String, Window), Vec<Expected>> = BTreeMap::new();
    for records in partitions {
        let answer = oracle::evaluate(plan, records, &[(records.len(), None)], i64::MAX);
        assert!(
            answer.late.is_empty(),
            "the test's events were meant to be on time: {} late",
            answer.late.len()
        );
        for (window, values) in answer.windows {
            match merged.get_mut(&window) {
                None => {
                    merged.insert(window, values);
                }
                Some(existing) => {
                    for (into, from) in existing.iter_mut().zip(values) {
                        *into = combine(into, &from);
                    }
                }
            }
        }
    }
    merged
}

/// Two partitions' expectations of one exact aggregate, combined.
fn combine(a: &Expected, b: &Expected) -> Expected {
    let either = |x: &Option<i128>, y: &Option<i128>, pick: fn(i128, i128) -> i128| match (x, y) {
        (Some(x), Some(y)) => Some(pick(*x, *y)),
        (x, y) => x.or(*y),
    };
    match (a, b) {
        (Expected::Count(x), Expected::Count(y)) => Expected::Count(x + y),
        (Expected::Sum(x), Expected::Sum(y)) => Expected::Sum(either(x, y, |x, y| x + y)),
        (Expected::Min(x), Expected::Min(y)) => Expected::Min(either(x, y, i128::min)),
        (Expected::Max(x), Expected::Max(y)) => Expected::Max(either(x, y, i128::max)),
        (Expected::Avg(s, c), Expected::Avg(t, d)) => Expected::Avg(s + t, c + d),
        (a, b) => panic!("only exact aggregates combine: {a:?} and {b:?}"),
    }
}

/// Asserts the stored results equal the oracle's, exactly, window by window.
pub(crate) fn assert_exact(
    plan: &MetricPlan,
    stored: &Results,
    expected: &BTreeMap<(String, Window), Vec<Expected>>,
) {
    let stored_windows: Vec<_> = stored.keys().collect();
    let expected_windows: Vec<_> = expected.keys().collect();
    assert_eq!(
        stored_windows.len(),
        expected_windows.len(),
        "{}: window count",
        plan.name
    );
    assert_eq!(
        stored_windows, expected_windows,
        "{}: the same windows",
        plan.name
    );
    for (window, expectations) in expected {
        for ((value, expectation), aggregate) in stored[window]
            .iter()
            .zip(expectations)
            .zip(&plan.aggregates)
        {
            let agrees =
                oracle::agrees_exactly(value, expectation).expect("the tests use exact aggregates");
            assert!(
                agrees,
                "{} {window:?} {:?}: stored {value} vs oracle {expectation:?}",
                plan.name, aggregate.kind
            );
        }
    }
}
