//! Tenants, keys and key usage (schema migration 2): what the admin API creates. Secrets are
//! never stored, only their SHA-256 digests.

use super::{SqliteStore, classify};
use crate::error::StoreError;
use crate::model::RowRange;
use crate::model::{KeyRecord, StoredRow, TenantRecord};
use crate::serving::ServingStore;
use rusqlite::{ErrorCode, params};
use sluice_core::access::Role;

impl ServingStore for SqliteStore {
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

    /// Adds a tenant; its name must be new.
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

    /// Replaces a stored tenant's limits; returns whether it exists.
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

    /// Deletes a stored tenant and its keys in one transaction; returns whether it existed.
    /// Its results stay in the metrics until those are deleted or replayed.
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

    /// Every stored key, oldest first.
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

    /// Adds a key. Its id and digest must be new.
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

    /// Deletes (revokes) a key; returns whether it existed.
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

    /// Each key's events used on UTC day `day`.
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

    /// Records keys' events used on their day (the larger count wins) and forgets days before
    /// the earliest one given.
    async fn save_key_usage(&self, usage: Vec<(String, u64, u64)>) -> Result<(), StoreError> {
        if usage.is_empty() {
            return Ok(());
        }
        self.write(move |connection, path| {
            let tx = connection.transaction().map_err(|e| classify(path, e))?;
            {
                let mut upsert = tx
                    .prepare_cached(
                        "INSERT INTO key_usage (key_id, day, events) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (key_id, day) DO UPDATE SET events = max(events, excluded.events)",
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

    async fn rows_in(&self, range: RowRange) -> Result<Option<Vec<StoredRow>>, StoreError> {
        self.rows_in_range(range).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::access::digest;

    fn key(id: &str, tenant: Option<&str>, role: Role, secret: &str) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            tenant: tenant.map(str::to_owned),
            role,
            digest: digest(secret),
            hint: secret[..6].into(),
            label: "test".into(),
            created_at: 1,
        }
    }

    #[tokio::test]
    async fn tenants_keys_and_usage_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
        let shop = TenantRecord {
            name: "shop".into(),
            created_at: 5,
            requests_per_second: Some(10),
            events_per_day: None,
        };
        store.create_tenant(shop.clone()).await.unwrap();
        assert!(matches!(
            store.create_tenant(shop.clone()).await,
            Err(StoreError::TenantExists(name)) if name == "shop"
        ));
        assert!(
            store
                .set_tenant_limits("shop", None, Some(100))
                .await
                .unwrap()
        );
        assert!(!store.set_tenant_limits("nope", None, None).await.unwrap());
        let stored = store.tenants().await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(
            (stored[0].requests_per_second, stored[0].events_per_day),
            (None, Some(100))
        );

        store
            .create_key(key("key_a", Some("shop"), Role::Write, "wk_secret_a_0123"))
            .await
            .unwrap();
        store
            .create_key(key("key_b", None, Role::Admin, "ak_secret_b_0123"))
            .await
            .unwrap();
        let duplicate = store
            .create_key(key("key_c", Some("shop"), Role::Read, "wk_secret_a_0123"))
            .await;
        assert!(
            matches!(duplicate, Err(StoreError::Invalid(_))),
            "{duplicate:?}"
        );
        let keys = store.keys().await.unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].digest, digest("wk_secret_a_0123"));
        assert_eq!(keys[1].role, Role::Admin);

        store
            .save_key_usage(vec![("key_a".into(), 7, 40)])
            .await
            .unwrap();
        store
            .save_key_usage(vec![("key_a".into(), 7, 30), ("key_b".into(), 8, 1)])
            .await
            .unwrap();
        assert_eq!(
            store.key_usage(7).await.unwrap(),
            vec![("key_a".into(), 40)]
        );

        assert!(store.delete_tenant("shop").await.unwrap());
        let keys = store.keys().await.unwrap();
        assert_eq!(keys.len(), 1, "the tenant's keys went with it");
        assert!(store.delete_key("key_b").await.unwrap());
        assert!(!store.delete_key("key_b").await.unwrap());
    }
}
