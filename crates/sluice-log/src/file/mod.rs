//! The built-in log: topics of partitions of segment files in one directory.
//!
//! # Directory layout
//!
//! ```text
//! <dir>/LOCK                                   exclusive lock of the process that writes
//! <dir>/topics/<topic>/topic.json              {"version":1,"partitions":8,
//!                                               "retention-age-ms":null,"retention-bytes":null}
//! <dir>/topics/<topic>/<partition>/<base>.log  segment: batches, base = first offset (20 digits)
//! <dir>/topics/<topic>/<partition>/<base>.idx  sparse offset + time index of a sealed segment
//! <dir>/topics/<topic>/<partition>/epochs      where each epoch of offsets begins (only once a
//!                                               recovery cut a tail; see [`epochs`])
//! <dir>/topics/<topic>/<partition>/gaps        offsets recorded as lost (only once salvage
//!                                               found damage; see [`gaps`])
//! <dir>/quarantine/<topic>/<partition>/<base>-<byte>.bin   damaged bytes salvage set aside,
//! <dir>/quarantine/<topic>/<partition>/<base>-<byte>.json  and what they held (see [`salvage`])
//! <dir>/groups/<group>.json                    consumer offsets: {"version":1,
//!                                               "offsets":{"<topic>":{"<partition>":<next>}}}
//! ```
//!
//! # Segment format
//!
//! A segment is a sequence of batches, one per append, each framed and checksummed. All
//! integers are little-endian; `varint` is unsigned LEB128, `zigzag` maps signed to unsigned.
//!
//! ```text
//! struct Batch {
//!     base_offset: u64,       // offset of the first record; NOT covered by the CRC
//!     length: u32,            // bytes after this field (crc .. end of records)
//!     crc: u32,               // CRC32C (Castagnoli) of every byte after this field
//!     magic: u8,              // format version, 1
//!     attributes: u8,         // reserved, 0
//!     record_count: u32,      // >= 1
//!     first_timestamp: i64,   // ms since the epoch, of the first record
//!     max_timestamp: i64,     // largest record timestamp
//!     records: [Record; record_count],
//! }
//! struct Record {
//!     timestamp_delta: zigzag varint,   // timestamp - first_timestamp (wrapping)
//!     key_len_plus_one: varint,         // 0 = no key
//!     key: [u8; key_len],
//!     value_len: varint,
//!     value: [u8; value_len],
//!     header_count: varint,
//!     headers: [{ key_len: varint, key: utf8, value_len: varint, value: [u8] }; header_count],
//! }
//! struct IndexFile {                    // <base>.idx
//!     magic: [u8; 4] = "SLIX", version: u8 = 1, _pad: [u8; 3],
//!     segment_bytes: u64,               // length of the segment this index describes
//!     end_offset: u64,                  // offset after the segment's last record
//!     max_timestamp: i64,               // newest record (drives age retention)
//!     entry_count: u32,
//!     entries: [{ relative_offset: u32, position: u32, max_timestamp_before: i64 }],
//!     crc: u32,                         // CRC32C of everything before it
//! }
//! struct EpochFile {                    // <partition>/epochs, replaced atomically
//!     magic: [u8; 4] = "SLEP", version: u8 = 1, _pad: [u8; 3],
//!     count: u32,                       // >= 1
//!     entries: [{ epoch: u32, start_offset: u64 }; count],  // from epoch 0 at offset 0;
//!                                       // epochs increase, start offsets never decrease
//!     crc: u32,                         // CRC32C of everything before it
//! }
//! struct GapFile {                      // <partition>/gaps, replaced atomically
//!     magic: [u8; 4] = "SLGP", version: u8 = 1, _pad: [u8; 3],
//!     count: u32,
//!     entries: [{ start: u64, end: u64 }; count],  // sorted, non-empty, apart
//!     crc: u32,                         // CRC32C of everything before it
//! }
//! ```
//!
//! Invariants: offsets are dense within a segment: batch `n + 1` starts at batch `n`'s base
//! offset plus its record count. A segment's base offset is the previous segment's end, or the
//! end of a recorded gap that starts there (salvage puts the intact batches after damage in a
//! segment of their own, so gaps only lie between segments); offsets between segments that no
//! recorded gap covers are damage. Only the last segment of a partition (the active one) is
//! ever appended to; a segment is synced before the next one is created; index entries are
//! sorted by offset, position and `max_timestamp_before` (see [`index`]).
//!
//! # Durability and visibility
//!
//! Each partition has one writer thread ([`writer`]) doing group commit: it takes every append
//! queued and writes them with one positional write (a round). In `fsync` mode a second thread
//! ([`syncer`]) takes every round written since its last sync, syncs once, publishes the new end
//! to readers and then acknowledges, while the writer already writes the next rounds. The ack
//! mode ([`AckMode`](crate::AckMode)) decides what "durable" means:
//!
//! | mode | acknowledged after | a crash of sluice loses | a crash of the machine loses |
//! |---|---|---|---|
//! | `fsync` (default) | `fdatasync` | nothing | nothing |
//! | `write` | `write(2)` to the page cache | nothing | up to the kernel's writeback delay (~30 s) |
//! | `none` | the writer took the batch | the last moments of appends (< 1 round) | like `write`, and more |
//!
//! `fsync` costs one sync per round, not per append: with many concurrent appenders a round
//! carries many appends, and throughput approaches the disk's sequential bandwidth. `write` and
//! `none` trade a window of loss for latency, for data that can be regenerated. In `fsync` and
//! `write` modes a record is readable when its append returns; in `none` mode it becomes
//! readable a moment later (once written), so a reader may briefly lag its own appends.
//!
//! Readers see a batch only once it is published, which happens after the sync in `fsync` mode:
//! a reader never sees a record that a crash could take back. Readers find their position under
//! a short read lock, then read with positional reads (`pread`) outside it; tail-following reads
//! wait on a `watch` channel of the published end offset, without polling.
//!
//! # Recovery
//!
//! See [`recovery`]: the active segment of each partition is scanned; after damage, every
//! batch that proves itself is kept with its offset ([`salvage`]: the damaged bytes go to the
//! quarantine, their offsets become a recorded gap, the loss is logged at ERROR) and a torn or
//! damaged tail is cut. Sealed segments use their index, rebuilt by scanning when missing or
//! stale; damage found in one fails only the reads that touch it (`LogError::Corrupt`) until
//! `sluice log repair` ([`repair`]) salvages it. A cut moves the
//! partition's end offset back, so later appends reuse offsets a reader may have seen: it starts
//! a new epoch at the new end ([`epochs`], [`Log::epochs`](crate::Log::epochs)), written durably
//! before the file is cut. Read-only opens (a second process next to a running server) apply the same checks
//! without changing files and treat an incomplete tail as not yet written; they follow the
//! writer by re-reading the directory and the active segment's tail (every 100 ms while a read
//! waits), since no notification crosses processes. Such a reader sees a batch once it is
//! completely written, which in `fsync` mode can be a moment before it is synced.
//!
//! # Layout
//! - [`format`]: batch framing, encode/decode (pure).
//! - [`index`]: the sparse offset and time index and its file format (pure).
//! - [`segment`]: segment files: names, scans, index files, positional reads.
//! - [`recovery`]: opening a partition directory after a crash.
//! - [`salvage`]: keeping the intact batches of a damaged segment, quarantining the rest.
//! - [`repair`]: `sluice log verify` and `sluice log repair`.
//! - [`epochs`], [`gaps`]: a partition's epoch list and recorded gaps (`table`: their codec).
//! - [`partition`]: reads by offset and time, retention.
//! - [`writer`], [`syncer`]: the group-commit writer thread and its sync stage; `queue`: what
//!   appenders hand the writer (requests, the writer's slot in its partition, counters).
//! - `topic`, `offsets`, `fs`: topic metadata, consumer offsets, file helpers.

mod buffered;
pub mod epochs;
pub mod format;
mod fs;
pub mod gaps;
pub mod index;
pub(crate) mod offsets;
mod partition;
mod queue;
pub mod recovery;
pub mod repair;
pub mod salvage;
pub mod segment;
pub mod syncer;
mod table;
mod topic;
pub mod writer;

use crate::config::LogConfig;
use crate::record::{AppendResult, EpochStart, ReadBatch, Record, TopicInfo, TopicSpec};
use crate::{Log, LogError, ReadBuffer, ReadOptions, Result};
use fs::io_error;
use offsets::{OffsetStore, check_group_name};
use parking_lot::{Mutex, RwLock};
use partition::Partition;
use queue::{AppendRequest, WriterStats};
use sluice_core::config::{ConfigProblems, Validate};
use sluice_core::time::{Millis, now_millis};
use std::collections::BTreeMap;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::oneshot;
use topic::{Topic, TopicMeta};

/// The lock file in the log directory.
pub const LOCK_FILE: &str = "LOCK";

/// The built-in segmented file log. Cheap to clone; clones share the log.
#[derive(Debug, Clone)]
pub struct FileLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    config: Arc<LogConfig>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serializes topic creation (which does I/O) without blocking lookups.
    creating: Mutex<()>,
    offsets: OffsetStore,
    /// The directory lock; `None` when opened read-only. Writer threads hold clones, so the lock
    /// outlives the last write.
    lock: Option<Arc<File>>,
    stats: Arc<WriterStats>,
}

/// What the writers of a log did since it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogStats {
    /// Positional writes (one per group-commit round, plus one per segment roll).
    pub writes: u64,
    /// `fdatasync` calls.
    pub syncs: u64,
    /// Bytes written to segment files (frames, headers included).
    pub bytes_written: u64,
}

impl FileLog {
    /// Opens (creating if needed) the log in `dir`, taking its lock and recovering every
    /// partition. Blocking: call it from a blocking context.
    pub fn open(dir: &Path, config: &LogConfig) -> Result<Self> {
        Self::open_with(dir, config, false)
    }

    /// Opens the log in `dir` without its lock, to read next to the process that writes it:
    /// appends, topic creation and offset commits fail with [`LogError::ReadOnly`], and nothing
    /// is repaired. What a writer is still writing is invisible until complete. Blocking.
    pub fn open_read_only(dir: &Path, config: &LogConfig) -> Result<Self> {
        Self::open_with(dir, config, true)
    }

    fn open_with(dir: &Path, config: &LogConfig, read_only: bool) -> Result<Self> {
        let mut problems = Vec::new();
        config.validate("log", &mut problems);
        if !problems.is_empty() {
            return Err(LogError::Invalid(ConfigProblems(problems).to_string()));
        }
        let lock = if read_only {
            if !dir.join("topics").is_dir() {
                return Err(LogError::Invalid(format!(
                    "there is no log in {}; check --data-dir",
                    dir.display()
                )));
            }
            None
        } else {
            Some(Arc::new(lock_dir(dir)?))
        };
        let config = Arc::new(config.clone());
        let stats = Arc::new(WriterStats::default());
        let topics_dir = dir.join("topics");
        let mut topics = BTreeMap::new();
        for entry in std::fs::read_dir(&topics_dir).map_err(io_error("listing", &topics_dir))? {
            let path = entry.map_err(io_error("listing", &topics_dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if !path.is_dir() || crate::record::check_topic_name(&name).is_err() {
                continue;
            }
            let Some(meta) = topic::read_meta(&path)? else {
                tracing::warn!(topic = %name, dir = %path.display(), "skipping a topic whose creation did not finish; create it again to complete it");
                continue;
            };
            let topic = open_topic(dir, &name, meta, &config, &stats, read_only)?;
            topics.insert(name, Arc::new(topic));
        }
        let offsets = OffsetStore::load(&dir.join("groups"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                config,
                topics: RwLock::new(topics),
                creating: Mutex::new(()),
                offsets,
                lock,
                stats,
            }),
        })
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The configuration the log was opened with.
    pub fn config(&self) -> &LogConfig {
        &self.inner.config
    }

    /// Whether the log was opened with [`FileLog::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.lock.is_none()
    }

    /// Counters of the writers since the log was opened.
    pub fn stats(&self) -> LogStats {
        let stats = &self.inner.stats;
        LogStats {
            writes: stats.writes.load(Ordering::Relaxed),
            syncs: stats.syncs.load(Ordering::Relaxed),
            bytes_written: stats.bytes_written.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting appends, lets every writer finish what is queued, and waits for them. The
    /// next open after a close needs no recovery scan. Dropping the last clone without closing
    /// stops the writers too, but does not wait for them.
    pub async fn close(self) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        drop(self);
        blocking(move || inner.close()).await
    }

    /// Deletes expired and excess segments as of `now` (blocking); returns the bytes freed.
    /// [`Log::enforce_retention`] calls it with the current time.
    pub fn enforce_retention_at(&self, now: Millis) -> Result<u64> {
        if self.is_read_only() {
            return Err(self.read_only_error());
        }
        let topics: Vec<Arc<Topic>> = self.inner.topics.read().values().cloned().collect();
        let mut freed = 0;
        for topic in topics {
            let age = topic.meta.retention_age(&self.inner.config);
            let bytes = topic.meta.retention_bytes(&self.inner.config);
            if age.is_none() && bytes.is_none() {
                continue;
            }
            for partition in &topic.partitions {
                freed += partition.enforce_retention(now, age, bytes)?;
            }
        }
        Ok(freed)
    }

    fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>> {
        let topics = self.inner.topics.read();
        let found = topics
            .get(topic)
            .ok_or_else(|| LogError::UnknownTopic(topic.to_owned()))?;
        found
            .partitions
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| LogError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partitions: found.partitions.len() as u32,
            })
    }

    fn read_only_error(&self) -> LogError {
        LogError::ReadOnly {
            path: self.inner.dir.clone(),
        }
    }

    fn create_topic_blocking(&self, spec: TopicSpec) -> Result<()> {
        topic::check_spec(&spec)?;
        if self.is_read_only() {
            return Err(self.read_only_error());
        }
        let _creating = self.inner.creating.lock();
        if let Some(existing) = self.inner.topics.read().get(&spec.name) {
            let existing = existing.partitions.len() as u32;
            return if existing == spec.partitions {
                Ok(())
            } else {
                Err(LogError::TopicMismatch {
                    topic: spec.name,
                    existing,
                    requested: spec.partitions,
                })
            };
        }
        let meta = TopicMeta::from_spec(&spec);
        let dir = self.inner.dir.join("topics").join(&spec.name);
        topic::create_on_disk(&dir, &meta)?;
        let opened = open_topic(
            &self.inner.dir,
            &spec.name,
            meta,
            &self.inner.config,
            &self.inner.stats,
            false,
        )?;
        tracing::info!(topic = %spec.name, partitions = spec.partitions, "created topic");
        self.inner
            .topics
            .write()
            .insert(spec.name, Arc::new(opened));
        Ok(())
    }

    fn check_records(&self, records: &[Record]) -> Result<()> {
        crate::record::check_records(records, self.inner.config.max_record_bytes.as_usize())
    }
}

impl Inner {
    fn close(&self) -> Result<()> {
        let topics: Vec<Arc<Topic>> = self.topics.read().values().cloned().collect();
        let mut threads = Vec::new();
        for topic in &topics {
            for partition in &topic.partitions {
                match partition.close() {
                    Some(handle) => threads.push(handle),
                    None if !partition.read_only => {
                        // No appends since the open: the active segment is as recovered; an
                        // index makes the next open skip its scan.
                        let segments = partition.segments.read();
                        if let Some(active) = segments.last()
                            && let Err(error) = segment::write_index(&active.path, &active.index)
                        {
                            tracing::warn!(%error, "could not write a segment index at close");
                        }
                    }
                    None => {}
                }
            }
        }
        for handle in threads {
            drop(handle.sender);
            if handle.thread.join().is_err() {
                return Err(LogError::Invalid(
                    "a log writer thread panicked; the log recovers at the next open".to_owned(),
                ));
            }
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping the senders lets every writer drain its queue and exit on its own thread.
        for topic in self.topics.get_mut().values() {
            for partition in &topic.partitions {
                drop(partition.close());
            }
        }
    }
}

fn lock_dir(dir: &Path) -> Result<File> {
    for sub in ["topics", "groups"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).map_err(io_error("creating log directory", &path))?;
    }
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error("opening", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(LogError::Locked {
            path: dir.to_owned(),
        }),
        Err(TryLockError::Error(error)) => Err(io_error("locking", &path)(error)),
    }
}

fn open_topic(
    log_dir: &Path,
    name: &str,
    meta: TopicMeta,
    config: &Arc<LogConfig>,
    stats: &Arc<WriterStats>,
    read_only: bool,
) -> Result<Topic> {
    let mode = recovery::OpenMode {
        read_only,
        index_interval: config.index_interval_bytes.bytes(),
    };
    let dir = log_dir.join("topics").join(name);
    let mut partitions = Vec::with_capacity(meta.partitions as usize);
    for id in 0..meta.partitions {
        let partition_dir = topic::partition_dir(&dir, id);
        let quarantine = salvage::quarantine_dir(log_dir, name, id);
        let place = recovery::PartitionPlace {
            dir: &partition_dir,
            quarantine: &quarantine,
            topic: name,
            partition: id,
        };
        let opened = recovery::open_partition(place, mode)?;
        partitions.push(Arc::new(Partition::new(
            name,
            id,
            partition_dir,
            Arc::clone(config),
            Arc::clone(stats),
            opened,
            read_only,
        )));
    }
    Ok(Topic {
        name: name.to_owned(),
        meta,
        partitions,
    })
}

/// How often a read-only log looks for appends of the process that writes it.
const READ_ONLY_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// A read of a log another process writes: no notification crosses processes, so waiting for
/// new records re-checks the files every [`READ_ONLY_POLL`] until `max_wait`.
async fn read_beside_writer(
    target: Arc<Partition>,
    offset: u64,
    options: ReadOptions,
) -> Result<ReadBatch> {
    let deadline = tokio::time::Instant::now() + options.max_wait;
    loop {
        let refreshing = Arc::clone(&target);
        let end = blocking(move || refreshing.refresh_read_only()).await?;
        if target.first_readable(offset)? < end {
            let max_bytes = options.max_bytes.max(1);
            return blocking(move || target.read(offset, max_bytes)).await;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(ReadBatch {
                records: Vec::new(),
                end_offset: end,
            });
        }
        tokio::time::sleep(READ_ONLY_POLL.min(deadline - now)).await;
    }
}

/// [`Log::read_into`] of a log another process writes (see [`read_beside_writer`]).
async fn read_into_beside_writer(
    target: Arc<Partition>,
    offset: u64,
    options: ReadOptions,
    buffer: &mut ReadBuffer,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + options.max_wait;
    loop {
        let refreshing = Arc::clone(&target);
        let end = blocking(move || refreshing.refresh_read_only()).await?;
        if target.first_readable(offset)? < end {
            return read_into_blocking(target, offset, options, buffer).await;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            buffer.spans.clear();
            buffer.end_offset = end;
            return Ok(());
        }
        tokio::time::sleep(READ_ONLY_POLL.min(deadline - now)).await;
    }
}

/// Runs [`Partition::read_into`] on tokio's blocking pool. The buffer travels to the blocking
/// thread and back; if this future is dropped meanwhile, the buffer is left empty.
async fn read_into_blocking(
    target: Arc<Partition>,
    offset: u64,
    options: ReadOptions,
    buffer: &mut ReadBuffer,
) -> Result<()> {
    let mut owned = std::mem::take(buffer);
    let max_bytes = options.max_bytes.max(1);
    let (owned, result) = blocking(move || {
        let result = target.read_into(offset, max_bytes, &mut owned);
        Ok((owned, result))
    })
    .await?;
    *buffer = owned;
    result
}

/// Runs blocking work (file I/O) on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(LogError::Closed),
    }
}

impl Log for FileLog {
    async fn create_topic(&self, spec: TopicSpec) -> Result<()> {
        let log = self.clone();
        blocking(move || log.create_topic_blocking(spec)).await
    }

    async fn describe(&self, topic: Option<&str>) -> Result<Vec<TopicInfo>> {
        let topics = self.inner.topics.read();
        let chosen: Vec<&Arc<Topic>> = match topic {
            Some(name) => vec![
                topics
                    .get(name)
                    .ok_or_else(|| LogError::UnknownTopic(name.to_owned()))?,
            ],
            None => topics.values().collect(),
        };
        Ok(chosen
            .into_iter()
            .map(|topic| TopicInfo {
                name: topic.name.clone(),
                partitions: topic.partitions.iter().map(|p| p.info()).collect(),
                retention_age: topic.meta.retention_age(&self.inner.config),
                retention_bytes: topic.meta.retention_bytes(&self.inner.config),
            })
            .collect())
    }

    async fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
    ) -> Result<AppendResult> {
        let target = self.partition(topic, partition)?;
        self.check_records(&records)?;
        let record_bytes = records.iter().map(Record::size).sum::<usize>() as u64;
        let mut frame = Vec::new();
        let batch = format::encode_batch(&records, &mut frame);
        drop(records);
        let max_batch = self.inner.config.max_batch_bytes;
        if frame.len() as u64 > max_batch.bytes() {
            return Err(LogError::Invalid(format!(
                "a batch of {} records encodes to {} bytes, more than log.max-batch-bytes ({max_batch}); split it into smaller appends",
                batch.record_count,
                frame.len()
            )));
        }
        let sender = target.sender(&self.inner.lock)?;
        let permit = Arc::clone(&target.pending)
            .acquire_many_owned(frame.len() as u32)
            .await
            .map_err(|_| LogError::Closed)?;
        let (ack, acked) = oneshot::channel();
        let request = AppendRequest {
            frame,
            batch,
            record_bytes,
            ack,
            permit,
        };
        sender.send(request).await.map_err(|_| LogError::Closed)?;
        drop(sender);
        acked.await.map_err(|_| LogError::Closed)?
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        options: ReadOptions,
    ) -> Result<ReadBatch> {
        let target = self.partition(topic, partition)?;
        if target.read_only {
            return read_beside_writer(target, offset, options).await;
        }
        let mut published = target.end.subscribe();
        let deadline = tokio::time::Instant::now() + options.max_wait;
        loop {
            let end = *published.borrow_and_update();
            // An offset in a recorded gap at the end waits like the end itself.
            if target.first_readable(offset)? < end {
                let max_bytes = options.max_bytes.max(1);
                return blocking(move || target.read(offset, max_bytes)).await;
            }
            if options.max_wait.is_zero() {
                return Ok(ReadBatch {
                    records: Vec::new(),
                    end_offset: end,
                });
            }
            match tokio::time::timeout_at(deadline, published.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(LogError::Closed),
                Err(_) => {
                    return Ok(ReadBatch {
                        records: Vec::new(),
                        end_offset: end,
                    });
                }
            }
        }
    }

    async fn read_into(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        options: ReadOptions,
        buffer: &mut ReadBuffer,
    ) -> Result<()> {
        let target = self.partition(topic, partition)?;
        if target.read_only {
            return read_into_beside_writer(target, offset, options, buffer).await;
        }
        let mut published = target.end.subscribe();
        let deadline = tokio::time::Instant::now() + options.max_wait;
        let end = loop {
            let end = *published.borrow_and_update();
            if target.first_readable(offset)? < end {
                // Recently written or read-ahead data is copied right here (see
                // `Partition::try_read_cached`); the blocking pool reads the rest.
                if target.try_read_cached(offset, options.max_bytes.max(1), buffer)? {
                    return Ok(());
                }
                return read_into_blocking(target, offset, options, buffer).await;
            }
            if options.max_wait.is_zero() {
                break end;
            }
            match tokio::time::timeout_at(deadline, published.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(LogError::Closed),
                Err(_) => break end,
            }
        };
        buffer.spans.clear();
        buffer.end_offset = end;
        Ok(())
    }

    async fn offset_for_time(
        &self,
        topic: &str,
        partition: u32,
        timestamp: Millis,
    ) -> Result<Option<u64>> {
        let target = self.partition(topic, partition)?;
        blocking(move || target.offset_for_time(timestamp)).await
    }

    async fn consumer_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        commit: Option<u64>,
    ) -> Result<Option<u64>> {
        check_group_name(group)?;
        self.partition(topic, partition)?;
        let Some(offset) = commit else {
            return Ok(self.inner.offsets.get(group, topic, partition));
        };
        if self.is_read_only() {
            return Err(self.read_only_error());
        }
        let log = self.clone();
        let (group, topic) = (group.to_owned(), topic.to_owned());
        blocking(move || {
            log.inner
                .offsets
                .commit(&group, &topic, partition, offset)?;
            Ok(Some(offset))
        })
        .await
    }

    async fn enforce_retention(&self) -> Result<u64> {
        let log = self.clone();
        blocking(move || log.enforce_retention_at(now_millis())).await
    }

    async fn epochs(&self, topic: &str, partition: u32) -> Result<Vec<EpochStart>> {
        let target = self.partition(topic, partition)?;
        if target.read_only {
            // The process that writes the log may have recovered it since this open.
            return blocking(move || epochs::load(target.dir())).await;
        }
        Ok(target.epochs.lock().clone())
    }
}
