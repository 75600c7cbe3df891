//! Log errors, classified so callers know whether to fix input, retry, or report a bug.

use sluice_core::error::{Classify, ErrorClass};
use std::path::PathBuf;

/// Everything a log operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The topic does not exist.
    #[error("topic {0:?} does not exist; create it with `sluice topics create`")]
    UnknownTopic(String),
    /// The partition does not exist.
    #[error("topic {topic:?} has {partitions} partitions; partition {partition} does not exist")]
    UnknownPartition {
        topic: String,
        partition: u32,
        partitions: u32,
    },
    /// A topic exists with a different shape.
    #[error("topic {topic:?} already exists with {existing} partitions, not {requested}")]
    TopicMismatch {
        topic: String,
        existing: u32,
        requested: u32,
    },
    /// A name or argument is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The offset is outside the partition.
    #[error(
        "offset {requested} is outside partition {topic}/{partition}, which holds offsets {start}..{end}"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        requested: u64,
        start: u64,
        end: u64,
    },
    /// On-disk data is corrupt beyond what recovery repairs. Only what reads it fails.
    #[error(
        "corrupt log data in {path}: {reason}; `sluice log verify` lists every damaged range, and `sluice log repair` (with sluice stopped) keeps every intact batch and records what was lost"
    )]
    Corrupt { path: PathBuf, reason: String },
    /// The disk is full: appends stop until space is freed; nothing acknowledged is lost.
    #[error("disk full writing {path}: free space or lower the retention, then appends resume")]
    DiskFull { path: PathBuf },
    /// An I/O operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// Another process holds the log directory.
    #[error(
        "log directory {path} is in use by another sluice process; stop it, or use a command that reads the log without writing"
    )]
    Locked { path: PathBuf },
    /// The log was opened read-only (next to the process that writes it).
    #[error(
        "the log in {path} is open read-only because another sluice process writes it; stop that process to change the log"
    )]
    ReadOnly { path: PathBuf },
    /// A partition's writer stopped after a failure it cannot undo.
    #[error(
        "appends to {path} are stopped after a failure: {reason}; restart sluice to recover the partition"
    )]
    WriterFailed { path: PathBuf, reason: String },
    /// The log is shutting down.
    #[error("the log is closed")]
    Closed,
    /// A remote log (Kafka) did not do what was asked: brokers down or refusing.
    #[error("{what}: {reason}")]
    Unavailable { what: String, reason: String },
}

impl Classify for LogError {
    fn class(&self) -> ErrorClass {
        match self {
            LogError::UnknownTopic(_)
            | LogError::UnknownPartition { .. }
            | LogError::TopicMismatch { .. }
            | LogError::Invalid(_)
            | LogError::OffsetOutOfRange { .. } => ErrorClass::User,
            LogError::Locked { .. } | LogError::ReadOnly { .. } => ErrorClass::User,
            LogError::DiskFull { .. }
            | LogError::Io { .. }
            | LogError::WriterFailed { .. }
            | LogError::Unavailable { .. }
            | LogError::Closed => ErrorClass::External,
            LogError::Corrupt { .. } => ErrorClass::Internal,
        }
    }
}
