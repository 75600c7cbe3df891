//! Between the stream engine's checkpoint values and the store's rows. The store keeps group
//! keys and partial states as the engine encodes them; decoding checks their versions and
//! checksums, so a damaged row is reported, never misread.

use crate::model::{Commit, MetricCommit, PackedRows, RetractedRow, StoredRow};
use crate::sqlite::RowRef;
use sluice_stream::agg::PartialState;
use sluice_stream::engine::output::{Checkpoint, PartialRow};
use sluice_stream::keys::GroupKey;
use sluice_stream::plan::{AggregateKind, MetricPlan};
use sluice_stream::window::Window;
use std::sync::Arc;

/// A checkpoint as store rows, for the metric generation `generation`.
pub fn commit_of(checkpoint: &Checkpoint, generation: u32) -> Commit {
    commit_with(checkpoint, generation, &mut RowBuffers::default())
}

/// Row buffers kept from one checkpoint to the next: a checkpoint then packs its rows into
/// memory already mapped, instead of faulting in (and zeroing) fresh pages, which cost as much
/// as encoding the states.
#[derive(Debug, Default)]
pub(crate) struct RowBuffers {
    free: Vec<PackedRows>,
}

impl RowBuffers {
    /// The most memory kept between checkpoints.
    const KEPT_BYTES: usize = 64 << 20;

    fn take(&mut self) -> PackedRows {
        self.free.pop().unwrap_or_default()
    }

    /// Takes back the row buffers of a committed checkpoint.
    pub(crate) fn recycle(&mut self, commit: Commit) {
        let mut kept: usize = self.free.iter().map(PackedRows::capacity_bytes).sum();
        for metric in commit.metrics {
            let mut rows = metric.changed;
            let bytes = rows.capacity_bytes();
            if kept + bytes <= Self::KEPT_BYTES {
                kept += bytes;
                rows.clear();
                self.free.push(rows);
            }
        }
    }
}

/// [`commit_of`], packing the rows into `buffers`.
pub(crate) fn commit_with(
    checkpoint: &Checkpoint,
    generation: u32,
    buffers: &mut RowBuffers,
) -> Commit {
    Commit {
        offset: checkpoint.offset,
        event_time: checkpoint.event_time,
        metrics: checkpoint
            .metrics
            .iter()
            .map(|metric| MetricCommit {
                metric: metric.metric.to_string(),
                generation,
                watermark: metric.watermark,
                retracted: metric
                    .retracted
                    .iter()
                    .map(|(key, window)| RetractedRow {
                        tenant: key.tenant().to_owned(),
                        key: key.as_bytes().to_vec(),
                        window_start: window.start,
                        window_end: window.end,
                    })
                    .collect(),
                changed: {
                    let mut rows = buffers.take();
                    for row in &metric.changed {
                        rows.push_with(
                            row.key.tenant(),
                            row.key.as_bytes(),
                            (row.window.start, row.window.end),
                            row.version,
                            |bytes| row.state.encode_append(bytes),
                        );
                    }
                    rows
                },
            })
            .collect(),
    }
}

/// A stored row as the engine's partial row, checking the key and state encodings against
/// the metric's aggregates.
pub fn partial_row(row: &StoredRow, plan: &MetricPlan) -> Result<PartialRow, String> {
    let kinds: Vec<_> = plan
        .aggregates
        .iter()
        .map(|aggregate| aggregate.kind)
        .collect();
    let row = RowRef {
        key: &row.key,
        window_start: row.window_start,
        window_end: row.window_end,
        version: row.version,
        state: &row.state,
    };
    decode_row(row, &kinds)
}

/// Decodes borrowed columns into a partial row (`kinds`: the metric's aggregates, in order).
pub(crate) fn decode_row(row: RowRef<'_>, kinds: &[AggregateKind]) -> Result<PartialRow, String> {
    let key = GroupKey::from_bytes(row.key).map_err(|error| error.to_string())?;
    let state = PartialState::decode(row.state, Some(kinds)).map_err(|error| error.to_string())?;
    Ok(PartialRow {
        key: Arc::new(key),
        window: Window {
            start: row.window_start,
            end: row.window_end,
        },
        version: row.version,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChangedRow;

    fn commit(sizes: &[usize]) -> Commit {
        let metrics = sizes
            .iter()
            .map(|&size| {
                let mut changed = PackedRows::default();
                changed.push(ChangedRow {
                    tenant: "t",
                    key: &[1],
                    window_start: 0,
                    window_end: 1,
                    version: 1,
                    state: &vec![7; size],
                });
                MetricCommit {
                    metric: "views".into(),
                    generation: 0,
                    watermark: None,
                    retracted: vec![],
                    changed,
                }
            })
            .collect();
        Commit {
            offset: 1,
            event_time: None,
            metrics,
        }
    }

    #[test]
    fn row_buffers_are_reused_empty_up_to_their_bound() {
        let mut buffers = RowBuffers::default();
        assert_eq!(buffers.take().capacity_bytes(), 0, "nothing kept yet");
        let chunk = RowBuffers::KEPT_BYTES / 4;
        buffers.recycle(commit(&[chunk; 6]));
        assert_eq!(buffers.free.len(), 3, "kept until the bound");
        let reused = buffers.take();
        assert!(reused.is_empty());
        assert!(reused.capacity_bytes() > chunk);
        buffers.recycle(commit(&[2 * chunk, 10]));
        assert_eq!(
            buffers.free.len(),
            3,
            "the large one dropped, the small one kept"
        );
    }
}
