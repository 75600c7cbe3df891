//! Why a pipeline partition failed, what that means for it, and when it tries again.
//!
//! | class | typical cause | state | what happens |
//! |---|---|---|---|
//! | `log_corrupt` | a read hit a damaged log segment | `failed` | tries again with a capped backoff, so it resumes by itself once the log is repaired (`sluice log repair`) |
//! | `log`, `store`, `store_full`, `internal` | an I/O error, a busy or full store, a task that ended or panicked | `retrying` | restarts from its last checkpoint with a capped backoff |
//! | `fenced`, `store_corrupt`, `state_corrupt` | another owner took the partition; a damaged store or stored state | `failed` | stops for good: the operator must act |
//!
//! The pure part (classes, what each implies, the backoff) lives here; the runner in
//! [`crate::partition`] applies it, [`crate::status`] reports it.

use serde::Serialize;
use sluice_log::LogError;
use sluice_store::error::StoreError;
use sluice_stream::StreamError;
use std::time::Duration;

/// The first pause after a failure; each further failure in a row doubles it, up to the
/// configured maximum.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// What kind of failure stopped a pipeline partition: the `reason_class` label of
/// `sluice_pipeline_partition_failures_total`, and a field of its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// A read of the source partition hit damaged data (a damaged segment).
    LogCorrupt,
    /// Another log failure (I/O, an offset outside the partition).
    Log,
    /// A store failure that may pass (busy, I/O).
    Store,
    /// The store's disk is full or its `max-size` is reached.
    StoreFull,
    /// The store file is damaged or from a newer sluice.
    StoreCorrupt,
    /// Stored partial state cannot be decoded or restored.
    StateCorrupt,
    /// A newer owner claimed the partition.
    Fenced,
    /// The partition task ended unasked or panicked (a bug).
    Internal,
}

impl FailureClass {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::LogCorrupt => "log_corrupt",
            FailureClass::Log => "log",
            FailureClass::Store => "store",
            FailureClass::StoreFull => "store_full",
            FailureClass::StoreCorrupt => "store_corrupt",
            FailureClass::StateCorrupt => "state_corrupt",
            FailureClass::Fenced => "fenced",
            FailureClass::Internal => "internal",
        }
    }

    /// What a failure of this class means for the partition.
    pub(crate) fn recovery(self) -> Recovery {
        match self {
            FailureClass::LogCorrupt => Recovery::RetryFailed,
            FailureClass::Log
            | FailureClass::Store
            | FailureClass::StoreFull
            | FailureClass::Internal => Recovery::Retry,
            FailureClass::StoreCorrupt | FailureClass::StateCorrupt | FailureClass::Fenced => {
                Recovery::Stop
            }
        }
    }

    /// Whether the failure is behind the partition only once it has committed an offset past
    /// the one where it failed (a damaged record stays damaged until repaired: re-reading up to
    /// it is no recovery); else its first commit after the failure is.
    pub(crate) fn cleared_by_progress(self) -> bool {
        matches!(self, FailureClass::LogCorrupt)
    }
}

/// What a failure means for the pipeline partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// It may pass by itself: state `retrying`, restart from the last checkpoint.
    Retry,
    /// The operator must act, and can while sluice runs (repair the log): state `failed`, and
    /// keep trying, so the partition resumes by itself once the cause is gone.
    RetryFailed,
    /// Stop for good: state `failed`.
    Stop,
}

/// Why a round of a pipeline partition ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) class: FailureClass,
    /// What failed and what to do, for people.
    pub(crate) reason: String,
}

impl Failure {
    pub(crate) fn new(class: FailureClass, reason: impl Into<String>) -> Failure {
        Failure {
            class,
            reason: reason.into(),
        }
    }

    /// How the stream partition task ended (it only ends on its own by failing).
    pub(crate) fn from_task_end(
        ended: Result<Result<impl Sized, StreamError>, tokio::task::JoinError>,
    ) -> Failure {
        match ended {
            Ok(Ok(_)) => Failure::new(FailureClass::Internal, "the partition task stopped unasked"),
            Ok(Err(error)) => Failure::from(error),
            Err(join) if join.is_panic() => Failure::new(
                FailureClass::Internal,
                format!("the partition task panicked ({join}); this is a bug, please report it"),
            ),
            Err(join) => Failure::new(FailureClass::Internal, join.to_string()),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Failure {
        let class = match &error {
            StoreError::Fenced { .. } => FailureClass::Fenced,
            StoreError::Corrupt { .. } | StoreError::NewerSchema { .. } => {
                FailureClass::StoreCorrupt
            }
            StoreError::DiskFull { .. } => FailureClass::StoreFull,
            _ => FailureClass::Store,
        };
        Failure::new(class, error.to_string())
    }
}

impl From<StreamError> for Failure {
    fn from(error: StreamError) -> Failure {
        match error {
            StreamError::Log {
                op,
                topic,
                partition,
                source: LogError::Corrupt { path, reason, .. },
            } => Failure::new(
                FailureClass::LogCorrupt,
                format!(
                    "log {op} on {topic}/{partition} failed: the segment {} is damaged ({reason}); \
                     this partition's results stop before it. Repair the log with `sluice log repair` \
                     (it keeps every intact batch and reports what was lost): the partition then \
                     resumes by itself",
                    path.display()
                ),
            ),
            error @ (StreamError::Log { .. } | StreamError::Interleaved { .. }) => {
                Failure::new(FailureClass::Log, error.to_string())
            }
            error @ StreamError::Committed { .. } => {
                Failure::new(FailureClass::Store, error.to_string())
            }
            error @ (StreamError::Decode(_) | StreamError::Restore { .. }) => {
                Failure::new(FailureClass::StateCorrupt, error.to_string())
            }
            error => Failure::new(FailureClass::Internal, error.to_string()),
        }
    }
}

/// The pause before trying again after `attempt` failures in a row (from 1): 100 ms, doubling,
/// at most `max`.
pub(crate) fn backoff(attempt: u32, max: Duration) -> Duration {
    let doublings = attempt.saturating_sub(1).min(20);
    FIRST_BACKOFF.saturating_mul(1 << doublings).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let max = Duration::from_secs(60);
        let pauses: Vec<u64> = (1..=12)
            .map(|attempt| backoff(attempt, max).as_millis() as u64)
            .collect();
        assert_eq!(
            pauses,
            [
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000
            ]
        );
        assert_eq!(backoff(0, max), FIRST_BACKOFF);
        assert_eq!(backoff(u32::MAX, max), max);
        assert_eq!(
            backoff(5, Duration::from_millis(150)),
            Duration::from_millis(150)
        );
    }

    #[test]
    fn a_damaged_segment_fails_visibly_and_is_tried_again_fencing_stops_for_good() {
        let damaged = Failure::from(StreamError::Log {
            op: "read",
            topic: "events".into(),
            partition: 3,
            source: LogError::Corrupt {
                path: PathBuf::from("/data/log/topics/events/3/00000000000000000042.log"),
                reason: "bad CRC at byte 77".into(),
            },
        });
        assert_eq!(damaged.class, FailureClass::LogCorrupt);
        assert_eq!(damaged.class.recovery(), Recovery::RetryFailed);
        assert!(damaged.class.cleared_by_progress());
        for part in [
            "events/3",
            "/data/log/topics/events/3/00000000000000000042.log",
            "bad CRC at byte 77",
            "sluice log repair",
        ] {
            assert!(damaged.reason.contains(part), "{part}: {}", damaged.reason);
        }

        let fenced = Failure::from(StoreError::Fenced {
            pipeline: "views@0".into(),
            partition: 1,
            epoch: 3,
            current: 4,
        });
        assert_eq!(fenced.class, FailureClass::Fenced);
        assert_eq!(fenced.class.recovery(), Recovery::Stop);

        let io = Failure::from(StreamError::Log {
            op: "read",
            topic: "events".into(),
            partition: 0,
            source: LogError::Closed,
        });
        assert_eq!(
            (io.class, io.class.recovery()),
            (FailureClass::Log, Recovery::Retry)
        );
        assert!(!io.class.cleared_by_progress());
    }
}
