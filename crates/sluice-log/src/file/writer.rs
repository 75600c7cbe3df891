//! The partition writer: one thread per partition with appends, doing group commit.
//!
//! Appenders encode and checksum their batch in their own task, take byte permits from the
//! partition's pending budget (backpressure), send the frame on a bounded channel and wait on a
//! oneshot. The writer takes every request that is queued (up to [`ROUND_BYTES`]), assigns
//! offsets and writes them with one positional write: a round. Then, by ack mode:
//! - `fsync`: the round goes to the [`syncer`](super::syncer) thread, which syncs once for all
//!   rounds written since its last sync, publishes them and acknowledges. The writer meanwhile
//!   writes the next rounds, so syncs follow each other with no gap and the more appends wait,
//!   the more each sync carries.
//! - `write`: the writer publishes and acknowledges right after the write.
//! - `none`: appends are acknowledged as soon as they have offsets, before the write.
//!
//! A failed write is rolled back (the file truncated to where the round started) and its
//! appenders get the error; a failed sync poisons the partition, because after a failed `fsync`
//! Linux may have dropped the dirty pages, and only reopening (recovery) tells what is on disk.

use super::format;
use super::fs::{io_error, sync_dir};
use super::index::SegmentIndex;
use super::partition::Partition;
use super::queue::{AppendRequest, Failure, QUEUE_DEPTH, WriterHandle, WriterSlot, WriterStats};
use super::segment::{self, Segment};
use super::syncer::{self, PendingAck, Syncer, ToSyncer, Written};
use crate::config::AckMode;
use crate::record::AppendResult;
use crate::{LogError, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Bytes one round takes from the queue before it writes and syncs.
const ROUND_BYTES: usize = 8 << 20;

impl Partition {
    /// A sender to this partition's writer, starting the writer on first use.
    pub(crate) fn sender(
        self: &Arc<Self>,
        lock: &Option<Arc<File>>,
    ) -> Result<mpsc::Sender<AppendRequest>> {
        if self.read_only {
            return Err(LogError::ReadOnly {
                path: self.dir.clone(),
            });
        }
        let mut slot = self.writer.lock();
        match &*slot {
            WriterSlot::Running(handle) => Ok(handle.sender.clone()),
            WriterSlot::Closed => Err(LogError::Closed),
            WriterSlot::Idle => {
                let handle = spawn(Arc::clone(self), lock.clone())?;
                let sender = handle.sender.clone();
                *slot = WriterSlot::Running(handle);
                Ok(sender)
            }
        }
    }

    /// Stops accepting appends and hands back the writer to join, if one runs. The writer
    /// finishes what is queued, syncs and writes the active segment's index.
    pub(crate) fn close(&self) -> Option<WriterHandle> {
        match std::mem::replace(&mut *self.writer.lock(), WriterSlot::Closed) {
            WriterSlot::Running(handle) => Some(handle),
            WriterSlot::Idle | WriterSlot::Closed => None,
        }
    }
}

/// Starts the writer thread of `partition` (and its syncer in `fsync` mode). `lock` (the log
/// directory's lock) is held until the writer ends, so a new open of the log waits for the
/// last write of the old one.
pub(crate) fn spawn(partition: Arc<Partition>, lock: Option<Arc<File>>) -> Result<WriterHandle> {
    let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
    let active = {
        let segments = partition.segments.read();
        let last = segments.last().expect("a partition has an active segment");
        Active::of(last)
    };
    let labels = [
        ("topic", partition.topic.clone()),
        ("partition", partition.id.to_string()),
    ];
    let instruments = Instruments {
        records: metrics::counter!("sluice_log_appended_records_total", &labels),
        bytes: metrics::counter!("sluice_log_appended_bytes_total", &labels),
        round_appends: metrics::histogram!("sluice_log_group_commit_appends", &labels),
    };
    let failure = Failure::default();
    let thread_name = |role: &str| {
        format!("log-{role}-{}", partition.id)
            .chars()
            .take(15)
            .collect::<String>()
    };
    let syncer = if partition.config.ack == AckMode::Fsync {
        let (to_syncer, from_writer) = sync_channel(syncer::ROUNDS_AHEAD);
        let syncer = Syncer {
            partition: Arc::clone(&partition),
            failure: failure.clone(),
            stats: Arc::clone(&partition.stats),
            syncs: metrics::counter!("sluice_log_syncs_total", &labels),
            sync_seconds: metrics::histogram!("sluice_log_sync_seconds", &labels),
        };
        let thread = std::thread::Builder::new()
            .name(thread_name("sync"))
            .spawn(move || syncer.run(from_writer))
            .map_err(io_error("starting the sync thread of", partition.dir()))?;
        Some((to_syncer, thread))
    } else {
        None
    };
    let checkpoint = Checkpoint::of(&active.index);
    let writer = Writer {
        partition: Arc::clone(&partition),
        active,
        checkpoint,
        buf: Vec::new(),
        syncer,
        failure,
        instruments,
        stats: Arc::clone(&partition.stats),
        _lock: lock,
    };
    let thread = std::thread::Builder::new()
        .name(thread_name("writer"))
        .spawn(move || writer.run(receiver))
        .map_err(io_error("starting the writer thread of", partition.dir()))?;
    Ok(WriterHandle { sender, thread })
}

struct Instruments {
    records: metrics::Counter,
    bytes: metrics::Counter,
    round_appends: metrics::Histogram,
}

/// The active segment as the writer sees it: everything written, published or not.
struct Active {
    base_offset: u64,
    path: PathBuf,
    file: Arc<File>,
    /// The index of every batch written.
    index: SegmentIndex,
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
            created,
        }
    }
}

/// The active segment's extent where the current round started: where its frames are written,
/// and what a failed write rolls back to.
#[derive(Debug, Clone, Copy)]
struct Checkpoint {
    bytes: u64,
    entries: usize,
    end_offset: u64,
    max_timestamp: i64,
}

impl Checkpoint {
    fn of(index: &SegmentIndex) -> Self {
        Self {
            bytes: index.segment_bytes,
            entries: index.entries.len(),
            end_offset: index.end_offset,
            max_timestamp: index.max_timestamp,
        }
    }
}

struct Writer {
    partition: Arc<Partition>,
    active: Active,
    checkpoint: Checkpoint,
    /// Frames of the current round, written with one call.
    buf: Vec<u8>,
    /// The sync stage, in `fsync` mode.
    syncer: Option<(SyncSender<ToSyncer>, std::thread::JoinHandle<()>)>,
    failure: Failure,
    instruments: Instruments,
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
            self.instruments.round_appends.record(round.len() as f64);
            self.commit(&mut round);
        }
        self.close();
    }

    fn config(&self) -> &crate::config::LogConfig {
        &self.partition.config
    }

    fn failed(&self, reason: String) -> LogError {
        LogError::WriterFailed {
            path: self.partition.dir().to_owned(),
            reason,
        }
    }

    /// Assigns offsets to a round of appends and writes it; acknowledges per the ack mode.
    fn commit(&mut self, round: &mut Vec<AppendRequest>) {
        if let Some(reason) = self.failure.get() {
            for request in round.drain(..) {
                let _ = request.ack.send(Err(self.failed(reason.clone())));
            }
            return;
        }
        let ack = self.config().ack;
        let interval = self.config().index_interval_bytes.bytes();
        let mut acks: Vec<PendingAck> = Vec::with_capacity(round.len());
        for mut request in round.drain(..) {
            let len = request.frame.len() as u64;
            if self.needs_roll(len) {
                self.write_round(std::mem::take(&mut acks));
                if let Err(error) = self.roll() {
                    let _ = request.ack.send(Err(error));
                    continue;
                }
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
            self.instruments.records.increment(u64::from(count));
            self.instruments.bytes.increment(request.record_bytes);
            let result = AppendResult::contiguous(base_offset, count);
            if ack == AckMode::None {
                let _ = request.ack.send(Ok(result));
            } else {
                acks.push((request.ack, result, request.permit));
            }
        }
        self.write_round(acks);
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

    /// Writes the buffered frames where the round started, then hands the round to the syncer
    /// (`fsync`) or publishes and acknowledges it at once (`write`, `none`).
    fn write_round(&mut self, acks: Vec<PendingAck>) {
        if self.buf.is_empty() && acks.is_empty() {
            return;
        }
        let start = self.checkpoint;
        if !self.buf.is_empty() {
            let written = self.active.file.write_all_at(&self.buf, start.bytes);
            self.buf.clear();
            if let Err(error) = written {
                let error = io_error("writing", &self.active.path)(error);
                self.roll_back(start, &error);
                let failed = Written {
                    file: Arc::clone(&self.active.file),
                    path: self.active.path.clone(),
                    segment_bytes: start.bytes,
                    end_offset: start.end_offset,
                    max_timestamp: start.max_timestamp,
                    entries: Vec::new(),
                    acks,
                };
                syncer::acknowledge(vec![failed], &Err(error));
                return;
            }
            self.stats.writes.fetch_add(1, Ordering::Relaxed);
            self.stats.bytes_written.fetch_add(
                self.active.index.segment_bytes - start.bytes,
                Ordering::Relaxed,
            );
        }
        let index = &self.active.index;
        let round = Written {
            file: Arc::clone(&self.active.file),
            path: self.active.path.clone(),
            segment_bytes: index.segment_bytes,
            end_offset: index.end_offset,
            max_timestamp: index.max_timestamp,
            entries: index.entries[start.entries..].to_vec(),
            acks,
        };
        self.checkpoint = Checkpoint::of(index);
        match &self.syncer {
            Some((to_syncer, _)) => {
                if let Err(unsent) = to_syncer.send(ToSyncer::Round(round)) {
                    let ToSyncer::Round(round) = unsent.0 else {
                        unreachable!("a round was sent")
                    };
                    let error = self.failed("the sync thread stopped".to_owned());
                    self.failure.set(error.to_string());
                    syncer::acknowledge(vec![round], &Err(error));
                }
            }
            None => {
                syncer::publish(&self.partition, std::slice::from_ref(&round));
                syncer::acknowledge(vec![round], &Ok(()));
            }
        }
    }

    /// Undoes a failed write: truncates the file to where the round started and forgets the
    /// round's batches. If even that fails, or appends were already acknowledged (`ack = none`),
    /// the partition refuses further appends: their offsets would otherwise be handed out twice.
    fn roll_back(&mut self, start: Checkpoint, error: &LogError) {
        let index = &mut self.active.index;
        index.entries.truncate(start.entries);
        index.segment_bytes = start.bytes;
        index.end_offset = start.end_offset;
        index.max_timestamp = start.max_timestamp;
        if let Err(truncate) = self.active.file.set_len(start.bytes) {
            self.failure.set(format!(
                "could not truncate {} after a failed write ({error}): {truncate}",
                self.active.path.display()
            ));
        } else if self.config().ack == AckMode::None {
            self.failure.set(format!(
                "a write failed after its appends were acknowledged (ack = none): {error}"
            ));
        }
        tracing::error!(
            topic = %self.partition.topic,
            partition = self.partition.id,
            %error,
            "append failed"
        );
    }

    /// Makes everything written so far durable and published: through the syncer in `fsync`
    /// mode, else by syncing here (rolls and shutdown sync in every mode).
    fn barrier(&mut self) -> Result<()> {
        if let Some(reason) = self.failure.get() {
            return Err(self.failed(reason));
        }
        match &self.syncer {
            Some((to_syncer, _)) => {
                let (answer, answered) = sync_channel(1);
                to_syncer
                    .send(ToSyncer::Barrier(answer))
                    .map_err(|_| self.failed("the sync thread stopped".to_owned()))?;
                answered
                    .recv()
                    .map_err(|_| self.failed("the sync thread stopped".to_owned()))?
            }
            None => self.active.file.sync_data().map_err(|error| {
                let error = io_error("syncing", &self.active.path)(error);
                self.failure.set(error.to_string());
                error
            }),
        }
    }

    /// Seals the active segment and starts the next one: everything written is made durable
    /// and published (a sealed segment is complete on disk before the next one gets data), the
    /// sealed segment's index is written, and the new segment file is created and its
    /// directory entry synced.
    fn roll(&mut self) -> Result<()> {
        self.barrier()?;
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
            damage: None,
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
            created: SystemTime::now(),
        };
        self.checkpoint = Checkpoint::of(&self.active.index);
        Ok(())
    }

    /// At shutdown: make everything durable and published, stop the syncer, and write the
    /// active segment's index so the next open needs no scan.
    fn close(mut self) {
        let synced = self.barrier();
        if let Some((to_syncer, thread)) = self.syncer.take() {
            drop(to_syncer);
            let _ = thread.join();
        }
        if synced.is_err() {
            return;
        }
        if let Err(error) = segment::write_index(&self.active.path, &self.active.index) {
            tracing::warn!(segment = %self.active.path.display(), %error, "could not write a segment index");
        }
    }
}
