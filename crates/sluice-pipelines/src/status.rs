//! What each pipeline partition is doing, for `GET /v1/admin/metrics` and the metrics
//! endpoint: committed and processed offsets, watermark, and whether it runs, retries or
//! failed — with the reason, the attempt and the next one.
//!
//! A failure stays reported until the partition is past it: a transient one until the next
//! commit, a damaged log segment until a commit beyond the offset where the read failed
//! (re-reading the records before the damage is no recovery). A partition that retries is
//! therefore never shown `running` while it still cannot get through.

use crate::failure::{Failure, FailureClass, Recovery};
use parking_lot::Mutex;
use serde::Serialize;
use sluice_core::time::Millis;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The state of one pipeline partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum PartitionState {
    /// Claiming and restoring.
    Starting,
    /// Processing.
    Running,
    /// Restarting from the last checkpoint after a failure that may pass by itself.
    Retrying {
        /// What failed.
        reason: String,
        /// The kind of failure.
        reason_class: FailureClass,
        /// Failures in a row.
        attempt: u32,
        /// When it tries again (ms since the epoch).
        next_retry: Millis,
    },
    /// Stopped by an error the operator must fix.
    Failed {
        /// What failed and what to do.
        reason: String,
        /// The kind of failure.
        reason_class: FailureClass,
        /// Failures in a row.
        attempt: u32,
        /// When it tries again (ms since the epoch), if it does: a damaged log segment is
        /// tried again, so the partition resumes once the log is repaired; fencing and a
        /// damaged store stop it for good.
        #[serde(skip_serializing_if = "Option::is_none")]
        next_retry: Option<Millis>,
    },
    /// Stopped on request.
    Stopped,
    /// Computed by another node of the cluster (Kafka's consumer group gave the partition to
    /// it); the committed offset and watermark are those of its last checkpoint in the store.
    Elsewhere,
}

impl PartitionState {
    /// The state's name, as in the status JSON and the `state` label of
    /// `sluice_pipeline_partitions`.
    pub fn name(&self) -> &'static str {
        match self {
            PartitionState::Starting => "starting",
            PartitionState::Running => "running",
            PartitionState::Retrying { .. } => "retrying",
            PartitionState::Failed { .. } => "failed",
            PartitionState::Stopped => "stopped",
            PartitionState::Elsewhere => "elsewhere",
        }
    }

    /// The reason of a retrying or failed partition.
    pub fn reason(&self) -> Option<&str> {
        match self {
            PartitionState::Retrying { reason, .. } | PartitionState::Failed { reason, .. } => {
                Some(reason)
            }
            _ => None,
        }
    }

    fn index(&self) -> usize {
        STATES
            .iter()
            .position(|name| *name == self.name())
            .unwrap_or(0)
    }
}

const STATES: [&str; 6] = [
    "starting",
    "running",
    "retrying",
    "failed",
    "stopped",
    "elsewhere",
];

/// A failure still reported: until the partition commits past `offset` (or at all, see
/// [`FailureClass::cleared_by_progress`]).
#[derive(Debug)]
struct Pending {
    class: FailureClass,
    offset: u64,
}

#[derive(Debug)]
struct Current {
    state: PartitionState,
    pending: Option<Pending>,
}

/// Live status of one pipeline partition, shared with its runner.
#[derive(Debug)]
pub struct PartitionStatus {
    metric: String,
    partition: u32,
    committed: AtomicU64,
    processed: Arc<AtomicU64>,
    watermark: AtomicI64,
    lost_offsets: AtomicU64,
    current: Mutex<Current>,
    offset_gauge: metrics::Gauge,
    watermark_gauge: metrics::Gauge,
    /// `sluice_pipeline_partitions{metric, state}`, one per state: this partition counts in
    /// the gauge of its current state.
    state_gauges: [metrics::Gauge; STATES.len()],
}

const NO_WATERMARK: i64 = i64::MIN;

impl PartitionStatus {
    pub(crate) fn new(metric: &str, partition: u32, start_offset: u64) -> Self {
        let labels = [
            ("metric", metric.to_owned()),
            ("partition", partition.to_string()),
        ];
        let state_gauges = STATES.map(|state| {
            metrics::gauge!("sluice_pipeline_partitions", "metric" => metric.to_owned(), "state" => state)
        });
        let state = PartitionState::Starting;
        state_gauges[state.index()].increment(1.0);
        Self {
            metric: metric.to_owned(),
            partition,
            committed: AtomicU64::new(start_offset),
            processed: Arc::new(AtomicU64::new(start_offset)),
            watermark: AtomicI64::new(NO_WATERMARK),
            lost_offsets: AtomicU64::new(0),
            current: Mutex::new(Current {
                state,
                pending: None,
            }),
            offset_gauge: metrics::gauge!("sluice_pipeline_committed_offset", &labels),
            watermark_gauge: metrics::gauge!("sluice_pipeline_watermark_ms", &labels),
            state_gauges,
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

    /// Offsets counted in the results whose records the log no longer holds (see
    /// [`Position::lost_offsets`](sluice_store::model::Position::lost_offsets)).
    pub fn lost_offsets(&self) -> u64 {
        self.lost_offsets.load(Ordering::Relaxed)
    }

    /// The position was rewound, giving up `lost` counted offsets: counted in
    /// `sluice_pipeline_rewinds_total` and `sluice_pipeline_lost_offsets_total`.
    pub(crate) fn rewound(&self, lost: u64) {
        let metric = self.metric.clone();
        metrics::counter!("sluice_pipeline_rewinds_total", "metric" => metric.clone()).increment(1);
        metrics::counter!("sluice_pipeline_lost_offsets_total", "metric" => metric).increment(lost);
    }

    /// The current state.
    pub fn state(&self) -> PartitionState {
        self.current.lock().state.clone()
    }

    /// Whether a failure is still reported (the partition has not got past it yet).
    pub(crate) fn failing(&self) -> bool {
        self.current.lock().pending.is_some()
    }

    fn set_state(&self, current: &mut Current, state: PartitionState) {
        let (before, after) = (current.state.index(), state.index());
        if before != after {
            self.state_gauges[before].decrement(1.0);
            self.state_gauges[after].increment(1.0);
        }
        current.state = state;
    }

    /// Claimed and restored at `offset`, with `lost_offsets` given up by rewinds so far:
    /// running, unless a failure is still to get past.
    pub(crate) fn set_running(&self, offset: u64, lost_offsets: u64) {
        self.lost_offsets.store(lost_offsets, Ordering::Relaxed);
        self.committed.store(offset, Ordering::Release);
        self.processed.store(offset, Ordering::Relaxed);
        self.offset_gauge.set(offset as f64);
        let mut current = self.current.lock();
        if current.pending.is_none() {
            self.set_state(&mut current, PartitionState::Running);
        }
    }

    /// A checkpoint up to `offset` is committed.
    pub(crate) fn set_committed(&self, offset: u64, watermark: Option<Millis>) {
        self.committed.store(offset, Ordering::Release);
        self.offset_gauge.set(offset as f64);
        if let Some(watermark) = watermark {
            self.watermark.store(watermark, Ordering::Release);
            self.watermark_gauge.set(watermark as f64);
        }
        let mut current = self.current.lock();
        let past = current
            .pending
            .as_ref()
            .is_none_or(|pending| !pending.class.cleared_by_progress() || offset > pending.offset);
        if past
            && !matches!(
                current.state,
                PartitionState::Failed {
                    next_retry: None,
                    ..
                }
            )
        {
            current.pending = None;
            self.set_state(&mut current, PartitionState::Running);
        }
    }

    /// Reports a failure (the `attempt`th in a row), counted in
    /// `sluice_pipeline_partition_failures_total`; `next_retry` is when the runner tries again,
    /// `None` when it stopped for good.
    pub(crate) fn set_failed(&self, failure: &Failure, attempt: u32, next_retry: Option<Millis>) {
        metrics::counter!(
            "sluice_pipeline_partition_failures_total",
            "metric" => self.metric.clone(),
            "reason_class" => failure.class.as_str()
        )
        .increment(1);
        let state = match (failure.class.recovery(), next_retry) {
            (Recovery::Retry, Some(next_retry)) => PartitionState::Retrying {
                reason: failure.reason.clone(),
                reason_class: failure.class,
                attempt,
                next_retry,
            },
            (_, next_retry) => PartitionState::Failed {
                reason: failure.reason.clone(),
                reason_class: failure.class,
                attempt,
                next_retry,
            },
        };
        let mut current = self.current.lock();
        // Where processing stood when it failed: a read failure is past once a commit is
        // beyond it.
        let offset = self.processed().max(self.committed());
        current.pending = Some(Pending {
            class: failure.class,
            offset,
        });
        self.set_state(&mut current, state);
    }

    /// Stopped on request (a failure stays reported).
    /// Another node computes the partition now; its last checkpoint in the store is at
    /// `offset` with `watermark`.
    pub(crate) fn set_elsewhere(&self, offset: u64, watermark: Option<Millis>) {
        let mut current = self.current.lock();
        current.pending = None;
        self.set_state(&mut current, PartitionState::Elsewhere);
        drop(current);
        self.committed.store(offset, Ordering::Release);
        self.processed.store(offset, Ordering::Relaxed);
        self.watermark
            .store(watermark.unwrap_or(NO_WATERMARK), Ordering::Relaxed);
    }

    /// Whether another node computes the partition.
    pub(crate) fn elsewhere(&self) -> bool {
        self.current.lock().state == PartitionState::Elsewhere
    }

    /// The other node computing the partition has committed up to `offset` with `watermark`
    /// (ignored if this node has started computing it since).
    pub(crate) fn committed_elsewhere(&self, offset: u64, watermark: Option<Millis>) {
        let current = self.current.lock();
        if current.state == PartitionState::Elsewhere {
            self.committed.store(offset, Ordering::Release);
            self.processed.store(offset, Ordering::Relaxed);
            self.watermark
                .store(watermark.unwrap_or(NO_WATERMARK), Ordering::Relaxed);
        }
    }

    pub(crate) fn set_stopped(&self) {
        let mut current = self.current.lock();
        if !matches!(current.state, PartitionState::Failed { .. }) {
            self.set_state(&mut current, PartitionState::Stopped);
        }
    }
}

impl Drop for PartitionStatus {
    fn drop(&mut self) {
        // The partition is gone: it no longer counts in any state.
        let index = self.current.get_mut().state.index();
        self.state_gauges[index].decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn damaged() -> Failure {
        Failure::new(FailureClass::LogCorrupt, "segment 7 is damaged")
    }

    #[test]
    fn a_damaged_read_stays_failed_until_a_commit_gets_past_it() {
        let status = PartitionStatus::new("views", 0, 10);
        status.set_running(10, 0);
        status.processed_counter().store(40, Ordering::Relaxed);
        status.set_failed(&damaged(), 1, Some(1_000));
        assert_eq!(status.state().name(), "failed");
        assert!(status.failing());

        // The retry re-reads up to the damage and commits there: still failed.
        status.set_running(10, 0);
        assert_eq!(status.state().name(), "failed");
        status.set_committed(40, None);
        assert_eq!(status.state().name(), "failed", "{:?}", status.state());

        // Past it (the segment was repaired): running again.
        status.set_committed(41, None);
        assert_eq!(status.state(), PartitionState::Running);
        assert!(!status.failing());
    }

    #[test]
    fn a_transient_failure_is_past_at_the_next_commit_and_fencing_stays() {
        let status = PartitionStatus::new("views", 1, 0);
        status.set_running(0, 0);
        status.set_failed(&Failure::new(FailureClass::Store, "busy"), 2, Some(5));
        assert!(matches!(
            status.state(),
            PartitionState::Retrying {
                attempt: 2,
                next_retry: 5,
                ..
            }
        ));
        status.set_running(0, 0);
        status.set_committed(0, None);
        assert_eq!(status.state(), PartitionState::Running);

        status.set_failed(&Failure::new(FailureClass::Fenced, "taken over"), 1, None);
        status.set_committed(5, None);
        status.set_stopped();
        assert!(matches!(
            status.state(),
            PartitionState::Failed {
                next_retry: None,
                reason_class: FailureClass::Fenced,
                ..
            }
        ));
    }

    #[test]
    fn the_status_json_says_state_reason_attempt_and_next_retry() {
        let state = PartitionState::Failed {
            reason: "damaged".into(),
            reason_class: FailureClass::LogCorrupt,
            attempt: 3,
            next_retry: Some(1_700_000_000_000),
        };
        assert_eq!(
            serde_json::to_value(&state).unwrap(),
            serde_json::json!({"state": "failed", "reason": "damaged", "reason_class": "log_corrupt", "attempt": 3, "next_retry": 1_700_000_000_000_i64})
        );
        assert_eq!(
            serde_json::to_value(PartitionState::Running).unwrap(),
            serde_json::json!({"state": "running"})
        );
    }
}
