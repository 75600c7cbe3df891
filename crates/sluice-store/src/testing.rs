//! Values for tests of the store and its backends (feature `testing`; not in the production
//! build).

use crate::model::{Commit, MetricCommit, MetricRecord, Origin, StoredRow};
use sluice_core::time::Millis;
use sluice_stream::agg::{AggState, PartialState};

/// A metric definition named `name` (made through the API, generation 0).
pub fn metric(name: &str) -> MetricRecord {
    MetricRecord {
        name: name.into(),
        sql: format!("CREATE METRIC {name} AS …"),
        backfill: false,
        generation: 0,
        created_at: 1,
        origin: Origin::Api,
    }
}

/// The engine's encoding of a state counting `n` events (states of final rows are merged, so
/// they must be real ones).
pub fn count(n: u64) -> Vec<u8> {
    PartialState {
        states: vec![AggState::Count(n)],
    }
    .encode()
}

/// The count a state made by [`count`] holds.
pub fn count_in(state: &[u8]) -> u64 {
    match PartialState::decode(state, None).unwrap().states.as_slice() {
        [AggState::Count(n)] => *n,
        other => panic!("not a count: {other:?}"),
    }
}

/// A one-minute window's open row of tenant `tenant` with a one-byte key, counting `n`, from
/// partition 0.
pub fn row(tenant: &str, key: u8, start: Millis, n: u8) -> StoredRow {
    StoredRow {
        partition: Some(0),
        tenant: tenant.into(),
        key: vec![key],
        window_start: start,
        window_end: start + 60_000,
        version: 1,
        state: count(u64::from(n)),
    }
}

/// `row` as a final row.
pub fn final_row(row: StoredRow) -> StoredRow {
    StoredRow {
        partition: None,
        ..row
    }
}

/// A checkpoint of metric `views` generation 0 at `offset` (its watermark too), changing the
/// open rows `rows`.
pub fn commit_of(offset: u64, rows: Vec<StoredRow>) -> Commit {
    Commit {
        offset,
        event_time: Some(offset as Millis),
        log_epoch: 0,
        metrics: vec![MetricCommit {
            metric: "views".into(),
            generation: 0,
            watermark: Some(offset as Millis),
            retracted: vec![],
            closed: Default::default(),
            changed: rows.iter().map(StoredRow::as_changed).collect(),
        }],
        output: Vec::new(),
        note: None,
    }
}

/// Like [`commit_of`], closing the windows of `rows` with their states.
pub fn closing_of(offset: u64, rows: Vec<StoredRow>) -> Commit {
    let mut commit = commit_of(offset, vec![]);
    commit.metrics[0].closed = rows.iter().map(StoredRow::as_changed).collect();
    commit
}

/// The variable naming the PostgreSQL database tests use (`scripts/postgres.sh` prints a URL
/// for it; `scripts/test.sh` sets it).
pub const POSTGRES_URL_VARIABLE: &str = "SLUICE_TEST_POSTGRES";

/// A URL of the database [`POSTGRES_URL_VARIABLE`] names whose `search_path` is a fresh
/// schema of its own, `test_{name}` (dropped first if an earlier run left it). Panics, naming
/// what to run, when the variable is missing or the server is unreachable: these tests never
/// skip.
pub async fn postgres_url(name: &str) -> String {
    let url = std::env::var(POSTGRES_URL_VARIABLE).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_URL_VARIABLE} is not set: run `export {POSTGRES_URL_VARIABLE}=$(scripts/postgres.sh)` (or scripts/test.sh, which does)"
        )
    });
    let schema = format!("test_{name}");
    let config: tokio_postgres::Config = url
        .parse()
        .unwrap_or_else(|error| panic!("{POSTGRES_URL_VARIABLE}={url}: {error}"));
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("cannot reach PostgreSQL at {url}: {error}"));
    let connection = tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
        ))
        .await
        .unwrap_or_else(|error| panic!("making schema {schema} at {url}: {error}"));
    drop(client);
    let _ = connection.await;
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-csearch_path%3D{schema}")
}

/// A PostgreSQL store in a fresh schema of its own ([`postgres_url`]).
pub async fn postgres_store(name: &str) -> crate::PostgresStore {
    let url = postgres_url(name).await;
    crate::PostgresStore::connect(&url)
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}
