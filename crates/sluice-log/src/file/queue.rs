//! The hand-off between appenders and a partition's writer thread: what an append sends, the
//! running writer's handle, and the state the writer shares with its syncer and the log.
//!
//! Types only. [`Partition`](super::partition::Partition) holds a [`WriterSlot`]; the
//! [`writer`](super::writer) starts the thread that fills it.

use super::format::EncodedBatch;
use crate::Result;
use crate::record::AppendResult;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

/// Requests a writer's channel holds; the pending-bytes budget usually binds first.
pub(crate) const QUEUE_DEPTH: usize = 4096;

/// One append waiting for the writer.
#[derive(Debug)]
pub(crate) struct AppendRequest {
    /// The encoded batch, base offset not yet set.
    pub(crate) frame: Vec<u8>,
    pub(crate) batch: EncodedBatch,
    /// Summed record sizes (for metrics).
    pub(crate) record_bytes: u64,
    pub(crate) ack: oneshot::Sender<Result<AppendResult>>,
    /// Released when the request is done: the pending-bytes budget.
    pub(crate) permit: OwnedSemaphorePermit,
}

/// A running writer: its channel and its thread.
#[derive(Debug)]
pub(crate) struct WriterHandle {
    pub(crate) sender: mpsc::Sender<AppendRequest>,
    pub(crate) thread: std::thread::JoinHandle<()>,
}

/// Counters of what every writer of a log did, for `sluice bench log` and metrics.
#[derive(Debug, Default)]
pub(crate) struct WriterStats {
    pub(crate) writes: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
}

/// Why a partition stopped taking appends, shared by its writer and syncer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Failure(Arc<Mutex<Option<String>>>);

impl Failure {
    pub(crate) fn get(&self) -> Option<String> {
        self.0.lock().clone()
    }

    pub(crate) fn set(&self, reason: String) {
        self.0.lock().get_or_insert(reason);
    }
}

/// A partition's writer: not started before the first append, running, or closed for good.
#[derive(Debug)]
pub(crate) enum WriterSlot {
    Idle,
    Running(WriterHandle),
    Closed,
}
