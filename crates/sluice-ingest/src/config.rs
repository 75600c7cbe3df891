//! The `[ingest]` config section.

use serde::Deserialize;
use sluice_core::config::{ByteSize, ConfigProblem, HumanDuration, Validate, join};
use sluice_log::record::check_topic_name;

/// The largest `dedup-capacity`: a billion ids are ~40 GB of memory.
pub const MAX_DEDUP_CAPACITY: usize = 1 << 30;

/// How the collector behaves (limits on events themselves are in `[limits]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct IngestConfig {
    /// Topic accepted events are appended to.
    pub events_topic: String,
    /// Topic rejected events are appended to, with the reason and the raw input.
    pub dead_letter_topic: String,
    /// How long a `messageId` is remembered to drop a retried copy.
    pub dedup_window: HumanDuration,
    /// How many message ids are remembered at most (16 bytes each, plus table overhead).
    pub dedup_capacity: usize,
    /// How often the remembered ids are saved, so a restart reads back only the log after.
    pub dedup_snapshot_interval: HumanDuration,
    /// Request bytes being processed at once; beyond this new requests get 503 + Retry-After.
    pub max_in_flight_bytes: ByteSize,
    /// The `Retry-After` sent with 429 and 503 answers.
    pub retry_after: HumanDuration,
    /// Origins allowed to send events from browsers (`*` for any).
    pub cors_allowed_origins: Vec<String>,
}

impl Validate for IngestConfig {
    fn validate(&self, path: &str, problems: &mut Vec<ConfigProblem>) {
        for (key, topic) in [
            ("events-topic", &self.events_topic),
            ("dead-letter-topic", &self.dead_letter_topic),
        ] {
            if let Err(message) = check_topic_name(topic) {
                problems.push(ConfigProblem::new(join(path, key), message));
            }
        }
        if self.events_topic == self.dead_letter_topic {
            problems.push(ConfigProblem::new(
                join(path, "dead-letter-topic"),
                "must differ from events-topic",
            ));
        }
        if self.dedup_window.get().is_zero() {
            problems.push(ConfigProblem::new(
                join(path, "dedup-window"),
                "must be longer than 0s",
            ));
        }
        if self.dedup_capacity < 1024 {
            problems.push(ConfigProblem::new(
                join(path, "dedup-capacity"),
                "must be at least 1024",
            ));
        }
        if self.dedup_capacity > MAX_DEDUP_CAPACITY {
            problems.push(ConfigProblem::new(
                join(path, "dedup-capacity"),
                format!(
                    "must be at most {MAX_DEDUP_CAPACITY} (about 40 bytes of memory and 16 of snapshot each); shorten dedup-window instead"
                ),
            ));
        }
        let interval = self.dedup_snapshot_interval.get();
        if interval < std::time::Duration::from_secs(1) {
            problems.push(ConfigProblem::new(
                join(path, "dedup-snapshot-interval"),
                "must be at least 1s",
            ));
        } else if interval > self.dedup_window.get() && !self.dedup_window.get().is_zero() {
            problems.push(ConfigProblem::new(
                join(path, "dedup-snapshot-interval"),
                "must not be longer than dedup-window (a restart would read more than the window back from the log)",
            ));
        }
        if self.max_in_flight_bytes.bytes() < 64 * 1024 {
            problems.push(ConfigProblem::new(
                join(path, "max-in-flight-bytes"),
                "must be at least 64KiB",
            ));
        }
        if self.retry_after.get().as_secs() < 1 {
            problems.push(ConfigProblem::new(
                join(path, "retry-after"),
                "must be at least 1s (Retry-After counts whole seconds)",
            ));
        }
        for (index, origin) in self.cors_allowed_origins.iter().enumerate() {
            let valid = origin == "*"
                || ((origin.starts_with("http://") || origin.starts_with("https://"))
                    && !origin.ends_with('/')
                    && axum::http::HeaderValue::from_str(origin).is_ok());
            if !valid {
                problems.push(ConfigProblem::new(
                    format!("{}[{index}]", join(path, "cors-allowed-origins")),
                    format!("{origin:?} is not an origin: write \"*\" or scheme://host[:port] like \"https://shop.example\""),
                ));
            }
        }
    }
}
