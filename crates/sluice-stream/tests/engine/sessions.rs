//! Sessions (`CREATE SESSIONS`) versus a reference on random visits: bounded disorder, late
//! events, checkpoints at random points, and crashes that lose everything after the last
//! committed checkpoint (the processor is restored from a model of the store: the checkpoints'
//! rows applied in order, as the store applies them). The records a commit covered must be
//! exactly the sessions the reference cuts from the events that were not late, each once.

use bytes::Bytes;
use proptest::prelude::*;
use sluice_log::{Record, StoredRecord};
use sluice_stream::config::ProcessorConfig;
use sluice_stream::engine::output::{Outputs, PartialRow, RestoreState};
use sluice_stream::engine::{Message, Processor};
use sluice_stream::plan::{LatePolicy, MetricPlan};
use sluice_stream::sql::{MetricDefaults, parse_metric};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const GAP: i64 = 1_000;
const OUT_OF_ORDERNESS: i64 = 300;
const URLS: [&str; 3] = ["/", "/pricing", "/docs?q=\\\"x\\\""];
const SOURCES: [&str; 2] = ["google", "news\\u00e9"];

fn plan() -> Arc<MetricPlan> {
    let defaults = MetricDefaults {
        out_of_orderness: 0,
        allowed_lateness: 0,
        late: LatePolicy::Topic,
    };
    let sql = format!(
        "CREATE SESSIONS visits GAP '{GAP}ms' WITH (out_of_orderness = '{OUT_OF_ORDERNESS}ms')"
    );
    Arc::new(parse_metric(&sql, &defaults).unwrap_or_else(|e| panic!("{e}")))
}

/// One generated event: who, when, what.
#[derive(Debug, Clone)]
struct Visit {
    tenant: &'static str,
    visitor: u8,
    time: i64,
    page: Option<usize>,
    source: Option<usize>,
    late: bool,
}

/// What happens after a batch.
#[derive(Debug, Clone, Copy)]
enum After {
    Nothing,
    Checkpoint,
    Crash,
}

#[derive(Debug, Clone)]
struct Scenario {
    visits: Vec<Visit>,
    batches: Vec<(usize, After)>,
}

/// Visits whose time steps forward by 0–700 ms (a visitor's runs break where its own steps
/// add up past the gap), each sent up to the out-of-orderness early, and a few sent far
/// behind the watermark by visitors that send nothing else (late: no session may hold them).
fn scenario() -> impl Strategy<Value = Scenario> {
    let step = (
        prop_oneof![Just("acme"), Just("zeta")],
        0u8..4,
        0i64..700,
        0i64..=OUT_OF_ORDERNESS,
        prop::option::weighted(0.6, 0usize..URLS.len()),
        prop::option::weighted(0.3, 0usize..SOURCES.len()),
        prop::bool::weighted(0.05),
    );
    (
        prop::collection::vec(step, 1..160),
        prop::collection::vec(
            (
                1usize..12,
                prop_oneof![3 => Just(After::Nothing), 2 => Just(After::Checkpoint), 1 => Just(After::Crash)],
            ),
            1..40,
        ),
    )
        .prop_map(|(steps, mut batches)| {
            let mut base = 1_000_000i64;
            let mut newest = i64::MIN;
            let visits = steps
                .into_iter()
                .map(|(tenant, visitor, forward, early, page, source, late)| {
                    base += forward;
                    // Late events come from visitors of their own (10 and up), who therefore
                    // never have an open session a late event could still join.
                    let late = late && newest != i64::MIN;
                    let visitor = if late { 10 + visitor % 2 } else { visitor };
                    let watermark = newest.max(base) - OUT_OF_ORDERNESS;
                    let time = if late {
                        // Its own session [t, t + GAP) is closed at the watermark.
                        newest - OUT_OF_ORDERNESS - GAP - forward
                    } else {
                        // Never before the watermark its arrival sets.
                        (base - early).max(watermark)
                    };
                    let late = time + GAP <= newest.max(time) - OUT_OF_ORDERNESS;
                    newest = newest.max(time);
                    Visit {
                        tenant,
                        visitor,
                        time,
                        page,
                        source,
                        late,
                    }
                })
                .collect::<Vec<_>>();
            // Batches cover the visits exactly.
            let mut left = visits.len();
            let mut cut = Vec::new();
            for (size, after) in batches.drain(..) {
                if left == 0 {
                    break;
                }
                let size = size.min(left);
                left -= size;
                cut.push((size, after));
            }
            if left > 0 {
                cut.push((left, After::Checkpoint));
            }
            Scenario {
                visits,
                batches: cut,
            }
        })
}

fn record(offset: u64, visit: &Visit) -> StoredRecord {
    let (kind, properties) = match visit.page {
        Some(url) => ("page", format!(r#"{{"url":"{}"}}"#, URLS[url])),
        None => ("track", "{}".to_owned()),
    };
    let campaign = visit.source.map_or(String::new(), |source| {
        format!(
            r#","campaign":{{"source":"{}","medium":"cpc"}}"#,
            SOURCES[source]
        )
    });
    let json = format!(
        r#"{{"tenant":"{}","type":"{kind}","event":"e","anonymous_id":"v{}","user_id":"user{}","timestamp":{},"properties":{properties},"context":{{"device":{{"type":"mobile"}}{campaign}}}}}"#,
        visit.tenant, visit.visitor, visit.visitor, visit.time
    );
    StoredRecord {
        offset,
        record: Record::new(Some(Bytes::from(format!("v{}", visit.visitor))), json, 0),
    }
}

/// A session as the reference and the records describe it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Session {
    tenant: String,
    visitor: String,
    start: i64,
    end: i64,
    events: u64,
    pages: u64,
    entry: Option<String>,
    exit: Option<String>,
    source: Option<String>,
}

fn unescape(text: &str) -> String {
    serde_json::from_str::<String>(&format!("\"{text}\"")).unwrap()
}

/// The reference: per (tenant, visitor), the events that were not late in time order, cut
/// where the next one is `GAP` or more after the previous.
fn reference(visits: &[Visit]) -> BTreeSet<Session> {
    let mut by_visitor: BTreeMap<(&str, u8), Vec<&Visit>> = BTreeMap::new();
    for visit in visits.iter().filter(|v| !v.late) {
        by_visitor
            .entry((visit.tenant, visit.visitor))
            .or_default()
            .push(visit);
    }
    let mut sessions = BTreeSet::new();
    for ((tenant, visitor), mut visits) in by_visitor {
        // Stable: equal times keep arrival order, which the first/last tie rule does not
        // depend on (equal times pick by text; the reference does the same below).
        visits.sort_by_key(|v| v.time);
        let mut runs: Vec<Vec<&Visit>> = Vec::new();
        for visit in visits {
            match runs.last_mut() {
                Some(run) if visit.time - run.last().unwrap().time < GAP => run.push(visit),
                _ => runs.push(vec![visit]),
            }
        }
        for run in runs {
            let pages: Vec<(i64, String)> = run
                .iter()
                .filter_map(|v| v.page.map(|p| (v.time, unescape(URLS[p]))))
                .collect();
            let entry = pages.iter().min().map(|(_, url)| url.clone());
            let exit = pages.iter().max().map(|(_, url)| url.clone());
            let source = run
                .iter()
                .filter_map(|v| v.source.map(|s| (v.time, unescape(SOURCES[s]))))
                .min()
                .map(|(_, s)| s);
            sessions.insert(Session {
                tenant: tenant.to_owned(),
                visitor: format!("v{visitor}"),
                start: run.first().unwrap().time,
                end: run.last().unwrap().time,
                events: run.len() as u64,
                pages: pages.len() as u64,
                entry,
                exit,
                source,
            });
        }
    }
    sessions
}

/// The store as the engine's checkpoints leave it: open session rows and the committed
/// position.
#[derive(Default)]
struct Model {
    rows: BTreeMap<(Vec<u8>, i64, i64), PartialRow>,
    offset: u64,
    event_time: Option<i64>,
}

fn restore(model: &Model, plan: &Arc<MetricPlan>, config: ProcessorConfig, now: i64) -> Processor {
    let state = RestoreState {
        offset: model.offset,
        event_time: model.event_time,
        metrics: vec![(plan.clone(), model.rows.values().cloned().collect())],
    };
    Processor::restore(0, config, state, now).unwrap()
}

fn parse(value: &[u8]) -> Session {
    let record: serde_json::Value = serde_json::from_slice(value)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(value)));
    let p = &record["properties"];
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    assert_eq!(record["type"], "session");
    assert_eq!(record["message_id"], p["session_id"]);
    assert_eq!(record["timestamp"], p["end"]);
    assert_eq!(
        p["duration_ms"].as_i64().unwrap(),
        p["end"].as_i64().unwrap() - p["start"].as_i64().unwrap()
    );
    assert_eq!(p["bounce"].as_u64().unwrap(), u64::from(p["events"] == 1));
    assert_eq!(record["anonymous_id"], p["visitor"]);
    assert_eq!(
        record["user_id"].as_str().unwrap(),
        p["visitor"].as_str().unwrap().replace('v', "user")
    );
    assert_eq!(p["device"], "mobile");
    let source = text(&p["utm_source"]);
    if source.is_some() {
        assert_eq!(p["utm_medium"], "cpc");
    }
    Session {
        tenant: text(&record["tenant"]).unwrap(),
        visitor: text(&p["visitor"]).unwrap(),
        start: p["start"].as_i64().unwrap(),
        end: p["end"].as_i64().unwrap(),
        events: p["events"].as_u64().unwrap(),
        pages: p["pages"].as_u64().unwrap(),
        entry: text(&p["entry_page"]),
        exit: text(&p["exit_page"]),
        source,
    }
}

/// A processor with the store's model: what it emits waits (`pending`) until a commit
/// covers it, or is lost with a crash.
struct Driver {
    plan: Arc<MetricPlan>,
    config: ProcessorConfig,
    processor: Processor,
    model: Model,
    barrier: u64,
    pending: Vec<Session>,
    pending_late: Vec<u64>,
    committed: Vec<Session>,
    late: BTreeSet<u64>,
}

impl Driver {
    fn new() -> Driver {
        let (plan, model) = (plan(), Model::default());
        let config = ProcessorConfig {
            idle_timeout: 5_000,
            max_open_windows: 100_000,
        };
        Driver {
            processor: restore(&model, &plan, config, 0),
            plan,
            config,
            model,
            barrier: 0,
            pending: Vec::new(),
            pending_late: Vec::new(),
            committed: Vec::new(),
            late: BTreeSet::new(),
        }
    }

    /// Hands the processor a message; its records and late events wait for a commit.
    fn handle(&mut self, message: Message<'_>) {
        let mut out = Outputs::default();
        self.processor.handle(message, &mut out).unwrap();
        self.pending
            .extend(out.records.iter().map(|r| parse(&r.value)));
        self.pending_late.extend(out.late.iter().map(|l| l.offset));
    }

    /// A checkpoint applied to the model as the store applies it, with what waited for it.
    fn commit(&mut self) {
        self.barrier += 1;
        let mut out = Outputs::default();
        self.processor
            .handle(Message::Barrier { id: self.barrier }, &mut out)
            .unwrap();
        let checkpoint = out.checkpoints.pop().unwrap();
        let kinds: Vec<_> = self.plan.aggregates.iter().map(|a| a.kind).collect();
        for metric in checkpoint.metrics {
            assert!(metric.closed.is_empty(), "sessions keep no final rows");
            for (key, window) in metric.retracted {
                self.model
                    .rows
                    .remove(&(key.as_bytes().to_vec(), window.start, window.end));
            }
            for row in metric.changed.iter() {
                let row = PartialRow::decode(row, &kinds).unwrap();
                let at = (
                    row.key.as_bytes().to_vec(),
                    row.window.start,
                    row.window.end,
                );
                self.model.rows.insert(at, row);
            }
        }
        self.model.offset = checkpoint.offset;
        self.model.event_time = checkpoint.event_time;
        self.committed.append(&mut self.pending);
        self.late.extend(self.pending_late.drain(..));
    }

    /// Everything since the last commit is lost; returns the offset reading resumes at.
    fn crash(&mut self, now: i64) -> usize {
        self.pending.clear();
        self.pending_late.clear();
        self.processor = restore(&self.model, &self.plan, self.config, now);
        self.model.offset as usize
    }
}

fn run(scenario: &Scenario) -> (Vec<Session>, BTreeSet<u64>) {
    let records: Vec<StoredRecord> = scenario
        .visits
        .iter()
        .enumerate()
        .map(|(offset, visit)| record(offset as u64, visit))
        .collect();
    let mut driver = Driver::new();
    let (mut now, mut position) = (0, 0usize);
    let feed = |driver: &mut Driver, position: &mut usize, size: usize, now: i64| {
        let end = (*position + size).min(records.len());
        driver.handle(Message::Data {
            records: &records[*position..end],
            now,
        });
        *position = end;
    };
    for &(size, after) in &scenario.batches {
        now += 100;
        feed(&mut driver, &mut position, size, now);
        match after {
            After::Nothing => {}
            After::Checkpoint => driver.commit(),
            After::Crash => position = driver.crash(now),
        }
    }
    // What crashes sent back is read again.
    while position < records.len() {
        now += 100;
        feed(&mut driver, &mut position, 5, now);
    }
    // Time passes: every session closes.
    driver.handle(Message::Tick {
        now: now + 1_000_000_000,
    });
    driver.commit();
    assert!(
        driver.model.rows.is_empty(),
        "closed sessions leave the store"
    );
    (driver.committed, driver.late)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn committed_sessions_equal_the_reference_across_crashes(scenario in scenario()) {
        let (sessions, late) = run(&scenario);
        let unique: BTreeSet<Session> = sessions.iter().cloned().collect();
        prop_assert_eq!(unique.len(), sessions.len(), "a session was committed twice");
        prop_assert_eq!(unique, reference(&scenario.visits));
        let expected_late: BTreeSet<u64> = scenario
            .visits
            .iter()
            .enumerate()
            .filter(|(_, v)| v.late)
            .map(|(offset, _)| offset as u64)
            .collect();
        prop_assert_eq!(late, expected_late);
    }
}
