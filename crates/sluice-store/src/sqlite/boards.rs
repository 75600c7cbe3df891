//! The dashboard's saved boards (schema migration 8).

use super::{SqliteStore, classify};
use crate::error::StoreError;
use crate::model::BoardRecord;
use crate::roles::Boards;
use async_trait::async_trait;
use rusqlite::params;

#[async_trait]
impl Boards for SqliteStore {
    async fn boards(&self, tenant: &str) -> Result<Vec<BoardRecord>, StoreError> {
        let tenant = tenant.to_owned();
        self.read(move |connection, path| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT tenant, name, spec, updated_at FROM boards WHERE tenant = ?1 ORDER BY name",
                )
                .map_err(|e| classify(path, e))?;
            let rows = statement
                .query_map([&tenant], |row| {
                    Ok(BoardRecord {
                        tenant: row.get(0)?,
                        name: row.get(1)?,
                        spec: row.get(2)?,
                        updated_at: row.get(3)?,
                    })
                })
                .map_err(|e| classify(path, e))?;
            rows.collect::<Result<Vec<_>, _>>()
                .map_err(|e| classify(path, e))
        })
        .await
    }

    async fn put_board(&self, board: BoardRecord) -> Result<(), StoreError> {
        self.write(move |connection, path| {
            connection
                .execute(
                    "INSERT INTO boards (tenant, name, spec, updated_at) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (tenant, name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at",
                    params![board.tenant, board.name, board.spec, board.updated_at],
                )
                .map_err(|e| classify(path, e))?;
            Ok(())
        })
        .await
    }

    async fn delete_board(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.write(move |connection, path| {
            let deleted = connection
                .execute(
                    "DELETE FROM boards WHERE tenant = ?1 AND name = ?2",
                    params![tenant, name],
                )
                .map_err(|e| classify(path, e))?;
            Ok(deleted > 0)
        })
        .await
    }
}
