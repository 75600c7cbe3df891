//! What each pipeline partition is doing, for `GET /v1/admin/metrics` and the metrics
//! endpoint: committed and processed offsets, watermark, and whether it runs, retries or
//! failed.

use parking_lot::Mutex;
use serde::Serialize;
use sluice_core::time::Millis;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The state of one pipeline partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum PartitionState {
    /// Claiming and restoring.
    Starting,
    /// Processing.
    Running,
    /// Restarting from the last checkpoint after a transient failure.
    Retrying(String),
    /// Stopped by an error the operator must fix.
    Failed(String),
    /// Stopped on request.
    Stopped,
}

/// Live status of one pipeline partition, shared with its runner.
#[derive(Debug)]
pub struct PartitionStatus {
    partition: u32,
    committed: AtomicU64,
    processed: Arc<AtomicU64>,
    watermark: AtomicI64,
    state: Mutex<PartitionState>,
    offset_gauge: metrics::Gauge,
    watermark_gauge: metrics::Gauge,
}

const NO_WATERMARK: i64 = i64::MIN;

impl PartitionStatus {
    pub(crate) fn new(metric: &str, partition: u32, start_offset: u64) -> Self {
        let labels = [
            ("metric", metric.to_owned()),
            ("partition", partition.to_string()),
        ];
        Self {
            partition,
            committed: AtomicU64::new(start_offset),
            processed: Arc::new(AtomicU64::new(start_offset)),
            watermark: AtomicI64::new(NO_WATERMARK),
            state: Mutex::new(PartitionState::Starting),
            offset_gauge: metrics::gauge!("sluice_pipeline_committed_offset", &labels),
            watermark_gauge: metrics::gauge!("sluice_pipeline_watermark_ms", &labels),
        }
    }

    /// The source partition.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The last committed offset (every record before it is in the store).
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// The offset processing has reached: records before it are counted in memory, and in the
    /// store once committed.
    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }

    /// The counter the partition task advances after each batch.
    pub(crate) fn processed_counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.processed)
    }

    /// The watermark at the last commit.
    pub fn watermark(&self) -> Option<Millis> {
        let value = self.watermark.load(Ordering::Acquire);
        (value != NO_WATERMARK).then_some(value)
    }

    /// The current state.
    pub fn state(&self) -> PartitionState {
        self.state.lock().clone()
    }

    pub(crate) fn set_running(&self, offset: u64) {
        self.committed.store(offset, Ordering::Release);
        self.processed.store(offset, Ordering::Relaxed);
        self.offset_gauge.set(offset as f64);
        *self.state.lock() = PartitionState::Running;
    }

    pub(crate) fn set_committed(&self, offset: u64, watermark: Option<Millis>) {
        self.committed.store(offset, Ordering::Release);
        self.offset_gauge.set(offset as f64);
        if let Some(watermark) = watermark {
            self.watermark.store(watermark, Ordering::Release);
            self.watermark_gauge.set(watermark as f64);
        }
        let mut state = self.state.lock();
        if !matches!(*state, PartitionState::Failed(_)) {
            *state = PartitionState::Running;
        }
    }

    pub(crate) fn set_retrying(&self, reason: String) {
        *self.state.lock() = PartitionState::Retrying(reason);
    }

    pub(crate) fn set_failed(&self, reason: String) {
        *self.state.lock() = PartitionState::Failed(reason);
    }

    pub(crate) fn set_stopped(&self) {
        let mut state = self.state.lock();
        if !matches!(*state, PartitionState::Failed(_)) {
            *state = PartitionState::Stopped;
        }
    }
}
