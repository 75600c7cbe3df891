//! The engine's Prometheus metrics (through the `metrics` facade; without a recorder they
//! cost nothing). Handles are created once per partition and metric, and counters are
//! incremented once per batch, never per event.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `sluice_stream_events_total` | partition | records read |
//! | `sluice_stream_invalid_events_total` | partition | records that are not events (no tenant or timestamp, malformed JSON) |
//! | `sluice_stream_late_events_total` | partition, metric, reason, action | events a metric could not count; action `topic` or `drop` |
//! | `sluice_stream_window_updates_total` | partition, metric | window versions emitted |
//! | `sluice_stream_open_windows` | partition, metric | open (group key × window) states |
//! | `sluice_stream_watermark_delay_seconds` | partition, metric | processing time − watermark |

use super::output::LateReason;
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
    pub(crate) updates: Counter,
    pub(crate) open_windows: Gauge,
    pub(crate) watermark_delay: Gauge,
}

impl MetricTelemetry {
    pub(crate) fn new(partition: u32, metric: &str, action: &'static str) -> Self {
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
        MetricTelemetry {
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
