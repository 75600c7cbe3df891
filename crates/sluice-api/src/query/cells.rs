//! Windows merged across partitions, per group key: the unit every read is built from. A
//! [`Cell`] holds one window's merged partial state, its finalized values and its point
//! already rendered as JSON; a [`KeySeries`] holds one group key's cells in time order and,
//! for the cache, hour and day roll-ups of them.

use sluice_core::time::Millis;
use sluice_store::StoredRow;
use sluice_stream::agg::{OutputValue, PartialState};
use sluice_stream::keys::GroupKey;
use sluice_stream::plan::{AggregateKind, MetricPlan, WindowSpec};
use sluice_stream::render;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::{Arc, OnceLock};

/// One hour and one day, the roll-up levels.
pub(crate) const LEVELS: [Millis; 2] = [3_600_000, 86_400_000];

/// One window of one group key, merged across partitions.
#[derive(Debug, Clone)]
pub(crate) struct Cell {
    /// The merged state.
    pub(crate) state: PartialState,
    /// Its values.
    pub(crate) values: Box<[OutputValue]>,
    /// `[start,end,final,values…]`.
    pub(crate) rendered: Box<str>,
}

impl Cell {
    pub(crate) fn new(
        plan: &MetricPlan,
        start: Millis,
        end: Millis,
        is_final: bool,
        state: PartialState,
    ) -> Cell {
        let values: Box<[OutputValue]> = state
            .finalize(plan.aggregates.iter().map(|a| &a.kind))
            .into_boxed_slice();
        let rendered = render::point(start, end, is_final, &values).into_boxed_str();
        Cell {
            state,
            values,
            rendered,
        }
    }
}

/// A roll-up bucket: the merge of the cached final windows that start in it.
#[derive(Debug)]
pub(crate) struct Rollup {
    pub(crate) state: PartialState,
    /// Rendered once the bucket is complete (every window in it final).
    pub(crate) rendered: OnceLock<(Box<[OutputValue]>, Box<str>)>,
}

/// One group key's windows.
#[derive(Debug)]
pub(crate) struct KeySeries {
    pub(crate) key: Arc<GroupKey>,
    /// `{"name":value,…}`.
    pub(crate) json: Arc<str>,
    /// Windows by (start, end).
    pub(crate) cells: BTreeMap<(Millis, Millis), Cell>,
    /// Per roll-up level the metric has, buckets by start.
    pub(crate) rollups: Vec<(Millis, BTreeMap<Millis, Rollup>)>,
}

impl KeySeries {
    pub(crate) fn new(plan: &MetricPlan, key: Arc<GroupKey>, levels: &[Millis]) -> KeySeries {
        KeySeries {
            json: Arc::from(render::key_object(plan, &key)),
            key,
            cells: BTreeMap::new(),
            rollups: levels
                .iter()
                .map(|&level| (level, BTreeMap::new()))
                .collect(),
        }
    }

    /// Adds a window; roll-ups accumulate it. A window present already is left as it is.
    pub(crate) fn insert(&mut self, start: Millis, end: Millis, cell: Cell) -> bool {
        match self.cells.entry((start, end)) {
            Entry::Occupied(_) => false,
            Entry::Vacant(slot) => {
                for (level, buckets) in &mut self.rollups {
                    let bucket = start - start.rem_euclid(*level);
                    match buckets.entry(bucket) {
                        Entry::Occupied(mut rollup) => {
                            // States of one metric always merge; a failure would mean a bug.
                            let _ = rollup.get_mut().state.merge(&cell.state);
                        }
                        Entry::Vacant(rollup) => {
                            rollup.insert(Rollup {
                                state: cell.state.clone(),
                                rendered: OnceLock::new(),
                            });
                        }
                    }
                }
                slot.insert(cell);
                true
            }
        }
    }

    /// Drops windows starting before `start` (and roll-ups of buckets before it); returns
    /// how many windows went.
    pub(crate) fn prune(&mut self, start: Millis) -> usize {
        let kept = self.cells.split_off(&(start, Millis::MIN));
        let dropped = std::mem::replace(&mut self.cells, kept).len();
        for (_, buckets) in &mut self.rollups {
            let kept = buckets.split_off(&start);
            *buckets = kept;
        }
        dropped
    }
}

/// Roll-up levels that fit the metric: those its tumbling windows divide; sessions are
/// bucketed by start at any level; hopping windows overlap and never roll up.
pub(crate) fn levels(plan: &MetricPlan) -> Vec<Millis> {
    match plan.window {
        WindowSpec::Tumble { size } => LEVELS
            .into_iter()
            .filter(|level| level % size == 0 && *level > size)
            .collect(),
        WindowSpec::Session { .. } => LEVELS.to_vec(),
        WindowSpec::Hop { .. } => Vec::new(),
    }
}

/// The earliest start of a window of `plan` ending after `end`: reads of windows by their
/// end bound the start too, so the store finds them by start (final rows have no index by
/// end). A session may have started any time before.
pub(crate) fn starts_after(plan: &MetricPlan, end: Millis) -> Millis {
    match plan.window {
        WindowSpec::Tumble { size } | WindowSpec::Hop { size, .. } => {
            end.saturating_sub(size).saturating_add(1)
        }
        WindowSpec::Session { .. } => Millis::MIN,
    }
}

/// When a window ending at `end` can no longer change: its end plus the allowed lateness.
pub(crate) fn close_of(plan: &MetricPlan, end: Millis) -> Millis {
    end.saturating_add(plan.allowed_lateness)
}

/// When every window starting before `bucket_end` can no longer change, and no new one can
/// start there.
pub(crate) fn bucket_close(plan: &MetricPlan, bucket_end: Millis) -> Millis {
    let extra = match plan.window {
        WindowSpec::Tumble { .. } => 0,
        WindowSpec::Hop { slide, size } => size - slide,
        WindowSpec::Session { gap } => gap,
    };
    bucket_end
        .saturating_add(extra)
        .saturating_add(plan.allowed_lateness)
}

/// States merged across partitions: per encoded group key, per (start, end).
pub(crate) type Merged =
    BTreeMap<Box<[u8]>, BTreeMap<(Millis, Millis), (Arc<GroupKey>, PartialState)>>;

/// Merges stored rows of every partition into one state per group key and window.
pub(crate) fn merge_rows(plan: &MetricPlan, rows: &[StoredRow]) -> Result<Merged, String> {
    let kinds: Vec<AggregateKind> = plan.aggregates.iter().map(|a| a.kind).collect();
    let mut merged = Merged::new();
    for row in rows {
        let state = PartialState::decode(&row.state, Some(&kinds)).map_err(|e| e.to_string())?;
        // A key's bytes are copied and decoded once, at its first row.
        if !merged.contains_key(row.key.as_slice()) {
            merged.insert(row.key.clone().into_boxed_slice(), BTreeMap::new());
        }
        let windows = merged
            .get_mut(row.key.as_slice())
            .expect("the key was just added");
        let key = match windows.values().next() {
            Some((key, _)) => Arc::clone(key),
            None => Arc::new(GroupKey::from_bytes(&row.key).map_err(|e| e.to_string())?),
        };
        match windows.entry((row.window_start, row.window_end)) {
            Entry::Occupied(mut slot) => slot
                .get_mut()
                .1
                .merge(&state)
                .map_err(|error| error.to_string())?,
            Entry::Vacant(slot) => {
                slot.insert((key, state));
            }
        }
    }
    Ok(merged)
}

/// Builds key series from merged states, marking each window final when `is_final(end)`.
pub(crate) fn series_of(
    plan: &MetricPlan,
    merged: Merged,
    is_final: impl Fn(Millis) -> bool,
) -> BTreeMap<Box<[u8]>, KeySeries> {
    merged
        .into_iter()
        .filter_map(|(bytes, windows)| {
            let key = windows.values().next()?.0.clone();
            let mut series = KeySeries::new(plan, key, &[]);
            for ((start, end), (_, state)) in windows {
                series.insert(
                    start,
                    end,
                    Cell::new(plan, start, end, is_final(end), state),
                );
            }
            Some((bytes, series))
        })
        .collect()
}
