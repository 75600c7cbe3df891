//! Synthetic, realistic events for benchmarks and demos: what a web shop's browsers send —
//! page views (URL, duration), button clicks, orders (revenue with two decimals) — from many
//! users, with browser context; event times advancing at a fixed rate with bounded disorder.
//! Deterministic for a seed. One generator, two renderings of the same draws:
//! - [`Synthetic::next_event`]: the normalized JSON of [`Event`] the collector would store (for
//!   benchmarks that start at the log: `sluice bench stream`, the engine's criterion bench);
//! - [`Synthetic::segment_batch`]: a Segment `/v1/batch` body (for benchmarks over HTTP:
//!   `sluice bench ingest`, `sluice bench e2e`). Load generators must not be the bottleneck, so a
//!   body is built once as a [`Template`] and each send only stamps fresh message ids into
//!   fixed-width slots.

use crate::event::{Event, EventType};
use crate::time::{Millis, format_millis};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::io::Write;

/// The DESIGN.md example metric, the benchmarks' default.
pub const EXAMPLE_METRIC: &str = "CREATE METRIC page_views AS
SELECT properties.url AS url, COUNT(*) AS views, COUNT(DISTINCT user_id) AS visitors,
       AVG(properties.duration_ms) AS avg_duration,
       APPROX_PERCENTILE(properties.duration_ms, 0.95) AS p95_duration
FROM events WHERE event = 'Page Viewed'
GROUP BY url, TUMBLE(timestamp, INTERVAL '1' MINUTE)";

/// The prefix of generated message ids; [`ID_HEX`] hex digits follow.
const ID_PREFIX: &[u8] = b"gen-";
const ID_HEX: usize = 16;

/// A deterministic event source.
#[derive(Debug, Clone)]
pub struct Synthetic {
    state: u64,
    index: u64,
    start: Millis,
    /// Event-time microseconds between consecutive events (before disorder); 0 puts every
    /// event at `start` (a load generator's send time).
    pub spacing_micros: u64,
    /// Largest delay of an event behind its slot, ms (the disorder).
    pub max_disorder: Millis,
    /// Number of distinct users.
    pub users: u64,
    /// Number of distinct page URLs.
    pub urls: u64,
    /// Number of tenants, of Zipf-skewed sizes (tenant `i` gets a share ∝ 1/(i+1)); with one,
    /// every event is the tenant `shop`'s.
    pub tenants: u64,
    /// Events in a thousand that arrive [`late_by`](Self::late_by) behind their slot.
    pub late_per_mille: u64,
    /// How late the late events are, ms.
    pub late_by: Millis,
    /// The tenants' cumulative Zipf weights, made at the first draw after `tenants` changed.
    tenant_bounds: Vec<f64>,
}

/// One event's content, before it is rendered.
struct Draw {
    /// Where the event's time slot is (its send time).
    slot: Millis,
    timestamp: Millis,
    user: u64,
    event: &'static str,
    properties: String,
    context: String,
    /// The tenant's index, with more than one tenant.
    tenant: Option<u64>,
}

const BUTTONS: [&str; 5] = ["buy", "add-to-cart", "signup", "search", "share"];
const AGENTS: [&str; 3] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
];

impl Synthetic {
    /// Events from `start` on, 1,000 per second of event time, up to 2 s of disorder, 100,000
    /// users and 500 URLs.
    pub fn new(seed: u64, start: Millis) -> Synthetic {
        Synthetic {
            state: seed ^ 0x9e37_79b9_7f4a_7c15,
            index: 0,
            start,
            spacing_micros: 1_000,
            max_disorder: 2_000,
            users: 100_000,
            urls: 500,
            tenants: 1,
            late_per_mille: 0,
            late_by: 300_000,
            tenant_bounds: Vec::new(),
        }
    }

    /// The tenants the events belong to, by index.
    pub fn tenant_names(&self) -> Vec<String> {
        (0..self.tenants)
            .map(|i| self.tenant_name(Some(i)))
            .collect()
    }

    fn tenant_name(&self, index: Option<u64>) -> String {
        match index {
            Some(index) if self.tenants > 1 => format!("tenant-{index:02}"),
            _ => "shop".to_owned(),
        }
    }

    /// A tenant index drawn with Zipf-skewed weights 1/(i+1).
    fn skewed_tenant(&mut self) -> u64 {
        if self.tenant_bounds.len() as u64 != self.tenants {
            let mut total = 0.0;
            self.tenant_bounds = (0..self.tenants)
                .map(|i| {
                    total += 1.0 / (i + 1) as f64;
                    total
                })
                .collect();
        }
        let total = self.tenant_bounds.last().copied().unwrap_or(0.0);
        let point = self.below(1 << 32) as f64 / (1u64 << 32) as f64 * total;
        let index = self.tenant_bounds.partition_point(|&bound| bound <= point);
        index.min(self.tenant_bounds.len().saturating_sub(1)) as u64
    }

    fn next_u64(&mut self) -> u64 {
        // SplitMix64.
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// The next event's content.
    fn draw(&mut self) -> Draw {
        let slot = self.start + (self.index * self.spacing_micros / 1_000) as Millis;
        self.index += 1;
        let timestamp = slot - self.below(self.max_disorder as u64 + 1) as Millis;
        let user = self.below(self.users);
        // Popular pages get most views: the square of a uniform number skews low.
        let page = {
            let u = self.below(self.urls);
            u * u / self.urls.max(1)
        };
        let roll = self.below(100);
        let (event, properties) = if roll < 70 {
            let duration = self.below(30_000) + 50;
            let duration = if roll.is_multiple_of(7) {
                format!("{duration}.5")
            } else {
                duration.to_string()
            };
            (
                "Page Viewed",
                format!(
                    r#"{{"url":"/products/{page}","title":"Product {page}","duration_ms":{duration},"referrer":"https://www.google.com/"}}"#
                ),
            )
        } else if roll < 90 {
            let button = BUTTONS[self.below(BUTTONS.len() as u64) as usize];
            (
                "Button Clicked",
                format!(r#"{{"button":"{button}","url":"/products/{page}"}}"#),
            )
        } else {
            let cents = self.below(50_000) + 99;
            let items = self.below(5) + 1;
            (
                "Order Completed",
                format!(
                    r#"{{"order_id":"o{}","revenue":{}.{:02},"currency":"USD","items":{}}}"#,
                    self.index,
                    cents / 100,
                    cents % 100,
                    items
                ),
            )
        };
        let agent = AGENTS[self.below(AGENTS.len() as u64) as usize];
        let context = format!(
            r#"{{"library":{{"name":"analytics.js","version":"5.2.0"}},"page":{{"path":"/products/{page}"}},"userAgent":"{agent}","ip":"203.0.113.{}","locale":"en-US"}}"#,
            user % 250
        );
        // Drawn only when asked for, so the default stream stays what it always was.
        let tenant = (self.tenants > 1).then(|| self.skewed_tenant());
        let late = self.late_per_mille > 0 && self.below(1_000) < self.late_per_mille;
        let timestamp = if late {
            timestamp - self.late_by
        } else {
            timestamp
        };
        Draw {
            tenant,
            slot,
            timestamp,
            user,
            event,
            properties,
            context,
        }
    }

    /// The next event's partition key and stored JSON.
    pub fn next_event(&mut self) -> (String, Vec<u8>) {
        let Draw {
            slot,
            timestamp,
            user,
            event,
            properties,
            context,
            tenant,
        } = self.draw();
        let tenant = self.tenant_name(tenant);
        let anonymous_id = format!("anon-{user:08x}");
        let event = Event {
            message_id: format!("msg-{:016x}", self.index).into(),
            tenant: tenant.into(),
            kind: EventType::Track,
            event: Some(event.into()),
            name: None,
            category: None,
            user_id: Some(format!("user-{user}").into()),
            anonymous_id: Some(anonymous_id.clone().into()),
            group_id: None,
            previous_id: None,
            timestamp,
            received_at: slot + 40,
            sent_at: Some(slot + 30),
            original_timestamp: Some(timestamp),
            properties: RawValue::from_string(properties).ok().map(Cow::Owned),
            traits: None,
            context: RawValue::from_string(context).ok().map(Cow::Owned),
            integrations: None,
            channel: None,
            version: None,
            metadata: None,
            schema_violations: None,
        };
        (anonymous_id, event.to_json())
    }

    /// Writes the next event as a Segment `track` message, with `"messageId":"gen-<16 hex>"`
    /// whose hex digits are a [`Template`]'s to fill, and returns their offset within `out`.
    pub fn message(&mut self, out: &mut Vec<u8>) -> usize {
        let Draw {
            timestamp,
            user,
            event,
            properties,
            context,
            ..
        } = self.draw();
        out.extend_from_slice(b"{\"type\":\"track\",\"messageId\":\"");
        out.extend_from_slice(ID_PREFIX);
        let slot = out.len();
        out.extend_from_slice(&[b'0'; ID_HEX]);
        let _ = write!(
            out,
            "\",\"anonymousId\":\"anon-{user:08x}\",\"userId\":\"user-{user}\",\"event\":\"{event}\",\"timestamp\":\"{}\",\"properties\":{properties},\"context\":{context}}}",
            format_millis(timestamp)
        );
        slot
    }

    /// A `/v1/batch` body of the next `count` events, sent at `sent_at`, as a reusable
    /// template.
    pub fn segment_batch(&mut self, count: usize, sent_at: Millis) -> Template {
        let mut body = Vec::with_capacity(count * 480 + 64);
        body.extend_from_slice(b"{\"batch\":[");
        let mut slots = Vec::with_capacity(count);
        for index in 0..count {
            if index > 0 {
                body.push(b',');
            }
            slots.push(self.message(&mut body));
        }
        let _ = write!(body, "],\"sentAt\":\"{}\"}}", format_millis(sent_at));
        Template { body, slots }
    }
}

/// A request body with fixed-width slots for message ids.
#[derive(Debug, Clone)]
pub struct Template {
    /// The body bytes (slots hold zeros until filled).
    pub body: Vec<u8>,
    /// Offsets of the 16 hex digits of each message id.
    pub slots: Vec<usize>,
}

impl Template {
    /// A copy of the body with ids `first_id..first_id + slots.len()` stamped in.
    pub fn fill(&self, first_id: u64) -> Vec<u8> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut body = self.body.clone();
        for (n, slot) in self.slots.iter().enumerate() {
            let id = first_id + n as u64;
            for (digit, byte) in body[*slot..*slot + ID_HEX].iter_mut().enumerate() {
                *byte = HEX[((id >> (4 * (ID_HEX - 1 - digit))) & 0xf) as usize];
            }
        }
        body
    }

    /// The first message of a batch template on its own (a `/v1/track` body), its id slot
    /// kept.
    pub fn first_message(&self) -> Template {
        let open = self
            .body
            .iter()
            .position(|&b| b == b'[')
            .map_or(0, |at| at + 1);
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        let mut close = self.body.len();
        for (at, &byte) in self.body.iter().enumerate().skip(open) {
            match byte {
                _ if escaped => escaped = false,
                b'\\' if in_string => escaped = true,
                b'"' => in_string = !in_string,
                _ if in_string => {}
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        close = at + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        Template {
            body: self.body[open..close].to_vec(),
            slots: self
                .slots
                .iter()
                .filter(|&&slot| (open..close).contains(&slot))
                .map(|slot| slot - open)
                .collect(),
        }
    }

    /// Messages in the body.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the body holds no message.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ByteSize;
    use crate::normalize::{NormalizeContext, normalize, parse_batch};
    use crate::{EventType, Limits};
    use std::collections::HashSet;

    const START: Millis = 1_714_564_800_000;

    #[test]
    fn stored_events_are_valid_deterministic_and_realistically_sized() {
        let mut a = Synthetic::new(7, START);
        let mut b = Synthetic::new(7, START);
        let mut total = 0;
        for _ in 0..1_000 {
            let (key, json) = a.next_event();
            assert_eq!((key.clone(), json.clone()), b.next_event());
            let event: Event<'_> = serde_json::from_slice(&json).unwrap();
            assert_eq!(event.partition_key(), key);
            total += json.len();
        }
        let average = total / 1_000;
        assert!((300..800).contains(&average), "{average} bytes per event");
    }

    #[test]
    fn segment_batches_normalize_to_the_stored_events_of_the_same_draws() {
        let limits = Limits {
            max_event_bytes: ByteSize(32 * 1024),
            max_batch_bytes: ByteSize(500 * 1024),
            max_depth: 32,
            max_string_bytes: ByteSize(8192),
            max_id_bytes: ByteSize(256),
            max_name_bytes: ByteSize(256),
        };
        let mut sender = Synthetic::new(7, START);
        sender.max_disorder = 5_000;
        let mut store = sender.clone();
        let template = sender.segment_batch(200, START + 5_000);
        let body = template.fill(0xabc);
        let batch = parse_batch(&body, &limits).unwrap();
        assert_eq!(batch.batch.len(), 200);
        let mut ids = HashSet::new();
        let mut kinds = HashSet::new();
        for raw in &batch.batch {
            let context = NormalizeContext {
                tenant: "shop",
                received_at: START + 5_000,
                limits: &limits,
                endpoint: None,
                batch_sent_at: Some(START + 5_000),
                batch_context: None,
                index: None,
            };
            let event = normalize(raw.get().as_bytes(), &context).unwrap();
            let (key, stored) = store.next_event();
            let stored: Event<'_> = serde_json::from_slice(&stored).unwrap();
            assert_eq!(event.kind, EventType::Track);
            assert_eq!(event.partition_key(), key);
            assert_eq!(
                (&event.event, &event.user_id, event.timestamp),
                (&stored.event, &stored.user_id, stored.timestamp)
            );
            assert_eq!(
                event.properties.as_ref().map(|p| p.get()),
                stored.properties.as_ref().map(|p| p.get())
            );
            assert!((START - 5_000..=START + 200).contains(&event.timestamp));
            ids.insert(event.message_id.into_owned());
            kinds.insert(event.event.unwrap().into_owned());
        }
        assert_eq!(ids.len(), 200);
        assert!(ids.contains("gen-0000000000000abc"));
        assert_eq!(
            kinds.len(),
            3,
            "every kind appears in 200 events: {kinds:?}"
        );
    }

    #[test]
    fn the_first_message_of_a_batch_is_a_single_message_body_with_its_id_slot() {
        let mut generator = Synthetic::new(3, START);
        for count in [1, 3] {
            let batch = generator.segment_batch(count, START);
            let single = batch.first_message();
            assert_eq!(single.len(), 1);
            let body = single.fill(0x123);
            let message: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(message["messageId"], "gen-0000000000000123");
            let whole: serde_json::Value = serde_json::from_slice(&batch.fill(0x123)).unwrap();
            assert_eq!(whole["batch"][0], message);
        }
    }

    #[test]
    fn tenants_are_skewed_and_late_events_are_as_many_as_asked() {
        let mut generator = Synthetic::new(15, START);
        generator.tenants = 20;
        generator.late_per_mille = 10;
        generator.late_by = 300_000;
        let names = generator.tenant_names();
        assert_eq!(names.len(), 20);
        let mut per_tenant = std::collections::HashMap::<String, u64>::new();
        let mut late = 0;
        for n in 0..20_000u64 {
            let (_, json) = generator.next_event();
            let event: Event<'_> = serde_json::from_slice(&json).unwrap();
            assert!(
                names.contains(&event.tenant.to_string()),
                "{}",
                event.tenant
            );
            *per_tenant.entry(event.tenant.to_string()).or_default() += 1;
            // Slots advance 1 ms per event; ordinary disorder is at most 2 s.
            if event.timestamp < START + n as Millis - 2_000 {
                late += 1;
            }
        }
        let first = per_tenant["tenant-00"];
        let last = per_tenant["tenant-19"];
        assert!(first > 10 * last, "Zipf: {first} vs {last}");
        assert!(
            (100..=300).contains(&late),
            "1 % of 20,000 late, got {late}"
        );
    }
}
