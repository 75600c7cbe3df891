//! Random event streams: page views, clicks and orders from a few tenants and users, with
//! bounded disorder, occasional very late events, missing fields, numbers sent as text and
//! numbers out of the decimal range (which aggregates skip).

use bytes::Bytes;
use proptest::prelude::*;
use sluice_log::{Record, StoredRecord};

/// One generated event before serialization.
#[derive(Debug, Clone)]
pub(crate) struct GenEvent {
    pub(crate) tenant: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) event: &'static str,
    pub(crate) user: u32,
    pub(crate) delay: i64,
    pub(crate) late: bool,
    pub(crate) url: Option<&'static str>,
    pub(crate) duration: Option<(i64, u8)>,
    pub(crate) revenue: Option<(i64, bool)>,
    /// The revenue is `9.99e300` (beyond the decimal range) instead.
    pub(crate) huge_revenue: bool,
}

const URLS: [&str; 4] = ["/", "/pricing", "/Docs", "/blog/a"];
const EVENTS: [&str; 3] = ["Page Viewed", "Order Completed", "Button Clicked"];

pub(crate) fn event() -> impl Strategy<Value = GenEvent> {
    (
        prop_oneof![Just("acme"), Just("zeta")],
        prop_oneof![4 => Just("track"), 1 => Just("page")],
        prop::sample::select(&EVENTS[..]),
        0u32..12,
        (0i64..16).prop_map(|steps| steps * 250),
        prop::bool::weighted(0.04),
        prop::option::weighted(0.9, prop::sample::select(&URLS[..])),
        prop::option::weighted(0.85, (0i64..5_000, 0u8..2)),
        prop::option::weighted(0.5, (0i64..100_000, any::<bool>())),
        prop::bool::weighted(0.05),
    )
        .prop_map(
            |(tenant, kind, event, user, delay, late, url, duration, revenue, huge_revenue)| {
                GenEvent {
                    tenant,
                    kind,
                    event,
                    user,
                    delay,
                    late,
                    url,
                    duration,
                    revenue,
                    huge_revenue,
                }
            },
        )
}

/// A stream: events with their event times, and how they are cut into batches with ticks.
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    pub(crate) records: Vec<StoredRecord>,
    /// Batch sizes, in order; after each batch, optionally a tick `idle` ms after it.
    pub(crate) batches: Vec<(usize, Option<i64>)>,
}

/// Event time advances 250 ms per event; each event is delayed by up to 3.75 s (the
/// disorder), and a few by 30–90 s (late). Times stay on a 250 ms grid so that watermarks
/// land exactly on window ends, where off-by-one mistakes live.
pub(crate) fn stream(max_len: usize) -> impl Strategy<Value = Stream> {
    (
        prop::collection::vec(event(), 1..max_len),
        prop::collection::vec(
            (1usize..40, prop::option::weighted(0.2, 0i64..20_000)),
            1..60,
        ),
        prop::collection::vec((120i64..360).prop_map(|steps| steps * 250), 64),
    )
        .prop_map(|(events, cuts, late_by)| {
            let records = events
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let mut time = 1_700_000_000_000 + i as i64 * 250 - e.delay;
                    if e.late {
                        time -= late_by[i % late_by.len()];
                    }
                    StoredRecord {
                        offset: i as u64,
                        record: Record::new(
                            Some(Bytes::from(format!("u{}", e.user))),
                            to_json(e, time),
                            time,
                        ),
                    }
                })
                .collect::<Vec<_>>();
            let mut batches = Vec::new();
            let mut left = records.len();
            for (size, tick) in cuts.into_iter().cycle() {
                if left == 0 {
                    break;
                }
                let size = size.min(left);
                batches.push((size, tick));
                left -= size;
            }
            Stream { records, batches }
        })
}

fn to_json(e: &GenEvent, time: i64) -> String {
    let mut properties = Vec::new();
    if let Some(url) = e.url {
        properties.push(format!(r#""url":"{url}""#));
    }
    if let Some((value, scale)) = e.duration {
        let text = if scale == 0 {
            value.to_string()
        } else {
            format!("{}.{}", value / 10, value % 10)
        };
        properties.push(format!(r#""duration_ms":{text}"#));
    }
    if let Some((cents, as_text)) = e.revenue {
        let text = if e.huge_revenue {
            "9.99e300".to_owned()
        } else {
            format!("{}.{:02}", cents / 100, cents % 100)
        };
        properties.push(if as_text {
            format!(r#""revenue":"{text}""#)
        } else {
            format!(r#""revenue":{text}"#)
        });
    }
    format!(
        r#"{{"message_id":"m","tenant":"{}","type":"{}","event":"{}","user_id":"u{}","timestamp":{time},"received_at":{time},"properties":{{{}}},"context":{{"library":{{"name":"gen"}}}}}}"#,
        e.tenant,
        e.kind,
        e.event,
        e.user,
        properties.join(",")
    )
}
