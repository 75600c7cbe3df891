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
    /// Longest string value or object key inside `properties`, `traits`, `context` and the
    /// other objects kept; 0 (the default) sets no limit of its own: a string is bounded by its
    /// event, as in Segment, which accepts any event of up to 32 KB whatever its strings.
    pub max_string_bytes: ByteSize,
    /// Longest `userId`, `anonymousId`, `messageId`, `groupId` or `previousId`.
    pub max_id_bytes: ByteSize,
    /// Longest `event`, `name` or `category`.
    pub max_name_bytes: ByteSize,
}

impl Limits {
    /// The longest string an event may hold: `max-string-bytes`, or without one (0) no limit
    /// beyond the event's own size.
    pub fn max_string_len(&self) -> usize {
        match self.max_string_bytes.as_usize() {
            0 => usize::MAX,
            limit => limit,
        }
    }
}

impl Validate for Limits {
    fn validate(&self, path: &str, problems: &mut Vec<ConfigProblem>) {
        let positive = [
            ("max-event-bytes", self.max_event_bytes),
            ("max-batch-bytes", self.max_batch_bytes),
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
        if self.max_string_bytes > self.max_event_bytes {
            problems.push(ConfigProblem::new(
                join(path, "max-string-bytes"),
                format!(
                    "is {} but max-event-bytes is only {}: no string can be longer than its event; write 0 for no limit of its own",
                    self.max_string_bytes, self.max_event_bytes
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

#[cfg(test)]
mod tests {
    use super::*;

    fn segment() -> Limits {
        Limits {
            max_event_bytes: ByteSize(32 * 1024),
            max_batch_bytes: ByteSize(500 * 1024),
            max_depth: 32,
            max_string_bytes: ByteSize(0),
            max_id_bytes: ByteSize(256),
            max_name_bytes: ByteSize(256),
        }
    }

    fn problems(limits: &Limits) -> Vec<String> {
        let mut problems = Vec::new();
        limits.validate("limits", &mut problems);
        problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_string_limit_of_zero_is_none_and_one_longer_than_an_event_is_refused() {
        assert!(problems(&segment()).is_empty());
        assert_eq!(segment().max_string_len(), usize::MAX);
        let limits = Limits {
            max_string_bytes: ByteSize(8 * 1024),
            ..segment()
        };
        assert!(problems(&limits).is_empty());
        assert_eq!(limits.max_string_len(), 8 * 1024);
        let limits = Limits {
            max_string_bytes: ByteSize(64 * 1024),
            ..segment()
        };
        let found = problems(&limits);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("limits.max-string-bytes")
                && found[0].contains("write 0 for no limit of its own"),
            "{found:?}"
        );
    }
}
