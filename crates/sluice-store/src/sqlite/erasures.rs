//! Users erased on request (schema migration 10).

use super::{SqliteStore, classify};
use crate::error::StoreError;
use crate::model::ErasureRecord;
use crate::roles::Erasures;
use async_trait::async_trait;
use rusqlite::params;

#[async_trait]
impl Erasures for SqliteStore {
    async fn erasures(&self) -> Result<Vec<ErasureRecord>, StoreError> {
        self.read(move |connection, path| {
            let mut statement = connection
                .prepare_cached("SELECT tenant, id, erased_at FROM erasures ORDER BY tenant, id")
                .map_err(|e| classify(path, e))?;
            let rows = statement
                .query_map([], |row| {
                    Ok(ErasureRecord {
                        tenant: row.get(0)?,
                        id: row.get(1)?,
                        erased_at: row.get(2)?,
                    })
                })
                .map_err(|e| classify(path, e))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(|e| classify(path, e))
        })
        .await
    }

    async fn erase(&self, record: ErasureRecord) -> Result<ErasureRecord, StoreError> {
        self.write(move |connection, path| {
            let erased_at: i64 = connection
                .query_row(
                    "INSERT INTO erasures (tenant, id, erased_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (tenant, id) DO UPDATE SET erased_at = erasures.erased_at \
                     RETURNING erased_at",
                    params![record.tenant, record.id, record.erased_at],
                    |row| row.get(0),
                )
                .map_err(|e| classify(path, e))?;
            Ok(ErasureRecord {
                erased_at,
                ..record
            })
        })
        .await
    }
}
