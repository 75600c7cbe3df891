//! Identity (`CREATE IDENTITY`) versus a reference on random streams of anonymous and
//! identified calls, identifies with traits, and aliases (of anonymous and of user ids), with
//! disordered event times, checkpoints at random points, and crashes that lose everything
//! after the last committed checkpoint (the processor is restored from a model of the store).
//! The committed records must be every event once, each with the reference's resolved id;
//! the committed change records exactly the events the reference says changed something; and
//! the stored rows, merged as `GET /v1/users/{id}` merges them, the reference's profiles and
//! links.

use bytes::Bytes;
use proptest::prelude::*;
use sluice_log::{Record, StoredRecord};
use sluice_stream::config::ProcessorConfig;
use sluice_stream::engine::output::{Outputs, PartialRow, RestoreState};
use sluice_stream::engine::{Message, Processor};
use sluice_stream::identity::{self, IdRows, MergedProfile};
use sluice_stream::plan::{LatePolicy, MetricPlan};
use sluice_stream::sql::{MetricDefaults, parse_metric};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

const PLANS: [&str; 3] = ["\"free\"", "\"pro\"", "{\"seats\":3}"];

fn plan() -> Arc<MetricPlan> {
    let defaults = MetricDefaults {
        out_of_orderness: 0,
        allowed_lateness: 0,
        late: LatePolicy::Topic,
    };
    Arc::new(parse_metric("CREATE IDENTITY people", &defaults).unwrap_or_else(|e| panic!("{e}")))
}

/// One generated call.
#[derive(Debug, Clone)]
enum Call {
    /// A call with only an anonymous id.
    Anonymous { device: u8 },
    /// A call made by a signed-in user on a device.
    Both { device: u8, user: u8 },
    /// `identify` on a device, with traits.
    Identify {
        device: Option<u8>,
        user: u8,
        plan: usize,
        age: u8,
    },
    /// A server-side call with only a user id.
    User { user: u8 },
    /// `alias`: `previous` (a device's anonymous id, or a user id) into `user`.
    Alias {
        device: Option<u8>,
        user: u8,
        previous: Previous,
    },
}

#[derive(Debug, Clone, Copy)]
enum Previous {
    Device(u8),
    User(u8),
}

#[derive(Debug, Clone)]
struct Event {
    tenant: &'static str,
    time: i64,
    call: Call,
}

impl Event {
    fn ids(&self) -> (Option<String>, Option<String>, Option<String>) {
        let device = |d: u8| Some(format!("a{d}"));
        let user = |u: u8| Some(format!("u{u}"));
        match &self.call {
            Call::Anonymous { device: d } => (None, device(*d), None),
            Call::Both { device: d, user: u } => (user(*u), device(*d), None),
            Call::Identify {
                device: d, user: u, ..
            } => (user(*u), d.and_then(device), None),
            Call::User { user: u } => (user(*u), None, None),
            Call::Alias {
                device: d,
                user: u,
                previous,
            } => (
                user(*u),
                d.and_then(device),
                Some(match previous {
                    Previous::Device(d) => format!("a{d}"),
                    Previous::User(u) => format!("u{u}"),
                }),
            ),
        }
    }

    fn json(&self, offset: u64) -> String {
        let (user, anonymous, previous) = self.ids();
        let mut fields = vec![
            format!("\"tenant\":\"{}\"", self.tenant),
            format!("\"timestamp\":{}", self.time),
            format!("\"message_id\":\"m{offset}\""),
        ];
        let kind = match &self.call {
            Call::Identify { plan, age, .. } => {
                fields.push(format!(
                    "\"traits\":{{\"plan\":{},\"age\":{age}}}",
                    PLANS[*plan]
                ));
                "identify"
            }
            Call::Alias { .. } => "alias",
            _ => "track",
        };
        fields.push(format!("\"type\":\"{kind}\""));
        for (name, id) in [
            ("user_id", user),
            ("anonymous_id", anonymous),
            ("previous_id", previous),
        ] {
            if let Some(id) = id {
                fields.push(format!("\"{name}\":\"{id}\""));
            }
        }
        format!("{{{}}}", fields.join(","))
    }
}

#[derive(Debug, Clone, Copy)]
enum After {
    Nothing,
    Checkpoint,
    Crash,
}

#[derive(Debug, Clone)]
struct Scenario {
    events: Vec<Event>,
    batches: Vec<(usize, After)>,
}

fn call() -> impl Strategy<Value = Call> {
    let device = 0u8..5;
    let user = 0u8..3;
    prop_oneof![
        4 => device.clone().prop_map(|device| Call::Anonymous { device }),
        3 => (device.clone(), user.clone()).prop_map(|(device, user)| Call::Both { device, user }),
        2 => (prop::option::weighted(0.8, device.clone()), user.clone(), 0..PLANS.len(), 0u8..3)
            .prop_map(|(device, user, plan, age)| Call::Identify { device, user, plan, age }),
        2 => user.clone().prop_map(|user| Call::User { user }),
        1 => (
            prop::option::weighted(0.5, device.clone()),
            user.clone(),
            prop_oneof![device.prop_map(Previous::Device), user.prop_map(Previous::User)],
        )
            .prop_map(|(device, user, previous)| Call::Alias { device, user, previous }),
    ]
}

/// Calls 0–50 ms apart, each up to 300 ms early: identifies and links arrive out of order.
fn scenario() -> impl Strategy<Value = Scenario> {
    let step = (
        prop_oneof![Just("acme"), Just("zeta")],
        call(),
        0i64..50,
        0i64..300,
    );
    (
        prop::collection::vec(step, 1..150),
        prop::collection::vec(
            (
                1usize..12,
                prop_oneof![3 => Just(After::Nothing), 2 => Just(After::Checkpoint), 1 => Just(After::Crash)],
            ),
            1..40,
        ),
    )
        .prop_map(|(steps, batches)| {
            let mut clock = 1_000_000;
            let events = steps
                .into_iter()
                .map(|(tenant, call, step, early)| {
                    clock += step;
                    Event {
                        tenant,
                        time: clock - early,
                        call,
                    }
                })
                .collect();
            Scenario { events, batches }
        })
}

/// The rules of `crate::identity`, written plainly.
#[derive(Default)]
struct Reference {
    links: HashMap<(String, String), (i64, String)>,
    aliases: HashMap<(String, String), (i64, String)>,
    profiles: BTreeMap<(String, String), Expected>,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Expected {
    events: u64,
    first: i64,
    last: i64,
    traits: BTreeMap<String, (i64, String)>,
    devices: BTreeSet<String>,
    merged: BTreeSet<String>,
}

/// Sets `map[key]` to `(time, user)` if that is later; whether the user changed.
fn later(
    map: &mut HashMap<(String, String), (i64, String)>,
    key: (String, String),
    time: i64,
    user: &str,
) -> bool {
    match map.get(&key) {
        Some((_, have)) if have == user => false,
        Some((at, have)) if (time, user) <= (*at, have.as_str()) => false,
        _ => {
            map.insert(key, (time, user.to_owned()));
            true
        }
    }
}

impl Reference {
    fn canonical(&self, tenant: &str, id: &str) -> String {
        let mut seen = vec![id.to_owned()];
        for _ in 0..identity::MAX_ALIAS_HOPS {
            let current = seen.last().unwrap().clone();
            match self.aliases.get(&(tenant.to_owned(), current)) {
                Some((_, next)) if !seen.contains(next) => seen.push(next.clone()),
                _ => break,
            }
        }
        seen.pop().unwrap()
    }

    /// The resolved id, and whether the event changed the graph or traits.
    fn observe(&mut self, event: &Event) -> (String, bool) {
        let tenant = event.tenant.to_owned();
        let (user, anonymous, previous) = event.ids();
        let key = |id: &str| (tenant.clone(), id.to_owned());
        let mut changed = false;
        if let (Some(user), Some(previous)) = (&user, &previous)
            && previous != user
        {
            let aliased = later(&mut self.aliases, key(previous), event.time, user);
            later(&mut self.links, key(previous), event.time, user);
            if aliased {
                changed = true;
                let profile = self.profiles.entry(key(user)).or_default();
                profile.merged.insert(previous.clone());
            }
        }
        if let (Some(user), Some(anonymous)) = (&user, &anonymous) {
            changed |= later(&mut self.links, key(anonymous), event.time, user);
        }
        let resolved = match (&user, &anonymous) {
            (Some(user), _) => self.canonical(event.tenant, user),
            (None, Some(anonymous)) => match self.links.get(&key(anonymous)) {
                Some((_, user)) => self.canonical(event.tenant, user),
                None => anonymous.clone(),
            },
            (None, None) => unreachable!("every generated call has an id"),
        };
        let profile = self.profiles.entry(key(&resolved)).or_default();
        if profile.events == 0 || event.time < profile.first {
            profile.first = event.time;
        }
        if profile.events == 0 || event.time > profile.last {
            profile.last = event.time;
        }
        profile.events += 1;
        if let Some(anonymous) = &anonymous
            && *anonymous != resolved
        {
            profile.devices.insert(anonymous.clone());
        }
        if let Call::Identify { plan, age, .. } = &event.call {
            for (name, json) in [("age", age.to_string()), ("plan", PLANS[*plan].to_owned())] {
                let candidate = (event.time, json);
                match profile.traits.get(name) {
                    Some(have) if candidate <= *have => {}
                    have => {
                        changed |= have.is_none_or(|have| have.1 != candidate.1);
                        profile.traits.insert(name.to_owned(), candidate);
                    }
                }
            }
        }
        (resolved, changed)
    }
}

/// The store as the checkpoints leave it.
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

/// A resolved record's source offset and resolved id, or a change record's offset.
enum Written {
    Event(u64, String),
    Change(u64),
}

struct Driver {
    plan: Arc<MetricPlan>,
    config: ProcessorConfig,
    processor: Processor,
    model: Model,
    barrier: u64,
    pending: Vec<Written>,
    events: Vec<(u64, String)>,
    changes: Vec<u64>,
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
            events: Vec::new(),
            changes: Vec::new(),
        }
    }

    fn handle(&mut self, message: Message<'_>) {
        let mut out = Outputs::default();
        self.processor.handle(message, &mut out).unwrap();
        for record in out.records {
            let value: serde_json::Value = serde_json::from_slice(&record.value).unwrap();
            match &*record.stream {
                "people" => {
                    let resolved = value["resolved_user_id"].as_str().unwrap().to_owned();
                    assert_eq!(value["message_id"], format!("m{}", record.offset));
                    self.pending.push(Written::Event(record.offset, resolved));
                }
                "people.changes" => {
                    assert_eq!(value["type"], "profile_change");
                    self.pending.push(Written::Change(record.offset));
                }
                other => panic!("a record for {other}"),
            }
        }
    }

    fn commit(&mut self) {
        self.barrier += 1;
        let mut out = Outputs::default();
        self.processor
            .handle(Message::Barrier { id: self.barrier }, &mut out)
            .unwrap();
        let checkpoint = out.checkpoints.pop().unwrap();
        for metric in checkpoint.metrics {
            assert!(metric.closed.is_empty() && metric.retracted.is_empty());
            for row in metric.changed.iter() {
                let row = PartialRow::decode(row, &identity::KINDS).unwrap();
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
        for written in self.pending.drain(..) {
            match written {
                Written::Event(offset, resolved) => self.events.push((offset, resolved)),
                Written::Change(offset) => self.changes.push(offset),
            }
        }
    }

    fn crash(&mut self, now: i64) -> usize {
        self.pending.clear();
        self.processor = restore(&self.model, &self.plan, self.config, now);
        self.model.offset as usize
    }
}

fn run(scenario: &Scenario) -> Driver {
    let records: Vec<StoredRecord> = scenario
        .events
        .iter()
        .enumerate()
        .map(|(offset, event)| StoredRecord {
            offset: offset as u64,
            record: Record::new(None::<Bytes>, event.json(offset as u64), event.time),
        })
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
    while position < records.len() {
        now += 100;
        feed(&mut driver, &mut position, 5, now);
    }
    driver.commit();
    driver
}

fn check(scenario: &Scenario) -> Result<(), TestCaseError> {
    let driver = run(scenario);
    let mut reference = Reference::default();
    let mut expected_events = Vec::new();
    let mut expected_changes = Vec::new();
    for (offset, event) in scenario.events.iter().enumerate() {
        let (resolved, changed) = reference.observe(event);
        expected_events.push((offset as u64, resolved));
        if changed {
            expected_changes.push(offset as u64);
        }
    }
    prop_assert_eq!(
        &driver.events,
        &expected_events,
        "each event once, resolved as the reference"
    );
    prop_assert_eq!(&driver.changes, &expected_changes, "the change records");

    let mut rows = IdRows::default();
    for row in driver.model.rows.values() {
        rows.add(row).unwrap();
    }
    for ((tenant, id), expected) in &reference.profiles {
        let mut merged = MergedProfile::default();
        rows.merge_into(tenant, id, &mut merged);
        let traits: serde_json::Map<String, serde_json::Value> = expected
            .traits
            .iter()
            .map(|(name, (_, json))| (name.clone(), serde_json::from_str(json).unwrap()))
            .collect();
        let stored = (
            merged.events,
            merged.first_seen,
            merged.last_seen,
            merged.traits,
            merged.anonymous_ids,
            merged.merged_ids,
        );
        let wanted = (
            expected.events,
            (expected.events > 0).then_some(expected.first),
            (expected.events > 0).then_some(expected.last),
            traits,
            expected.devices.iter().cloned().collect::<Vec<_>>(),
            expected.merged.iter().cloned().collect::<Vec<_>>(),
        );
        prop_assert_eq!(stored, wanted, "the stored profile of {}/{}", tenant, id);
    }
    for ((tenant, id), (_, user)) in &reference.links {
        let alias = reference.aliases.get(&(tenant.clone(), id.clone()));
        let expected = alias.map_or(user, |(_, user)| user);
        let stored = rows.resolves_to(tenant, id);
        prop_assert_eq!(
            stored.as_deref(),
            Some(expected.as_str()),
            "where {}/{} resolves",
            tenant,
            id
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn identity_equals_the_reference_across_crashes(scenario in scenario()) {
        check(&scenario)?;
    }
}
