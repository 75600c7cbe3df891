//! The schema registry's versions and settings (schema migration 7).

use super::{SqliteStore, classify};
use crate::error::StoreError;
use crate::model::{schema_digest, stored_schema_type, stored_setting};
use crate::roles::Schemas;
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use sluice_schema::{SchemaType, SchemaVersion, SubjectConfig};

#[async_trait]
impl Schemas for SqliteStore {
    async fn schema_registry(
        &self,
    ) -> Result<(Vec<SchemaVersion>, Vec<SubjectConfig>), StoreError> {
        self.read(|connection, path| {
            let fail = |e| classify(path, e);
            let mut statement = connection
                .prepare_cached(
                    "SELECT v.tenant, v.subject, v.version, v.id, i.schema_type, i.schema, v.deleted \
                     FROM schema_versions v JOIN schema_ids i ON i.id = v.id \
                     ORDER BY v.tenant, v.subject, v.version",
                )
                .map_err(fail)?;
            let versions = statement
                .query_map([], |row| {
                    Ok(SchemaVersion {
                        tenant: row.get(0)?,
                        subject: row.get(1)?,
                        version: row.get(2)?,
                        id: row.get(3)?,
                        schema_type: stored_schema_type(&row.get::<_, String>(4)?),
                        schema: row.get(5)?,
                        deleted: row.get(6)?,
                    })
                })
                .map_err(fail)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?;
            let mut statement = connection
                .prepare_cached(
                    "SELECT tenant, subject, compatibility, validation, unknown_events \
                     FROM schema_settings ORDER BY tenant, subject",
                )
                .map_err(fail)?;
            let settings = statement
                .query_map([], |row| {
                    Ok(SubjectConfig {
                        tenant: row.get(0)?,
                        subject: row.get(1)?,
                        compatibility: stored_setting(row.get(2)?),
                        validation: stored_setting(row.get(3)?),
                        unknown_events: stored_setting(row.get(4)?),
                    })
                })
                .map_err(fail)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(fail)?;
            Ok((versions, settings))
        })
        .await
    }

    async fn add_schema_version(
        &self,
        tenant: &str,
        subject: &str,
        schema_type: SchemaType,
        schema: &str,
        expected_latest: Option<u32>,
    ) -> Result<SchemaVersion, StoreError> {
        let (tenant, subject, schema) = (tenant.to_owned(), subject.to_owned(), schema.to_owned());
        self.write(move |connection, path| {
            let fail = |e| classify(path, e);
            let tx = connection.transaction().map_err(fail)?;
            let latest: Option<u32> = tx
                .query_row(
                    "SELECT MAX(version) FROM schema_versions WHERE tenant = ?1 AND subject = ?2",
                    params![tenant, subject],
                    |row| row.get(0),
                )
                .map_err(fail)?;
            if latest != expected_latest {
                return Err(StoreError::Conflict(format!("subject {subject:?}")));
            }
            let digest = schema_digest(&schema);
            let kind = schema_type.as_str();
            let found: Option<u32> = tx
                .query_row(
                    "SELECT id FROM schema_ids WHERE tenant = ?1 AND schema_type = ?2 AND digest = ?3",
                    params![tenant, kind, digest],
                    |row| row.get(0),
                )
                .optional()
                .map_err(fail)?;
            let id = match found {
                Some(id) => id,
                None => tx
                    .query_row(
                        "INSERT INTO schema_ids (tenant, schema_type, digest, schema) VALUES (?1, ?2, ?3, ?4) RETURNING id",
                        params![tenant, kind, digest, schema],
                        |row| row.get(0),
                    )
                    .map_err(fail)?,
            };
            let version = latest.unwrap_or(0) + 1;
            tx.execute(
                "INSERT INTO schema_versions (tenant, subject, version, id, deleted) VALUES (?1, ?2, ?3, ?4, 0)",
                params![tenant, subject, version, id],
            )
            .map_err(fail)?;
            tx.commit().map_err(fail)?;
            Ok(SchemaVersion {
                id,
                tenant,
                subject,
                version,
                schema_type,
                schema,
                deleted: false,
            })
        })
        .await
    }

    async fn delete_schema_versions(
        &self,
        tenant: &str,
        subject: &str,
        version: Option<u32>,
        permanent: bool,
    ) -> Result<Vec<u32>, StoreError> {
        let (tenant, subject) = (tenant.to_owned(), subject.to_owned());
        self.write(move |connection, path| {
            let fail = |e| classify(path, e);
            let tx = connection.transaction().map_err(fail)?;
            let affected: Vec<u32> = {
                let sql = if permanent {
                    "DELETE FROM schema_versions WHERE tenant = ?1 AND subject = ?2 AND deleted = 1 \
                     AND (?3 IS NULL OR version = ?3) RETURNING version"
                } else {
                    "UPDATE schema_versions SET deleted = 1 WHERE tenant = ?1 AND subject = ?2 AND deleted = 0 \
                     AND (?3 IS NULL OR version = ?3) RETURNING version"
                };
                let mut statement = tx.prepare(sql).map_err(fail)?;
                let rows = statement
                    .query_map(params![tenant, subject, version], |row| row.get(0))
                    .map_err(fail)?;
                rows.collect::<Result<_, _>>().map_err(fail)?
            };
            let left: u32 = tx
                .query_row(
                    "SELECT COUNT(*) FROM schema_versions WHERE tenant = ?1 AND subject = ?2",
                    params![tenant, subject],
                    |row| row.get(0),
                )
                .map_err(fail)?;
            if permanent && left == 0 {
                tx.execute(
                    "DELETE FROM schema_settings WHERE tenant = ?1 AND subject = ?2",
                    params![tenant, subject],
                )
                .map_err(fail)?;
            }
            tx.commit().map_err(fail)?;
            let mut affected = affected;
            affected.sort_unstable();
            Ok(affected)
        })
        .await
    }

    async fn set_schema_settings(
        &self,
        tenant: &str,
        subject: &str,
        settings: Option<SubjectConfig>,
    ) -> Result<(), StoreError> {
        let (tenant, subject) = (tenant.to_owned(), subject.to_owned());
        self.write(move |connection, path| {
            let fail = |e| classify(path, e);
            match settings {
                None => connection.execute(
                    "DELETE FROM schema_settings WHERE tenant = ?1 AND subject = ?2",
                    params![tenant, subject],
                ),
                Some(settings) => connection.execute(
                    "INSERT INTO schema_settings (tenant, subject, compatibility, validation, unknown_events) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (tenant, subject) DO UPDATE SET \
                     compatibility = excluded.compatibility, validation = excluded.validation, \
                     unknown_events = excluded.unknown_events",
                    params![
                        tenant,
                        subject,
                        settings.compatibility.map(|c| c.as_str()),
                        settings.validation.map(|v| v.as_str()),
                        settings.unknown_events.map(|u| u.as_str()),
                    ],
                ),
            }
            .map_err(fail)?;
            Ok(())
        })
        .await
    }
}
