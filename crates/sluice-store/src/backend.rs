//! [`StoreBackend`]: the backend `store.url` names, opened once and shared by every caller
//! behind the traits of [`crate::roles`].

use crate::config::{StoreConfig, StoreLocation};
use crate::error::StoreError;
use crate::postgres::PostgresStore;
use crate::roles::Backend;
use crate::sqlite::SqliteStore;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

/// The configured store backend (chosen by `store.url`), shared by every caller.
#[derive(Debug, Clone)]
pub struct StoreBackend(Arc<dyn Backend>);

impl StoreBackend {
    /// Opens the store `config` names (SQLite relative to `data_dir` by default; PostgreSQL
    /// connects and migrates).
    pub async fn open(config: &StoreConfig, data_dir: &Path) -> Result<StoreBackend, StoreError> {
        match config.location(data_dir).map_err(StoreError::Invalid)? {
            StoreLocation::Sqlite(path) => Ok(StoreBackend::from(SqliteStore::open(&path)?)),
            StoreLocation::Postgres(url) => {
                Ok(StoreBackend::from(PostgresStore::connect(&url).await?))
            }
        }
    }
}

impl<B: Backend> From<B> for StoreBackend {
    fn from(backend: B) -> Self {
        StoreBackend(Arc::new(backend))
    }
}

impl Deref for StoreBackend {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}
