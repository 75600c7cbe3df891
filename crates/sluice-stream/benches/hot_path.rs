//! The hot path: evaluating the DESIGN.md example metric over synthetic stored events
//! (scan the JSON, filter, key, aggregate inputs, window lookup, state update), in batches
//! as the partition task hands them over. Reported per event. Also the checkpoint's share of
//! the work: encoding the window states a barrier hands over, reported per state.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice_core::synthetic::{EXAMPLE_METRIC, Synthetic};
use sluice_log::{Record, StoredRecord};
use sluice_stream::agg::PartialState;
use sluice_stream::config::ProcessorConfig;
use sluice_stream::engine::output::Outputs;
use sluice_stream::engine::{Message, Processor};
use sluice_stream::json::FieldSet;
use sluice_stream::plan::{LatePolicy, MetricPlan};
use sluice_stream::sql::{MetricDefaults, parse_metric};
use std::sync::Arc;

/// The DESIGN.md example metric, as the benchmarks run it.
fn example_plan() -> Arc<MetricPlan> {
    let defaults = MetricDefaults {
        out_of_orderness: 10_000,
        allowed_lateness: 0,
        late: LatePolicy::Topic,
    };
    Arc::new(parse_metric(EXAMPLE_METRIC, &defaults).unwrap())
}

/// `count` synthetic events as the log stores them.
fn synthetic_records(count: u64) -> Vec<StoredRecord> {
    let mut source = Synthetic::new(1, 1_714_564_800_000);
    (0..count)
        .map(|offset| {
            let (key, json) = source.next_event();
            StoredRecord {
                offset,
                record: Record::new(Some(key.into_bytes().into()), json, 0),
            }
        })
        .collect()
}

/// A processor of partition 0 running `plan`.
fn example_processor(plan: Arc<MetricPlan>) -> Processor {
    let mut processor = Processor::new(
        0,
        0,
        ProcessorConfig {
            idle_timeout: 5_000,
            max_open_windows: 1_000_000,
        },
    );
    processor.add_metric(plan).unwrap();
    processor
}

fn hot_path(c: &mut Criterion) {
    let plan = example_plan();
    let records = synthetic_records(200_000);
    let mut group = c.benchmark_group("stream");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.sample_size(10);
    group.bench_function("design_example_metric", |b| {
        b.iter_batched(
            || example_processor(plan.clone()),
            |mut processor| {
                let mut out = Outputs::default();
                for chunk in records.chunks(2_000) {
                    processor
                        .handle(
                            Message::Data {
                                records: chunk,
                                now: 0,
                            },
                            &mut out,
                        )
                        .unwrap();
                    out.updates.clear();
                    out.late.clear();
                }
                processor
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// The field scan alone, for the fields of the DESIGN.md example metric (as the processor
/// compiles them: tenant, timestamp, then the metric's fields), without the filter's gate.
fn field_scan(c: &mut Criterion) {
    let mut source = Synthetic::new(1, 1_714_564_800_000);
    let events: Vec<Vec<u8>> = (0..20_000).map(|_| source.next_event().1).collect();
    let paths: Vec<Vec<&str>> = [
        "tenant",
        "timestamp",
        "properties.url",
        "user_id",
        "properties.duration_ms",
        "event",
    ]
    .iter()
    .map(|path| path.split('.').collect())
    .collect();
    let fields = FieldSet::new(&paths);
    let mut slots = Vec::new();
    let mut group = c.benchmark_group("json");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("scan_example_metric_fields", |b| {
        b.iter(|| {
            for event in &events {
                fields.scan(event, &mut slots).unwrap();
            }
            slots[0]
        })
    });
    group.finish();
}

/// Encoding the partial states of a checkpoint, as a processor does at a barrier: the
/// DESIGN.md example metric's windows (a count, an average, a HyperLogLog and a DDSketch
/// each) after 400,000 synthetic events, appended to one buffer kept from the previous
/// checkpoint.
fn checkpoint_encode(c: &mut Criterion) {
    let records = synthetic_records(400_000);
    let plan = example_plan();
    let kinds: Vec<_> = plan.aggregates.iter().map(|a| a.kind).collect();
    let mut processor = example_processor(plan);
    let mut out = Outputs::default();
    for chunk in records.chunks(2_000) {
        let data = Message::Data {
            records: chunk,
            now: 0,
        };
        processor.handle(data, &mut out).unwrap();
    }
    processor
        .handle(Message::Barrier { id: 1 }, &mut out)
        .unwrap();
    let metric = &out.checkpoints[0].metrics[0];
    let states: Vec<PartialState> = metric
        .closed
        .iter()
        .chain(metric.changed.iter())
        .map(|row| PartialState::decode(row.state, Some(&kinds)).unwrap())
        .collect();
    let mut buffer = Vec::new();
    let mut group = c.benchmark_group("checkpoint");
    group.throughput(Throughput::Elements(states.len() as u64));
    group.sample_size(20);
    group.bench_function("encode_example_metric_states", |b| {
        b.iter(|| {
            buffer.clear();
            for state in &states {
                state.encode_append(&mut buffer);
            }
            buffer.len()
        })
    });
    group.finish();
}

criterion_group!(benches, hot_path, field_scan, checkpoint_encode);
criterion_main!(benches);
