//! Bounds on what a client may send (config section `[limits]`). Every bound has a default in
//! `default.toml` and an error that names the limit, so a client knows what to change.

use crate::config::{ByteSize, ConfigProblem, Validate, join};
use serde::{Deserialize, Serialize};

/// The deepest nesting accepted at all: serde_json refuses more than 128 levels, and nothing
/// legitimate comes close.
pub const MAX_DEPTH_CEILING: usize = 100;

/// Bounds on events and batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Limits {
    /// Largest single event, as JSON (Segment: 32 KB).
    pub max_event_bytes: ByteSize,
    /// Largest batch request body, after decompression (Segment: 500 KB).
    pub max_batch_bytes: ByteSize,
    /// Deepest nesting of objects and arrays in an event, counting the event itself as 1.
    pub max_depth: usize,
    /// Longest string value or object key inside `properties`, `traits` and `context`.
    pub max_string_bytes: ByteSize,
    /// Longest `userId`, `anonymousId`, `messageId`, `groupId` or `previousId`.
    pub max_id_bytes: ByteSize,
    /// Longest `event`, `name` or `category`.
    pub max_name_bytes: ByteSize,
}

impl Validate for Limits {
    fn validate(&self, path: &str, problems: &mut Vec<ConfigProblem>) {
        let positive = [
            ("max-event-bytes", self.max_event_bytes),
            ("max-batch-bytes", self.max_batch_bytes),
            ("max-string-bytes", self.max_string_bytes),
            ("max-id-bytes", self.max_id_bytes),
            ("max-name-bytes", self.max_name_bytes),
        ];
        for (key, value) in positive {
            if value.bytes() == 0 {
                problems.push(ConfigProblem::new(join(path, key), "must be larger than 0"));
            }
        }
        if self.max_event_bytes > self.max_batch_bytes {
            problems.push(ConfigProblem::new(
                join(path, "max-event-bytes"),
                format!(
                    "is {} but max-batch-bytes is only {}: an event must fit in a batch",
                    self.max_event_bytes, self.max_batch_bytes
                ),
            ));
        }
        if !(2..=MAX_DEPTH_CEILING).contains(&self.max_depth) {
            problems.push(ConfigProblem::new(
                join(path, "max-depth"),
                format!(
                    "is {} but must be between 2 and {MAX_DEPTH_CEILING}",
                    self.max_depth
                ),
            ));
        }
    }
}
