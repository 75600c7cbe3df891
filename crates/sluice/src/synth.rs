//! Synthetic, realistic Segment events for benchmarks and demos: page views with url and
//! duration, button clicks, app launches, ad clicks with campaign and cost, orders with revenue
//! in cents-exact decimals; many users, some identified; event times with bounded disorder.
//!
//! Load generators must not be the bottleneck, so batches are built once as [`Template`]s and
//! each send only stamps fresh message ids into fixed-width slots.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sluice_core::time::{Millis, format_millis};
use std::io::Write;

/// The kinds of event generated, with their share of the stream (percent).
pub const MIX: [(&str, u32); 5] = [
    ("Page Viewed", 50),
    ("Button Clicked", 20),
    ("Application Opened", 10),
    ("Ad Clicked", 10),
    ("Order Completed", 10),
];

const ID_PREFIX: &[u8] = b"gen-";
const ID_HEX: usize = 16;

/// A deterministic generator of Segment `track` messages.
#[derive(Debug)]
pub struct EventGen {
    rng: SmallRng,
    users: u64,
    disorder_ms: i64,
}

impl EventGen {
    /// `users` distinct visitors; event times up to `disorder_ms` before the send time.
    pub fn new(seed: u64, users: u64, disorder_ms: i64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            users: users.max(1),
            disorder_ms: disorder_ms.max(0),
        }
    }

    /// Writes one message as JSON, with `"messageId":"gen-<16 hex>"` (the hex digits are
    /// `id_slot`'s to fill) and returns the offset of the hex digits within `out`.
    pub fn message(&mut self, now: Millis, out: &mut Vec<u8>) -> usize {
        let user = self.rng.random_range(0..self.users);
        let roll = self.rng.random_range(0..100u32);
        let mut acc = 0;
        let kind = MIX
            .iter()
            .find(|(_, share)| {
                acc += share;
                roll < acc
            })
            .map_or(MIX[0].0, |(kind, _)| kind);
        let time = now - self.rng.random_range(0..=self.disorder_ms);
        out.extend_from_slice(b"{\"type\":\"track\",\"messageId\":\"");
        out.extend_from_slice(ID_PREFIX);
        let slot = out.len();
        out.extend_from_slice(&[b'0'; ID_HEX]);
        let _ = write!(out, "\",\"anonymousId\":\"anon-{user:08x}\",");
        if user % 5 < 2 {
            let _ = write!(out, "\"userId\":\"user-{user}\",");
        }
        let _ = write!(
            out,
            "\"event\":\"{kind}\",\"timestamp\":\"{}\",\"properties\":{{",
            format_millis(time)
        );
        let rng = &mut self.rng;
        match kind {
            "Page Viewed" => {
                let page = rng.random_range(0..500u32);
                // Durations are heavy-tailed: most views are short, a few very long.
                let duration = (rng.random::<f64>().powi(3) * 120_000.0) as u64 + 200;
                let _ = write!(
                    out,
                    "\"url\":\"/products/{page}\",\"duration_ms\":{duration},\"title\":\"Product {page}\""
                );
            }
            "Button Clicked" => {
                let button = ["add_to_cart", "buy_now", "wishlist", "share", "search"]
                    [rng.random_range(0..5)];
                let _ = write!(
                    out,
                    "\"button\":\"{button}\",\"url\":\"/products/{}\"",
                    rng.random_range(0..500u32)
                );
            }
            "Application Opened" => {
                let _ = write!(
                    out,
                    "\"version\":\"3.{}.{}\",\"from_background\":{}",
                    rng.random_range(0..9u8),
                    rng.random_range(0..20u8),
                    rng.random_bool(0.5)
                );
            }
            "Ad Clicked" => {
                let _ = write!(
                    out,
                    "\"campaign\":\"spring_sale_{:02}\",\"ad_id\":\"ad-{}\",\"cost\":{}.{:02}",
                    rng.random_range(0..20u8),
                    rng.random_range(0..1000u32),
                    rng.random_range(0..2u8),
                    rng.random_range(0..100u8)
                );
            }
            _ => {
                let _ = write!(
                    out,
                    "\"order_id\":\"o-{}\",\"revenue\":{}.{:02},\"currency\":\"USD\",\"items\":{}",
                    rng.random_range(0..u32::MAX),
                    rng.random_range(5..500u32),
                    rng.random_range(0..100u8),
                    rng.random_range(1..6u8)
                );
            }
        }
        out.extend_from_slice(b"},\"context\":{\"library\":{\"name\":\"sluice-gen\",\"version\":\"1\"},\"locale\":\"en-US\"}}");
        slot
    }

    /// A `/v1/batch` body of `count` messages sent at `now`, as a reusable template.
    pub fn batch(&mut self, count: usize, now: Millis) -> Template {
        let mut body = Vec::with_capacity(count * 360 + 64);
        body.extend_from_slice(b"{\"batch\":[");
        let mut slots = Vec::with_capacity(count);
        for index in 0..count {
            if index > 0 {
                body.push(b',');
            }
            slots.push(self.message(now, &mut body));
        }
        let _ = write!(body, "],\"sentAt\":\"{}\"}}", format_millis(now));
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
    use sluice_core::config::ByteSize;
    use sluice_core::normalize::{NormalizeContext, normalize, parse_batch};
    use sluice_core::{EventType, Limits};

    #[test]
    fn generated_batches_are_valid_segment_with_unique_ids_and_bounded_disorder() {
        let now = 1_714_564_800_000;
        let mut generator = EventGen::new(7, 1000, 5_000);
        let template = generator.batch(200, now);
        let body = template.fill(0xabc);
        let limits = Limits {
            max_event_bytes: ByteSize(32 * 1024),
            max_batch_bytes: ByteSize(500 * 1024),
            max_depth: 32,
            max_string_bytes: ByteSize(8192),
            max_id_bytes: ByteSize(256),
            max_name_bytes: ByteSize(256),
        };
        let batch = parse_batch(&body, &limits).unwrap();
        assert_eq!(batch.batch.len(), 200);
        let mut ids = std::collections::HashSet::new();
        let mut kinds = std::collections::HashSet::new();
        for raw in &batch.batch {
            let ctx = NormalizeContext {
                tenant: "t",
                received_at: now,
                limits: &limits,
                endpoint: None,
                batch_sent_at: Some(now),
                batch_context: None,
                index: None,
            };
            let event = normalize(raw.get().as_bytes(), &ctx).unwrap();
            assert_eq!(event.kind, EventType::Track);
            assert!(event.timestamp <= now && event.timestamp >= now - 5_000);
            ids.insert(event.message_id);
            kinds.insert(event.event.unwrap());
        }
        assert_eq!(ids.len(), 200);
        assert!(ids.contains("gen-0000000000000abc"));
        assert_eq!(kinds.len(), MIX.len(), "every kind appears in 200 events");
        let average = body.len() / 200;
        assert!(
            (200..=400).contains(&average),
            "about 300 bytes per event, got {average}"
        );
    }

    #[test]
    fn the_first_message_of_a_batch_is_a_single_message_body_with_its_id_slot() {
        let now = 1_714_564_800_000;
        let mut generator = EventGen::new(3, 1000, 5_000);
        for count in [1, 3] {
            let batch = generator.batch(count, now);
            let single = batch.first_message();
            assert_eq!(single.len(), 1);
            let body = single.fill(0x123);
            let message: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(message["messageId"], "gen-0000000000000123");
            let whole: serde_json::Value = serde_json::from_slice(&batch.fill(0x123)).unwrap();
            assert_eq!(whole["batch"][0], message);
        }
    }
}
