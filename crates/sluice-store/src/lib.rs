//! The result store: the traits every backend implements and the backends. The exactly-once
//! pipelines that fill it are the `sluice-pipelines` crate.
//!
//! # Layout
//! - [`roles`]: the traits by role every backend implements ([`Catalogue`], [`Checkpoints`],
//!   [`ResultReads`], [`Directory`], [`Usage`], [`Schemas`], [`Boards`], [`Erasures`], [`Alerts`], [`Housekeeping`]).
//! - [`backend`]: [`StoreBackend`], the configured backend behind them.
//! - [`sqlite`]: the embedded backend (one SQLite file).
//! - [`postgres`]: the PostgreSQL backend, the same tables and protocol in a database several
//!   nodes share, and a view per metric with its final results in plain SQL columns (BI).
//! - [`model`]: what the traits take and give, as plain values: metric definitions,
//!   positions, open and final rows, the row ranges queries read, tenants and keys.
//! - [`config`]: the `[store]` section and `[[metrics]]` tables.
//! - [`error`]: the [`StoreError`] type.
//! - `testing` (feature `testing`): values for the store's tests and its backends' contract.

pub mod backend;
pub mod config;
pub mod error;
mod merge;
pub mod model;
pub mod postgres;
pub mod roles;
pub mod sqlite;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use backend::StoreBackend;
pub use config::{MetricConfig, StoreConfig, StoreLocation};
pub use error::StoreError;
pub use model::{
    AlertProgress, AlertRuleRecord, BoardRecord, ChangedRow, Commit, DeliveryOutcome,
    DeliveryState, ErasureRecord, KeyRecord, MetricCommit, MetricRecord, Notification,
    NotificationQuery, Origin, PackedRows, Position, ReplayPlan, RetractedRow, RowCursor,
    RowDecoder, RowPage, RowQuery, RowRange, RowRef, RowsAndWatermarks, SilenceRecord, StoredRow,
    TenantRecord,
};
pub use postgres::PostgresStore;
pub use roles::{
    Alerts, Backend, Boards, Catalogue, Checkpoints, Directory, Erasures, Housekeeping,
    ResultReads, Schemas, Usage,
};
pub use sqlite::SqliteStore;
