//! The engine's Prometheus metrics (through the `metrics` facade; without a recorder they
//! cost nothing). Handles are created once per partition and metric, and counters are
//! incremented once per batch, never per event.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `sluice_stream_events_total` | partition | records read |
//! | `sluice_stream_invalid_events_total` | partition | records that are not events (no tenant or timestamp, malformed JSON) |
//! | `sluice_stream_late_events_total` | partition, metric, reason, action | events a metric could not count; action `topic` or `drop` |
//! | `sluice_stream_values_out_of_range_total` | partition, metric, aggregate | numbers outside the decimal range an aggregate (named by its column) skipped |
//! | `sluice_stream_window_updates_total` | partition, metric | window versions emitted |
//! | `sluice_stream_open_windows` | partition, metric | open (group key × window) states |
//! | `sluice_stream_watermark_delay_seconds` | partition, metric | processing time − watermark |

use super::output::LateReason;
use crate::plan::{ColumnSource, MetricPlan};
use metrics::{Counter, Gauge, counter, gauge};

#[derive(Debug)]
pub(crate) struct PartitionTelemetry {
    pub(crate) events: Counter,
    pub(crate) invalid: Counter,
}

impl PartitionTelemetry {
    pub(crate) fn new(partition: u32) -> Self {
        let partition = partition.to_string();
        PartitionTelemetry {
            events: counter!("sluice_stream_events_total", "partition" => partition.clone()),
            invalid: counter!("sluice_stream_invalid_events_total", "partition" => partition),
        }
    }
}

#[derive(Debug)]
pub(crate) struct MetricTelemetry {
    late: [Counter; 3],
    /// Per aggregate.
    pub(crate) out_of_range: Vec<Counter>,
    pub(crate) updates: Counter,
    pub(crate) open_windows: Gauge,
    pub(crate) watermark_delay: Gauge,
}

impl MetricTelemetry {
    pub(crate) fn new(partition: u32, plan: &MetricPlan, action: &'static str) -> Self {
        let metric = plan.name.as_str();
        let late = |reason: LateReason| {
            counter!(
                "sluice_stream_late_events_total",
                "partition" => partition.to_string(),
                "metric" => metric.to_owned(),
                "reason" => reason.as_str(),
                "action" => action,
            )
        };
        let labels = [
            ("partition", partition.to_string()),
            ("metric", metric.to_owned()),
        ];
        let out_of_range = (0..plan.aggregates.len())
            .map(|index| {
                let aggregate = plan
                    .columns
                    .iter()
                    .find(|column| column.source == ColumnSource::Aggregate(index))
                    .map_or_else(
                        || format!("aggregate {index}"),
                        |column| column.name.clone(),
                    );
                counter!(
                    "sluice_stream_values_out_of_range_total",
                    "partition" => partition.to_string(),
                    "metric" => metric.to_owned(),
                    "aggregate" => aggregate,
                )
            })
            .collect();
        MetricTelemetry {
            out_of_range,
            late: [
                late(LateReason::WindowClosed),
                late(LateReason::TooManyOpenWindows),
                late(LateReason::InvalidKey),
            ],
            updates: counter!("sluice_stream_window_updates_total", &labels),
            open_windows: gauge!("sluice_stream_open_windows", &labels),
            watermark_delay: gauge!("sluice_stream_watermark_delay_seconds", &labels),
        }
    }

    pub(crate) fn late(&self, reason: LateReason) -> &Counter {
        match reason {
            LateReason::WindowClosed => &self.late[0],
            LateReason::TooManyOpenWindows => &self.late[1],
            LateReason::InvalidKey => &self.late[2],
        }
    }
}
