//! The PostgreSQL store's schema: the tables of the SQLite store's current layout (open rows
//! per partition, one final row per window, no index beside the primary keys), plus the final
//! rows' decoded values for the metrics' views (`views.rs`), in the schema the connection's
//! `search_path` names. Versions are kept in `sluice_schema`; each migration
//! runs once, in order, in one transaction holding an advisory lock, so nodes starting together
//! migrate once; a database from a newer sluice is refused rather than misread. The metrics'
//! views read `finals` and `metrics`: a migration changing a column they read drops them first
//! (every start makes them again).

use super::{Client, pg_error};
use crate::error::StoreError;

/// The advisory lock migrations hold (any constant; "sluice" in ASCII), and statements on the
/// metrics' views (`views.rs`).
pub(super) const MIGRATION_LOCK: i64 = 0x736c_7569_6365;

/// Migrations in order; `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
/// Integers are `BIGINT` throughout (offsets and epochs are unsigned 64-bit in sluice, and
/// never reach 2⁶³); group keys and states are `BYTEA`, the engine's encodings.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the layout of SQLite's schema 5.
    "CREATE TABLE metrics (
        name TEXT PRIMARY KEY,
        sql TEXT NOT NULL,
        backfill BOOLEAN NOT NULL,
        generation BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        origin TEXT NOT NULL
    );
    CREATE TABLE positions (
        pipeline TEXT NOT NULL,
        partition BIGINT NOT NULL,
        epoch BIGINT NOT NULL,
        next_offset BIGINT NOT NULL,
        event_time BIGINT,
        log_epoch BIGINT NOT NULL DEFAULT 0,
        lost_offsets BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (pipeline, partition)
    );
    CREATE TABLE watermarks (
        metric TEXT NOT NULL,
        generation BIGINT NOT NULL,
        partition BIGINT NOT NULL,
        watermark BIGINT,
        PRIMARY KEY (metric, generation, partition)
    );
    CREATE TABLE partials (
        metric TEXT NOT NULL,
        generation BIGINT NOT NULL,
        partition BIGINT NOT NULL,
        tenant TEXT NOT NULL,
        window_start BIGINT NOT NULL,
        group_key BYTEA NOT NULL,
        window_end BIGINT NOT NULL,
        version BIGINT NOT NULL,
        state BYTEA NOT NULL,
        PRIMARY KEY (metric, generation, partition, tenant, window_start, group_key, window_end)
    );
    CREATE TABLE finals (
        metric TEXT NOT NULL,
        generation BIGINT NOT NULL,
        tenant TEXT NOT NULL,
        window_start BIGINT NOT NULL,
        group_key BYTEA NOT NULL,
        window_end BIGINT NOT NULL,
        version BIGINT NOT NULL,
        state BYTEA NOT NULL,
        PRIMARY KEY (metric, generation, tenant, window_start, group_key, window_end)
    );
    CREATE TABLE tenants (
        name TEXT PRIMARY KEY,
        created_at BIGINT NOT NULL,
        requests_per_second BIGINT,
        events_per_day BIGINT
    );
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        tenant TEXT,
        role TEXT NOT NULL,
        digest BYTEA NOT NULL UNIQUE,
        hint TEXT NOT NULL,
        label TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE INDEX api_keys_by_tenant ON api_keys (tenant);
    CREATE TABLE key_usage (
        key_id TEXT NOT NULL,
        day BIGINT NOT NULL,
        events BIGINT NOT NULL,
        PRIMARY KEY (key_id, day)
    );",
    // 2: final rows' group key and aggregate values decoded, as JSONB arrays, for the metrics'
    // views (`views.rs`); rows without them (from before) are found by the partial index, in
    // key order, and decoded at start.
    "ALTER TABLE finals ADD COLUMN keys JSONB, ADD COLUMN vals JSONB;
    CREATE INDEX finals_undecoded ON finals (metric, generation, tenant, window_start, group_key, window_end)
        WHERE vals IS NULL;",
    // 3: replays under way, so that every node runs its share and any can make it current:
    // one row per source partition.
    "CREATE TABLE replays (
        metric TEXT NOT NULL,
        generation BIGINT NOT NULL,
        from_time BIGINT,
        partition BIGINT NOT NULL,
        initial_offset BIGINT NOT NULL,
        target_offset BIGINT NOT NULL,
        PRIMARY KEY (metric, partition)
    );",
    // 4: the schema registry, as SQLite's schema 7. Registrations lock schema_ids, so that
    //    two nodes registering at once take turns.
    "CREATE TABLE schema_ids (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant TEXT NOT NULL,
        schema_type TEXT NOT NULL,
        digest TEXT NOT NULL,
        schema TEXT NOT NULL,
        UNIQUE (tenant, schema_type, digest)
    );
    CREATE TABLE schema_versions (
        tenant TEXT NOT NULL,
        subject TEXT NOT NULL,
        version BIGINT NOT NULL,
        id BIGINT NOT NULL,
        deleted BOOLEAN NOT NULL,
        PRIMARY KEY (tenant, subject, version)
    );
    CREATE TABLE schema_settings (
        tenant TEXT NOT NULL,
        subject TEXT NOT NULL,
        compatibility TEXT,
        validation TEXT,
        unknown_events TEXT,
        PRIMARY KEY (tenant, subject)
    );",
    // 5: the dashboard's saved boards, per tenant.
    "CREATE TABLE boards (
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (tenant, name)
    );",
    // 6: alerts, as SQLite's schema 9: rules (identity ids, never handed out twice), each
    //    rule's progress (deleted with its rule by the database), the notification outbox
    //    (read by state and due time for delivery, by creation time for the history) and
    //    silences.
    "CREATE TABLE alert_rules (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        metric TEXT NOT NULL,
        sql TEXT NOT NULL,
        channels TEXT NOT NULL,
        origin TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        UNIQUE (tenant, name)
    );
    CREATE TABLE alert_progress (
        rule_id BIGINT PRIMARY KEY REFERENCES alert_rules (id) ON DELETE CASCADE,
        cursor BIGINT NOT NULL,
        snapshot BYTEA NOT NULL
    );
    CREATE TABLE alert_outbox (
        id TEXT NOT NULL,
        channel TEXT NOT NULL,
        tenant TEXT NOT NULL,
        rule TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        payload TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        next_attempt BIGINT NOT NULL,
        state TEXT NOT NULL,
        last_error TEXT,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (id, channel)
    );
    CREATE INDEX alert_outbox_due ON alert_outbox (state, next_attempt);
    CREATE INDEX alert_outbox_by_created ON alert_outbox (created_at);
    CREATE TABLE alert_silences (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        rule TEXT,
        key TEXT,
        from_ms BIGINT NOT NULL,
        to_ms BIGINT NOT NULL,
        comment TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );",
    // 7: erased users, as SQLite's schema 10.
    "CREATE TABLE erasures (
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        erased_at BIGINT NOT NULL,
        PRIMARY KEY (tenant, id)
    );",
    // 8: derived streams' committed ranges, as SQLite's schema 11.
    "CREATE TABLE stream_ranges (
        stream TEXT NOT NULL,
        partition BIGINT NOT NULL,
        start BIGINT NOT NULL,
        \"end\" BIGINT NOT NULL,
        PRIMARY KEY (stream, partition, start)
    );",
    // 9: the note of a pipeline partition's last commit, as SQLite's schema 12.
    "ALTER TABLE positions ADD COLUMN note BYTEA;",
];

/// The schema version this sluice writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the schema the connection's `search_path` names up to [`VERSION`].
pub(crate) async fn migrate(client: &mut Client, location: &str) -> Result<(), StoreError> {
    let failed = |error| pg_error(location, error);
    let tx = client.transaction().await.map_err(failed)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(failed)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS sluice_schema (version BIGINT NOT NULL)")
        .await
        .map_err(failed)?;
    let found: i64 = tx
        .query_opt("SELECT version FROM sluice_schema", &[])
        .await
        .map_err(failed)?
        .map_or(0, |row| row.get(0));
    if found > VERSION {
        return Err(StoreError::NewerSchema {
            path: location.into(),
            found,
            supported: VERSION,
        });
    }
    for migration in MIGRATIONS.iter().skip(found as usize) {
        tx.batch_execute(migration).await.map_err(failed)?;
    }
    if found < VERSION {
        tx.execute("DELETE FROM sluice_schema", &[])
            .await
            .map_err(failed)?;
        tx.execute(
            "INSERT INTO sluice_schema (version) VALUES ($1)",
            &[&VERSION],
        )
        .await
        .map_err(failed)?;
        tracing::info!(store = location, version = VERSION, "store schema migrated");
    }
    tx.commit().await.map_err(failed)
}
