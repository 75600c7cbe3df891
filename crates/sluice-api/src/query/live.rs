//! Live snapshots: one tenant's windows that are not final yet, as of a moment, merged across
//! partitions.
//!
//! A snapshot is built from two reads, in this order: each partition's state the store does
//! not have yet (open windows, windows closed and session bounds retracted since its last
//! checkpoint: `Pipelines::live_windows`), then, in one snapshot of the store, the stored rows
//! of windows closing after the cache's frontier with each partition's committed watermark.
//! Laid over each other per partition — the partition's open rows, minus retracted ones,
//! replaced by its closed then open windows — beside the final rows, they are every event
//! processed when the first read answered.
//!
//! A commit between the two reads moves the windows the partition closed into the final rows:
//! a window its committed watermark has passed is in them already, so the engine's copy is
//! left out (counting it again would double it), whether the engine had it closed or still
//! open; the others are not, and the engine's copy stands for them. The engine's answer holds
//! every window of the partition that is not final (its stored open rows are all among its
//! open, closed or retracted windows), so a partition that answered is not read from its
//! stored open rows at all; one that did not (restarting) is represented by them.

use crate::query::cells::{KeySeries, Merged, close_of, series_of};
use sluice_core::time::Millis;
use sluice_pipelines::partial_row;
use sluice_store::RowsAndWatermarks;
use sluice_stream::agg::PartialState;
use sluice_stream::engine::output::LiveWindows;
use sluice_stream::keys::GroupKey;
use sluice_stream::plan::MetricPlan;
use sluice_stream::window::Window;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

/// One tenant's not-yet-final windows at one moment.
#[derive(Debug)]
pub(crate) struct LiveSnapshot {
    /// When the engine was read.
    pub(crate) taken: Instant,
    /// Per encoded group key, its windows (rendered with `final` false).
    pub(crate) keys: BTreeMap<Box<[u8]>, KeySeries>,
}

/// Builds a snapshot from the engine's answers and the stored rows and watermarks (read
/// after them, together) of windows closing after `frontier`.
///
/// Every part is merged as it comes, without a table of parts first: no window is met twice
/// within one partition. A final row or a stored open row is one row of its table's key; an
/// answering partition's closed windows have left its open ones (a window closes once, and
/// an event for it afterwards is late), and its stored open rows are not read at all.
pub(crate) fn build(
    plan: &MetricPlan,
    frontier: Millis,
    taken: Instant,
    stored: &RowsAndWatermarks,
    partitions: Vec<(u32, LiveWindows)>,
) -> Result<LiveSnapshot, String> {
    let answered: std::collections::HashSet<u32> = partitions.iter().map(|(p, _)| *p).collect();
    let mut merged = Merged::new();
    let mut add =
        |bytes: &[u8], window: (Millis, Millis), key: Arc<GroupKey>, state: PartialState| {
            if close_of(plan, window.1) <= frontier {
                return Ok(());
            }
            let cells = match merged.get_mut(bytes) {
                Some(cells) => cells,
                None => merged.entry(bytes.into()).or_default(),
            };
            match cells.entry(window) {
                std::collections::btree_map::Entry::Occupied(mut merged) => merged
                    .get_mut()
                    .1
                    .merge(&state)
                    .map_err(|error| error.to_string()),
                std::collections::btree_map::Entry::Vacant(empty) => {
                    empty.insert((key, state));
                    Ok(())
                }
            }
        };
    for row in &stored.rows {
        if row.partition.is_some_and(|p| answered.contains(&p)) {
            continue;
        }
        let partial = partial_row(row, plan)?;
        add(
            &row.key,
            (row.window_start, row.window_end),
            partial.key,
            partial.state,
        )?;
    }
    let committed: HashMap<u32, Millis> = stored
        .watermarks
        .iter()
        .filter_map(|&(partition, watermark)| Some((partition, watermark?)))
        .collect();
    for (partition, live) in partitions {
        // A window its committed watermark has closed is in the final rows already.
        let watermark = committed.get(&partition).copied();
        let not_final = |window: &Window| watermark.is_none_or(|w| close_of(plan, window.end) > w);
        let closed = live
            .closed
            .into_iter()
            .map(|row| (row.key, row.window, row.state));
        let open = live
            .open
            .into_iter()
            .map(|open| (open.key, open.window, open.state));
        for (key, window, state) in closed.chain(open) {
            if not_final(&window) {
                let bytes = Arc::clone(&key);
                add(bytes.as_bytes(), (window.start, window.end), key, state)?;
            }
        }
    }
    Ok(LiveSnapshot {
        taken,
        keys: series_of(plan, merged, |_| false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_store::StoredRow;
    use sluice_stream::agg::AggState;
    use sluice_stream::engine::output::{OpenWindow, PartialRow};
    use sluice_stream::keys::encode_text;
    use sluice_stream::sql::{MetricDefaults, parse_metric};
    use sluice_stream::window::Window;

    fn plan() -> MetricPlan {
        parse_metric(
            "CREATE METRIC m AS SELECT user_id, COUNT(*) AS n FROM events GROUP BY user_id, SESSION(timestamp, INTERVAL '10' SECOND)",
            &MetricDefaults {
                out_of_orderness: 0,
                allowed_lateness: 0,
                late: sluice_stream::plan::LatePolicy::Drop,
            },
        )
        .unwrap()
    }

    fn key(user: &str) -> Arc<GroupKey> {
        let mut bytes = Vec::new();
        encode_text(b"shop", &mut bytes);
        encode_text(user.as_bytes(), &mut bytes);
        Arc::new(GroupKey::from_bytes(&bytes).unwrap())
    }

    fn window(start: Millis, end: Millis) -> Window {
        Window { start, end }
    }

    fn count(n: u64) -> PartialState {
        PartialState {
            states: vec![AggState::Count(n)],
        }
    }

    fn stored(partition: Option<u32>, user: &str, start: Millis, end: Millis, n: u64) -> StoredRow {
        StoredRow {
            partition,
            tenant: "shop".into(),
            key: key(user).as_bytes().to_vec(),
            window_start: start,
            window_end: end,
            version: 0,
            state: count(n).encode(),
        }
    }

    #[test]
    fn the_engine_state_overrides_stored_rows_per_partition_then_partitions_merge() {
        let plan = plan();
        let rows = vec![
            // Partition 0 stored [0, 10000) and [20000, 30000) for u; the engine then merged
            // them into [0, 30000) (a retraction) which is still open.
            stored(Some(0), "u", 0, 10_000, 1),
            stored(Some(0), "u", 20_000, 30_000, 1),
            // Partition 1 committed a closed session and did not answer (restarting).
            stored(None, "u", 0, 30_000, 5),
            // Final by the frontier: left to the cache.
            stored(None, "v", 0, 5_000, 9),
        ];
        let live = LiveWindows {
            open: vec![OpenWindow {
                key: key("u"),
                window: window(0, 30_000),
                version: 0,
                fired: false,
                state: count(3),
            }],
            closed: vec![PartialRow {
                key: key("w"),
                window: window(40_000, 50_000),
                version: 1,
                state: count(2),
            }],
            retracted: vec![
                (key("u"), window(0, 10_000)),
                (key("u"), window(20_000, 30_000)),
            ],
            watermark: Some(45_000),
        };
        let stored = RowsAndWatermarks {
            rows,
            watermarks: vec![(0, Some(25_000))],
        };
        let snapshot = build(&plan, 6_000, Instant::now(), &stored, vec![(0, live)]).unwrap();
        assert_eq!(
            rendered(&snapshot),
            [
                r#"{"user_id":"u"}[0,30000,false,8]"#,
                r#"{"user_id":"w"}[40000,50000,false,2]"#,
            ]
        );
    }

    fn rendered(snapshot: &LiveSnapshot) -> Vec<String> {
        snapshot
            .keys
            .values()
            .flat_map(|series| {
                series
                    .cells
                    .values()
                    .map(|cell| format!("{}{}", series.json, cell.rendered))
            })
            .collect()
    }

    #[test]
    fn a_closed_window_committed_between_the_reads_counts_once() {
        let plan = plan();
        let closed = |n| LiveWindows {
            closed: vec![PartialRow {
                key: key("w"),
                window: window(40_000, 50_000),
                version: 1,
                state: count(n),
            }],
            ..LiveWindows::default()
        };
        // Partition 0 closed [40 000, 50 000) with 2 events; partition 1 closed it with 7
        // and committed. Partition 0's commit came before the store read, or did not.
        let committed = RowsAndWatermarks {
            rows: vec![stored(None, "w", 40_000, 50_000, 9)],
            watermarks: vec![(0, Some(50_000)), (1, Some(60_000))],
        };
        let snapshot = build(
            &plan,
            6_000,
            Instant::now(),
            &committed,
            vec![(0, closed(2))],
        );
        assert_eq!(
            rendered(&snapshot.unwrap()),
            [r#"{"user_id":"w"}[40000,50000,false,9]"#],
            "in the final row already: counted once"
        );
        let pending = RowsAndWatermarks {
            rows: vec![stored(None, "w", 40_000, 50_000, 7)],
            watermarks: vec![(0, Some(45_000)), (1, Some(60_000))],
        };
        let snapshot = build(&plan, 6_000, Instant::now(), &pending, vec![(0, closed(2))]);
        assert_eq!(
            rendered(&snapshot.unwrap()),
            [r#"{"user_id":"w"}[40000,50000,false,9]"#],
            "not committed yet: the engine's copy counts"
        );
        // Still open when the engine answered, closed and committed before the store read.
        let open = LiveWindows {
            open: vec![OpenWindow {
                key: key("w"),
                window: window(40_000, 50_000),
                version: 0,
                fired: false,
                state: count(1),
            }],
            ..LiveWindows::default()
        };
        let snapshot = build(&plan, 6_000, Instant::now(), &committed, vec![(0, open)]);
        assert_eq!(
            rendered(&snapshot.unwrap()),
            [r#"{"user_id":"w"}[40000,50000,false,9]"#],
            "an open window committed closed since counts once too"
        );
    }

    #[test]
    fn a_partition_that_answered_is_not_read_from_its_stored_open_rows() {
        let plan = plan();
        // Committed after the engine answered: a window opened since, which the answer does
        // not have. The snapshot is of the moment of the answer.
        let stored = RowsAndWatermarks {
            rows: vec![
                stored(Some(0), "x", 60_000, 70_000, 4),
                stored(Some(1), "x", 60_000, 70_000, 6),
            ],
            watermarks: vec![(0, Some(55_000)), (1, Some(55_000))],
        };
        let snapshot = build(
            &plan,
            6_000,
            Instant::now(),
            &stored,
            vec![(0, LiveWindows::default())],
        );
        assert_eq!(
            rendered(&snapshot.unwrap()),
            [r#"{"user_id":"x"}[60000,70000,false,6]"#],
            "partition 1 did not answer: its stored row stands for it"
        );
    }
}
