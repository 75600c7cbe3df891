use super::output::{LateReason, PartialRow, UpdateKind, WindowUpdate};
use super::*;
use crate::agg::OutputValue;
use crate::keys::GroupKey;
use crate::sql::{MetricDefaults, parse_metric};
use crate::window::Window;
use bytes::Bytes;
use sluice_log::Record;

const CONFIG: ProcessorConfig = ProcessorConfig {
    idle_timeout: 5_000,
    max_open_windows: 1_000,
};

fn plan(sql: &str) -> Arc<MetricPlan> {
    let defaults = MetricDefaults {
        out_of_orderness: 0,
        allowed_lateness: 0,
        late: LatePolicy::Topic,
    };
    Arc::new(parse_metric(sql, &defaults).unwrap_or_else(|e| panic!("{e}")))
}

fn record(offset: u64, json: String) -> StoredRecord {
    StoredRecord {
        offset,
        record: Record::new(Some(Bytes::from_static(b"k")), json, 0),
    }
}

fn view(offset: u64, time: Millis, user: &str, url: &str, duration: u32) -> StoredRecord {
    record(
        offset,
        format!(
            r#"{{"tenant":"shop","type":"track","event":"Page Viewed","user_id":"{user}","timestamp":{time},"properties":{{"url":"{url}","duration_ms":{duration}}}}}"#
        ),
    )
}

struct Run {
    processor: Processor,
    out: Outputs,
    offset: u64,
}

impl Run {
    fn new(metrics: &[&str]) -> Run {
        let mut processor = Processor::new(3, 0, CONFIG);
        for sql in metrics {
            processor.add_metric(plan(sql)).unwrap();
        }
        Run {
            processor,
            out: Outputs::default(),
            offset: 0,
        }
    }

    fn views(&mut self, events: &[(Millis, &str, &str, u32)], now: Millis) {
        let records: Vec<StoredRecord> = events
            .iter()
            .map(|&(time, user, url, duration)| {
                self.offset += 1;
                view(self.offset - 1, time, user, url, duration)
            })
            .collect();
        self.processor
            .handle(
                Message::Data {
                    records: &records,
                    now,
                },
                &mut self.out,
            )
            .unwrap();
    }

    /// Events (JSON), as one batch read at processing time 1, at the next offsets.
    fn events<S: AsRef<str>>(&mut self, events: &[S]) {
        let records: Vec<StoredRecord> = events
            .iter()
            .map(|json| {
                self.offset += 1;
                record(self.offset - 1, json.as_ref().to_owned())
            })
            .collect();
        self.processor
            .handle(
                Message::Data {
                    records: &records,
                    now: 1,
                },
                &mut self.out,
            )
            .unwrap();
    }

    /// The derived records so far, parsed.
    fn records(&self) -> Vec<serde_json::Value> {
        self.out
            .records
            .iter()
            .map(|r| serde_json::from_slice(&r.value).unwrap())
            .collect()
    }

    fn tick(&mut self, now: Millis) {
        self.processor
            .handle(Message::Tick { now }, &mut self.out)
            .unwrap();
    }

    fn updates(&mut self) -> Vec<String> {
        self.out.updates.drain(..).map(|u| describe(&u)).collect()
    }
}

fn describe(update: &WindowUpdate) -> String {
    let values = update
        .state
        .as_ref()
        .map(|s| {
            s.states
                .iter()
                .map(|state| {
                    state
                        .finalize(&crate::plan::AggregateKind::Count)
                        .to_string()
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    format!(
        "{} {} [{},{}) v{} {:?} {}",
        update.metric,
        update.key,
        update.window.start,
        update.window.end,
        update.version,
        update.kind,
        values
    )
}

const COUNTS: &str =
    "CREATE METRIC views AS SELECT properties.url AS url, COUNT(*) AS n FROM events
    WHERE event = 'Page Viewed' GROUP BY url, TUMBLE(timestamp, INTERVAL '10' SECOND)";

#[test]
fn tumbling_windows_fire_when_the_watermark_passes_their_end() {
    let mut run = Run::new(&[COUNTS]);
    run.views(
        &[
            (1_000, "u1", "/a", 5),
            (2_000, "u2", "/a", 5),
            (3_000, "u1", "/b", 5),
        ],
        0,
    );
    assert!(run.updates().is_empty(), "watermark 3000 < end 10000");
    assert_eq!(
        run.processor
            .open_windows("views", Some("shop"))
            .unwrap()
            .len(),
        2
    );
    assert!(
        run.processor
            .open_windows("views", Some("other"))
            .unwrap()
            .is_empty()
    );
    run.views(&[(10_000, "u1", "/a", 5)], 0);
    assert_eq!(
        run.updates(),
        [
            "views shop \"/a\" [0,10000) v1 Final 2",
            "views shop \"/b\" [0,10000) v1 Final 1"
        ]
    );
    // Late for [0, 10000): the watermark is 10000 and the lateness 0.
    run.views(&[(9_999, "u3", "/a", 5)], 0);
    assert_eq!(run.out.late.len(), 1);
    let late = &run.out.late[0];
    assert_eq!(
        (late.offset, late.reason, late.watermark),
        (4, LateReason::WindowClosed, 10_000)
    );
    assert_eq!(run.processor.stats().late, 1);
    let record = late.to_record(42);
    let body: serde_json::Value = serde_json::from_slice(&record.value).unwrap();
    assert_eq!(body["metric"], "views");
    assert_eq!(body["reason"], "window_closed");
    assert_eq!(body["event"]["user_id"], "u3");
    assert_eq!(record.headers[0].value, Bytes::from_static(b"views:3:4"));
}

#[test]
fn allowed_lateness_emits_new_versions_then_a_final_one() {
    let sql = "CREATE METRIC views AS SELECT COUNT(*) AS n FROM events GROUP BY TUMBLE(timestamp, INTERVAL '10' SECOND) WITH (allowed_lateness = '5s', out_of_orderness = '1s')";
    let mut run = Run::new(&[sql]);
    run.views(&[(1_000, "u", "/", 1), (11_000, "u", "/", 1)], 0);
    assert_eq!(run.updates(), ["views shop [0,10000) v1 Update 1"]);
    run.views(&[(2_000, "u", "/", 1), (3_000, "u", "/", 1)], 0);
    assert_eq!(run.updates(), ["views shop [0,10000) v2 Update 3"]);
    run.views(&[(4_000, "u", "/", 1), (15_000, "u", "/", 1)], 0);
    assert_eq!(run.updates(), ["views shop [0,10000) v3 Update 4"]);
    // Watermark 15000 = end + lateness: closed.
    run.views(&[(16_000, "u", "/", 1)], 0);
    assert_eq!(run.updates(), ["views shop [0,10000) v4 Final 4"]);
    run.views(&[(5_000, "u", "/", 1)], 0);
    assert_eq!(run.out.late.len(), 1);
}

#[test]
fn late_events_are_dropped_and_counted_when_the_metric_says_so() {
    let sql = "CREATE METRIC views AS SELECT COUNT(*) AS n FROM events GROUP BY TUMBLE(timestamp, INTERVAL '10' SECOND) WITH (late = 'drop')";
    let mut run = Run::new(&[sql]);
    run.views(&[(20_000, "u", "/", 1), (1_000, "u", "/", 1)], 0);
    assert!(run.out.late.is_empty());
    assert_eq!(run.processor.stats().late_dropped, 1);
}

#[test]
fn a_late_event_bridging_two_sessions_merges_them() {
    let sql = "CREATE METRIC visits AS SELECT user_id, COUNT(*) AS n FROM events
        GROUP BY user_id, SESSION(timestamp, INTERVAL '10' SECOND) WITH (allowed_lateness = '1m')";
    let mut run = Run::new(&[sql]);
    run.views(
        &[
            (0, "u", "/", 1),
            (5_000, "u", "/", 1),
            (30_000, "u", "/", 1),
            (31_000, "v", "/", 1),
        ],
        0,
    );
    // Session [0, 15000) fired at watermark 31000; the others are still open.
    assert_eq!(run.updates(), ["visits shop \"u\" [0,15000) v1 Update 2"]);
    run.views(&[(22_000, "u", "/", 1)], 0);
    // [22000, 32000) bridges [0, 15000)? No: 15000 <= 22000. It merges with [30000, 40000).
    assert!(run.updates().is_empty());
    run.views(&[(14_000, "u", "/", 1)], 0);
    // [14000, 24000) overlaps [0, 15000) and [22000, 40000): one session [0, 40000).
    assert_eq!(run.updates(), ["visits shop \"u\" [0,15000) v2 Retract "]);
    let open = run.processor.open_windows("visits", None).unwrap();
    let mut bounds: Vec<(String, Millis, Millis)> = open
        .iter()
        .map(|w| (w.key.to_string(), w.window.start, w.window.end))
        .collect();
    bounds.sort();
    assert_eq!(
        bounds,
        [
            ("shop \"u\"".into(), 0, 40_000),
            ("shop \"v\"".into(), 31_000, 41_000)
        ]
    );
    let merged = open.iter().find(|w| w.window.start == 0).unwrap();
    assert_eq!(
        merged.state.states[0].finalize(&crate::plan::AggregateKind::CountStar),
        OutputValue::Count(5)
    );
    run.views(&[(200_000, "w", "/", 1)], 0);
    assert_eq!(
        run.updates(),
        [
            "visits shop \"u\" [0,40000) v3 Final 5",
            "visits shop \"v\" [31000,41000) v1 Final 1"
        ]
    );
}

#[test]
fn an_idle_partition_closes_its_windows_by_processing_time() {
    let mut run = Run::new(&[COUNTS]);
    run.views(&[(1_000, "u1", "/a", 5)], 1_000_000);
    run.tick(1_004_000);
    assert!(run.updates().is_empty());
    run.tick(1_009_000);
    assert_eq!(run.processor.event_time(), Some(10_000));
    assert_eq!(run.updates(), ["views shop \"/a\" [0,10000) v1 Final 1"]);
}

#[test]
fn invalid_records_are_counted_and_skipped() {
    let mut run = Run::new(&[COUNTS]);
    let records = [
        record(0, "not json".into()),
        record(1, r#"{"timestamp":5}"#.into()),
        record(2, r#"{"tenant":"shop","timestamp":-5}"#.into()),
        record(3, r#"{"tenant":"shop","timestamp":"yesterday"}"#.into()),
        record(
            4,
            r#"{"tenant":"shop","timestamp":1.5e3,"event":"Page Viewed"}"#.into(),
        ),
    ];
    run.processor
        .handle(
            Message::Data {
                records: &records,
                now: 0,
            },
            &mut run.out,
        )
        .unwrap();
    let stats = run.processor.stats();
    assert_eq!((stats.records, stats.invalid), (5, 4));
    assert_eq!(run.processor.event_time(), Some(1_500));
    assert_eq!(run.processor.next_offset(), 5);
    // Records before the next offset are not counted twice.
    run.processor
        .handle(
            Message::Data {
                records: &records,
                now: 0,
            },
            &mut run.out,
        )
        .unwrap();
    assert_eq!(run.processor.stats().records, 5);
}

#[test]
fn numbers_out_of_the_decimal_range_are_counted_and_overflowed_sums_shown() {
    let mut run = Run::new(&[
        "CREATE METRIC revenue AS SELECT properties.shop AS shop, SUM(properties.amount) AS total,
         MAX(properties.amount) AS top, COUNT(properties.amount) AS n FROM events
         GROUP BY shop, TUMBLE(timestamp, INTERVAL '10' SECOND)",
    ]);
    let event = |offset: u64, shop: &str, amount: &str| {
        record(
            offset,
            format!(
                r#"{{"tenant":"t","type":"track","timestamp":1000,"properties":{{"shop":"{shop}","amount":{amount}}}}}"#
            ),
        )
    };
    let records = [
        event(0, "a", "9.99e300"),
        event(1, "a", "\"-1e39\""),
        event(2, "a", "5"),
        event(3, "b", "1e38"),
        event(4, "b", "1e38"),
        event(5, "b", "\"not a number\""),
    ];
    run.processor
        .handle(
            Message::Data {
                records: &records,
                now: 0,
            },
            &mut run.out,
        )
        .unwrap();
    // Two values out of range, each skipped by SUM and MAX: four (aggregate, event) pairs.
    assert_eq!(run.processor.stats().out_of_range, 4);
    let finalized = |shop: &str| {
        let windows = run.processor.open_windows("revenue", Some("t")).unwrap();
        let window = windows
            .iter()
            .find(|window| window.key.to_string().contains(shop))
            .unwrap();
        let plan = plan(
            "CREATE METRIC x AS SELECT SUM(properties.a) AS s, MAX(properties.a) AS m, COUNT(properties.a) AS n FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' SECOND)",
        );
        window
            .state
            .finalize(plan.aggregates.iter().map(|a| &a.kind))
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        finalized("\"a\""),
        ["5", "5", "3"],
        "numbers out of range are present for COUNT"
    );
    // "not a number" is text: SUM and MAX ignore it (not counted as out of range), COUNT counts it.
    assert_eq!(
        finalized("\"b\""),
        ["overflow", "100000000000000000000000000000000000000", "3"]
    );
}

#[test]
fn the_open_window_limit_reports_events_instead_of_growing() {
    let mut processor = Processor::new(
        0,
        0,
        ProcessorConfig {
            max_open_windows: 2,
            ..CONFIG
        },
    );
    processor.add_metric(plan(COUNTS)).unwrap();
    let records: Vec<StoredRecord> = (0..4)
        .map(|i| view(i, 1_000, "u", &format!("/{i}"), 1))
        .collect();
    let mut out = Outputs::default();
    processor
        .handle(
            Message::Data {
                records: &records,
                now: 0,
            },
            &mut out,
        )
        .unwrap();
    let reasons: Vec<LateReason> = out.late.iter().map(|l| l.reason).collect();
    assert_eq!(
        reasons,
        [
            LateReason::TooManyOpenWindows,
            LateReason::TooManyOpenWindows
        ]
    );
    assert_eq!(processor.open_windows("views", None).unwrap().len(), 2);
}

#[test]
fn metrics_are_added_and_removed_without_disturbing_the_others() {
    let totals = "CREATE METRIC totals AS SELECT COUNT(*) AS n FROM events GROUP BY TUMBLE(timestamp, INTERVAL '10' SECOND)";
    let mut run = Run::new(&[COUNTS]);
    run.views(&[(1_000, "u1", "/a", 5)], 0);
    run.processor
        .handle(Message::AddMetric(plan(totals)), &mut run.out)
        .unwrap();
    assert!(matches!(
        run.processor
            .handle(Message::AddMetric(plan(totals)), &mut run.out),
        Err(StreamError::DuplicateMetric(_))
    ));
    run.views(&[(2_000, "u1", "/a", 5)], 0);
    run.processor
        .handle(Message::RemoveMetric("views".into()), &mut run.out)
        .unwrap();
    assert_eq!(run.processor.metric_names(), ["totals"]);
    run.views(&[(3_000, "u1", "/a", 5), (20_000, "u", "/", 1)], 0);
    assert_eq!(run.updates(), ["totals shop [0,10000) v1 Final 2"]);
    assert!(run.processor.open_windows("views", None).is_err());
}

/// Rows as a store holds them: (metric, key, window start, end) → (version, encoded state).
type StoredRows = std::collections::BTreeMap<(String, Vec<u8>, Millis, Millis), (u32, Vec<u8>)>;

/// Rows as a store would hold them after applying checkpoint deltas in order.
fn apply(store: &mut StoredRows, checkpoint: &Checkpoint) {
    for metric in &checkpoint.metrics {
        for (key, window) in &metric.retracted {
            store.remove(&(
                metric.metric.to_string(),
                key.as_bytes().to_vec(),
                window.start,
                window.end,
            ));
        }
        // Closed windows stay beside the open ones here: restoring skips them.
        for row in metric.closed.iter().chain(metric.changed.iter()) {
            store.insert(
                (
                    metric.metric.to_string(),
                    row.key.to_vec(),
                    row.window_start,
                    row.window_end,
                ),
                (row.version, row.state.to_vec()),
            );
        }
    }
}

/// The stored rows of `plan`'s metric, decoded, to restore a processor from.
fn stored_rows(store: &StoredRows, plan: &MetricPlan) -> Vec<PartialRow> {
    let kinds: Vec<_> = plan.aggregates.iter().map(|a| a.kind).collect();
    store
        .iter()
        .filter(|((metric, ..), _)| *metric == plan.name)
        .map(|((_, key, start, end), (version, state))| {
            let row = super::rows::ChangedRow {
                tenant: "",
                key,
                window_start: *start,
                window_end: *end,
                version: *version,
                state,
            };
            PartialRow::decode(row, &kinds).unwrap()
        })
        .collect()
}

#[test]
fn a_processor_restored_from_checkpoints_continues_exactly() {
    let sessions = "CREATE METRIC visits AS SELECT user_id, COUNT(*) AS n, AVG(properties.duration_ms) AS d, COUNT(DISTINCT properties.url) AS u FROM events
        GROUP BY user_id, SESSION(timestamp, INTERVAL '10' SECOND) WITH (allowed_lateness = '30s', out_of_orderness = '2s')";
    let hops = "CREATE METRIC hops AS SELECT properties.url AS url, SUM(properties.duration_ms) AS s FROM events
        GROUP BY url, HOP(timestamp, INTERVAL '5' SECOND, INTERVAL '15' SECOND) WITH (allowed_lateness = '10s')";
    let plans = [plan(sessions), plan(hops)];
    let events: Vec<StoredRecord> = (0..300u64)
        .map(|i| {
            let time = (i as Millis) * 700 - ((i * 7919) % 13) as Millis * 900;
            view(
                i,
                time.max(0),
                &format!("u{}", i % 5),
                &format!("/{}", i % 3),
                (i % 17) as u32,
            )
        })
        .collect();
    let run_all = |cut: Option<usize>| -> Vec<WindowUpdate> {
        let mut processor = Processor::new(0, 0, CONFIG);
        for plan in &plans {
            processor.add_metric(plan.clone()).unwrap();
        }
        let mut out = Outputs::default();
        let mut store = StoredRows::new();
        let mut barrier = 0;
        for (index, chunk) in events.chunks(20).enumerate() {
            if Some(index) == cut {
                processor
                    .handle(Message::Barrier { id: barrier }, &mut out)
                    .unwrap();
                barrier += 1;
                for checkpoint in out.checkpoints.drain(..) {
                    apply(&mut store, &checkpoint);
                }
                let offset = processor.next_offset();
                let event_time = processor.event_time();
                let state = RestoreState {
                    offset,
                    event_time,
                    metrics: plans
                        .iter()
                        .map(|plan| (plan.clone(), stored_rows(&store, plan)))
                        .collect(),
                };
                processor = Processor::restore(0, CONFIG, state, 0).unwrap();
                // The restored processor re-reads from its offset: nothing twice.
                processor
                    .handle(
                        Message::Data {
                            records: &events[..offset as usize],
                            now: 0,
                        },
                        &mut out,
                    )
                    .unwrap();
            }
            processor
                .handle(
                    Message::Data {
                        records: chunk,
                        now: 0,
                    },
                    &mut out,
                )
                .unwrap();
            if index % 3 == 0 {
                processor
                    .handle(Message::Barrier { id: barrier }, &mut out)
                    .unwrap();
                barrier += 1;
                for checkpoint in out.checkpoints.drain(..) {
                    apply(&mut store, &checkpoint);
                }
            }
        }
        processor
            .handle(Message::Tick { now: 10_000_000 }, &mut out)
            .unwrap();
        processor
            .handle(Message::Tick { now: 20_000_000 }, &mut out)
            .unwrap();
        out.updates.retain(|u| u.kind == UpdateKind::Final);
        out.updates
            .sort_by_key(|u| (u.metric.to_string(), u.key.as_bytes().to_vec(), u.window));
        out.updates
    };
    let whole = run_all(None);
    assert!(whole.len() > 20, "{} final windows", whole.len());
    for cut in [1, 4, 7, 13] {
        let restored = run_all(Some(cut));
        let strip = |updates: &[WindowUpdate]| -> Vec<(String, String, Window, Option<crate::agg::PartialState>)> {
            updates.iter().map(|u| (u.metric.to_string(), u.key.to_string(), u.window, u.state.clone())).collect()
        };
        assert_eq!(
            strip(&restored),
            strip(&whole),
            "restored after chunk {cut}"
        );
    }
}

#[test]
fn keys_that_are_not_utf8_are_reported_not_fatal() {
    let mut run = Run::new(&[COUNTS]);
    let mut bytes =
        br#"{"tenant":"shop","event":"Page Viewed","timestamp":1000,"properties":{"url":"/"#
            .to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(br#""}}"#);
    let records = [StoredRecord {
        offset: 0,
        record: Record::new(None, bytes, 0),
    }];
    run.processor
        .handle(
            Message::Data {
                records: &records,
                now: 0,
            },
            &mut run.out,
        )
        .unwrap();
    let reasons: Vec<LateReason> = run.out.late.iter().map(|l| l.reason).collect();
    assert_eq!(reasons, [LateReason::InvalidKey]);
    run.offset = 1;
    run.views(&[(2_000, "u", "/ok", 1)], 0);
    assert_eq!(run.processor.open_windows("views", None).unwrap().len(), 1);
}

#[test]
fn buffered_records_are_processed_exactly_like_stored_ones() {
    let mut records = Vec::new();
    for i in 0..60u64 {
        let time = 1_000 + (i as Millis % 7) * 3_000 - (i as Millis % 3) * 2_500;
        records.push(view(
            i,
            time,
            &format!("u{}", i % 5),
            &format!("/p{}", i % 3),
            10,
        ));
    }
    records.push(record(60, "not json".into()));
    // Late: far behind everything else.
    records.push(view(61, 0, "u", "/late", 1));
    let run = |buffered: bool| {
        let mut processor = Processor::new(3, 2, CONFIG);
        processor.add_metric(plan(COUNTS)).unwrap();
        let mut out = Outputs::default();
        for chunk in records.chunks(9) {
            if buffered {
                let mut buffer = ReadBuffer::new();
                chunk.iter().for_each(|record| buffer.push(record));
                let message = Message::Buffered {
                    records: &buffer,
                    now: 0,
                };
                processor.handle(message, &mut out).unwrap();
            } else {
                let message = Message::Data {
                    records: chunk,
                    now: 0,
                };
                processor.handle(message, &mut out).unwrap();
            }
        }
        processor
            .handle(Message::Barrier { id: 1 }, &mut out)
            .unwrap();
        (processor.stats(), processor.next_offset(), out)
    };
    let (stored, buffered) = (run(false), run(true));
    assert_eq!(stored.0, buffered.0);
    assert!(stored.0.invalid >= 1 && stored.0.late >= 1);
    assert_eq!(stored.1, buffered.1);
    assert_eq!(stored.2.updates, buffered.2.updates);
    assert_eq!(stored.2.late, buffered.2.late);
    let last_late = stored.2.late.last().unwrap();
    assert_eq!(last_late.offset, 61);
    assert_eq!(last_late.key, records[61].record.key);
    assert_eq!(last_late.value, records[61].record.value);
    assert_eq!(stored.2.checkpoints, buffered.2.checkpoints);
}

#[test]
fn stored_rows_overlaid_with_the_live_windows_equal_the_next_checkpoint() {
    // Sessions merge (retractions), windows close between checkpoints (closed rows), and
    // allowed lateness re-opens fired windows: after every batch, the store as of the last
    // checkpoint, overlaid with what `live_windows` reports, must be exactly what the store
    // holds once the next checkpoint is applied.
    let sessions = "CREATE METRIC visits AS SELECT user_id, COUNT(*) AS n FROM events
        GROUP BY user_id, SESSION(timestamp, INTERVAL '10' SECOND) WITH (allowed_lateness = '5s', out_of_orderness = '2s')";
    let tumbles = "CREATE METRIC views AS SELECT properties.url AS url, COUNT(*) AS n FROM events
        GROUP BY url, TUMBLE(timestamp, INTERVAL '5' SECOND) WITH (allowed_lateness = '3s')";
    let mut processor = Processor::new(0, 0, CONFIG);
    processor.add_metric(plan(sessions)).unwrap();
    processor.add_metric(plan(tumbles)).unwrap();
    let events: Vec<StoredRecord> = (0..400u64)
        .map(|i| {
            let time = (i as Millis) * 450 - ((i * 7919) % 11) as Millis * 700;
            view(
                i,
                time.max(0),
                &format!("u{}", i % 4),
                &format!("/{}", i % 3),
                1,
            )
        })
        .collect();
    let mut out = Outputs::default();
    let mut store = StoredRows::new();
    let mut barrier = 0;
    let mut overlaid_any = (false, false);
    for (index, chunk) in events.chunks(7).enumerate() {
        processor
            .handle(
                Message::Data {
                    records: chunk,
                    now: 0,
                },
                &mut out,
            )
            .unwrap();
        let mut expected = store.clone();
        for metric in ["visits", "views"] {
            let live = processor.live_windows(metric, Some("shop")).unwrap();
            overlaid_any.0 |= !live.retracted.is_empty();
            overlaid_any.1 |= !live.closed.is_empty();
            for (key, window) in &live.retracted {
                expected.remove(&(
                    metric.to_owned(),
                    key.as_bytes().to_vec(),
                    window.start,
                    window.end,
                ));
            }
            let rows = live
                .closed
                .iter()
                .cloned()
                .chain(live.open.iter().map(|open| PartialRow {
                    key: open.key.clone(),
                    window: open.window,
                    version: open.version,
                    state: open.state.clone(),
                }));
            for row in rows {
                expected.insert(
                    (
                        metric.to_owned(),
                        row.key.as_bytes().to_vec(),
                        row.window.start,
                        row.window.end,
                    ),
                    (row.version, row.state.encode()),
                );
            }
            assert!(
                processor
                    .live_windows(metric, Some("other"))
                    .unwrap()
                    .open
                    .is_empty(),
                "another tenant sees nothing"
            );
        }
        if index % 3 == 2 {
            processor
                .handle(Message::Barrier { id: barrier }, &mut out)
                .unwrap();
            barrier += 1;
            for checkpoint in out.checkpoints.drain(..) {
                apply(&mut store, &checkpoint);
            }
            // Encodings are canonical: equal bytes are equal states.
            let states = |rows: &StoredRows| {
                rows.iter()
                    .map(|(key, (_, state))| (key.clone(), state.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(states(&expected), states(&store), "after batch {index}");
        }
        out.updates.clear();
        out.late.clear();
    }
    assert_eq!(
        overlaid_any,
        (true, true),
        "the scenario retracts and closes between checkpoints"
    );
}

#[test]
fn a_processor_without_checkpoints_emits_the_same_updates_and_keeps_no_closed_windows() {
    let events = [
        (1_000, "u1", "/a", 5),
        (2_000, "u2", "/b", 5),
        (12_000, "u1", "/a", 5),
        (25_000, "u3", "/c", 5),
    ];
    let mut kept = Run::new(&[COUNTS]);
    let mut bare = Run::new(&[]);
    bare.processor = Processor::new(3, 0, CONFIG).without_checkpoints();
    bare.processor.add_metric(plan(COUNTS)).unwrap();
    for run in [&mut kept, &mut bare] {
        run.views(&events, 0);
        run.processor
            .handle(Message::Barrier { id: 1 }, &mut run.out)
            .unwrap();
    }
    let updates = kept.updates();
    assert_eq!(updates.len(), 3, "{updates:?}");
    assert_eq!(bare.updates(), updates);
    let rows = |run: &Run| -> Vec<(String, Window)> {
        let metric = &run.out.checkpoints[0].metrics[0];
        metric
            .closed
            .iter()
            .chain(metric.changed.iter())
            .map(|row| {
                let key = crate::keys::GroupKey::from_bytes(row.key).unwrap();
                let window = Window {
                    start: row.window_start,
                    end: row.window_end,
                };
                (key.to_string(), window)
            })
            .collect()
    };
    assert_eq!(
        rows(&kept).len(),
        4,
        "three closed windows and the open one"
    );
    assert_eq!(
        rows(&bare),
        [(
            "shop \"/c\"".to_owned(),
            Window {
                start: 20_000,
                end: 30_000
            }
        )],
        "only the open window"
    );
}

#[test]
fn a_checkpoint_lists_every_window_closed_since_the_last_apart_from_the_open_ones() {
    let mut run = Run::new(&[COUNTS]);
    run.views(&[(1_000, "u1", "/a", 5), (2_000, "u2", "/b", 5)], 0);
    let barrier = |run: &mut Run, id| {
        run.processor
            .handle(Message::Barrier { id }, &mut run.out)
            .unwrap();
        run.out.checkpoints.pop().unwrap()
    };
    let windows = |rows: &crate::engine::rows::PackedRows| -> Vec<(Vec<u8>, Millis, u32)> {
        rows.iter()
            .map(|row| (row.key.to_vec(), row.window_start, row.version))
            .collect()
    };
    let first = barrier(&mut run, 1);
    assert!(first.metrics[0].closed.is_empty());
    assert_eq!(
        windows(&first.metrics[0].changed).len(),
        2,
        "two open windows"
    );
    // Unchanged since that checkpoint, both windows close: the store must still learn it.
    run.views(&[(30_000, "u3", "/c", 5)], 0);
    let second = barrier(&mut run, 2);
    let closed = windows(&second.metrics[0].closed);
    assert_eq!(closed.len(), 2, "both closed windows, though unchanged");
    assert!(
        closed
            .iter()
            .all(|(_, start, version)| *start == 0 && *version == 1)
    );
    let open = windows(&second.metrics[0].changed);
    assert_eq!(open.len(), 1, "only the new window is open: {open:?}");
    assert_eq!(open[0].1, 30_000);
    let third = barrier(&mut run, 3);
    assert!(third.metrics[0].closed.is_empty() && third.metrics[0].changed.is_empty());
}

#[test]
fn live_windows_of_one_tenant_are_that_tenants_alone() {
    let mut run = Run::new(&[COUNTS]);
    let other = |offset, url: &str| {
        record(
            offset,
            format!(
                r#"{{"tenant":"blog","type":"track","event":"Page Viewed","user_id":"u9","timestamp":1000,"properties":{{"url":"{url}","duration_ms":1}}}}"#
            ),
        )
    };
    run.views(&[(1_000, "u1", "/a", 5), (2_000, "u2", "/b", 5)], 0);
    let records = [other(10, "/x"), other(11, "/y"), other(12, "/a")];
    let data = Message::Data {
        records: &records,
        now: 0,
    };
    run.processor.handle(data, &mut run.out).unwrap();
    let urls = |tenant: Option<&str>| -> Vec<String> {
        let live = run.processor.live_windows("views", tenant).unwrap();
        let mut keys: Vec<String> = live.open.iter().map(|w| w.key.to_string()).collect();
        keys.sort();
        keys
    };
    assert_eq!(urls(Some("shop")), ["shop \"/a\"", "shop \"/b\""]);
    assert_eq!(urls(Some("blog")).len(), 3);
    assert_eq!(urls(None).len(), 5);
    assert!(urls(Some("nobody")).is_empty());
}

#[test]
fn a_stream_routes_matching_events_as_records_of_their_envelope_and_its_columns() {
    let mut run = Run::new(&[
        "CREATE STREAM orders AS SELECT properties.revenue, lower(properties.currency) AS currency, \
         properties.items, context.geo.country AS country, properties.missing AS gone \
         FROM events WHERE event = 'Order Completed'",
        "CREATE METRIC n AS SELECT COUNT(*) AS n FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
    ]);
    let events = [
        r#"{"message_id":"m1","tenant":"shop","type":"track","event":"Order Completed","user_id":"u\"1","anonymous_id":"a1","timestamp":1000,"received_at":1005,"properties":{"revenue":12.50,"currency":"EUR","items":[{"sku":"x"}]},"context":{"geo":{"country":"FR"}}}"#,
        r#"{"message_id":"m2","tenant":"shop","type":"page","name":"Home","anonymous_id":"a2","timestamp":1100,"received_at":1105,"properties":{"url":"/"}}"#,
        r#"{"message_id":"m3","tenant":"blog","type":"track","event":"Order Completed","anonymous_id":"a3","timestamp":1200,"received_at":1205,"properties":{"revenue":"7","currency":null}}"#,
    ];
    let records: Vec<StoredRecord> = events
        .iter()
        .enumerate()
        .map(|(offset, json)| record(10 + offset as u64, (*json).to_owned()))
        .collect();
    run.processor
        .handle(
            Message::Data {
                records: &records,
                now: 2_000,
            },
            &mut run.out,
        )
        .unwrap();
    let routed: Vec<(u64, Millis, serde_json::Value)> = run
        .out
        .records
        .iter()
        .map(|derived| {
            assert_eq!(&*derived.stream, "orders");
            assert_eq!(derived.key.as_deref(), Some(&b"k"[..]));
            (
                derived.offset,
                derived.event_time,
                serde_json::from_slice(&derived.value)
                    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&derived.value))),
            )
        })
        .collect();
    assert_eq!(
        routed,
        vec![
            (
                10,
                1000,
                serde_json::json!({"tenant":"shop","timestamp":1000,"message_id":"m1","type":"track",
                    "event":"Order Completed","user_id":"u\"1","anonymous_id":"a1","received_at":1005,
                    "properties":{"revenue":12.50,"currency":"eur","items":[{"sku":"x"}],"country":"FR","gone":null}})
            ),
            (
                12,
                1200,
                serde_json::json!({"tenant":"blog","timestamp":1200,"message_id":"m3","type":"track",
                    "event":"Order Completed","anonymous_id":"a3","received_at":1205,
                    "properties":{"revenue":"7","currency":null,"items":null,"country":null,"gone":null}})
            ),
        ]
    );
    // The number keeps its digits as written.
    assert!(
        String::from_utf8_lossy(&run.out.records[0].value).contains(r#""revenue":12.50"#),
        "{}",
        String::from_utf8_lossy(&run.out.records[0].value)
    );
    // The metric beside it counted every event; the stream checkpoints no windows.
    let record = run.out.records[0].clone().to_record("events", 3);
    assert_eq!(record.headers[0].key, "sluice-origin");
    assert_eq!(&record.headers[0].value[..], b"events/3/10");
    run.processor
        .handle(Message::Barrier { id: 1 }, &mut run.out)
        .unwrap();
    let checkpoint = run.out.checkpoints.pop().unwrap();
    assert_eq!(checkpoint.offset, 13);
    let stream = &checkpoint.metrics[0];
    assert!(stream.changed.is_empty() && stream.closed.is_empty());
    assert!(!checkpoint.metrics[1].changed.is_empty());
}

#[test]
fn sessions_close_into_one_record_each_and_split_at_their_max_length() {
    let mut run = Run::new(&["CREATE SESSIONS visits GAP '10m' MAX LENGTH '25m'"]);
    let min = 60_000;
    let event = |time: Millis, kind: &str, extra: &str| {
        format!(
            r#"{{"tenant":"shop","type":"{kind}","event":"x","anonymous_id":"a1","timestamp":{time},"properties":{{"url":"/p{time}"}},"context":{{"page":{{"referrer":"https://www.google.com/"}},"referrer":{{"type":"search"}},"device":{{"type":"desktop"}},"geo":{{"country":"FR"}}{extra}}}}}"#
        )
    };
    let campaign = r#","campaign":{"source":"news","medium":"email","name":"launch"}"#;
    // Every 8 minutes for 40 minutes: one visitor, never 10 minutes idle, but a session
    // lasts 25 minutes at most. Then a lone event, and one from a visitor with no id.
    let events = [
        event(0, "page", campaign),
        event(8 * min, "track", ""),
        event(16 * min, "page", ""),
        event(24 * min, "page", ""),
        event(32 * min, "page", ""),
        event(40 * min, "track", ""),
        r#"{"tenant":"shop","type":"page","event":"x","user_id":"u9","timestamp":3600000}"#
            .to_owned(),
        r#"{"tenant":"shop","type":"track","event":"x","timestamp":3600000}"#.to_owned(),
    ];
    run.events(&events);
    // The first session ([0, 25m)) closed when the watermark passed 25 minutes.
    assert_eq!(run.out.records.len(), 2, "{:?}", run.out.records);
    run.tick(10_000_000_000);
    let sessions = run.records();
    let id = |start: Millis, visitor: &str| {
        let mut key = Vec::new();
        keys::encode_text(b"shop", &mut key);
        keys::encode_value(&Value::Str(visitor.as_bytes().into()), &mut key);
        sessions::session_id(&GroupKey::from_bytes(&key).unwrap(), start)
    };
    let first = id(0, "a1");
    assert_eq!(
        sessions[0],
        serde_json::json!({"tenant":"shop","timestamp":24 * min,"message_id":first,"type":"session",
            "anonymous_id":"a1","properties":{"session_id":first,"visitor":"a1","start":0,"end":24 * min,
            "duration_ms":24 * min,"events":4,"pages":3,"bounce":0,"entry_page":"/p0",
            "exit_page":format!("/p{}", 24 * min),"referrer":"https://www.google.com/",
            "referrer_type":"search","utm_source":"news","utm_medium":"email","utm_campaign":"launch",
            "device":"desktop","country":"FR"}})
    );
    let second = &sessions[1]["properties"];
    assert_eq!(
        second["start"],
        32 * min,
        "an event 25 minutes after the start starts anew"
    );
    assert_eq!(second["end"], 40 * min);
    assert_eq!(
        (&second["events"], &second["pages"]),
        (&2.into(), &1.into())
    );
    assert_eq!(
        second["utm_source"],
        serde_json::Value::Null,
        "campaigns are per session"
    );
    let lone = &sessions[2];
    assert_eq!(lone["user_id"], "u9");
    assert_eq!(lone["properties"]["visitor"], "u9");
    assert_eq!(lone["properties"]["bounce"], 1);
    assert_eq!(sessions.len(), 3, "an event without ids is in no session");
    let record = run.out.records[0].clone();
    assert_eq!(record.key.as_deref(), Some(&b"a1"[..]));
    assert_eq!(record.event_time, 24 * min);
    let record = record.to_record("events", 3);
    assert_eq!(record.headers[0].value, format!("events/3/session/{first}"));
}

#[test]
fn an_app_session_enters_and_exits_by_its_screens_and_a_site_by_its_pages() {
    let mut run = Run::new(&["CREATE SESSIONS visits GAP '10m'"]);
    let events = [
        // Out of order: the entry is the earliest screen, the exit the latest.
        r#"{"tenant":"shop","type":"screen","name":"Cart","anonymous_id":"app1","timestamp":2000}"#,
        r#"{"tenant":"shop","type":"screen","name":"Home","anonymous_id":"app1","timestamp":1000}"#,
        r#"{"tenant":"shop","type":"track","event":"Tapped","anonymous_id":"app1","timestamp":3000}"#,
        r#"{"tenant":"shop","type":"page","name":"Pricing","anonymous_id":"web1","timestamp":1000,"properties":{"url":"/pricing"}}"#,
        r#"{"tenant":"shop","type":"screen","name":"Odd","anonymous_id":"web1","timestamp":1500}"#,
        r#"{"tenant":"shop","type":"page","anonymous_id":"web1","timestamp":2500,"properties":{"url":"/buy"}}"#,
    ];
    run.events(&events);
    run.tick(10_000_000_000);
    let mut ends: Vec<(
        String,
        serde_json::Value,
        serde_json::Value,
        serde_json::Value,
    )> = run
        .records()
        .iter()
        .map(|value| {
            let p = &value["properties"];
            (
                p["visitor"].as_str().unwrap().to_owned(),
                p["entry_page"].clone(),
                p["exit_page"].clone(),
                p["pages"].clone(),
            )
        })
        .collect();
    ends.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        ends,
        [
            ("app1".to_owned(), "Home".into(), "Cart".into(), 2.into()),
            // A page and a screen in one session: whichever came first and last.
            (
                "web1".to_owned(),
                "/pricing".into(),
                "/buy".into(),
                3.into()
            ),
        ]
    );
}

#[test]
fn an_event_after_its_session_closed_is_late_or_starts_a_session_never_a_correction() {
    let mut run = Run::new(&["CREATE SESSIONS visits GAP '10s' WITH (out_of_orderness = '5s')"]);
    let event = |visitor: &str, time: Millis| {
        format!(
            r#"{{"tenant":"shop","type":"track","event":"x","anonymous_id":"{visitor}","timestamp":{time}}}"#
        )
    };
    // The watermark (newest − 5 s) reaches 16 s: a's session [0, 10 s) closes; b's
    // [12 s, 31 s) stays open.
    run.events(&[event("a", 0), event("b", 12_000), event("b", 21_000)]);
    assert_eq!(run.out.records.len(), 1, "a's session closed");
    // a at 2 s: its own [2 s, 12 s) is closed and a has no open session within the gap:
    // late. b at 5 s: its own window is closed too, but b's open session is within the gap:
    // it joins it. a at 9 s: not late ([9 s, 19 s) is open), and within the gap of a's
    // session, which was written already: it starts a session of its own rather than
    // correct the one written.
    run.events(&[event("a", 2_000), event("b", 5_000), event("a", 9_000)]);
    assert_eq!(run.out.late.len(), 1);
    assert_eq!(
        (run.out.late[0].offset, run.out.late[0].reason),
        (3, LateReason::WindowClosed),
        "the fourth event, a at 2 s"
    );
    run.tick(10_000_000_000);
    let mut sessions: Vec<(String, i64, i64, u64)> = run
        .records()
        .iter()
        .map(|value| {
            let p = &value["properties"];
            (
                p["visitor"].as_str().unwrap().to_owned(),
                p["start"].as_i64().unwrap(),
                p["end"].as_i64().unwrap(),
                p["events"].as_u64().unwrap(),
            )
        })
        .collect();
    sessions.sort();
    assert_eq!(
        sessions,
        [
            ("a".to_owned(), 0, 0, 1),
            ("a".to_owned(), 9_000, 9_000, 1),
            ("b".to_owned(), 5_000, 21_000, 3),
        ]
    );
}

#[test]
fn sessions_leave_out_what_their_where_leaves_out() {
    let mut run =
        Run::new(&["CREATE SESSIONS visits GAP '10m' WHERE context.device.type <> 'bot'"]);
    let events = [
        r#"{"tenant":"shop","type":"page","anonymous_id":"crawler","timestamp":1000,"context":{"device":{"type":"bot"}}}"#,
        r#"{"tenant":"shop","type":"page","anonymous_id":"person","timestamp":1000,"context":{"device":{"type":"mobile"}}}"#,
    ];
    run.events(&events);
    run.tick(10_000_000_000);
    let visitors: Vec<serde_json::Value> = run
        .records()
        .iter()
        .map(|record| record["properties"]["visitor"].clone())
        .collect();
    assert_eq!(visitors, ["person"]);
}
