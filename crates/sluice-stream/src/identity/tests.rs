use super::*;
use crate::config::ProcessorConfig;
use crate::engine::output::{MetricCheckpoint, Outputs};
use crate::engine::{Message, Processor};
use crate::sql::{MetricDefaults, parse_metric};
use serde_json::{Value as Json, json};
use sluice_log::{Record, StoredRecord};

const CONFIG: ProcessorConfig = ProcessorConfig {
    idle_timeout: 5_000,
    max_open_windows: 1_000,
};

fn defaults() -> MetricDefaults {
    MetricDefaults {
        out_of_orderness: 0,
        allowed_lateness: 0,
        late: LatePolicy::Topic,
    }
}

/// A processor running `CREATE IDENTITY people`, fed one event at a time.
struct Run {
    processor: Processor,
    offset: u64,
    barrier: u64,
}

impl Run {
    fn new() -> Run {
        Run::with(Processor::new(0, 0, CONFIG))
    }

    fn with(mut processor: Processor) -> Run {
        let plan = parse_metric("CREATE IDENTITY people", &defaults()).unwrap();
        processor.add_metric(Arc::new(plan)).unwrap();
        Run {
            processor,
            offset: 0,
            barrier: 0,
        }
    }

    /// Feeds one event; returns its resolved id (`None`: no record) and its change record.
    fn event(&mut self, event: Json) -> (Option<String>, Option<Json>) {
        let record = StoredRecord {
            offset: self.offset,
            record: Record::new(None::<Bytes>, event.to_string(), 0),
        };
        self.offset += 1;
        let mut out = Outputs::default();
        self.processor
            .handle(
                Message::Data {
                    records: &[record],
                    now: 1,
                },
                &mut out,
            )
            .unwrap();
        let mut resolved = None;
        let mut change = None;
        for record in &out.records {
            let value: Json = serde_json::from_slice(&record.value).unwrap();
            match &*record.stream {
                "people" => {
                    let mut without = value.clone();
                    let id = without.as_object_mut().unwrap().remove("resolved_user_id");
                    assert_eq!(
                        without, event,
                        "the record is the event and its resolved id"
                    );
                    resolved = id.and_then(|id| id.as_str().map(str::to_owned));
                }
                "people.changes" => change = Some(value),
                other => panic!("a record for {other}"),
            }
        }
        (resolved, change)
    }

    fn resolve(&mut self, event: Json) -> String {
        self.event(event).0.expect("a record")
    }

    fn checkpoint(&mut self) -> MetricCheckpoint {
        self.barrier += 1;
        let mut out = Outputs::default();
        self.processor
            .handle(Message::Barrier { id: self.barrier }, &mut out)
            .unwrap();
        out.checkpoints.pop().unwrap().metrics.pop().unwrap()
    }
}

fn call(kind: &str, time: i64, user: Option<&str>, anonymous: Option<&str>) -> Json {
    let mut event = json!({"tenant": "shop", "timestamp": time, "type": kind, "message_id": format!("m{time}")});
    if let Some(user) = user {
        event["user_id"] = json!(user);
    }
    if let Some(anonymous) = anonymous {
        event["anonymous_id"] = json!(anonymous);
    }
    event
}

fn identify(time: i64, user: &str, anonymous: Option<&str>, traits: Json) -> Json {
    let mut event = call("identify", time, Some(user), anonymous);
    event["traits"] = traits;
    event
}

fn alias(time: i64, previous: &str, user: &str) -> Json {
    let mut event = call("alias", time, Some(user), None);
    event["previous_id"] = json!(previous);
    event
}

fn profiles(checkpoint: &MetricCheckpoint) -> IdRows {
    let mut rows = IdRows::default();
    for row in checkpoint.changed.iter() {
        rows.add(&PartialRow::decode(row, &KINDS).unwrap()).unwrap();
    }
    rows
}

fn profile(rows: &IdRows, id: &str) -> MergedProfile {
    let mut profile = MergedProfile {
        user_id: id.to_owned(),
        ..MergedProfile::default()
    };
    rows.merge_into("shop", id, &mut profile);
    profile
}

#[test]
fn a_device_resolves_to_its_user_once_linked_and_a_shared_device_to_its_latest_user() {
    let mut run = Run::new();
    assert_eq!(
        run.resolve(call("page", 10, None, Some("a1"))),
        "a1",
        "anonymous until linked"
    );
    let (resolved, change) = run.event(identify(20, "u1", Some("a1"), json!({"name": "Ann"})));
    assert_eq!(resolved.as_deref(), Some("u1"));
    let change = change.expect("the identify links a1 and sets a trait");
    assert_eq!(change["user_id"], "u1");
    assert_eq!(change["anonymous_id"], "a1");
    assert_eq!(change["message_id"], "m20");
    assert_eq!(
        change["properties"],
        json!({"linked": true, "previous_user_id": null, "aliased_id": null, "traits": {"name": "Ann"}})
    );
    assert_eq!(run.resolve(call("page", 30, None, Some("a1"))), "u1");
    assert_eq!(
        run.resolve(call("track", 31, Some("u1"), None)),
        "u1",
        "server-side"
    );
    assert_eq!(
        run.resolve(call("track", 32, Some("u1"), Some("a2"))),
        "u1",
        "a second device"
    );
    assert_eq!(run.resolve(call("page", 33, None, Some("a2"))), "u1");
    assert_eq!(
        run.event(call("page", 34, Some("u1"), Some("a1"))).1,
        None,
        "no change: a1 is u1's already"
    );

    // Someone else signs in on a1: it is theirs from now on; u1's profile stays u1's.
    let (_, change) = run.event(identify(50, "u2", Some("a1"), json!({})));
    let change = change.unwrap();
    assert_eq!(change["properties"]["previous_user_id"], "u1");
    assert_eq!(run.resolve(call("page", 51, None, Some("a1"))), "u2");
    // An older sign-in read later does not take the device back.
    assert_eq!(run.event(identify(40, "u3", Some("a1"), json!({}))).1, None);
    assert_eq!(run.resolve(call("page", 52, None, Some("a1"))), "u2");

    let rows = profiles(&run.checkpoint());
    let u1 = profile(&rows, "u1");
    assert_eq!(
        (u1.events, u1.first_seen, u1.last_seen),
        (6, Some(20), Some(34))
    );
    assert_eq!(u1.anonymous_ids, ["a1", "a2"]);
    assert_eq!(
        u1.traits,
        json!({"name": "Ann"}).as_object().unwrap().clone()
    );
    let a1 = profile(&rows, "a1");
    assert_eq!(
        (a1.events, a1.first_seen),
        (1, Some(10)),
        "a1's anonymous page view"
    );
    assert_eq!(rows.resolves_to("shop", "a1").as_deref(), Some("u2"));
    assert_eq!(rows.resolves_to("shop", "a2").as_deref(), Some("u1"));
    assert_eq!(rows.resolves_to("shop", "u1"), None);
}

#[test]
fn traits_are_latest_by_event_time_and_long_values_are_bounded() {
    let mut run = Run::new();
    run.event(identify(20, "u1", None, json!({"plan": "pro", "seats": 3})));
    let (_, change) = run.event(identify(
        10,
        "u1",
        None,
        json!({"plan": "free", "team": {"id": 7}}),
    ));
    assert_eq!(
        change.unwrap()["properties"]["traits"],
        json!({"team": {"id": 7}}),
        "an older identify only adds the traits the newer one lacks"
    );
    assert_eq!(
        run.event(identify(30, "u1", None, json!({"plan": "pro"})))
            .1,
        None,
        "the same value again is no change"
    );
    let long = "é".repeat(1000);
    run.event(identify(
        40,
        "u1",
        None,
        json!({"bio": long, "list": vec![1; 600]}),
    ));
    let rows = profiles(&run.checkpoint());
    let traits = profile(&rows, "u1").traits;
    assert_eq!(traits["plan"], "pro");
    assert_eq!(traits["seats"], 3);
    assert_eq!(traits["team"], json!({"id": 7}));
    let bio = traits["bio"].as_str().unwrap();
    assert!(
        bio.len() <= crate::agg::MAX_VALUE_BYTES && long.starts_with(bio),
        "cut on a character"
    );
    assert_eq!(traits["list"], Json::Null, "half an array is no JSON");
}

/// Merging a person's identities (as `GET /v1/users/{id}` does: a linked device's, an aliased
/// id's) keeps each trait's latest value by event time, whichever identity had it and in
/// whichever order they are merged.
#[test]
fn merged_identities_keep_each_traits_latest_value() {
    let mut run = Run::new();
    run.event(identify(
        20,
        "u1",
        None,
        json!({"plan": "free", "seats": 1}),
    ));
    run.event(identify(30, "u0", None, json!({"plan": "pro"})));
    run.event(identify(10, "u0", None, json!({"seats": 5, "team": "a"})));
    let rows = profiles(&run.checkpoint());
    let (u0, u1) = (profile(&rows, "u0"), profile(&rows, "u1"));
    let expected = json!({"plan": "pro", "seats": 1, "team": "a"});
    for (first, second) in [(&u0, &u1), (&u1, &u0)] {
        let mut merged = first.clone();
        merged.merge_traits(second);
        assert_eq!(Json::Object(merged.traits), expected);
    }
}

#[test]
fn alias_merges_a_previous_id_and_aliases_chain_without_looping() {
    let mut run = Run::new();
    assert_eq!(run.resolve(call("track", 1, Some("old"), None)), "old");
    assert_eq!(run.resolve(call("page", 2, None, Some("a9"))), "a9");
    let (resolved, change) = run.event(alias(3, "old", "new"));
    assert_eq!(resolved.as_deref(), Some("new"));
    assert_eq!(change.unwrap()["properties"]["aliased_id"], "old");
    assert_eq!(run.resolve(call("track", 4, Some("old"), None)), "new");
    run.event(alias(5, "a9", "new"));
    assert_eq!(
        run.resolve(call("page", 6, None, Some("a9"))),
        "new",
        "an aliased anonymous id"
    );
    run.event(alias(7, "new", "final"));
    assert_eq!(
        run.resolve(call("track", 8, Some("old"), None)),
        "final",
        "old → new → final"
    );
    run.event(alias(9, "final", "old"));
    let looped = run.resolve(call("track", 10, Some("old"), None));
    assert_eq!(looped, "final", "a cycle stops where it closes");
    let rows = profiles(&run.checkpoint());
    assert_eq!(profile(&rows, "new").merged_ids, ["a9", "old"]);
    assert_eq!(rows.resolves_to("shop", "old").as_deref(), Some("new"));
}

#[test]
fn erased_ids_lose_their_rows_and_their_stored_events_are_skipped() {
    let erased = Arc::new(ErasedUsers::default());
    let mut run = Run::with(Processor::new(0, 0, CONFIG).with_erasures(Arc::clone(&erased)));
    run.event(identify(
        1,
        "u1",
        Some("a1"),
        json!({"email": "ann@example.com"}),
    ));
    run.event(call("page", 2, None, Some("a1")));
    run.event(call("page", 3, None, Some("a2")));
    let written = run.checkpoint();
    assert!(written.retracted.is_empty());
    let rows = profiles(&written);
    assert_eq!(profile(&rows, "u1").events, 2);

    erased.insert("shop", "u1");
    assert_eq!(
        run.event(call("track", 4, Some("u1"), None)),
        (None, None),
        "skipped"
    );
    let erasure = run.checkpoint();
    let mut deleted: Vec<String> = erasure
        .retracted
        .iter()
        .map(|(key, window)| {
            let id = RowId::of(key).unwrap();
            assert_eq!(*window, window_of(&id.id));
            format!("{}:{}:{}", id.kind.as_str(), id.id, id.sub)
        })
        .collect();
    deleted.sort();
    assert_eq!(
        deleted,
        ["device:u1:a1", "link:a1:", "profile:u1:", "trait:u1:email"],
        "every row of u1, and the link of its device"
    );
    assert!(erasure.changed.is_empty());
    assert_eq!(
        run.resolve(call("page", 5, None, Some("a1"))),
        "a1",
        "a1 is no one's now"
    );
    assert_eq!(
        run.resolve(call("page", 6, None, Some("a2"))),
        "a2",
        "others are untouched"
    );
    assert!(
        run.checkpoint().retracted.is_empty(),
        "an erasure applies once"
    );

    // An erased device leaves its user's profile: its link and its device row go.
    run.event(identify(7, "u2", Some("a3"), json!({})));
    run.event(identify(8, "u2", Some("a4"), json!({})));
    run.checkpoint();
    erased.insert("shop", "a3");
    let mut deleted: Vec<String> = run
        .checkpoint()
        .retracted
        .iter()
        .map(|(key, _)| {
            let id = RowId::of(key).unwrap();
            format!("{}:{}:{}", id.kind.as_str(), id.id, id.sub)
        })
        .collect();
    deleted.sort();
    assert_eq!(deleted, ["device:u2:a3", "link:a3:"]);
    run.event(call("page", 9, None, Some("a4")));
    let rows = profiles(&run.checkpoint());
    assert_eq!(profile(&rows, "u2").anonymous_ids, ["a4"]);
}

#[test]
fn the_record_is_the_event_with_its_resolved_id_first() {
    assert_eq!(
        with_resolved(br#"{"a":1}"#, "u\"1"),
        br#"{"resolved_user_id":"u\"1","a":1}"#
    );
    assert_eq!(with_resolved(b"{}", "u1"), br#"{"resolved_user_id":"u1"}"#);
    assert_eq!(
        with_resolved(b" { } ", "u1"),
        br#"{"resolved_user_id":"u1" } "#
    );
}

#[test]
fn rows_of_an_id_share_a_window_past_any_event_time() {
    let window = window_of("u1");
    assert_eq!(window.end, window.start + 1);
    assert!(window.start > crate::window::MAX_EVENT_TIME * 1000);
    assert_eq!(window_of("u1"), window, "stable");
    assert_ne!(window_of("u2"), window);
}

#[test]
fn identity_definitions_parse_and_resolved_user_id_is_read_from_one() {
    let plan = parse_metric("CREATE IDENTITY people FROM events;", &defaults()).unwrap();
    assert_eq!(plan.output, Output::Identity);
    assert!(plan.is_stream());
    assert_eq!(plan.source, Source::Events);
    assert_eq!(changes_topic(&plan.name), "people.changes");
    for (sql, wanted) in [
        (
            "CREATE IDENTITY people FROM orders",
            "line 1, column 29: an identity reads the collector's events",
        ),
        (
            "CREATE IDENTITY people GAP '1s'",
            "line 1, column 24: unexpected `GAP`",
        ),
        ("CREATE IDENTITY events", "a stream cannot be named events"),
        (
            "CREATE METRIC people_count AS SELECT COUNT(DISTINCT resolved_user_id) AS people\n  FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "line 1, column 53: resolved_user_id is in the records of an identity",
        ),
    ] {
        let error = parse_metric(sql, &defaults()).unwrap_err().to_string();
        assert!(error.contains(wanted), "{sql}: {error}");
    }
    let counted = parse_metric(
        "CREATE METRIC people_count AS SELECT COUNT(DISTINCT resolved_user_id) AS people FROM people GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
        &defaults(),
    )
    .unwrap();
    assert!(counted.fields().contains(&Field::ResolvedUserId));
}
