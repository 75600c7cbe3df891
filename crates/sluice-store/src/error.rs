//! Store errors: what failed, on which file, and what to do.

use sluice_core::error::{Classify, ErrorClass};
use std::path::PathBuf;

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store file is damaged.
    #[error(
        "the store file {path} is corrupt ({detail}); stop sluice, move the file away (or restore it from a backup) and start again: \
         metric definitions in the config are recreated, and `sluice replay --metric NAME` recomputes results from the log, which is untouched"
    )]
    Corrupt { path: PathBuf, detail: String },
    /// The disk holding the store is full.
    #[error(
        "disk full writing the store {path}; free space on that disk: checkpoints resume from the last committed one, nothing is lost"
    )]
    DiskFull { path: PathBuf },
    /// Another owner took this pipeline partition over: this one must stop.
    #[error(
        "pipeline {pipeline} partition {partition} is owned by epoch {current}, not {epoch}: a newer owner took over"
    )]
    Fenced {
        pipeline: String,
        partition: u32,
        epoch: u64,
        current: u64,
    },
    /// A metric with this name exists already.
    #[error("a metric named {0:?} already exists; delete it first or choose another name")]
    MetricExists(String),
    /// No metric with this name.
    #[error("no metric named {0:?}")]
    UnknownMetric(String),
    /// A tenant with this name exists already.
    #[error("a tenant named {0:?} already exists; choose another name")]
    TenantExists(String),
    /// The URL or configuration is unusable.
    #[error("{0}")]
    Invalid(String),
    /// The store file was written by a newer sluice.
    #[error(
        "the store {path} has schema version {found}, newer than this sluice understands ({supported}); upgrade sluice"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// Any other database failure.
    #[error("store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// A PostgreSQL failure: the server unreachable, a connection lost, or a statement
    /// refused.
    #[error("PostgreSQL store {location}: {detail}")]
    Postgres { location: String, detail: String },
    /// A write that depended on what it read changed meanwhile (another request, or another
    /// node, wrote first): nothing was written; decide again and retry.
    #[error("{0} changed meanwhile; retry")]
    Conflict(String),
    /// The store task went away (shutdown).
    #[error("the store is closed")]
    Closed,
}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::MetricExists(_)
            | StoreError::UnknownMetric(_)
            | StoreError::TenantExists(_)
            | StoreError::Invalid(_) => ErrorClass::User,
            StoreError::DiskFull { .. }
            | StoreError::Closed
            | StoreError::Conflict(_)
            | StoreError::Sqlite { .. }
            | StoreError::Postgres { .. } => ErrorClass::External,
            StoreError::Corrupt { .. }
            | StoreError::Fenced { .. }
            | StoreError::NewerSchema { .. } => ErrorClass::Internal,
        }
    }
}
