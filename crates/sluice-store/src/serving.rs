//! What the serving layer keeps in the store besides results — tenants and keys made through
//! the admin API, each key's daily usage — and the bounded row ranges its queries read.

use crate::error::StoreError;
use crate::model::{KeyRecord, RowRange, StoredRow, TenantRecord};
use crate::store::{Store, StoreBackend};
use std::future::Future;

/// Tenants, keys, usage and query reads, for every backend.
pub trait ServingStore: Store {
    /// Every stored tenant, by name.
    fn tenants(&self) -> impl Future<Output = Result<Vec<TenantRecord>, StoreError>> + Send;

    /// Adds a tenant; its name must be new ([`StoreError::TenantExists`]).
    fn create_tenant(
        &self,
        tenant: TenantRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Replaces a tenant's limits; returns whether it exists.
    fn set_tenant_limits(
        &self,
        name: &str,
        requests_per_second: Option<u32>,
        events_per_day: Option<u64>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes a tenant and its keys atomically; returns whether it existed.
    fn delete_tenant(&self, name: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every stored key, oldest first.
    fn keys(&self) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send;

    /// Adds a key; its id and digest must be new.
    fn create_key(&self, key: KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes (revokes) a key; returns whether it existed.
    fn delete_key(&self, id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Each key's events used on UTC day `day`.
    fn key_usage(
        &self,
        day: u64,
    ) -> impl Future<Output = Result<Vec<(String, u64)>, StoreError>> + Send;

    /// Records keys' (id, day, events used) — the larger count wins — and forgets days before
    /// the earliest given.
    fn save_key_usage(
        &self,
        usage: Vec<(String, u64, u64)>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The rows in `range`, by window start; `None` when there are more than `range.limit`.
    fn rows_in(
        &self,
        range: RowRange,
    ) -> impl Future<Output = Result<Option<Vec<StoredRow>>, StoreError>> + Send;
}

impl ServingStore for StoreBackend {
    async fn tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        match self {
            StoreBackend::Sqlite(store) => store.tenants().await,
        }
    }

    async fn create_tenant(&self, tenant: TenantRecord) -> Result<(), StoreError> {
        match self {
            StoreBackend::Sqlite(store) => store.create_tenant(tenant).await,
        }
    }

    async fn set_tenant_limits(
        &self,
        name: &str,
        requests_per_second: Option<u32>,
        events_per_day: Option<u64>,
    ) -> Result<bool, StoreError> {
        match self {
            StoreBackend::Sqlite(store) => {
                store
                    .set_tenant_limits(name, requests_per_second, events_per_day)
                    .await
            }
        }
    }

    async fn delete_tenant(&self, name: &str) -> Result<bool, StoreError> {
        match self {
            StoreBackend::Sqlite(store) => store.delete_tenant(name).await,
        }
    }

    async fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        match self {
            StoreBackend::Sqlite(store) => store.keys().await,
        }
    }

    async fn create_key(&self, key: KeyRecord) -> Result<(), StoreError> {
        match self {
            StoreBackend::Sqlite(store) => store.create_key(key).await,
        }
    }

    async fn delete_key(&self, id: &str) -> Result<bool, StoreError> {
        match self {
            StoreBackend::Sqlite(store) => store.delete_key(id).await,
        }
    }

    async fn key_usage(&self, day: u64) -> Result<Vec<(String, u64)>, StoreError> {
        match self {
            StoreBackend::Sqlite(store) => store.key_usage(day).await,
        }
    }

    async fn save_key_usage(&self, usage: Vec<(String, u64, u64)>) -> Result<(), StoreError> {
        match self {
            StoreBackend::Sqlite(store) => store.save_key_usage(usage).await,
        }
    }

    async fn rows_in(&self, range: RowRange) -> Result<Option<Vec<StoredRow>>, StoreError> {
        match self {
            StoreBackend::Sqlite(store) => store.rows_in(range).await,
        }
    }
}
