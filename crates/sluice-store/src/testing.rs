//! Values for tests of the store and its backends (feature `testing`; not in the production
//! build).

use crate::model::{Commit, MetricCommit, MetricRecord, Origin, StoredRow};
use sluice_core::time::Millis;

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

/// A one-minute window's row of tenant `tenant` with a one-byte key and state, from partition 0.
pub fn row(tenant: &str, key: u8, start: Millis, state: u8) -> StoredRow {
    StoredRow {
        partition: 0,
        tenant: tenant.into(),
        key: vec![key],
        window_start: start,
        window_end: start + 60_000,
        version: 1,
        state: vec![state],
    }
}

/// A checkpoint of metric `views` generation 0 at `offset`, changing `rows`.
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
            changed: rows.iter().map(StoredRow::as_changed).collect(),
        }],
    }
}
