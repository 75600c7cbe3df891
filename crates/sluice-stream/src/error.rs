//! The stream engine's errors, classified so callers know whether to fix input, retry, or
//! report a bug.

use sluice_core::error::{Classify, ErrorClass};
use sluice_log::LogError;
use std::fmt;

/// A problem in a metric's SQL text, with where it is (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// Line of the offending construct, from 1.
    pub line: u64,
    /// Column of the offending construct, from 1.
    pub column: u64,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// Everything the stream engine can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The metric definition does not parse or uses something unsupported.
    #[error("invalid metric definition: {0}")]
    Sql(SqlError),
    /// A metric with this name already runs in the processor.
    #[error("metric {0:?} already exists; remove it first or choose another name")]
    DuplicateMetric(String),
    /// No metric with this name runs in the processor.
    #[error("no metric named {0:?} is running")]
    UnknownMetric(String),
    /// Stored partial aggregate state could not be decoded.
    #[error(
        "cannot decode a partial aggregate state: {0}; the stored row is corrupt or was written by a newer sluice"
    )]
    Decode(String),
    /// State handed to a restore does not fit the metric.
    #[error("cannot restore metric {metric:?}: {reason}")]
    Restore {
        /// The metric.
        metric: String,
        /// What does not fit.
        reason: String,
    },
    /// Reading the source or appending late events failed.
    #[error("log {op} on {topic}/{partition}: {source}")]
    Log {
        /// `read`, `append`, `describe`, `create`.
        op: &'static str,
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The log's error.
        source: LogError,
    },
    /// The store could not say which records of a derived stream are committed.
    #[error("cannot read which records of {topic}/{partition} are committed: {reason}")]
    Committed {
        /// The derived stream's topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// What failed.
        reason: String,
    },
    /// Another writer's records landed between the records of one append of derived records
    /// (on Kafka, a partition's previous owner still appending after it was fenced out): the
    /// append is not committed, so no reader sees it, and the round starts again after them.
    #[error(
        "another writer appended to {topic}/{partition} between this task's records (offsets {first}..={last} hold {count} of them): a previous owner of the partition is still writing; the records are left uncommitted and the partition is taken again"
    )]
    Interleaved {
        /// The derived stream's topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The first offset of the append.
        first: u64,
        /// The last offset of the append.
        last: u64,
        /// How many records it held.
        count: u32,
    },
    /// A consumer of the engine's output went away.
    #[error("the {0} channel is closed: its receiver stopped, so the partition task stops too")]
    ChannelClosed(&'static str),
}

impl From<SqlError> for StreamError {
    fn from(error: SqlError) -> Self {
        StreamError::Sql(error)
    }
}

impl Classify for StreamError {
    fn class(&self) -> ErrorClass {
        match self {
            StreamError::Sql(_)
            | StreamError::DuplicateMetric(_)
            | StreamError::UnknownMetric(_) => ErrorClass::User,
            StreamError::Log { source, .. } => source.class(),
            StreamError::ChannelClosed(_)
            | StreamError::Committed { .. }
            | StreamError::Interleaved { .. } => ErrorClass::External,
            StreamError::Decode(_) | StreamError::Restore { .. } => ErrorClass::Internal,
        }
    }
}
