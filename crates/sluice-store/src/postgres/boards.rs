//! The dashboard's saved boards in PostgreSQL (schema migration 5), as in the SQLite store.

use super::PostgresStore;
use crate::error::StoreError;
use crate::model::BoardRecord;
use crate::roles::Boards;
use async_trait::async_trait;

#[async_trait]
impl Boards for PostgresStore {
    async fn boards(&self, tenant: &str) -> Result<Vec<BoardRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT tenant, name, spec, updated_at FROM boards WHERE tenant = $1 ORDER BY name",
                &[&tenant],
            )
            .await
            .map_err(self.failed())?;
        Ok(rows
            .iter()
            .map(|row| BoardRecord {
                tenant: row.get(0),
                name: row.get(1),
                spec: row.get(2),
                updated_at: row.get(3),
            })
            .collect())
    }

    async fn put_board(&self, board: BoardRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO boards (tenant, name, spec, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant, name) DO UPDATE SET spec = EXCLUDED.spec, updated_at = EXCLUDED.updated_at",
                &[&board.tenant, &board.name, &board.spec, &board.updated_at],
            )
            .await
            .map_err(self.failed())?;
        Ok(())
    }

    async fn delete_board(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let deleted = client
            .execute(
                "DELETE FROM boards WHERE tenant = $1 AND name = $2",
                &[&tenant, &name],
            )
            .await
            .map_err(self.failed())?;
        Ok(deleted > 0)
    }
}
