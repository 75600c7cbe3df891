//! Between the stream engine's checkpoint values and the store's rows. The store keeps group
//! keys and partial states as the engine encodes them; decoding checks their versions and
//! checksums, so a damaged row is reported, never misread.

use sluice_store::model::{
    ChangedRow, Commit, MetricCommit, RetractedRow, RowRef, StoredRow, StreamRange,
};
use sluice_stream::engine::output::{Checkpoint, PartialRow};
use sluice_stream::plan::{AggregateKind, MetricPlan};

/// A checkpoint as store rows, for the metric generation `generation`, read in log epoch
/// `log_epoch`, taking its changed rows (the processor packed and encoded them) rather than
/// copying them.
pub(crate) fn commit_from(checkpoint: &mut Checkpoint, generation: u32, log_epoch: u32) -> Commit {
    Commit {
        offset: checkpoint.offset,
        event_time: checkpoint.event_time,
        log_epoch,
        metrics: checkpoint
            .metrics
            .iter_mut()
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
                closed: std::mem::take(&mut metric.closed),
                changed: std::mem::take(&mut metric.changed),
            })
            .collect(),
        output: checkpoint
            .output
            .iter()
            .map(|range| StreamRange {
                stream: range.stream.to_string(),
                start: range.start,
                end: range.end,
            })
            .collect(),
        note: None,
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
    let row = ChangedRow {
        tenant: "",
        key: row.key,
        window_start: row.window_start,
        window_end: row.window_end,
        version: row.version,
        state: row.state,
    };
    PartialRow::decode(row, kinds).map_err(|error| error.to_string())
}
