//! The result store: the traits every backend implements and the backends. The exactly-once
//! pipelines that fill it are the `sluice-pipelines` crate.
//!
//! # Layout
//! - [`store`]: the [`Store`] trait every backend implements and the [`StoreBackend`] enum
//!   that dispatches to the configured one.
//! - [`serving`]: the [`ServingStore`] trait: tenants, keys, usage and query reads.
//! - [`sqlite`]: the embedded backend (one SQLite file); the PostgreSQL backend will sit beside
//!   it with the same schema, chosen by the URL scheme of `store.url`.
//! - [`model`]: metric definitions, positions and partial rows as plain values.
//! - [`config`]: the `[store]` section and `[[metrics]]` tables.
//! - [`error`]: the [`StoreError`] type.

pub mod config;
pub mod error;
pub mod model;
pub mod serving;
pub mod sqlite;
pub mod store;

pub use config::{MetricConfig, StoreConfig};
pub use error::StoreError;
pub use model::{
    ChangedRow, Commit, KeyRecord, MetricCommit, MetricRecord, Origin, PackedRows, Position,
    RetractedRow, RowQuery, StoredRow, TenantRecord,
};
pub use serving::ServingStore;
pub use sqlite::{RowRange, SqliteStore};
pub use store::{Store, StoreBackend};
