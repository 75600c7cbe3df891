//! The partition writer: one thread per partition with appends, doing group commit.
//!
//! Appenders encode and checksum their batch in their own task, take byte permits from the
//! partition's pending budget (backpressure), send the frame on a bounded channel and wait on a
//! oneshot. The writer takes every request that is queued (up to [`ROUND_BYTES`]), assigns
//! offsets, writes all frames with one positional write, syncs once (`fsync` mode), publishes the
//! new end to readers, and only then completes the acks. While it syncs, new requests queue up
//! for the next round, so the number of syncs per append falls as load rises.
//!
//! A failed write is rolled back (the file is truncated to the published length) and its
//! appenders get the error; a failed sync poisons the writer, because after a failed `fsync`
//! Linux may have dropped the dirty pages, and only reopening (recovery) tells what is on disk.

use super::format::{self, EncodedBatch};
use super::fs::{io_error, sync_dir};
use super::index::SegmentIndex;
use super::partition::Partition;
use super::segment::{self, Segment};
use crate::config::AckMode;
use crate::record::AppendResult;
use crate::{LogError, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

/// Requests a writer's channel holds; the pending-bytes budget usually binds first.
pub(crate) const QUEUE_DEPTH: usize = 4096;
/// Bytes one round takes from the queue before it writes and syncs.
const ROUND_BYTES: usize = 8 << 20;

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

/// Starts the writer thread of `partition`. `lock` (the log directory's lock) is held until the
/// thread ends, so a new open of the log waits for the last write of the old one.
pub(crate) fn spawn(partition: Arc<Partition>, lock: Option<Arc<File>>) -> Result<WriterHandle> {
    let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
    let active = {
        let segments = partition.segments.read();
        let last = segments.last().expect("a partition has an active segment");
        Active::of(last)
    };
    let name = format!("log-writer-{}-{}", partition.topic, partition.id);
    let labels = [
        ("topic", partition.topic.clone()),
        ("partition", partition.id.to_string()),
    ];
    let metrics = Metrics {
        records: metrics::counter!("sluice_log_appended_records_total", &labels),
        bytes: metrics::counter!("sluice_log_appended_bytes_total", &labels),
        syncs: metrics::counter!("sluice_log_syncs_total", &labels),
        sync_seconds: metrics::histogram!("sluice_log_sync_seconds", &labels),
        round_appends: metrics::histogram!("sluice_log_group_commit_appends", &labels),
    };
    let stats = partition.stats.clone();
    let writer = Writer {
        partition: Arc::clone(&partition),
        active,
        buf: Vec::new(),
        waiting: Vec::new(),
        failed: None,
        metrics,
        stats,
        _lock: lock,
    };
    let thread = std::thread::Builder::new()
        .name(name.chars().take(15).collect())
        .spawn(move || writer.run(receiver))
        .map_err(io_error("starting the writer thread of", partition.dir()))?;
    Ok(WriterHandle { sender, thread })
}

struct Metrics {
    records: metrics::Counter,
    bytes: metrics::Counter,
    syncs: metrics::Counter,
    sync_seconds: metrics::Histogram,
    round_appends: metrics::Histogram,
}

/// The active segment as the writer sees it: published state plus staged batches.
struct Active {
    base_offset: u64,
    path: PathBuf,
    file: Arc<File>,
    /// The index including batches written but not yet published.
    index: SegmentIndex,
    /// Bytes of the file that readers may read.
    published_bytes: u64,
    /// When the segment was created, for `segment-age`.
    created: SystemTime,
}

impl Active {
    fn of(segment: &Segment) -> Self {
        let created = segment
            .file
            .metadata()
            .and_then(|m| m.created().or_else(|_| m.modified()))
            .unwrap_or_else(|_| SystemTime::now());
        Self {
            base_offset: segment.base_offset,
            path: segment.path.clone(),
            file: Arc::clone(&segment.file),
            index: segment.index.clone(),
            published_bytes: segment.index.segment_bytes,
            created,
        }
    }
}

struct Writer {
    partition: Arc<Partition>,
    active: Active,
    /// Frames of the current round, written with one call.
    buf: Vec<u8>,
    /// Acks to send once the current round is durable.
    waiting: Vec<(oneshot::Sender<Result<AppendResult>>, AppendResult)>,
    /// Why the writer refuses appends, after a failure it cannot undo.
    failed: Option<String>,
    metrics: Metrics,
    stats: Arc<WriterStats>,
    _lock: Option<Arc<File>>,
}

impl Writer {
    fn run(mut self, mut receiver: mpsc::Receiver<AppendRequest>) {
        let mut round = Vec::new();
        while let Some(first) = receiver.blocking_recv() {
            let mut bytes = first.frame.len();
            round.push(first);
            while bytes < ROUND_BYTES {
                match receiver.try_recv() {
                    Ok(request) => {
                        bytes += request.frame.len();
                        round.push(request);
                    }
                    Err(_) => break,
                }
            }
            self.metrics.round_appends.record(round.len() as f64);
            self.commit(&mut round);
        }
        self.close();
    }

    fn config(&self) -> &crate::config::LogConfig {
        &self.partition.config
    }

    /// Writes a round of appends and acknowledges them once durable under the ack mode.
    fn commit(&mut self, round: &mut Vec<AppendRequest>) {
        if let Some(reason) = &self.failed {
            for request in round.drain(..) {
                let _ = request.ack.send(Err(self.poisoned(reason)));
            }
            return;
        }
        let ack = self.config().ack;
        let interval = self.config().index_interval_bytes.bytes();
        for mut request in round.drain(..) {
            let len = request.frame.len() as u64;
            if self.needs_roll(len)
                && let Err(error) = self.roll()
            {
                let _ = request.ack.send(Err(error));
                continue;
            }
            let base_offset = self.active.index.end_offset;
            let count = request.batch.record_count;
            format::set_base_offset(&mut request.frame, base_offset);
            let relative = u32::try_from(base_offset - self.active.base_offset)
                .expect("a segment holds fewer than 2^32 offsets");
            self.active.index.push_batch(
                relative,
                base_offset + u64::from(count),
                len,
                request.batch.max_timestamp,
                interval,
            );
            self.buf.extend_from_slice(&request.frame);
            self.metrics.records.increment(u64::from(count));
            self.metrics.bytes.increment(request.record_bytes);
            let result = AppendResult { base_offset, count };
            if ack == AckMode::None {
                let _ = request.ack.send(Ok(result));
            } else {
                self.waiting.push((request.ack, result));
            }
            drop(request.permit);
        }
        let _ = self.flush(ack == AckMode::Fsync);
    }

    fn needs_roll(&self, len: u64) -> bool {
        let size = self.active.index.segment_bytes;
        if size == 0 {
            return false;
        }
        let config = self.config();
        size + len > config.segment_bytes.bytes()
            || self.active.created.elapsed().unwrap_or_default() >= config.segment_age.get()
    }

    /// Writes the buffered frames, syncs when asked, publishes them and completes the waiting
    /// acks. On failure every waiting append gets the error.
    fn flush(&mut self, sync: bool) -> Result<()> {
        let result = self.write_and_sync(sync);
        match &result {
            Ok(()) => {
                self.publish();
                for (ack, appended) in self.waiting.drain(..) {
                    let _ = ack.send(Ok(appended));
                }
            }
            Err(error) => {
                let message = error.to_string();
                for (ack, _) in std::mem::take(&mut self.waiting) {
                    let _ = ack.send(Err(self.copy_error(error)));
                }
                tracing::error!(
                    topic = %self.partition.topic,
                    partition = self.partition.id,
                    error = %message,
                    "append failed"
                );
            }
        }
        result
    }

    fn write_and_sync(&mut self, sync: bool) -> Result<()> {
        if !self.buf.is_empty() {
            let position = self.active.published_bytes;
            if let Err(error) = self.active.file.write_all_at(&self.buf, position) {
                let error = io_error("writing", &self.active.path)(error);
                self.roll_back();
                return Err(error);
            }
            self.stats.writes.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes_written
                .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
        }
        if sync {
            let started = Instant::now();
            if let Err(error) = self.active.file.sync_data() {
                let error = io_error("syncing", &self.active.path)(error);
                self.failed = Some(error.to_string());
                return Err(error);
            }
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
            self.metrics.syncs.increment(1);
            self.metrics
                .sync_seconds
                .record(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Undoes a failed write: truncates the file to what was published and forgets the staged
    /// batches. If even that fails, or appends were already acknowledged (`ack = none`), the
    /// writer refuses further appends: their offsets would otherwise be handed out twice.
    fn roll_back(&mut self) {
        self.buf.clear();
        let published = self
            .partition
            .segments
            .read()
            .last()
            .map(|s| s.index.clone());
        if let Some(index) = published {
            self.active.index = index;
        }
        if let Err(error) = self.active.file.set_len(self.active.published_bytes) {
            self.failed = Some(format!(
                "could not truncate {} after a failed write: {error}",
                self.active.path.display()
            ));
        } else if self.config().ack == AckMode::None {
            self.failed =
                Some("a write failed after its appends were acknowledged (ack = none)".to_owned());
        }
    }

    /// Makes the written frames visible to readers and wakes tail-following readers.
    fn publish(&mut self) {
        self.buf.clear();
        let end_offset = self.active.index.end_offset;
        {
            let mut segments = self.partition.segments.write();
            let last = segments
                .last_mut()
                .expect("a partition has an active segment");
            debug_assert_eq!(last.base_offset, self.active.base_offset);
            let published = last.index.entries.len();
            last.index
                .entries
                .extend_from_slice(&self.active.index.entries[published..]);
            last.index.segment_bytes = self.active.index.segment_bytes;
            last.index.end_offset = end_offset;
            last.index.max_timestamp = self.active.index.max_timestamp;
        }
        self.active.published_bytes = self.active.index.segment_bytes;
        self.partition.end.send_replace(end_offset);
    }

    /// Seals the active segment and starts the next one: what is buffered is written, synced
    /// (in every ack mode: a sealed segment is complete on disk before the next one gets data),
    /// published and acknowledged; the sealed segment's index is written; the new segment file
    /// is created and its directory entry synced.
    fn roll(&mut self) -> Result<()> {
        self.flush(true)?;
        if let Err(error) = segment::write_index(&self.active.path, &self.active.index) {
            // Not fatal: a missing index is rebuilt by scanning at the next open.
            tracing::warn!(segment = %self.active.path.display(), %error, "could not write a segment index");
        }
        let base_offset = self.active.index.end_offset;
        let path = segment::log_path(self.partition.dir(), base_offset);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error("creating segment", &path))?;
        sync_dir(self.partition.dir())?;
        let file = Arc::new(file);
        self.partition.segments.write().push(Segment {
            base_offset,
            path: path.clone(),
            file: Arc::clone(&file),
            index: SegmentIndex::empty(base_offset),
        });
        tracing::debug!(
            topic = %self.partition.topic,
            partition = self.partition.id,
            base_offset,
            "rolled a new segment"
        );
        self.active = Active {
            base_offset,
            path,
            file,
            index: SegmentIndex::empty(base_offset),
            published_bytes: 0,
            created: SystemTime::now(),
        };
        Ok(())
    }

    /// At shutdown: sync what `write`/`none` left in the page cache and write the active
    /// segment's index, so the next open needs no scan.
    fn close(mut self) {
        if self.failed.is_some() {
            return;
        }
        if self.config().ack != AckMode::Fsync && self.flush(true).is_err() {
            return;
        }
        if let Err(error) = segment::write_index(&self.active.path, &self.active.index) {
            tracing::warn!(segment = %self.active.path.display(), %error, "could not write a segment index");
        }
    }

    fn poisoned(&self, reason: &str) -> LogError {
        LogError::WriterFailed {
            path: self.partition.dir().to_owned(),
            reason: reason.to_owned(),
        }
    }

    /// `LogError` is not `Clone` (it holds an `io::Error`); each waiting append gets an
    /// equivalent copy.
    fn copy_error(&self, error: &LogError) -> LogError {
        match error {
            LogError::DiskFull { path } => LogError::DiskFull { path: path.clone() },
            LogError::Io { op, path, source } => LogError::Io {
                op,
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            other => self.poisoned(&other.to_string()),
        }
    }
}
