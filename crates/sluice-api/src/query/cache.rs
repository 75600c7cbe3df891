//! The cache of final windows, per (metric, tenant): every window of the current generation
//! that starts within `api.cache-horizon` and can no longer change, merged across partitions,
//! with hour and day roll-ups and every point already rendered.
//!
//! A window is *final* once every partition's committed watermark has passed its end plus
//! the allowed lateness (partitions that never saw an event do not count): from then on each
//! partition's final state of it is in the store, and nothing changes it. The lowest of those
//! watermarks is the cache's *frontier*; advancing it reads from the store only the rows of
//! windows that became final since, once per `api.live-max-age` at most. The frontier only
//! moves forward; if the committed watermarks ever fall below it (a partition's first event),
//! the cache is rebuilt, so a window is reported final only while it truly is.

use crate::query::cells::Cell;
use crate::query::cells::{KeySeries, Merged, close_of};
use crate::query::live::LiveSnapshot;
use sluice_core::time::Millis;
use sluice_stream::plan::MetricPlan;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Instant;

/// The final windows of one tenant's metric.
#[derive(Debug)]
pub(crate) struct Series {
    /// Windows closing at or before this are final, and here if they start at or after
    /// `horizon`.
    pub(crate) frontier: Millis,
    /// The earliest window start held.
    pub(crate) horizon: Millis,
    /// Per encoded group key.
    pub(crate) keys: BTreeMap<Box<[u8]>, KeySeries>,
    /// Windows held.
    pub(crate) windows: usize,
}

impl Series {
    pub(crate) fn new(horizon: Millis) -> Series {
        Series {
            frontier: Millis::MIN,
            horizon,
            keys: BTreeMap::new(),
            windows: 0,
        }
    }

    /// Adds windows that became final up to `frontier`; returns how many were new.
    pub(crate) fn add(
        &mut self,
        plan: &MetricPlan,
        levels: &[Millis],
        merged: Merged,
        frontier: Millis,
    ) -> usize {
        let mut added = 0;
        for (bytes, windows) in merged {
            for ((start, end), (key, state)) in windows {
                if start < self.horizon || close_of(plan, end) > frontier {
                    continue;
                }
                let series = self
                    .keys
                    .entry(bytes.clone())
                    .or_insert_with(|| KeySeries::new(plan, key, levels));
                if series.insert(start, end, Cell::new(plan, start, end, true, state)) {
                    added += 1;
                }
            }
        }
        self.windows += added;
        self.frontier = self.frontier.max(frontier);
        added
    }

    /// Moves the horizon forward, dropping older windows; returns how many went.
    pub(crate) fn prune(&mut self, horizon: Millis) -> usize {
        if horizon <= self.horizon {
            return 0;
        }
        self.horizon = horizon;
        let mut dropped = 0;
        self.keys.retain(|_, series| {
            dropped += series.prune(horizon);
            !series.cells.is_empty()
        });
        self.windows -= dropped;
        dropped
    }
}

/// One tenant's metric, as served: final windows, the latest live snapshot, and the locks
/// that make one refresh serve every concurrent reader.
#[derive(Debug)]
pub(crate) struct TenantCache {
    pub(crate) metric: String,
    pub(crate) tenant: String,
    pub(crate) plan: Arc<MetricPlan>,
    pub(crate) generation: u32,
    pub(crate) levels: Vec<Millis>,
    pub(crate) series: parking_lot::RwLock<Series>,
    /// Held while the frontier is advanced; holds when it was last checked.
    pub(crate) advancing: tokio::sync::Mutex<Option<Instant>>,
    /// Held while the live snapshot is refreshed.
    pub(crate) refreshing: tokio::sync::Mutex<()>,
    pub(crate) snapshot: parking_lot::RwLock<Option<Arc<LiveSnapshot>>>,
    /// When it was last read (ms since the serving layer started), for eviction.
    pub(crate) last_used: AtomicI64,
    /// Windows accounted to the global budget.
    pub(crate) accounted: AtomicUsize,
}

impl TenantCache {
    pub(crate) fn new(
        metric: &str,
        tenant: &str,
        plan: Arc<MetricPlan>,
        generation: u32,
        horizon: Millis,
    ) -> TenantCache {
        TenantCache {
            metric: metric.to_owned(),
            tenant: tenant.to_owned(),
            levels: crate::query::cells::levels(&plan),
            plan,
            generation,
            series: parking_lot::RwLock::new(Series::new(horizon)),
            advancing: tokio::sync::Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            snapshot: parking_lot::RwLock::new(None),
            last_used: AtomicI64::new(0),
            accounted: AtomicUsize::new(0),
        }
    }

    pub(crate) fn touch(&self, now: i64) {
        self.last_used.store(now, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::cells::merge_rows;
    use sluice_store::StoredRow;
    use sluice_stream::agg::{AggState, PartialState};
    use sluice_stream::keys::encode_text;
    use sluice_stream::sql::{MetricDefaults, parse_metric};

    fn plan() -> MetricPlan {
        parse_metric(
            "CREATE METRIC m AS SELECT COUNT(*) AS n FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            &MetricDefaults {
                out_of_orderness: 0,
                allowed_lateness: 0,
                late: sluice_stream::plan::LatePolicy::Drop,
            },
        )
        .unwrap()
    }

    fn row(partition: u32, start: Millis, count: u64) -> StoredRow {
        let mut key = Vec::new();
        encode_text(b"shop", &mut key);
        StoredRow {
            partition: Some(partition),
            tenant: "shop".into(),
            key,
            window_start: start,
            window_end: start + 60_000,
            version: 1,
            state: PartialState {
                states: vec![AggState::Count(count)],
            }
            .encode(),
        }
    }

    #[test]
    fn final_windows_merge_partitions_roll_up_and_prune() {
        let plan = plan();
        let levels = crate::query::cells::levels(&plan);
        assert_eq!(levels, [3_600_000, 86_400_000]);
        let mut series = Series::new(0);
        let rows: Vec<StoredRow> = (0..120)
            .flat_map(|minute| [row(0, minute * 60_000, 1), row(1, minute * 60_000, 2)])
            .collect();
        let merged = merge_rows(&plan, &rows).unwrap();
        // Only windows closing by the frontier enter.
        assert_eq!(series.add(&plan, &levels, merged.clone(), 90 * 60_000), 90);
        let key = series.keys.values().next().unwrap();
        assert_eq!(&*key.cells[&(0, 60_000)].rendered, "[0,60000,true,3]");
        let hours = &key.rollups[0].1;
        assert_eq!(hours[&0].state.states[0], AggState::Count(180));
        assert_eq!(hours[&3_600_000].state.states[0], AggState::Count(90));
        // Re-adding what is there changes nothing; the rest arrives with the frontier.
        assert_eq!(series.add(&plan, &levels, merged, 120 * 60_000), 30);
        let key = series.keys.values().next().unwrap();
        assert_eq!(
            key.rollups[0].1[&3_600_000].state.states[0],
            AggState::Count(180)
        );
        assert_eq!(series.windows, 120);
        assert_eq!(series.prune(3_600_000), 60);
        assert_eq!(series.windows, 60);
        assert_eq!(series.keys.values().next().unwrap().rollups[0].1.len(), 1);
    }
}
