//! Tenants, keys and key usage in PostgreSQL, as in the SQLite store: what the admin API
//! creates. Secrets are never stored, only their SHA-256 digests.

use super::{PostgresStore, big};
use crate::error::StoreError;
use crate::model::{KeyRecord, TenantRecord};
use crate::roles::{Directory, Usage};
use async_trait::async_trait;
use sluice_core::access::Role;
use tokio_postgres::error::SqlState;

#[async_trait]
impl Directory for PostgresStore {
    async fn tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name, created_at, requests_per_second, events_per_day FROM tenants ORDER BY name",
                &[],
            )
            .await
            .map_err(self.failed())?;
        Ok(rows
            .iter()
            .map(|row| TenantRecord {
                name: row.get(0),
                created_at: row.get(1),
                requests_per_second: row.get::<_, Option<i64>>(2).map(|n| n as u32),
                events_per_day: row.get::<_, Option<i64>>(3).map(|n| n as u64),
            })
            .collect())
    }

    async fn create_tenant(&self, tenant: TenantRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        let inserted = client
            .execute(
                "INSERT INTO tenants (name, created_at, requests_per_second, events_per_day) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO NOTHING",
                &[
                    &tenant.name,
                    &tenant.created_at,
                    &tenant.requests_per_second.map(big),
                    &tenant.events_per_day.map(big),
                ],
            )
            .await
            .map_err(self.failed())?;
        if inserted == 0 {
            return Err(StoreError::TenantExists(tenant.name));
        }
        Ok(())
    }

    async fn set_tenant_limits(
        &self,
        name: &str,
        requests_per_second: Option<u32>,
        events_per_day: Option<u64>,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let updated = client
            .execute(
                "UPDATE tenants SET requests_per_second = $2, events_per_day = $3 WHERE name = $1",
                &[
                    &name,
                    &requests_per_second.map(big),
                    &events_per_day.map(big),
                ],
            )
            .await
            .map_err(self.failed())?;
        Ok(updated > 0)
    }

    async fn delete_tenant(&self, name: &str) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        let deleted = tx
            .execute("DELETE FROM tenants WHERE name = $1", &[&name])
            .await
            .map_err(self.failed())?;
        tx.execute(
            "DELETE FROM key_usage WHERE key_id IN (SELECT id FROM api_keys WHERE tenant = $1)",
            &[&name],
        )
        .await
        .map_err(self.failed())?;
        tx.execute("DELETE FROM api_keys WHERE tenant = $1", &[&name])
            .await
            .map_err(self.failed())?;
        tx.commit().await.map_err(self.failed())?;
        Ok(deleted > 0)
    }

    async fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, tenant, role, digest, hint, label, created_at FROM api_keys ORDER BY created_at, id",
                &[],
            )
            .await
            .map_err(self.failed())?;
        let corrupt = |detail: String| StoreError::Corrupt {
            path: self.location.as_ref().into(),
            detail,
        };
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.get(0);
            let role: &str = row.get(2);
            let role = Role::parse(role)
                .ok_or_else(|| corrupt(format!("key {id} has an unknown role {role:?}")))?;
            let digest: &[u8] = row.get(3);
            let digest = digest.try_into().map_err(|_| {
                corrupt(format!(
                    "key {id} has a {}-byte digest, not 32",
                    digest.len()
                ))
            })?;
            keys.push(KeyRecord {
                id,
                tenant: row.get(1),
                role,
                digest,
                hint: row.get(4),
                label: row.get(5),
                created_at: row.get(6),
            });
        }
        Ok(keys)
    }

    async fn create_key(&self, key: KeyRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO api_keys (id, tenant, role, digest, hint, label, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &key.id,
                    &key.tenant,
                    &key.role.as_str(),
                    &key.digest.as_slice(),
                    &key.hint,
                    &key.label,
                    &key.created_at,
                ],
            )
            .await
            .map_err(|error| {
                if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                    StoreError::Invalid(format!("key {} or its secret exists already", key.id))
                } else {
                    super::pg_error(&self.location, error)
                }
            })?;
        Ok(())
    }

    async fn delete_key(&self, id: &str) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        let deleted = tx
            .execute("DELETE FROM api_keys WHERE id = $1", &[&id])
            .await
            .map_err(self.failed())?;
        tx.execute("DELETE FROM key_usage WHERE key_id = $1", &[&id])
            .await
            .map_err(self.failed())?;
        tx.commit().await.map_err(self.failed())?;
        Ok(deleted > 0)
    }
}

#[async_trait]
impl Usage for PostgresStore {
    async fn key_usage(&self, day: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT key_id, events FROM key_usage WHERE day = $1",
                &[&big(day)],
            )
            .await
            .map_err(self.failed())?;
        Ok(rows
            .iter()
            .map(|row| (row.get(0), row.get::<_, i64>(1) as u64))
            .collect())
    }

    async fn add_key_usage(&self, usage: Vec<(String, u64, u64)>) -> Result<(), StoreError> {
        if usage.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        let ids: Vec<&str> = usage.iter().map(|(id, _, _)| id.as_str()).collect();
        let days: Vec<i64> = usage.iter().map(|(_, day, _)| big(*day)).collect();
        let events: Vec<i64> = usage.iter().map(|(_, _, events)| big(*events)).collect();
        // One statement cannot update a row twice: a key's day given twice is summed first.
        tx.execute(
            "INSERT INTO key_usage (key_id, day, events) \
             SELECT key_id, day, sum(events)::BIGINT FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[]) AS u(key_id, day, events) \
             GROUP BY key_id, day \
             ON CONFLICT (key_id, day) DO UPDATE SET events = key_usage.events + excluded.events",
            &[&ids, &days, &events],
        )
        .await
        .map_err(self.failed())?;
        let earliest = days.iter().copied().min().unwrap_or(0);
        tx.execute("DELETE FROM key_usage WHERE day < $1", &[&earliest])
            .await
            .map_err(self.failed())?;
        tx.commit().await.map_err(self.failed())
    }
}
