//! The schema registry's versions and settings in PostgreSQL (schema migration 4), as in the
//! SQLite store. A registration locks `schema_ids`, so that nodes registering at once take
//! turns and each sees the versions the other added.

use super::PostgresStore;
use crate::error::StoreError;
use crate::model::{schema_digest, stored_schema_type, stored_setting};
use crate::roles::Schemas;
use async_trait::async_trait;
use sluice_schema::{SchemaType, SchemaVersion, SubjectConfig};

#[async_trait]
impl Schemas for PostgresStore {
    async fn schema_registry(
        &self,
    ) -> Result<(Vec<SchemaVersion>, Vec<SubjectConfig>), StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT v.tenant, v.subject, v.version, v.id, i.schema_type, i.schema, v.deleted \
                 FROM schema_versions v JOIN schema_ids i ON i.id = v.id \
                 ORDER BY v.tenant, v.subject, v.version",
                &[],
            )
            .await
            .map_err(self.failed())?;
        let versions = rows
            .iter()
            .map(|row| SchemaVersion {
                tenant: row.get(0),
                subject: row.get(1),
                version: row.get::<_, i64>(2) as u32,
                id: row.get::<_, i64>(3) as u32,
                schema_type: stored_schema_type(row.get(4)),
                schema: row.get(5),
                deleted: row.get(6),
            })
            .collect();
        let rows = client
            .query(
                "SELECT tenant, subject, compatibility, validation, unknown_events \
                 FROM schema_settings ORDER BY tenant, subject",
                &[],
            )
            .await
            .map_err(self.failed())?;
        let settings = rows
            .iter()
            .map(|row| SubjectConfig {
                tenant: row.get(0),
                subject: row.get(1),
                compatibility: stored_setting(row.get(2)),
                validation: stored_setting(row.get(3)),
                unknown_events: stored_setting(row.get(4)),
            })
            .collect();
        Ok((versions, settings))
    }

    async fn add_schema_version(
        &self,
        tenant: &str,
        subject: &str,
        schema_type: SchemaType,
        schema: &str,
        expected_latest: Option<u32>,
    ) -> Result<SchemaVersion, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        tx.batch_execute("LOCK TABLE schema_ids IN SHARE ROW EXCLUSIVE MODE")
            .await
            .map_err(self.failed())?;
        let latest: Option<i64> = tx
            .query_one(
                "SELECT MAX(version) FROM schema_versions WHERE tenant = $1 AND subject = $2",
                &[&tenant, &subject],
            )
            .await
            .map_err(self.failed())?
            .get(0);
        if latest.map(|v| v as u32) != expected_latest {
            return Err(StoreError::Conflict(format!("subject {subject:?}")));
        }
        let digest = schema_digest(schema);
        let kind = schema_type.as_str();
        let found = tx
            .query_opt(
                "SELECT id FROM schema_ids WHERE tenant = $1 AND schema_type = $2 AND digest = $3",
                &[&tenant, &kind, &digest],
            )
            .await
            .map_err(self.failed())?;
        let id: i64 = match found {
            Some(row) => row.get(0),
            None => tx
                .query_one(
                    "INSERT INTO schema_ids (tenant, schema_type, digest, schema) VALUES ($1, $2, $3, $4) RETURNING id",
                    &[&tenant, &kind, &digest, &schema],
                )
                .await
                .map_err(self.failed())?
                .get(0),
        };
        let version = latest.unwrap_or(0) + 1;
        tx.execute(
            "INSERT INTO schema_versions (tenant, subject, version, id, deleted) VALUES ($1, $2, $3, $4, false)",
            &[&tenant, &subject, &version, &id],
        )
        .await
        .map_err(self.failed())?;
        tx.commit().await.map_err(self.failed())?;
        Ok(SchemaVersion {
            id: id as u32,
            tenant: tenant.to_owned(),
            subject: subject.to_owned(),
            version: version as u32,
            schema_type,
            schema: schema.to_owned(),
            deleted: false,
        })
    }

    async fn delete_schema_versions(
        &self,
        tenant: &str,
        subject: &str,
        version: Option<u32>,
        permanent: bool,
    ) -> Result<Vec<u32>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.failed())?;
        let version = version.map(i64::from);
        let sql = if permanent {
            "DELETE FROM schema_versions WHERE tenant = $1 AND subject = $2 AND deleted \
             AND ($3::BIGINT IS NULL OR version = $3) RETURNING version"
        } else {
            "UPDATE schema_versions SET deleted = true WHERE tenant = $1 AND subject = $2 AND NOT deleted \
             AND ($3::BIGINT IS NULL OR version = $3) RETURNING version"
        };
        let rows = tx
            .query(sql, &[&tenant, &subject, &version])
            .await
            .map_err(self.failed())?;
        let mut affected: Vec<u32> = rows.iter().map(|row| row.get::<_, i64>(0) as u32).collect();
        let left: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM schema_versions WHERE tenant = $1 AND subject = $2",
                &[&tenant, &subject],
            )
            .await
            .map_err(self.failed())?
            .get(0);
        if permanent && left == 0 {
            tx.execute(
                "DELETE FROM schema_settings WHERE tenant = $1 AND subject = $2",
                &[&tenant, &subject],
            )
            .await
            .map_err(self.failed())?;
        }
        tx.commit().await.map_err(self.failed())?;
        affected.sort_unstable();
        Ok(affected)
    }

    async fn set_schema_settings(
        &self,
        tenant: &str,
        subject: &str,
        settings: Option<SubjectConfig>,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        match settings {
            None => client
                .execute(
                    "DELETE FROM schema_settings WHERE tenant = $1 AND subject = $2",
                    &[&tenant, &subject],
                )
                .await,
            Some(settings) => client
                .execute(
                    "INSERT INTO schema_settings (tenant, subject, compatibility, validation, unknown_events) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, subject) DO UPDATE SET \
                     compatibility = EXCLUDED.compatibility, validation = EXCLUDED.validation, \
                     unknown_events = EXCLUDED.unknown_events",
                    &[
                        &tenant,
                        &subject,
                        &settings.compatibility.map(|c| c.as_str()),
                        &settings.validation.map(|v| v.as_str()),
                        &settings.unknown_events.map(|u| u.as_str()),
                    ],
                )
                .await,
        }
        .map_err(self.failed())?;
        Ok(())
    }
}
