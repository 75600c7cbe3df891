//! Sessions: `CREATE SESSIONS name GAP '30m' [MAX LENGTH '24h'] [FROM events] [WHERE …]
//! [WITH (…)]` emits one record per visitor session into the topic `name`, when the session
//! closes. `WHERE` keeps events out of every session (bots: `context.device.type <> 'bot'`).
//!
//! A session is a run of one visitor's events with less than `GAP` between neighbours (in
//! event time), lasting at most `MAX LENGTH` (24 h by default). The visitor is the event's
//! `anonymous_id`, else its `user_id`: the key the collector partitions by, so a visitor's
//! events are all in one partition and one processor sees the whole session.
//!
//! # How it runs
//! A sessions plan is a [`MetricPlan`] whose window is `SESSION(timestamp, GAP)`, grouped by
//! the visitor, with fixed aggregates that summarize the session ([`Summary`]), and whose
//! output is [`Output::Sessions`]. The window engine keeps the open sessions (merging those an
//! event bridges, as for any session window), checkpoints them with the partition's offset
//! (the store holds each open session as a window row of the sessions' name), and restores them
//! after a crash. The differences from a session metric:
//! - a session's bounds never reach past its start + `MAX LENGTH`, so an event that late
//!   starts a new session;
//! - allowed lateness is 0: a session closes when the watermark (the partition's newest event
//!   time − `out_of_orderness`) passes its last event + `GAP`, or its start + `MAX LENGTH`;
//! - a closed session is written as a record ([`write_record`]) and its stored row is deleted
//!   in the same checkpoint that commits the record's offsets (the derived streams' protocol:
//!   records are visible only once a commit covers them, so a crash never shows a session
//!   twice or loses one).
//!
//! # Late events
//! An event whose own session (`[t, t + GAP)`) would already be closed at the watermark joins
//! an open session of its visitor that it is less than `GAP` from; otherwise it goes to the
//! late topic (`reason: window_closed`), or is dropped with `late = 'drop'`, and is in no
//! session. A session, once emitted, never changes: no correction records, so a metric
//! counting sessions counts each once. An out-of-order event that is not late by that rule but
//! falls next to a session already closed starts a session of its own.
//!
//! # The record
//! `{"tenant", "timestamp": <last event time>, "message_id": <session id>, "type": "session",
//! "user_id", "anonymous_id", "properties": {…}}`, with the properties in [`COLUMNS`]: a
//! metric `FROM sessions` names them bare (`GROUP BY utm_source`, `AVG(duration_ms)`,
//! `AVG(bounce)` for the bounce rate). First and last values are taken by event time, from
//! the events that have them: `utm_source` is the earliest campaign source seen in the session.
//! The session id is 16 hex digits of XXH3 over the tenant, the visitor and the start: the
//! same session always gets the same id, also when it is computed again after a crash.

use crate::agg::{AggState, PartialState};
use crate::keys::{GroupKey, KeyValue};
use crate::plan::{
    Aggregate, AggregateKind, Expr, Field, LatePolicy, Literal, MetricPlan, Output, Source,
    WindowSpec,
};
use crate::window::Window;
use sluice_core::time::Millis;

/// The default longest session: a day.
pub const DEFAULT_MAX_LENGTH: Millis = 24 * 3600 * 1000;

/// A session record's properties, in the order they are written.
pub const COLUMNS: [&str; 17] = [
    "session_id",
    "visitor",
    "start",
    "end",
    "duration_ms",
    "events",
    "pages",
    "bounce",
    "entry_page",
    "exit_page",
    "referrer",
    "referrer_type",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "device",
    "country",
];

/// The aggregates of a sessions plan, by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
enum Summary {
    /// `COUNT(*)`.
    Events,
    /// `COUNT(*) FILTER (WHERE type IN ('page', 'screen'))`.
    Pages,
    /// `MIN(timestamp)`.
    Start,
    /// `MAX(timestamp)`.
    End,
    /// The first page call's `properties.url`.
    EntryPage,
    /// The last page call's `properties.url`.
    ExitPage,
    /// `context.page.referrer`.
    Referrer,
    /// `context.referrer.type` (the collector's referrer class).
    ReferrerType,
    /// `context.campaign.source`.
    UtmSource,
    /// `context.campaign.medium`.
    UtmMedium,
    /// `context.campaign.name`.
    UtmCampaign,
    /// `context.device.type`.
    Device,
    /// `context.geo.country`.
    Country,
    /// The last `user_id`.
    UserId,
    /// The first `anonymous_id`.
    AnonymousId,
    /// The first screen call's `name` (apps have screens where sites have pages).
    EntryScreen,
    /// The last screen call's `name`.
    ExitScreen,
}

fn context(path: &[&str]) -> Field {
    Field::Context(path.iter().map(|part| (*part).to_owned()).collect())
}

fn type_in(types: &[&str]) -> Expr {
    Expr::InList {
        expr: Box::new(Expr::Field(Field::Type)),
        list: types
            .iter()
            .map(|t| Literal::String((*t).to_owned()))
            .collect(),
        negated: false,
    }
}

/// The aggregates, in [`Summary`] order.
fn aggregates() -> Vec<Aggregate> {
    let of = |kind, field: Option<Field>, filter: Option<Expr>| Aggregate {
        kind,
        arg: field.map(Expr::Field),
        filter,
    };
    let page = || Some(type_in(&["page"]));
    let url = || Some(Field::Properties(vec!["url".to_owned()]));
    vec![
        of(AggregateKind::CountStar, None, None),
        of(
            AggregateKind::CountStar,
            None,
            Some(type_in(&["page", "screen"])),
        ),
        of(AggregateKind::Min, Some(Field::Timestamp), None),
        of(AggregateKind::Max, Some(Field::Timestamp), None),
        of(AggregateKind::First, url(), page()),
        of(AggregateKind::Last, url(), page()),
        of(
            AggregateKind::First,
            Some(context(&["page", "referrer"])),
            None,
        ),
        of(
            AggregateKind::First,
            Some(context(&["referrer", "type"])),
            None,
        ),
        of(
            AggregateKind::First,
            Some(context(&["campaign", "source"])),
            None,
        ),
        of(
            AggregateKind::First,
            Some(context(&["campaign", "medium"])),
            None,
        ),
        of(
            AggregateKind::First,
            Some(context(&["campaign", "name"])),
            None,
        ),
        of(
            AggregateKind::First,
            Some(context(&["device", "type"])),
            None,
        ),
        of(
            AggregateKind::First,
            Some(context(&["geo", "country"])),
            None,
        ),
        of(AggregateKind::Last, Some(Field::UserId), None),
        of(AggregateKind::First, Some(Field::AnonymousId), None),
        of(
            AggregateKind::First,
            Some(Field::Name),
            Some(type_in(&["screen"])),
        ),
        of(
            AggregateKind::Last,
            Some(Field::Name),
            Some(type_in(&["screen"])),
        ),
    ]
}

/// What `CREATE SESSIONS` sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionsSpec {
    /// The sessions' name (their topic).
    pub name: String,
    /// `FROM`.
    pub source: Source,
    /// Inactivity that ends a session, ms.
    pub gap: Millis,
    /// The longest session, ms.
    pub max_length: Millis,
    /// `WHERE`: only the events it keeps are in sessions (`context.device.type <> 'bot'`).
    pub filter: Option<Expr>,
    /// How far the watermark trails the newest event time, ms.
    pub out_of_orderness: Millis,
    /// What happens to late events.
    pub late: LatePolicy,
}

/// The plan of a `CREATE SESSIONS` definition (`sql` is its text).
pub fn plan(spec: SessionsSpec, sql: &str) -> MetricPlan {
    let present = |field| Expr::IsNull {
        expr: Box::new(Expr::Field(field)),
        negated: true,
    };
    let has_visitor = Expr::Or(
        Box::new(present(Field::AnonymousId)),
        Box::new(present(Field::UserId)),
    );
    MetricPlan {
        name: spec.name,
        sql: sql.to_owned(),
        source: spec.source,
        output: Output::Sessions {
            max_length: spec.max_length,
        },
        filter: Some(spec.filter.into_iter().fold(has_visitor, |all, filter| {
            Expr::And(Box::new(filter), Box::new(all))
        })),
        keys: vec![Expr::Coalesce(vec![
            Expr::Field(Field::AnonymousId),
            Expr::Field(Field::UserId),
        ])],
        key_names: vec!["visitor".to_owned()],
        aggregates: aggregates(),
        columns: Vec::new(),
        window: WindowSpec::Session { gap: spec.gap },
        out_of_orderness: spec.out_of_orderness,
        allowed_lateness: 0,
        late: spec.late,
    }
}

/// The session's id: 16 hex digits of XXH3 over tenant, visitor and start.
pub fn session_id(key: &GroupKey, start: Millis) -> String {
    let mut bytes = key.as_bytes().to_vec();
    bytes.extend_from_slice(&start.to_le_bytes());
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes))
}

fn write_text(text: &str, out: &mut Vec<u8>) {
    // Writing a string into a vector cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

fn write_key_value(value: &KeyValue, out: &mut Vec<u8>) {
    match value {
        KeyValue::Text(text) => write_text(text, out),
        KeyValue::Null => out.extend_from_slice(b"null"),
        other => write_text(&other.to_string(), out),
    }
}

/// The closed session's record (see the module docs); `window` is its bounds, `state` its
/// summary. Returns the record's event time (the session's last event) and the session's id.
pub fn write_record(
    key: &GroupKey,
    window: Window,
    state: &PartialState,
    out: &mut Vec<u8>,
) -> (Millis, String) {
    use std::io::Write;
    let states = &state.states;
    let count = |which: Summary| match states.get(which as usize) {
        Some(AggState::Count(count)) => *count,
        _ => 0,
    };
    let time = |which: Summary| match states.get(which as usize) {
        Some(AggState::Min(Some(value)) | AggState::Max(Some(value))) => value.to_f64() as Millis,
        // Every session has an event, so both are set; the bounds are the fallback.
        _ => window.start,
    };
    let json = |which: Summary| {
        states
            .get(which as usize)
            .and_then(|state| state.json())
            .unwrap_or(b"null")
    };
    let stamped = |which: Summary| match states.get(which as usize) {
        Some(AggState::First(value) | AggState::Last(value)) => value.as_ref(),
        _ => None,
    };
    // The entry is the earlier of the first page and the first screen; the exit the later
    // of the last ones.
    let (entry, exit) = {
        let pages_and_screens =
            |page: Summary, screen: Summary| stamped(page).into_iter().chain(stamped(screen));
        let entry = pages_and_screens(Summary::EntryPage, Summary::EntryScreen).min();
        let exit = pages_and_screens(Summary::ExitPage, Summary::ExitScreen).max();
        (
            entry.map_or(&b"null"[..], |v| v.json.as_slice()),
            exit.map_or(&b"null"[..], |v| v.json.as_slice()),
        )
    };
    let start = time(Summary::Start);
    let end = time(Summary::End).max(start);
    let id = session_id(key, start);
    let events = count(Summary::Events);
    out.extend_from_slice(b"{\"tenant\":");
    write_text(key.tenant(), out);
    // Writing into a vector cannot fail.
    let _ = write!(
        out,
        ",\"timestamp\":{end},\"message_id\":\"{id}\",\"type\":\"session\""
    );
    if states
        .get(Summary::UserId as usize)
        .and_then(|s| s.json())
        .is_some()
    {
        out.extend_from_slice(b",\"user_id\":");
        out.extend_from_slice(json(Summary::UserId));
    }
    if states
        .get(Summary::AnonymousId as usize)
        .and_then(|s| s.json())
        .is_some()
    {
        out.extend_from_slice(b",\"anonymous_id\":");
        out.extend_from_slice(json(Summary::AnonymousId));
    }
    let _ = write!(
        out,
        ",\"properties\":{{\"session_id\":\"{id}\",\"visitor\":"
    );
    match key.values().first() {
        Some(value) => write_key_value(value, out),
        None => out.extend_from_slice(b"null"),
    }
    let _ = write!(
        out,
        ",\"start\":{start},\"end\":{end},\"duration_ms\":{},\"events\":{events},\"pages\":{},\"bounce\":{}",
        end - start,
        count(Summary::Pages),
        u8::from(events <= 1),
    );
    out.extend_from_slice(b",\"entry_page\":");
    out.extend_from_slice(entry);
    out.extend_from_slice(b",\"exit_page\":");
    out.extend_from_slice(exit);
    let texts = [
        ("referrer", Summary::Referrer),
        ("referrer_type", Summary::ReferrerType),
        ("utm_source", Summary::UtmSource),
        ("utm_medium", Summary::UtmMedium),
        ("utm_campaign", Summary::UtmCampaign),
        ("device", Summary::Device),
        ("country", Summary::Country),
    ];
    for (name, which) in texts {
        let _ = write!(out, ",\"{name}\":");
        out.extend_from_slice(json(which));
    }
    out.extend_from_slice(b"}}");
    (end, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_has_one_aggregate_per_summary_field_in_order() {
        let plan = plan(
            SessionsSpec {
                name: "sessions".into(),
                source: Source::Events,
                gap: 1_800_000,
                max_length: DEFAULT_MAX_LENGTH,
                filter: None,
                out_of_orderness: 0,
                late: LatePolicy::Topic,
            },
            "",
        );
        assert_eq!(plan.aggregates.len(), Summary::ExitScreen as usize + 1);
        assert_eq!(
            plan.aggregates[Summary::Start as usize].kind,
            AggregateKind::Min
        );
        assert_eq!(
            plan.aggregates[Summary::ExitPage as usize].kind,
            AggregateKind::Last
        );
        assert!(plan.is_stream());
        assert!(plan.records().is_none());
    }
}
