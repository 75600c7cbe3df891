//! Between the stream engine's checkpoint values and the store's rows. The store keeps group
//! keys and partial states as the engine encodes them; decoding checks their versions and
//! checksums, so a damaged row is reported, never misread.

use crate::model::{Commit, MetricCommit, RetractedRow, StoredRow};
use crate::sqlite::RowRef;
use sluice_stream::agg::PartialState;
use sluice_stream::engine::output::{Checkpoint, PartialRow};
use sluice_stream::keys::GroupKey;
use sluice_stream::plan::{AggregateKind, MetricPlan};
use sluice_stream::window::Window;
use std::sync::Arc;

/// A checkpoint as store rows, for the metric generation `generation`.
pub fn commit_of(checkpoint: &Checkpoint, generation: u32) -> Commit {
    commit_with(checkpoint, generation, &mut StateBuffers::default())
}

/// Memory for encoded states, reused from one checkpoint to the next: a checkpoint then
/// encodes into memory already mapped, instead of faulting in (and zeroing) fresh pages for
/// every row, which cost as much as the encoding itself.
#[derive(Debug, Default)]
pub(crate) struct StateBuffers {
    free: Vec<Vec<u8>>,
    bytes: usize,
}

impl StateBuffers {
    /// The most memory kept between checkpoints.
    const KEPT_BYTES: usize = 64 << 20;

    fn take(&mut self) -> Vec<u8> {
        let buffer = self.free.pop().unwrap_or_default();
        self.bytes -= buffer.capacity();
        buffer
    }

    /// Takes back the state buffers of a committed checkpoint.
    pub(crate) fn recycle(&mut self, commit: Commit) {
        let states = commit
            .metrics
            .into_iter()
            .flat_map(|metric| metric.changed)
            .map(|row| row.state);
        for state in states {
            if self.bytes + state.capacity() > Self::KEPT_BYTES {
                return;
            }
            self.bytes += state.capacity();
            self.free.push(state);
        }
    }
}

/// [`commit_of`], encoding into `buffers`.
pub(crate) fn commit_with(
    checkpoint: &Checkpoint,
    generation: u32,
    buffers: &mut StateBuffers,
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
                changed: metric
                    .changed
                    .iter()
                    .map(|row| stored_row(row, checkpoint.partition, buffers.take()))
                    .collect(),
            })
            .collect(),
    }
}

fn stored_row(row: &PartialRow, partition: u32, mut state: Vec<u8>) -> StoredRow {
    row.state.encode_into(&mut state);
    StoredRow {
        partition,
        tenant: row.key.tenant().to_owned(),
        key: row.key.as_bytes().to_vec(),
        window_start: row.window.start,
        window_end: row.window.end,
        version: row.version,
        state,
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

    fn commit(states: Vec<Vec<u8>>) -> Commit {
        Commit {
            offset: 1,
            event_time: None,
            metrics: vec![MetricCommit {
                metric: "views".into(),
                generation: 0,
                watermark: None,
                retracted: vec![],
                changed: states
                    .into_iter()
                    .map(|state| StoredRow {
                        partition: 0,
                        tenant: "t".into(),
                        key: vec![1],
                        window_start: 0,
                        window_end: 1,
                        version: 1,
                        state,
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn state_buffers_are_reused_up_to_their_bound() {
        let mut buffers = StateBuffers::default();
        assert!(buffers.take().capacity() == 0, "nothing kept yet");
        let chunk = StateBuffers::KEPT_BYTES / 4;
        buffers.recycle(commit((0..6).map(|_| Vec::with_capacity(chunk)).collect()));
        assert_eq!(buffers.free.len(), 4, "kept until the bound");
        assert_eq!(buffers.bytes, 4 * chunk);
        let reused = buffers.take();
        assert!(reused.capacity() >= chunk);
        assert_eq!(buffers.bytes, 3 * chunk);
    }
}
