//! The result store and the exactly-once pipelines that fill it.
//!
//! # Layout
//! - [`sqlite`]: the embedded backend (one SQLite file); the PostgreSQL backend will sit beside
//!   it with the same schema, chosen by the URL scheme of `store.url`.
//! - [`model`]: metric definitions, positions and partial rows as plain values.
//! - [`error`]: the [`StoreError`] type.

pub mod error;
pub mod model;
pub mod sqlite;

pub use error::StoreError;
pub use model::{
    Commit, MetricCommit, MetricRecord, Origin, Position, RetractedRow, RowQuery, StoredRow,
};
pub use sqlite::SqliteStore;
