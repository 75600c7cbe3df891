//! Tenants, keys and key usage (schema migration 2): what the admin API creates. Secrets are
//! never stored, only their SHA-256 digests.

use super::{SqliteStore, classify};
use crate::error::StoreError;
use crate::model::{KeyRecord, TenantRecord};
use crate::roles::{Directory, Usage};
use async_trait::async_trait;
use rusqlite::{ErrorCode, params};
use sluice_core::access::Role;

#[async_trait]
impl Directory for SqliteStore {
    async fn tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        self.read(|connection, path| {
            let mut statement = connection
                .prepare_cached("SELECT name, created_at, requests_per_second, events_per_day FROM tenants ORDER BY name")
                .map_err(|e| classify(path, e))?;
            let rows = statement
                .query_map([], |row| {
                    Ok(TenantRecord {
                        name: row.get(0)?,
                        created_at: row.get(1)?,
                        requests_per_second: row.get(2)?,
                        events_per_day: row.get(3)?,
                    })
                })
                .map_err(|e| classify(path, e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| classify(path, e))
        })
        .await
    }

    async fn create_tenant(&self, tenant: TenantRecord) -> Result<(), StoreError> {
        self.write(move |connection, path| {
            let inserted = connection
                .execute(
                    "INSERT INTO tenants (name, created_at, requests_per_second, events_per_day) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (name) DO NOTHING",
                    params![tenant.name, tenant.created_at, tenant.requests_per_second, tenant.events_per_day],
                )
                .map_err(|e| classify(path, e))?;
            if inserted == 0 {
                return Err(StoreError::TenantExists(tenant.name));
            }
            Ok(())
        })
        .await
    }

    async fn set_tenant_limits(
        &self,
        name: &str,
        requests_per_second: Option<u32>,
        events_per_day: Option<u64>,
    ) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write(move |connection, path| {
            let updated = connection
                .execute(
                    "UPDATE tenants SET requests_per_second = ?2, events_per_day = ?3 WHERE name = ?1",
                    params![name, requests_per_second, events_per_day],
                )
                .map_err(|e| classify(path, e))?;
            Ok(updated > 0)
        })
        .await
    }

    async fn delete_tenant(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write(move |connection, path| {
            let tx = connection.transaction().map_err(|e| classify(path, e))?;
            let deleted = tx
                .execute("DELETE FROM tenants WHERE name = ?1", [&name])
                .map_err(|e| classify(path, e))?;
            tx.execute(
                "DELETE FROM key_usage WHERE key_id IN (SELECT id FROM api_keys WHERE tenant = ?1)",
                [&name],
            )
            .map_err(|e| classify(path, e))?;
            tx.execute("DELETE FROM api_keys WHERE tenant = ?1", [&name])
                .map_err(|e| classify(path, e))?;
            tx.commit().map_err(|e| classify(path, e))?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.read(|connection, path| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT id, tenant, role, digest, hint, label, created_at FROM api_keys ORDER BY created_at, id",
                )
                .map_err(|e| classify(path, e))?;
            let rows = statement
                .query_map([], |row| {
                    let role: String = row.get(2)?;
                    let digest: Vec<u8> = row.get(3)?;
                    Ok((
                        KeyRecord {
                            id: row.get(0)?,
                            tenant: row.get(1)?,
                            role: Role::Read,
                            digest: [0; 32],
                            hint: row.get(4)?,
                            label: row.get(5)?,
                            created_at: row.get(6)?,
                        },
                        role,
                        digest,
                    ))
                })
                .map_err(|e| classify(path, e))?;
            let mut keys = Vec::new();
            for row in rows {
                let (mut key, role, digest) = row.map_err(|e| classify(path, e))?;
                let corrupt = |detail: String| StoreError::Corrupt {
                    path: path.to_owned(),
                    detail,
                };
                key.role = Role::parse(&role)
                    .ok_or_else(|| corrupt(format!("key {} has an unknown role {role:?}", key.id)))?;
                key.digest = digest.try_into().map_err(|bytes: Vec<u8>| {
                    corrupt(format!("key {} has a {}-byte digest, not 32", key.id, bytes.len()))
                })?;
                keys.push(key);
            }
            Ok(keys)
        })
        .await
    }

    async fn create_key(&self, key: KeyRecord) -> Result<(), StoreError> {
        self.write(move |connection, path| {
            connection
                .execute(
                    "INSERT INTO api_keys (id, tenant, role, digest, hint, label, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        key.id,
                        key.tenant,
                        key.role.as_str(),
                        key.digest.as_slice(),
                        key.hint,
                        key.label,
                        key.created_at
                    ],
                )
                .map_err(|error| match &error {
                    rusqlite::Error::SqliteFailure(failure, _)
                        if failure.code == ErrorCode::ConstraintViolation =>
                    {
                        StoreError::Invalid(format!("key {} or its secret exists already", key.id))
                    }
                    _ => classify(path, error),
                })?;
            Ok(())
        })
        .await
    }

    async fn delete_key(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write(move |connection, path| {
            let tx = connection.transaction().map_err(|e| classify(path, e))?;
            let deleted = tx
                .execute("DELETE FROM api_keys WHERE id = ?1", [&id])
                .map_err(|e| classify(path, e))?;
            tx.execute("DELETE FROM key_usage WHERE key_id = ?1", [&id])
                .map_err(|e| classify(path, e))?;
            tx.commit().map_err(|e| classify(path, e))?;
            Ok(deleted > 0)
        })
        .await
    }
}

#[async_trait]
impl Usage for SqliteStore {
    async fn key_usage(&self, day: u64) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(move |connection, path| {
            let mut statement = connection
                .prepare_cached("SELECT key_id, events FROM key_usage WHERE day = ?1")
                .map_err(|e| classify(path, e))?;
            let rows = statement
                .query_map([day], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(|e| classify(path, e))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(|e| classify(path, e))
        })
        .await
    }

    async fn add_key_usage(&self, usage: Vec<(String, u64, u64)>) -> Result<(), StoreError> {
        if usage.is_empty() {
            return Ok(());
        }
        self.write(move |connection, path| {
            let tx = connection.transaction().map_err(|e| classify(path, e))?;
            {
                let mut upsert = tx
                    .prepare_cached(
                        "INSERT INTO key_usage (key_id, day, events) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (key_id, day) DO UPDATE SET events = events + excluded.events",
                    )
                    .map_err(|e| classify(path, e))?;
                for (id, day, events) in &usage {
                    upsert
                        .execute(params![id, day, events])
                        .map_err(|e| classify(path, e))?;
                }
            }
            let earliest = usage.iter().map(|(_, day, _)| *day).min().unwrap_or(0);
            tx.execute("DELETE FROM key_usage WHERE day < ?1", [earliest])
                .map_err(|e| classify(path, e))?;
            tx.commit().map_err(|e| classify(path, e))
        })
        .await
    }
}
