//! Synthetic, realistic events for benchmarks: what the collector would store for a web shop
//! — page views (URL, duration), button clicks, orders (revenue with two decimals) — from many
//! users, with browser context, in the normalized JSON of [`sluice_core::Event`], event times
//! advancing at a fixed rate with bounded disorder. Deterministic for a seed.

use serde_json::value::RawValue;
use sluice_core::event::{Event, EventType};
use sluice_core::time::Millis;
use std::borrow::Cow;

/// The DESIGN.md example metric, the benchmark's default.
pub const EXAMPLE_METRIC: &str = "CREATE METRIC page_views AS
SELECT properties.url AS url, COUNT(*) AS views, COUNT(DISTINCT user_id) AS visitors,
       AVG(properties.duration_ms) AS avg_duration,
       APPROX_PERCENTILE(properties.duration_ms, 0.95) AS p95_duration
FROM events WHERE event = 'Page Viewed'
GROUP BY url, TUMBLE(timestamp, INTERVAL '1' MINUTE)";

/// A deterministic event source.
#[derive(Debug, Clone)]
pub struct Synthetic {
    state: u64,
    index: u64,
    start: Millis,
    /// Event-time milliseconds between consecutive events (before disorder).
    pub spacing_micros: u64,
    /// Largest delay of an event behind its slot, ms (the disorder).
    pub max_disorder: Millis,
    /// Number of distinct users.
    pub users: u64,
    /// Number of distinct page URLs.
    pub urls: u64,
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
        }
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

    /// The next event's partition key and stored JSON.
    pub fn next_event(&mut self) -> (String, Vec<u8>) {
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
        let anonymous_id = format!("anon-{user:08x}");
        let event = Event {
            message_id: format!("msg-{:016x}", self.index).into(),
            tenant: "shop".into(),
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
        };
        (anonymous_id, event.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_valid_deterministic_and_realistically_sized() {
        let mut a = Synthetic::new(7, 1_714_564_800_000);
        let mut b = Synthetic::new(7, 1_714_564_800_000);
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
}
