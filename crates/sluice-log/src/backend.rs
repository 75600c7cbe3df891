//! The log backends, chosen by the scheme of `log.url` and dispatched through an enum: a new
//! backend is one variant, one arm per method (the `each!` macro), and a cargo feature when it
//! pulls in heavy dependencies (the Kafka backend, `kafka://…`, is feature `kafka`).

use crate::config::{LogConfig, LogLocation};
use crate::file::FileLog;
use crate::record::{AppendResult, EpochStart, ReadBatch, Record, TopicInfo, TopicSpec};
use crate::{Log, LogError, ReadBuffer, ReadOptions, Result};
use sluice_core::time::Millis;
use std::path::Path;

/// A log of any backend.
#[derive(Debug, Clone)]
pub enum LogBackend {
    /// The built-in segmented file log (`file://…`, or an empty URL: `<data-dir>/log`).
    File(FileLog),
    /// Kafka brokers (`kafka://…`).
    #[cfg(feature = "kafka")]
    Kafka(crate::kafka::KafkaLog),
}

/// One arm per backend: `$log` is the backend's log.
macro_rules! each {
    ($self:expr, $log:ident => $body:expr) => {
        match $self {
            LogBackend::File($log) => $body,
            #[cfg(feature = "kafka")]
            LogBackend::Kafka($log) => $body,
        }
    };
}

impl LogBackend {
    /// Opens the configured log for reading and writing, recovering it after a crash.
    pub async fn open(config: &LogConfig, data_dir: &Path) -> Result<Self> {
        Self::open_with(config, data_dir, false).await
    }

    /// Opens the configured log for reading next to the process that writes it (see
    /// [`FileLog::open_read_only`]).
    pub async fn open_read_only(config: &LogConfig, data_dir: &Path) -> Result<Self> {
        Self::open_with(config, data_dir, true).await
    }

    async fn open_with(config: &LogConfig, data_dir: &Path, read_only: bool) -> Result<Self> {
        match config.location(data_dir).map_err(LogError::Invalid)? {
            LogLocation::File(dir) => {
                let config = config.clone();
                let opened = tokio::task::spawn_blocking(move || {
                    if read_only {
                        FileLog::open_read_only(&dir, &config)
                    } else {
                        FileLog::open(&dir, &config)
                    }
                })
                .await
                .map_err(|_| LogError::Closed)??;
                Ok(LogBackend::File(opened))
            }
            #[cfg(feature = "kafka")]
            LogLocation::Kafka(brokers) => Ok(LogBackend::Kafka(
                crate::kafka::KafkaLog::connect(&brokers, config).await?,
            )),
            #[cfg(not(feature = "kafka"))]
            LogLocation::Kafka(_) => Err(LogError::Invalid(
                "this sluice was built without the Kafka backend; build it with `--features kafka`"
                    .into(),
            )),
        }
    }

    /// Joins the group of processes sharing `topic`'s partitions, on a backend where several
    /// can (Kafka: the consumer group `group`). `None`: this process owns every partition (the
    /// file log).
    pub fn join_group(&self, topic: &str, group: &str) -> Result<Option<crate::group::Membership>> {
        match self {
            LogBackend::File(_) => {
                let _ = (topic, group);
                Ok(None)
            }
            #[cfg(feature = "kafka")]
            LogBackend::Kafka(log) => log.join_group(topic, group).map(Some),
        }
    }

    /// Finishes queued appends and releases the log.
    pub async fn close(self) -> Result<()> {
        match self {
            LogBackend::File(log) => log.close().await,
            #[cfg(feature = "kafka")]
            LogBackend::Kafka(_) => Ok(()),
        }
    }
}

impl Log for LogBackend {
    async fn create_topic(&self, spec: TopicSpec) -> Result<()> {
        each!(self, log => log.create_topic(spec).await)
    }

    async fn describe(&self, topic: Option<&str>) -> Result<Vec<TopicInfo>> {
        each!(self, log => log.describe(topic).await)
    }

    async fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
    ) -> Result<AppendResult> {
        each!(self, log => log.append(topic, partition, records).await)
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        options: ReadOptions,
    ) -> Result<ReadBatch> {
        each!(self, log => log.read(topic, partition, offset, options).await)
    }

    async fn read_into(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        options: ReadOptions,
        buffer: &mut ReadBuffer,
    ) -> Result<()> {
        each!(self, log => log.read_into(topic, partition, offset, options, buffer).await)
    }

    async fn offset_for_time(
        &self,
        topic: &str,
        partition: u32,
        timestamp: Millis,
    ) -> Result<Option<u64>> {
        each!(self, log => log.offset_for_time(topic, partition, timestamp).await)
    }

    async fn consumer_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        commit: Option<u64>,
    ) -> Result<Option<u64>> {
        each!(self, log => log.consumer_offset(group, topic, partition, commit).await)
    }

    async fn enforce_retention(&self) -> Result<u64> {
        each!(self, log => log.enforce_retention().await)
    }

    async fn epochs(&self, topic: &str, partition: u32) -> Result<Vec<EpochStart>> {
        each!(self, log => log.epochs(topic, partition).await)
    }
}
