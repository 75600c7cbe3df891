//! The store's schema, versioned with SQLite's `user_version`: each migration runs once, in
//! order, in one transaction; a file from a newer sluice is refused rather than misread.
//!
//! After migrating, the file's schema must be exactly the one the migrations make in an empty
//! database ([`verify`]), and the pages of every table but the (large) partials must pass
//! SQLite's `quick_check`: damage is reported
//! at open as one clear [`StoreError::Corrupt`] naming the file, whatever bytes it hit, instead
//! of surfacing later as "no such column" from whichever query reads the garbled part.

use super::classify;
use crate::error::StoreError;
use rusqlite::Connection;
use std::path::Path;
use std::sync::OnceLock;

/// Migrations in order; `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: metric definitions, pipeline positions, watermarks, partial aggregates. Partials are
    //    clustered by (metric, generation, partition) so a restart reads its partition's rows
    //    in one sequential range; reads by tenant and time go through partials_by_tenant.
    "CREATE TABLE metrics (
        name TEXT PRIMARY KEY,
        sql TEXT NOT NULL,
        backfill INTEGER NOT NULL,
        generation INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        origin TEXT NOT NULL
    ) STRICT;
    CREATE TABLE positions (
        pipeline TEXT NOT NULL,
        partition INTEGER NOT NULL,
        epoch INTEGER NOT NULL,
        next_offset INTEGER NOT NULL,
        event_time INTEGER,
        PRIMARY KEY (pipeline, partition)
    ) STRICT;
    CREATE TABLE watermarks (
        metric TEXT NOT NULL,
        generation INTEGER NOT NULL,
        partition INTEGER NOT NULL,
        watermark INTEGER,
        PRIMARY KEY (metric, generation, partition)
    ) STRICT;
    CREATE TABLE partials (
        metric TEXT NOT NULL,
        generation INTEGER NOT NULL,
        tenant TEXT NOT NULL,
        window_start INTEGER NOT NULL,
        group_key BLOB NOT NULL,
        window_end INTEGER NOT NULL,
        partition INTEGER NOT NULL,
        version INTEGER NOT NULL,
        state BLOB NOT NULL,
        PRIMARY KEY (metric, generation, partition, tenant, window_start, group_key, window_end)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX partials_by_tenant ON partials (metric, generation, tenant, window_start);",
    // 2: tenants and keys created through the admin API (secrets kept as SHA-256 digests),
    // each key's events per UTC day (the daily quota across restarts), and partials by window
    // end (queries read the windows that became final since their last read).
    "CREATE INDEX partials_by_end ON partials (metric, generation, tenant, window_end);
    CREATE TABLE tenants (
        name TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        requests_per_second INTEGER,
        events_per_day INTEGER
    ) STRICT;
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        tenant TEXT,
        role TEXT NOT NULL,
        digest BLOB NOT NULL UNIQUE,
        hint TEXT NOT NULL,
        label TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX api_keys_by_tenant ON api_keys (tenant);
    CREATE TABLE key_usage (
        key_id TEXT NOT NULL,
        day INTEGER NOT NULL,
        events INTEGER NOT NULL,
        PRIMARY KEY (key_id, day)
    ) STRICT;",
    // 3: each position's log epoch (the source partition's epoch its offset belongs to: a
    //    repair that cut the log's tail starts a new epoch, and a position of an older epoch
    //    beyond that start is rewound), and how many counted offsets such rewinds gave up.
    //    Positions from older files are of epoch 0, the epoch every partition begins with.
    "ALTER TABLE positions ADD COLUMN log_epoch INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE positions ADD COLUMN lost_offsets INTEGER NOT NULL DEFAULT 0;",
    // 4: final rows, one per (tenant, group key, window) whatever the partition count: each
    //    partition merges its state of a window into it as it closes the window, and
    //    `partials` keeps only windows some partition has open. Written as windows close
    //    (roughly in start order) and read in ranges of one tenant's starts, it has no index
    //    beside its primary key. Open rows are read by end (live state) or by partition
    //    (restarts), so their index by start goes. Closed rows a file already has move over
    //    when their metric's pipelines start (`settle`), which needs the engine to merge.
    "CREATE TABLE finals (
        metric TEXT NOT NULL,
        generation INTEGER NOT NULL,
        tenant TEXT NOT NULL,
        window_start INTEGER NOT NULL,
        group_key BLOB NOT NULL,
        window_end INTEGER NOT NULL,
        version INTEGER NOT NULL,
        state BLOB NOT NULL,
        PRIMARY KEY (metric, generation, tenant, window_start, group_key, window_end)
    ) STRICT, WITHOUT ROWID;
    DROP INDEX partials_by_tenant;",
    // 5: open rows lose their index by end. Every write of an open row then changes one
    //    B-tree instead of two, and reads of a tenant's open rows seek once per partition in
    //    the table's own key (metric, generation, partition, tenant, start, …) instead of
    //    looking every row up by key from the index. The partitions to seek are those with a
    //    watermark row: commits write one beside their open rows, and a file from an earlier
    //    sluice gets one (no watermark yet) for any partition that has open rows without.
    "DROP INDEX partials_by_end;
    INSERT OR IGNORE INTO watermarks (metric, generation, partition, watermark)
        SELECT DISTINCT metric, generation, partition, NULL FROM partials;",
    // 6: replays under way, so that every node of a cluster runs its share and a restart
    //    resumes them: one row per source partition.
    "CREATE TABLE replays (
        metric TEXT NOT NULL,
        generation INTEGER NOT NULL,
        from_time INTEGER,
        partition INTEGER NOT NULL,
        initial_offset INTEGER NOT NULL,
        target_offset INTEGER NOT NULL,
        PRIMARY KEY (metric, partition)
    ) STRICT;",
    // 7: the schema registry. A schema's id belongs to its (tenant, type, text) for good, found by the text's SHA-256
    //    (AUTOINCREMENT never hands out an id twice); versions name the id they hold;
    //    settings are per tenant (subject '') or subject.
    "CREATE TABLE schema_ids (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        schema_type TEXT NOT NULL,
        digest TEXT NOT NULL,
        schema TEXT NOT NULL,
        UNIQUE (tenant, schema_type, digest)
    ) STRICT;
    CREATE TABLE schema_versions (
        tenant TEXT NOT NULL,
        subject TEXT NOT NULL,
        version INTEGER NOT NULL,
        id INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        PRIMARY KEY (tenant, subject, version)
    ) STRICT;
    CREATE TABLE schema_settings (
        tenant TEXT NOT NULL,
        subject TEXT NOT NULL,
        compatibility TEXT,
        validation TEXT,
        unknown_events TEXT,
        PRIMARY KEY (tenant, subject)
    ) STRICT;",
    // 8: the dashboard's saved boards, per tenant.
    "CREATE TABLE boards (
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (tenant, name)
    ) STRICT;",
    // 9: alerts (issue 19). Rules, with ids AUTOINCREMENT never hands out twice (a replaced
    //    rule's notification ids never collide with its new version's) and their channels as
    //    a JSON array's text; each rule's progress (how far it read its metric, its
    //    evaluator's snapshot), which goes with its rule (deletes delete it: the store leaves
    //    SQLite's foreign keys off); the notification outbox, one row per notification and
    //    channel, read by state and due time for delivery and by creation time for the
    //    history; silences.
    "CREATE TABLE alert_rules (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        metric TEXT NOT NULL,
        sql TEXT NOT NULL,
        channels TEXT NOT NULL,
        origin TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (tenant, name)
    ) STRICT;
    CREATE TABLE alert_progress (
        rule_id INTEGER PRIMARY KEY REFERENCES alert_rules (id) ON DELETE CASCADE,
        cursor INTEGER NOT NULL,
        snapshot BLOB NOT NULL
    ) STRICT;
    CREATE TABLE alert_outbox (
        id TEXT NOT NULL,
        channel TEXT NOT NULL,
        tenant TEXT NOT NULL,
        rule TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        payload TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt INTEGER NOT NULL,
        state TEXT NOT NULL,
        last_error TEXT,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (id, channel)
    ) STRICT;
    CREATE INDEX alert_outbox_due ON alert_outbox (state, next_attempt);
    CREATE INDEX alert_outbox_by_created ON alert_outbox (created_at);
    CREATE TABLE alert_silences (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        rule TEXT,
        key TEXT,
        from_ms INTEGER NOT NULL,
        to_ms INTEGER NOT NULL,
        comment TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;",
    // 10: erased users (issue 20): ids whose future events the collector drops, per tenant.
    "CREATE TABLE erasures (
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        erased_at INTEGER NOT NULL,
        PRIMARY KEY (tenant, id)
    ) STRICT;",
    // 11: derived streams' committed ranges (issue 20): the offsets of a stream's partition
    // that readers may read, added by its writers' commits.
    "CREATE TABLE stream_ranges (
        stream TEXT NOT NULL,
        partition INTEGER NOT NULL,
        start INTEGER NOT NULL,
        \"end\" INTEGER NOT NULL,
        PRIMARY KEY (stream, partition, start)
    ) STRICT, WITHOUT ROWID;",
    // 12: a note kept with each pipeline partition's position by its last commit (issue 21:
    // the archive's files to publish after a crash).
    "ALTER TABLE positions ADD COLUMN note BLOB;",
];

/// The schema version this sluice writes.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the schema of `connection` up to [`VERSION`].
pub(crate) fn migrate(path: &Path, connection: &Connection) -> Result<(), StoreError> {
    let found: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| classify(path, e))?;
    if found > VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found,
            supported: VERSION,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let next = index as i64 + 1;
        connection
            .execute_batch(&format!(
                "BEGIN IMMEDIATE; {migration}; PRAGMA user_version = {next}; COMMIT;"
            ))
            .map_err(|e| classify(path, e))?;
        tracing::info!(path = %path.display(), version = next, "store schema migrated");
    }
    Ok(())
}

/// One entry of `sqlite_schema`: type, name, table and SQL text.
type SchemaEntry = (String, String, String, Option<String>);

fn schema_of(connection: &Connection) -> rusqlite::Result<Vec<SchemaEntry>> {
    // SQLite's own statistics tables come and go with ANALYZE; they are not part of the schema.
    let mut statement = connection.prepare(
        "SELECT type, name, tbl_name, sql FROM sqlite_schema \
         WHERE name NOT LIKE 'sqlite_stat%' ORDER BY type, name",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
    })?;
    rows.collect()
}

/// The schema [`MIGRATIONS`] make, built once in an in-memory database.
fn reference_schema() -> &'static [SchemaEntry] {
    static SCHEMA: OnceLock<Vec<SchemaEntry>> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let connection = Connection::open_in_memory().expect("an in-memory database opens");
        for migration in MIGRATIONS {
            connection
                .execute_batch(migration)
                .expect("the migrations apply to an empty database");
        }
        schema_of(&connection).expect("the in-memory schema reads")
    })
}

/// Checks a migrated file: its schema is exactly the migrations' and its pages are sound.
pub(crate) fn verify(path: &Path, connection: &Connection) -> Result<(), StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.to_owned(),
        detail,
    };
    let found = schema_of(connection).map_err(|e| classify(path, e))?;
    let expected = reference_schema();
    if let Some(difference) = schema_difference(expected, &found) {
        return Err(corrupt(format!(
            "its schema is not the one sluice writes: {difference}"
        )));
    }
    // Every table but `partials` and `finals` is small: check its pages (and its indexes')
    // now. Those two can be gigabytes, which `quick_check` reads at about 350 MB/s — seconds added to every
    // start. Its pages are checked as they are read instead: SQLite reports a damaged page as
    // corrupt (classified as `Corrupt`, stopping only the pipeline partition that reads it),
    // and each stored state carries its own checksum.
    for (kind, table, _, _) in expected {
        if kind != "table" || table == "partials" || table == "finals" {
            continue;
        }
        let problems: Vec<String> = {
            let mut statement = connection
                .prepare(&format!("PRAGMA quick_check({table})"))
                .map_err(|e| classify(path, e))?;
            let rows = statement
                .query_map([], |row| row.get::<_, String>(0))
                .map_err(|e| classify(path, e))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|e| classify(path, e))?
        };
        if problems.as_slice() != ["ok"] {
            let shown: Vec<&str> = problems.iter().take(5).map(String::as_str).collect();
            return Err(corrupt(format!(
                "SQLite's check of table {table} found: {}",
                shown.join("; ")
            )));
        }
    }
    Ok(())
}

/// The first difference between two schemas, in words.
fn schema_difference(expected: &[SchemaEntry], found: &[SchemaEntry]) -> Option<String> {
    let describe = |(kind, name, _, _): &SchemaEntry| format!("{kind} {name}");
    for entry in expected {
        match found
            .iter()
            .find(|other| other.0 == entry.0 && other.1 == entry.1)
        {
            None => return Some(format!("{} is missing", describe(entry))),
            Some(other) if other != entry => {
                return Some(format!(
                    "{} is defined as {:?}, expected {:?}",
                    describe(entry),
                    other.3.as_deref().unwrap_or(""),
                    entry.3.as_deref().unwrap_or("")
                ));
            }
            Some(_) => {}
        }
    }
    // Entries sluice did not write (an operator's own view, say) are not damage: a garbled
    // name shows up as a missing entry above.
    None
}
