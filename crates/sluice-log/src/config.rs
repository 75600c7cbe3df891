//! The `[log]` config section. Every default lives in the binary's `default.toml`.

use serde::{Deserialize, Serialize};
use sluice_core::config::{ByteSize, ConfigProblem, HumanDuration, Validate, join};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most partitions a topic may have. Each partition with appends has a writer thread and
/// open files, so this bounds what one topic costs.
pub const MAX_PARTITIONS: u32 = 1024;
/// The largest segment: index entries hold 32-bit positions, and a segment may exceed
/// `segment-bytes` by one batch.
const MAX_SEGMENT_BYTES: u64 = 2 << 30;
/// The largest batch (well below the frame limit of the format).
const MAX_BATCH_BYTES: u64 = 256 << 20;

/// `[log]`: where the log lives, how durable appends are, and how segments roll and expire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LogConfig {
    /// Backend by URL: empty (the file log in `<data-dir>/log`), `file:///absolute/path`, or
    /// `kafka://host:port,…` (feature `kafka`).
    pub url: String,
    /// When an append is acknowledged.
    pub ack: AckMode,
    /// Partitions of the topics sluice creates.
    pub partitions: u32,
    /// A segment is sealed and a new one started before it grows past this.
    pub segment_bytes: ByteSize,
    /// A segment is sealed at the first append after it is this old.
    pub segment_age: HumanDuration,
    /// Sealed segments whose newest record is older than this are deleted; `0s` keeps them.
    pub retention_age: HumanDuration,
    /// The oldest sealed segments are deleted while a partition is larger than this; `0` means
    /// no size limit.
    pub retention_bytes: ByteSize,
    /// How often the background task enforces retention.
    pub retention_check_interval: HumanDuration,
    /// Bytes of batches between two entries of a segment's sparse index.
    pub index_interval_bytes: ByteSize,
    /// Largest record (key + value + headers).
    pub max_record_bytes: ByteSize,
    /// Largest batch of one append, encoded.
    pub max_batch_bytes: ByteSize,
    /// Bytes of appends that may wait for one partition's writer; further appends wait.
    pub max_pending_bytes: ByteSize,
    /// `[log.kafka]`: the Kafka backend's settings.
    #[serde(default)]
    pub kafka: KafkaConfig,
}

/// `[log.kafka]`: settings of the Kafka backend (`url = "kafka://…"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KafkaConfig {
    /// Put before every topic and consumer group name sluice uses in Kafka (several sluice
    /// clusters can then share brokers).
    #[serde(default)]
    pub topic_prefix: String,
    /// Replicas of each topic sluice creates.
    #[serde(default = "KafkaConfig::default_replication")]
    pub replication_factor: u16,
    /// How long a node of the cluster may go silent before the consumer group gives its
    /// partitions to the others (Kafka's `session.timeout.ms`; heartbeats go every fifth of
    /// it). Shorter moves a dead node's work sooner; the brokers bound it
    /// (`group.min.session.timeout.ms`, 6 s by default).
    #[serde(default = "KafkaConfig::default_session_timeout")]
    pub session_timeout: HumanDuration,
    /// `[log.kafka.client]`: librdkafka settings for every client, as librdkafka names them
    /// (`security.protocol`, `sasl.mechanism`, `ssl.ca.location`, `compression.type`,
    /// `linger.ms`, …).
    #[serde(default)]
    pub client: std::collections::BTreeMap<String, ClientValue>,
}

impl KafkaConfig {
    fn default_replication() -> u16 {
        1
    }

    fn default_session_timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            topic_prefix: String::new(),
            replication_factor: Self::default_replication(),
            session_timeout: Self::default_session_timeout(),
            client: Default::default(),
        }
    }
}

/// A librdkafka setting's value, written as TOML text, number or boolean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClientValue {
    /// Text, as is.
    Text(String),
    /// A number.
    Number(i64),
    /// `true` or `false`.
    Flag(bool),
}

impl std::fmt::Display for ClientValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientValue::Text(text) => f.write_str(text),
            ClientValue::Number(number) => write!(f, "{number}"),
            ClientValue::Flag(flag) => write!(f, "{flag}"),
        }
    }
}

#[cfg(test)]
impl LogConfig {
    /// A small log for unit tests: one partition, `ack = "write"`, segments and batches of
    /// `segment_bytes`, an index entry every 512 bytes, no retention.
    pub(crate) fn for_tests(segment_bytes: u64) -> LogConfig {
        LogConfig {
            url: String::new(),
            ack: AckMode::Write,
            partitions: 1,
            segment_bytes: ByteSize(segment_bytes),
            segment_age: HumanDuration(Duration::from_secs(86_400)),
            retention_age: HumanDuration(Duration::ZERO),
            retention_bytes: ByteSize(0),
            retention_check_interval: HumanDuration(Duration::from_secs(60)),
            index_interval_bytes: ByteSize(512),
            max_record_bytes: ByteSize(4 * 1024),
            max_batch_bytes: ByteSize(segment_bytes),
            max_pending_bytes: ByteSize(1 << 20),
            kafka: KafkaConfig::default(),
        }
    }
}

/// When an append is acknowledged, and what a crash can therefore lose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AckMode {
    /// After `fdatasync`: survives a crash of sluice, the OS or the machine. Concurrent appends
    /// to a partition share one sync (group commit).
    Fsync,
    /// After `write(2)` into the OS page cache: survives a crash of sluice, not of the machine.
    Write,
    /// As soon as the partition's writer has taken the batch: a crash of sluice can lose the last
    /// moments of appends. For data that can be regenerated.
    None,
}

impl AckMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::Fsync => "fsync",
            AckMode::Write => "write",
            AckMode::None => "none",
        }
    }
}

impl std::fmt::Display for AckMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AckMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "fsync" => Ok(AckMode::Fsync),
            "write" => Ok(AckMode::Write),
            "none" => Ok(AckMode::None),
            _ => Err(format!(
                "{text:?} is not an ack mode: use \"fsync\", \"write\" or \"none\""
            )),
        }
    }
}

/// Where the configured log lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLocation {
    /// The built-in file log in this directory.
    File(PathBuf),
    /// Kafka brokers (`host:port,host:port`).
    Kafka(String),
}

impl LogConfig {
    /// Resolves `url` against the data directory.
    pub fn location(&self, data_dir: &Path) -> Result<LogLocation, String> {
        let url = self.url.trim();
        if url.is_empty() {
            return Ok(LogLocation::File(data_dir.join("log")));
        }
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "{url:?} is not an absolute file URL: write file:///absolute/path (three slashes), or leave it empty for <data-dir>/log"
                ));
            }
            return Ok(LogLocation::File(PathBuf::from(path)));
        }
        if let Some(brokers) = url.strip_prefix("kafka://") {
            let brokers = brokers.trim_end_matches('/');
            let valid = !brokers.is_empty()
                && brokers.split(',').all(|broker| {
                    broker
                        .rsplit_once(':')
                        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
                });
            if !valid {
                return Err(format!(
                    "{url:?}: write kafka://host:port, or several brokers as kafka://host1:9092,host2:9092"
                ));
            }
            if !cfg!(feature = "kafka") {
                return Err(format!(
                    "{url:?}: this sluice was built without the Kafka backend; build it with `cargo build --release -p sluice --features kafka`"
                ));
            }
            return Ok(LogLocation::Kafka(brokers.to_owned()));
        }
        Err(format!(
            "{url:?} is not a supported log URL: leave it empty for the built-in file log in <data-dir>/log, or write file:///absolute/path"
        ))
    }

    /// The default retention age, `None` when segments are kept regardless of age.
    pub fn default_retention_age(&self) -> Option<Duration> {
        Some(self.retention_age.get()).filter(|age| !age.is_zero())
    }

    /// The default retention size, `None` when there is no size limit.
    pub fn default_retention_bytes(&self) -> Option<u64> {
        Some(self.retention_bytes.bytes()).filter(|&bytes| bytes > 0)
    }
}

impl Validate for LogConfig {
    fn validate(&self, path: &str, problems: &mut Vec<ConfigProblem>) {
        let mut problem = |key: &str, message: String| {
            problems.push(ConfigProblem::new(join(path, key), message));
        };
        if let Err(message) = self.location(Path::new("<data-dir>")) {
            problem("url", message);
        }
        let session = self.kafka.session_timeout.get();
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&session) {
            problem(
                "kafka.session-timeout",
                format!(
                    "is {} but must be between 1s and 1h",
                    self.kafka.session_timeout
                ),
            );
        }
        if !(1..=MAX_PARTITIONS).contains(&self.partitions) {
            problem(
                "partitions",
                format!(
                    "is {} but must be between 1 and {MAX_PARTITIONS}",
                    self.partitions
                ),
            );
        }
        let segment = self.segment_bytes.bytes();
        if !(1024..=MAX_SEGMENT_BYTES).contains(&segment) {
            problem(
                "segment-bytes",
                format!(
                    "is {} but must be between 1KiB and {}",
                    self.segment_bytes,
                    ByteSize(MAX_SEGMENT_BYTES)
                ),
            );
        }
        if self.segment_age.get() < Duration::from_secs(1) {
            problem(
                "segment-age",
                format!("is {} but must be at least 1s", self.segment_age),
            );
        }
        let retention_age = self.retention_age.get();
        if !retention_age.is_zero() && retention_age < self.segment_age.get() {
            problem(
                "retention-age",
                format!(
                    "is {} but segment-age is {}: segments are only deleted once sealed, so make retention-age at least segment-age (or 0s to keep everything)",
                    self.retention_age, self.segment_age
                ),
            );
        }
        if self.retention_check_interval.get() < Duration::from_secs(1) {
            problem(
                "retention-check-interval",
                format!(
                    "is {} but must be at least 1s",
                    self.retention_check_interval
                ),
            );
        }
        if self.index_interval_bytes.bytes() == 0 || self.index_interval_bytes.bytes() > segment {
            problem(
                "index-interval-bytes",
                format!(
                    "is {} but must be between 1B and segment-bytes ({})",
                    self.index_interval_bytes, self.segment_bytes
                ),
            );
        }
        let batch = self.max_batch_bytes.bytes();
        if self.max_record_bytes.bytes() == 0 || self.max_record_bytes.bytes() > batch {
            problem(
                "max-record-bytes",
                format!(
                    "is {} but must be between 1B and max-batch-bytes ({}): a record must fit in a batch",
                    self.max_record_bytes, self.max_batch_bytes
                ),
            );
        }
        if batch > segment.min(MAX_BATCH_BYTES) {
            problem(
                "max-batch-bytes",
                format!(
                    "is {} but must be at most segment-bytes ({}) and at most {}: a batch must fit in a segment",
                    self.max_batch_bytes,
                    self.segment_bytes,
                    ByteSize(MAX_BATCH_BYTES)
                ),
            );
        }
        if self.max_pending_bytes.bytes() < batch {
            problem(
                "max-pending-bytes",
                format!(
                    "is {} but must be at least max-batch-bytes ({}), or a largest batch could never be queued",
                    self.max_pending_bytes, self.max_batch_bytes
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LogConfig {
        LogConfig {
            url: String::new(),
            ack: AckMode::Fsync,
            partitions: 8,
            segment_bytes: ByteSize(128 << 20),
            segment_age: HumanDuration(Duration::from_secs(86_400)),
            retention_age: HumanDuration(Duration::from_secs(7 * 86_400)),
            retention_bytes: ByteSize(0),
            retention_check_interval: HumanDuration(Duration::from_secs(60)),
            index_interval_bytes: ByteSize(4096),
            max_record_bytes: ByteSize(1 << 20),
            max_batch_bytes: ByteSize(8 << 20),
            max_pending_bytes: ByteSize(64 << 20),
            kafka: Default::default(),
        }
    }

    fn problems(config: &LogConfig) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        config.validate("log", &mut problems);
        problems
    }

    #[test]
    fn urls_resolve_to_a_directory_or_say_what_to_write() {
        let data = Path::new("/var/lib/sluice");
        let mut config = config();
        assert_eq!(
            config.location(data),
            Ok(LogLocation::File(data.join("log")))
        );
        config.url = "file:///srv/log".into();
        assert_eq!(
            config.location(data),
            Ok(LogLocation::File("/srv/log".into()))
        );
        config.url = "file://relative".into();
        assert!(config.location(data).unwrap_err().contains("three slashes"));
        config.url = "kafka://broker:9092,other:9093".into();
        if cfg!(feature = "kafka") {
            assert_eq!(
                config.location(data),
                Ok(LogLocation::Kafka("broker:9092,other:9093".into()))
            );
        } else {
            assert!(
                config
                    .location(data)
                    .unwrap_err()
                    .contains("--features kafka")
            );
        }
        for bad in [
            "kafka://",
            "kafka://broker",
            "kafka://broker:port",
            "kafka://:9092",
        ] {
            config.url = bad.into();
            assert!(
                config
                    .location(data)
                    .unwrap_err()
                    .contains("write kafka://host:port"),
                "{bad}"
            );
        }
        config.url = "s3://bucket".into();
        assert!(
            config
                .location(data)
                .unwrap_err()
                .contains("not a supported")
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        assert_eq!(problems(&config()), []);
        let mut bad = config();
        bad.url = "kafka://b".into();
        bad.partitions = 0;
        bad.segment_bytes = ByteSize(100);
        bad.max_record_bytes = ByteSize(0);
        bad.max_pending_bytes = ByteSize(1);
        bad.retention_age = HumanDuration(Duration::from_secs(60));
        let paths: Vec<String> = problems(&bad).into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "log.url",
                "log.partitions",
                "log.segment-bytes",
                "log.retention-age",
                "log.index-interval-bytes",
                "log.max-record-bytes",
                "log.max-batch-bytes",
                "log.max-pending-bytes"
            ]
        );
    }

    #[test]
    fn zero_retention_means_no_limit() {
        let mut config = config();
        config.retention_age = HumanDuration(Duration::ZERO);
        assert_eq!(config.default_retention_age(), None);
        assert_eq!(config.default_retention_bytes(), None);
        config.retention_bytes = ByteSize(10);
        assert_eq!(config.default_retention_bytes(), Some(10));
        assert_eq!("write".parse::<AckMode>(), Ok(AckMode::Write));
        assert!("sync".parse::<AckMode>().unwrap_err().contains("\"fsync\""));
    }
}
