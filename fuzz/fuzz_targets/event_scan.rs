//! Arbitrary records through the stream engine's processor (field extraction, evaluation,
//! windows): every input is counted as an event or as invalid, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_log::{Record, StoredRecord};
use sluice_stream::config::ProcessorConfig;
use sluice_stream::engine::output::Outputs;
use sluice_stream::engine::{Message, Processor};
use sluice_stream::plan::LatePolicy;
use sluice_stream::sql::{MetricDefaults, parse_metric};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let defaults = MetricDefaults { out_of_orderness: 1_000, allowed_lateness: 1_000, late: LatePolicy::Topic };
    let sql = "CREATE METRIC m AS SELECT lower(properties.url) AS url, COUNT(*), SUM(properties.x), \
               COUNT(DISTINCT user_id), APPROX_PERCENTILE(context.a.b, 0.5) FROM events \
               WHERE event LIKE '%a_' OR properties.n > 3 GROUP BY url, SESSION(timestamp, INTERVAL '1' SECOND)";
    let mut processor = Processor::new(0, 0, ProcessorConfig { idle_timeout: 1_000, max_open_windows: 100 });
    processor.add_metric(Arc::new(parse_metric(sql, &defaults).unwrap())).unwrap();
    let records: Vec<StoredRecord> = data
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| StoredRecord { offset: i as u64, record: Record::new(None, line.to_vec(), 0) })
        .collect();
    let mut out = Outputs::default();
    processor.handle(Message::Data { records: &records, now: 0 }, &mut out).unwrap();
    processor.handle(Message::Tick { now: i64::MAX / 2 }, &mut out).unwrap();
    let stats = processor.stats();
    assert_eq!(stats.records, records.len() as u64);
});
