//! Users erased on request in PostgreSQL (schema migration 7), as in the SQLite store.

use super::PostgresStore;
use crate::error::StoreError;
use crate::model::ErasureRecord;
use crate::roles::Erasures;
use async_trait::async_trait;

#[async_trait]
impl Erasures for PostgresStore {
    async fn erasures(&self) -> Result<Vec<ErasureRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT tenant, id, erased_at FROM erasures ORDER BY tenant, id",
                &[],
            )
            .await
            .map_err(self.failed())?;
        Ok(rows
            .iter()
            .map(|row| ErasureRecord {
                tenant: row.get(0),
                id: row.get(1),
                erased_at: row.get(2),
            })
            .collect())
    }

    async fn erase(&self, record: ErasureRecord) -> Result<ErasureRecord, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "INSERT INTO erasures (tenant, id, erased_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant, id) DO UPDATE SET erased_at = erasures.erased_at \
                 RETURNING erased_at",
                &[&record.tenant, &record.id, &record.erased_at],
            )
            .await
            .map_err(self.failed())?;
        Ok(ErasureRecord {
            erased_at: row.get(0),
            ..record
        })
    }
}
