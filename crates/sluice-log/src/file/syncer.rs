//! The second stage of a partition's group commit in `fsync` mode: the syncer thread.
//!
//! The writer thread writes round after round into the page cache and hands each written round
//! to the syncer. The syncer takes every round handed over so far, runs one `fdatasync` (which
//! covers all bytes written before it started), then publishes those rounds to readers and
//! acknowledges their appends. While it syncs, the writer already writes the next rounds, so
//! the disk always has the next sync waiting and the CPU work of a round (copying, assigning
//! offsets, indexing, waking appenders) overlaps the I/O instead of adding to it.
//!
//! Rolls and shutdown send a [`ToSyncer::Barrier`]: the syncer syncs and publishes everything
//! before it and answers, so a segment is durable and fully published before the next exists.

use super::fs::io_error;
use super::index::IndexEntry;
use super::partition::Partition;
use super::queue::{Failure, WriterStats};
use crate::record::AppendResult;
use crate::{LogError, Result};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

/// Rounds written but not yet synced that the writer may get ahead by.
pub(crate) const ROUNDS_AHEAD: usize = 64;

/// An acknowledgement waiting for its round to be durable, with the queue budget it holds.
pub(crate) type PendingAck = (
    oneshot::Sender<Result<AppendResult>>,
    AppendResult,
    OwnedSemaphorePermit,
);

/// A round the writer wrote into the page cache.
#[derive(Debug)]
pub(crate) struct Written {
    /// The active segment's file and path.
    pub(crate) file: Arc<File>,
    pub(crate) path: PathBuf,
    /// The segment's extent after this round.
    pub(crate) segment_bytes: u64,
    pub(crate) end_offset: u64,
    pub(crate) max_timestamp: i64,
    /// Index entries this round added.
    pub(crate) entries: Vec<IndexEntry>,
    /// The appends of this round.
    pub(crate) acks: Vec<PendingAck>,
}

/// What the writer sends the syncer.
#[derive(Debug)]
pub(crate) enum ToSyncer {
    /// A written round to sync, publish and acknowledge.
    Round(Written),
    /// Sync and publish everything sent before, then answer.
    Barrier(SyncSender<Result<()>>),
}

/// Makes written rounds visible to readers: extends the active segment's published extent and
/// index, then wakes tail-following readers. Called once what the rounds hold is durable under
/// the ack mode.
pub(crate) fn publish(partition: &Partition, rounds: &[Written]) {
    let Some(last_round) = rounds.last() else {
        return;
    };
    {
        let mut segments = partition.segments.write();
        let last = segments
            .last_mut()
            .expect("a partition has an active segment");
        for round in rounds {
            last.index.entries.extend_from_slice(&round.entries);
        }
        last.index.segment_bytes = last_round.segment_bytes;
        last.index.end_offset = last_round.end_offset;
        last.index.max_timestamp = last_round.max_timestamp;
    }
    partition.end.send_replace(last_round.end_offset);
}

/// Acknowledges every append of `rounds` with `result` (an error is copied to each).
pub(crate) fn acknowledge(rounds: Vec<Written>, result: &Result<()>) {
    for round in rounds {
        for (ack, appended, permit) in round.acks {
            let _ = ack.send(match result {
                Ok(()) => Ok(appended),
                Err(error) => Err(copy_error(error)),
            });
            drop(permit);
        }
    }
}

/// `LogError` is not `Clone` (it holds an `io::Error`); each waiting append gets an
/// equivalent copy.
pub(crate) fn copy_error(error: &LogError) -> LogError {
    match error {
        LogError::DiskFull { path } => LogError::DiskFull { path: path.clone() },
        LogError::Io { op, path, source } => LogError::Io {
            op,
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        LogError::WriterFailed { path, reason } => LogError::WriterFailed {
            path: path.clone(),
            reason: reason.clone(),
        },
        other => LogError::WriterFailed {
            path: PathBuf::new(),
            reason: other.to_string(),
        },
    }
}

pub(crate) struct Syncer {
    pub(crate) partition: Arc<Partition>,
    pub(crate) failure: Failure,
    pub(crate) stats: Arc<WriterStats>,
    pub(crate) syncs: metrics::Counter,
    pub(crate) sync_seconds: metrics::Histogram,
}

impl Syncer {
    pub(crate) fn run(self, receiver: Receiver<ToSyncer>) {
        let mut rounds = Vec::new();
        while let Ok(first) = receiver.recv() {
            let mut barrier = None;
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    ToSyncer::Round(written) => rounds.push(written),
                    ToSyncer::Barrier(answer) => {
                        barrier = Some(answer);
                        break;
                    }
                }
                next = receiver.try_recv().ok();
            }
            let result = self.sync(&rounds);
            if result.is_ok() {
                publish(&self.partition, &rounds);
            }
            acknowledge(std::mem::take(&mut rounds), &result);
            if let Some(answer) = barrier {
                let _ = answer.send(result);
            }
        }
    }

    fn sync(&self, rounds: &[Written]) -> Result<()> {
        if let Some(reason) = self.failure.get() {
            return Err(LogError::WriterFailed {
                path: self.partition.dir().to_owned(),
                reason,
            });
        }
        let Some(last) = rounds.last() else {
            return Ok(());
        };
        let started = Instant::now();
        if let Err(error) = last.file.sync_data() {
            let error = io_error("syncing", &last.path)(error);
            // After a failed fsync the kernel may have dropped the dirty pages: only recovery
            // can tell what is on disk.
            self.failure.set(error.to_string());
            tracing::error!(
                topic = %self.partition.topic,
                partition = self.partition.id,
                %error,
                "sync failed; appends to this partition stop until sluice restarts"
            );
            return Err(error);
        }
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        self.syncs.increment(1);
        self.sync_seconds.record(started.elapsed().as_secs_f64());
        Ok(())
    }
}
