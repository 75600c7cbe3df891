//! Golden tests: each `tests/golden/*.txt` holds a metric, events, and every window update
//! and late event the engine must produce, in order. `SLUICE_BLESS=1 cargo test` rewrites
//! the expected sections from the engine's output (review the diff before committing).
//!
//! ```text
//! == metric
//! CREATE METRIC … (one or more lines)
//! == events
//! {"tenant":"shop","timestamp":…}      one event per line; consecutive lines form one batch
//! -- tick 5000                          processing time passes 5000 ms, then a tick
//! -- batch                              starts a new batch
//! == output
//! update|final|retract v<N> [start, end) <tenant> <column>=<value> …
//! late <offset> <reason>
//! ```
//! Each batch is read 100 ms of processing time after the previous one; after the last,
//! a tick far in the future closes every window.

use bytes::Bytes;
use sluice_log::{Record, StoredRecord};
use sluice_stream::config::ProcessorConfig;
use sluice_stream::engine::output::{Outputs, UpdateKind, WindowUpdate};
use sluice_stream::engine::{Message, Processor};
use sluice_stream::plan::{ColumnSource, LatePolicy, MetricPlan};
use sluice_stream::sql::{MetricDefaults, parse_metric};
use std::fmt::Write;
use std::path::Path;

const CONFIG: ProcessorConfig = ProcessorConfig {
    idle_timeout: 5_000,
    max_open_windows: 10_000,
};

enum Step {
    Batch(Vec<StoredRecord>),
    Tick(i64),
}

fn sections(text: &str) -> (String, Vec<String>, String) {
    let mut metric = String::new();
    let mut events = Vec::new();
    let mut output = String::new();
    let mut section = "";
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            section = match name.trim() {
                "metric" => "metric",
                "events" => "events",
                "output" => "output",
                other => panic!("unknown section {other:?}"),
            };
            continue;
        }
        match section {
            "metric" => {
                metric.push_str(line);
                metric.push('\n');
            }
            "events" if !line.trim().is_empty() && !line.starts_with('#') => {
                events.push(line.to_owned())
            }
            "output" => {
                output.push_str(line);
                output.push('\n');
            }
            _ => {}
        }
    }
    (metric.trim().to_owned(), events, output)
}

fn steps(lines: &[String]) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut batch = Vec::new();
    let mut offset = 0u64;
    for line in lines {
        if let Some(directive) = line.strip_prefix("-- ") {
            if !batch.is_empty() {
                steps.push(Step::Batch(std::mem::take(&mut batch)));
            }
            if let Some(ms) = directive.strip_prefix("tick ") {
                steps.push(Step::Tick(
                    ms.trim().parse().expect("tick takes milliseconds"),
                ));
            }
            continue;
        }
        batch.push(StoredRecord {
            offset,
            record: Record::new(Some(Bytes::from_static(b"k")), line.clone(), 0),
        });
        offset += 1;
    }
    if !batch.is_empty() {
        steps.push(Step::Batch(batch));
    }
    steps
}

fn render_update(plan: &MetricPlan, update: &WindowUpdate, out: &mut String) {
    let kind = match update.kind {
        UpdateKind::Update => "update",
        UpdateKind::Final => "final",
        UpdateKind::Retract => "retract",
    };
    let window = format!(
        "[{}, {})",
        sluice_core::time::format_millis(update.window.start),
        sluice_core::time::format_millis(update.window.end)
    );
    let _ = write!(
        out,
        "{kind} v{} {window} {}",
        update.version,
        update.key.tenant()
    );
    if let Some(state) = &update.state {
        let values = state.finalize(plan.aggregates.iter().map(|a| &a.kind));
        for column in &plan.columns {
            let value = match column.source {
                ColumnSource::Key(i) => update.key.values()[i].to_string(),
                ColumnSource::Aggregate(i) => values[i].to_string(),
            };
            let _ = write!(out, " {}={value}", column.name);
        }
    }
    out.push('\n');
}

fn run(text: &str) -> (String, String) {
    let (sql, events, expected) = sections(text);
    let defaults = MetricDefaults {
        out_of_orderness: 10_000,
        allowed_lateness: 0,
        late: LatePolicy::Topic,
    };
    let plan = parse_metric(&sql, &defaults).unwrap_or_else(|e| panic!("{e}"));
    let mut processor = Processor::new(0, 0, CONFIG);
    processor.add_metric(plan.clone().into()).unwrap();
    let mut actual = String::new();
    let mut now = 0i64;
    let emit = |out: &mut Outputs, actual: &mut String| {
        for update in out.updates.drain(..) {
            render_update(&plan, &update, actual);
        }
        for late in out.late.drain(..) {
            let _ = writeln!(actual, "late {} {}", late.offset, late.reason.as_str());
        }
    };
    let mut out = Outputs::default();
    for step in steps(&events) {
        match step {
            Step::Batch(records) => {
                now += 100;
                processor
                    .handle(
                        Message::Data {
                            records: &records,
                            now,
                        },
                        &mut out,
                    )
                    .unwrap();
            }
            Step::Tick(ms) => {
                now += ms;
                processor.handle(Message::Tick { now }, &mut out).unwrap();
            }
        }
        emit(&mut out, &mut actual);
    }
    processor
        .handle(
            Message::Tick {
                now: now + 1_000_000_000_000,
            },
            &mut out,
        )
        .unwrap();
    emit(&mut out, &mut actual);
    (expected, actual)
}

#[test]
fn golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "golden files in {}", dir.display());
    let bless = std::env::var_os("SLUICE_BLESS").is_some();
    let mut failures = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let (expected, actual) = run(&text);
        if expected.trim_end() == actual.trim_end() {
            continue;
        }
        if bless {
            let head = &text[..text.find("== output").unwrap_or(text.len())];
            std::fs::write(
                &path,
                format!(
                    "{}== output\n{actual}",
                    head.trim_end_matches('\n').to_owned() + "\n"
                ),
            )
            .unwrap();
        } else {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- actual\n{actual}",
                path.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches (rerun with SLUICE_BLESS=1 to accept):\n{}",
        failures.join("\n")
    );
}
