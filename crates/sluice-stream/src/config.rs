//! The `[stream]` section of the configuration (defaults in the binary's `default.toml`).

use crate::plan::LatePolicy;
use crate::sql::MetricDefaults;
use serde::Deserialize;
use sluice_core::config::{ByteSize, ConfigProblem, HumanDuration, Validate, join};
use sluice_core::time::Millis;
use sluice_log::record::check_topic_name;

/// `[stream]`: the stream engine.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StreamConfig {
    /// The topic metrics read events from.
    pub source_topic: String,
    /// The topic late events are copied to (created with the source's partition count).
    pub late_topic: String,
    /// Out-of-orderness of metrics that do not set `out_of_orderness`.
    pub default_out_of_orderness: HumanDuration,
    /// Allowed lateness of metrics that do not set `allowed_lateness`.
    pub default_allowed_lateness: HumanDuration,
    /// A partition with no new events for this long advances its event-time clock with
    /// processing time, so its windows close.
    pub idle_timeout: HumanDuration,
    /// How often each partition task checks idleness and publishes its watermark.
    pub tick_interval: HumanDuration,
    /// Most open windows (group key × window) per metric per partition; events that would
    /// open more are reported late with reason `too_many_open_windows`.
    pub max_open_windows: usize,
    /// Most bytes one log read returns.
    pub read_max_bytes: ByteSize,
    /// How long a read at the end of a partition waits for new events.
    pub read_max_wait: HumanDuration,
    /// Window updates buffered for live subscribers (a slower subscriber misses updates and
    /// is told how many).
    pub update_channel_capacity: usize,
    /// Checkpoint snapshots buffered towards the store (a full channel pauses processing).
    pub checkpoint_channel_capacity: usize,
    /// Control messages (barriers, metric changes, reads) buffered per partition task.
    pub control_channel_capacity: usize,
}

/// The longest out-of-orderness or allowed lateness: 7 days.
const MAX_DELAY: Millis = 7 * 86_400_000;

fn millis(duration: HumanDuration) -> Millis {
    Millis::try_from(duration.get().as_millis()).unwrap_or(Millis::MAX)
}

impl StreamConfig {
    /// What metrics get for options they do not set.
    pub fn metric_defaults(&self) -> MetricDefaults {
        MetricDefaults {
            out_of_orderness: millis(self.default_out_of_orderness),
            allowed_lateness: millis(self.default_allowed_lateness),
            late: LatePolicy::Topic,
        }
    }

    /// The settings of each partition's processor.
    pub fn processor(&self) -> ProcessorConfig {
        ProcessorConfig {
            idle_timeout: millis(self.idle_timeout),
            max_open_windows: self.max_open_windows,
        }
    }
}

/// The settings a [`crate::engine::Processor`] needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessorConfig {
    /// See [`StreamConfig::idle_timeout`], ms.
    pub idle_timeout: Millis,
    /// See [`StreamConfig::max_open_windows`].
    pub max_open_windows: usize,
}

impl Validate for StreamConfig {
    fn validate(&self, path: &str, problems: &mut Vec<ConfigProblem>) {
        for (key, topic) in [
            ("source-topic", &self.source_topic),
            ("late-topic", &self.late_topic),
        ] {
            if let Err(message) = check_topic_name(topic) {
                problems.push(ConfigProblem::new(join(path, key), message));
            }
        }
        if self.source_topic == self.late_topic {
            problems.push(ConfigProblem::new(
                join(path, "late-topic"),
                "must differ from source-topic: late events would be read back as events",
            ));
        }
        for (key, value) in [
            ("default-out-of-orderness", self.default_out_of_orderness),
            ("default-allowed-lateness", self.default_allowed_lateness),
        ] {
            if millis(value) > MAX_DELAY {
                problems.push(ConfigProblem::new(
                    join(path, key),
                    format!("is {value} but must be at most 7d"),
                ));
            }
        }
        for (key, value) in [
            ("idle-timeout", self.idle_timeout),
            ("tick-interval", self.tick_interval),
            ("read-max-wait", self.read_max_wait),
        ] {
            if value.get().is_zero() {
                problems.push(ConfigProblem::new(
                    join(path, key),
                    "must be longer than 0s",
                ));
            }
        }
        if self.read_max_bytes.bytes() < 1024 {
            problems.push(ConfigProblem::new(
                join(path, "read-max-bytes"),
                "must be at least 1KiB",
            ));
        }
        for (key, value) in [
            ("max-open-windows", self.max_open_windows),
            ("update-channel-capacity", self.update_channel_capacity),
            (
                "checkpoint-channel-capacity",
                self.checkpoint_channel_capacity,
            ),
            ("control-channel-capacity", self.control_channel_capacity),
        ] {
            if value == 0 {
                problems.push(ConfigProblem::new(join(path, key), "must be at least 1"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> StreamConfig {
        StreamConfig {
            source_topic: "events".into(),
            late_topic: "events.late".into(),
            default_out_of_orderness: HumanDuration(Duration::from_secs(10)),
            default_allowed_lateness: HumanDuration(Duration::ZERO),
            idle_timeout: HumanDuration(Duration::from_secs(5)),
            tick_interval: HumanDuration(Duration::from_millis(200)),
            max_open_windows: 1_000_000,
            read_max_bytes: ByteSize(1 << 20),
            read_max_wait: HumanDuration(Duration::from_millis(100)),
            update_channel_capacity: 4096,
            checkpoint_channel_capacity: 4,
            control_channel_capacity: 64,
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let mut problems = Vec::new();
        config().validate("stream", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let bad = StreamConfig {
            late_topic: "events".into(),
            idle_timeout: HumanDuration(Duration::ZERO),
            default_allowed_lateness: HumanDuration(Duration::from_secs(30 * 86_400)),
            max_open_windows: 0,
            ..config()
        };
        bad.validate("stream", &mut problems);
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "stream.late-topic",
                "stream.default-allowed-lateness",
                "stream.idle-timeout",
                "stream.max-open-windows"
            ]
        );
        assert_eq!(config().metric_defaults().out_of_orderness, 10_000);
    }
}
