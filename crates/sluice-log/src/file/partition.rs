//! One partition: its segments as published by the writer, reads by offset and by time, and
//! retention. Reads take the segment lock only to find where to read, then read the file with
//! positional reads outside it, so readers never hold up the writer.

use super::format::{self, BatchHeader};
use super::fs::io_error;
use super::fs::remove_if_exists;
use super::queue::{WriterSlot, WriterStats};
use super::recovery::OpenedPartition;
use super::segment::{Segment, corrupt, index_path};
use crate::config::LogConfig;
use crate::record::{EpochStart, PartitionInfo, ReadBatch, StoredRecord};
use crate::{LogError, Result};
use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use sluice_core::time::Millis;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// The smallest read: small `max_bytes` still read a useful chunk.
const MIN_READ: usize = 64 << 10;
/// The largest single read; bigger requests are served in several.
const MAX_READ: usize = 16 << 20;
/// The largest read buffer a partition keeps for reuse.
const MAX_SPARE: usize = 8 << 20;
/// The next [`Partition::read_id`].
static NEXT_READ_ID: AtomicUsize = AtomicUsize::new(0);

/// One partition of a topic.
#[derive(Debug)]
pub(crate) struct Partition {
    pub(crate) topic: String,
    pub(crate) id: u32,
    pub(crate) dir: PathBuf,
    pub(crate) config: Arc<LogConfig>,
    /// Segments in offset order; the last is the active one. Only the writer changes the last
    /// segment's extent and adds segments; only retention removes them, from the front.
    pub(crate) segments: RwLock<Vec<Segment>>,
    /// The partition's epochs, oldest first (see [`super::epochs`]); only recovery adds any.
    pub(crate) epochs: Mutex<Vec<EpochStart>>,
    /// The published end offset, for tail-following readers.
    pub(crate) end: watch::Sender<u64>,
    /// Bytes of appends queued for the writer (permits are bytes).
    pub(crate) pending: Arc<Semaphore>,
    /// Counters shared by every writer of the log.
    pub(crate) stats: Arc<WriterStats>,
    /// The writer thread, started by the first append; `None` before that and after close.
    pub(super) writer: Mutex<WriterSlot>,
    /// Opened without the directory lock: no writer, no repairs.
    pub(crate) read_only: bool,
    /// Unique among the partitions of every log this process opened: tells a [`ReadBuffer`]
    /// whose bytes it holds.
    ///
    /// [`ReadBuffer`]: crate::ReadBuffer
    pub(crate) read_id: usize,
    /// The buffer of the last read, reused by the next read once its records are dropped (a
    /// consumer that handles a batch before reading the next never pays for a fresh buffer).
    spare: Mutex<Option<Bytes>>,
}

/// Where to read, found under the segment lock.
struct ReadPlan<'a> {
    file: Arc<File>,
    path: PathBuf,
    position: u64,
    limit: u64,
    spare: &'a Mutex<Option<Bytes>>,
}

impl ReadPlan<'_> {
    /// Reads `len` bytes at `position`, into the spare buffer when no record of the previous
    /// read still uses it.
    fn read(&self, position: u64, len: usize) -> Result<Bytes> {
        let reclaimed = self
            .spare
            .lock()
            .take()
            .and_then(|spare| spare.try_into_mut().ok())
            .filter(|spare| spare.capacity() >= len);
        let mut buf = match reclaimed {
            Some(mut buf) => {
                if buf.len() < len {
                    buf.resize(len, 0);
                } else {
                    buf.truncate(len);
                }
                buf
            }
            None => BytesMut::zeroed(len),
        };
        self.file
            .read_exact_at(&mut buf, position)
            .map_err(io_error("reading segment", &self.path))?;
        let buf = buf.freeze();
        if len <= MAX_SPARE {
            *self.spare.lock() = Some(buf.clone());
        }
        Ok(buf)
    }
}

impl Partition {
    pub(crate) fn new(
        topic: &str,
        id: u32,
        dir: PathBuf,
        config: Arc<LogConfig>,
        stats: Arc<WriterStats>,
        opened: OpenedPartition,
        read_only: bool,
    ) -> Self {
        let OpenedPartition { segments, epochs } = opened;
        let end = segments.last().map_or(0, |s| s.index.end_offset);
        Self {
            topic: topic.to_owned(),
            id,
            dir,
            pending: Arc::new(Semaphore::new(config.max_pending_bytes.as_usize())),
            config,
            stats,
            segments: RwLock::new(segments),
            epochs: Mutex::new(epochs),
            end: watch::Sender::new(end),
            writer: Mutex::new(WriterSlot::Idle),
            read_only,
            read_id: NEXT_READ_ID.fetch_add(1, Ordering::Relaxed),
            spare: Mutex::new(None),
        }
    }

    /// Start, end and size.
    pub(crate) fn info(&self) -> PartitionInfo {
        let segments = self.segments.read();
        PartitionInfo {
            partition: self.id,
            start_offset: segments.first().map_or(0, |s| s.base_offset),
            end_offset: segments.last().map_or(0, |s| s.index.end_offset),
            bytes: segments.iter().map(|s| s.index.segment_bytes).sum(),
        }
    }

    pub(super) fn out_of_range(&self, requested: u64, start: u64, end: u64) -> LogError {
        LogError::OffsetOutOfRange {
            topic: self.topic.clone(),
            partition: self.id,
            requested,
            start,
            end,
        }
    }

    /// Where a read of `offset` begins: the first offset at or after it that a segment holds
    /// (stepping over recorded gaps), or the end offset when there is none yet. Offsets outside
    /// the partition, and offsets that are damaged, are errors.
    pub(crate) fn first_readable(&self, offset: u64) -> Result<u64> {
        let segments = self.segments.read();
        Ok(match self.locate(&segments, offset)? {
            Located::At { offset, .. } => offset,
            Located::End(end) => end,
        })
    }

    /// Finds the segment to read `offset` from (see [`Partition::first_readable`]).
    pub(super) fn locate(&self, segments: &[Segment], offset: u64) -> Result<Located> {
        let start = segments.first().map_or(0, |s| s.base_offset);
        let end = segments.last().map_or(0, |s| s.index.end_offset);
        if offset < start || offset > end {
            return Err(self.out_of_range(offset, start, end));
        }
        let mut at = segments.partition_point(|s| s.base_offset <= offset) - 1;
        let mut offset = offset;
        loop {
            let segment = &segments[at];
            if offset < segment.index.end_offset {
                return Ok(Located::At {
                    segment: at,
                    offset,
                });
            }
            if at + 1 == segments.len() {
                return Ok(Located::End(end));
            }
            // Between this segment's last record and the next segment: damage fails the read,
            // a recorded gap (the only other way offsets go missing) is stepped over.
            if let Some(damage) = &segment.damage {
                return Err(damage.error(offset));
            }
            at += 1;
            offset = offset.max(segments[at].base_offset);
        }
    }

    /// Reads published records from the first offset at or after `offset` that exists
    /// (blocking). Returns an empty batch at the end.
    pub(crate) fn read(&self, offset: u64, max_bytes: usize) -> Result<ReadBatch> {
        let (plan, end_offset, offset) = {
            let segments = self.segments.read();
            let end = segments.last().map_or(0, |s| s.index.end_offset);
            let (at, offset) = match self.locate(&segments, offset)? {
                Located::At { segment, offset } => (segment, offset),
                Located::End(end) => {
                    return Ok(ReadBatch {
                        records: Vec::new(),
                        end_offset: end,
                    });
                }
            };
            let segment = &segments[at];
            let plan = ReadPlan {
                file: Arc::clone(&segment.file),
                path: segment.path.clone(),
                position: segment.index.position_for_offset(segment.relative(offset)),
                limit: segment.index.segment_bytes,
                spare: &self.spare,
            };
            (plan, end, offset)
        };
        let records = read_records(&plan, offset, max_bytes)?;
        Ok(ReadBatch {
            records,
            end_offset,
        })
    }

    /// The first offset whose timestamp is at or after `timestamp` (blocking).
    pub(crate) fn offset_for_time(&self, timestamp: Millis) -> Result<Option<u64>> {
        let (plan, after_damage) = {
            let segments = self.segments.read();
            // The first segment holding a record at or after the time holds the answer: every
            // record of the segments before it is older.
            let Some(at) = segments
                .iter()
                .position(|s| s.index.max_timestamp >= timestamp)
            else {
                return Ok(None);
            };
            let segment = &segments[at];
            // Damaged records just before it may be the answer (taken to be no newer than the
            // record after them, as records are appended in receive order).
            let after_damage = at
                .checked_sub(1)
                .and_then(|before| segments[before].damage.clone())
                .map(|damage| (damage, segment.base_offset));
            let plan = ReadPlan {
                file: Arc::clone(&segment.file),
                path: segment.path.clone(),
                position: segment.index.position_for_time(timestamp),
                limit: segment.index.segment_bytes,
                spare: &self.spare,
            };
            (plan, after_damage)
        };
        let mut found = None;
        walk_frames(&plan, MIN_READ, |frame, header| {
            if header.max_timestamp < timestamp {
                return Ok(true);
            }
            let mut records = Vec::new();
            format::decode_records(frame, header, 0, &mut records)
                .map_err(|problem| problem.reason)?;
            found = records
                .iter()
                .find(|r| r.record.timestamp >= timestamp)
                .map(|r| r.offset);
            Ok(found.is_none())
        })?;
        match found {
            Some(offset) => match after_damage {
                Some((damage, first)) if offset == first => Err(damage.time_error(timestamp)),
                _ => Ok(Some(offset)),
            },
            None => Err(corrupt(
                &plan.path,
                plan.position,
                format!(
                    "the segment's index promises a record at or after {timestamp} that its batches do not hold; remove the .idx file to rebuild it"
                ),
            )),
        }
    }

    /// Deletes leading sealed segments that are expired (`now - age`) or beyond `max_bytes`;
    /// returns the bytes freed. The active segment is never deleted.
    pub(crate) fn enforce_retention(
        &self,
        now: Millis,
        age: Option<Duration>,
        max_bytes: Option<u64>,
    ) -> Result<u64> {
        let cutoff =
            age.map(|age| now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)));
        let removed: Vec<Segment> = {
            let mut segments = self.segments.write();
            let mut total: u64 = segments.iter().map(|s| s.index.segment_bytes).sum();
            let mut count = 0;
            while count + 1 < segments.len() {
                let segment = &segments[count];
                let expired = cutoff.is_some_and(|cutoff| segment.index.max_timestamp < cutoff);
                let oversized = max_bytes.is_some_and(|limit| total > limit);
                if !expired && !oversized {
                    break;
                }
                total -= segment.index.segment_bytes;
                count += 1;
            }
            segments.drain(..count).collect()
        };
        let mut freed = 0;
        for segment in removed {
            // The log file first: an index without its segment is cleaned up at the next open.
            remove_if_exists(&segment.path)?;
            remove_if_exists(&index_path(&segment.path))?;
            freed += segment.index.segment_bytes;
            tracing::info!(
                topic = %self.topic,
                partition = self.id,
                segment = %segment.path.display(),
                base_offset = segment.base_offset,
                bytes = segment.index.segment_bytes,
                "retention deleted a segment"
            );
        }
        Ok(freed)
    }

    /// Catches up with the process that writes the log (read-only opens only); returns the
    /// published end offset afterwards.
    pub(crate) fn refresh_read_only(&self) -> Result<u64> {
        debug_assert!(self.read_only);
        let interval = self.config.index_interval_bytes.bytes();
        let end = {
            let mut segments = self.segments.write();
            super::recovery::refresh_read_only(&self.dir, &mut segments, interval)?;
            segments.last().map_or(0, |s| s.index.end_offset)
        };
        self.end.send_if_modified(|published| {
            let changed = *published != end;
            *published = end;
            changed
        });
        Ok(end)
    }

    /// The directory holding this partition's segments.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Where a read starts, found by [`Partition::locate`].
pub(super) enum Located {
    /// In `segments[segment]`, at `offset` (the requested one, or the first after a gap).
    At { segment: usize, offset: u64 },
    /// At the partition's end (this end offset): nothing to read yet.
    End(u64),
}

/// Reads records from `offset` on, within one segment, until `max_bytes` of records are
/// collected (at least one record) or the published end is reached.
fn read_records(plan: &ReadPlan<'_>, offset: u64, max_bytes: usize) -> Result<Vec<StoredRecord>> {
    let mut records = Vec::new();
    let mut bytes = 0;
    let mut expected = None;
    let chunk = max_bytes
        .saturating_add(max_bytes / 8)
        .clamp(MIN_READ, MAX_READ);
    walk_frames(plan, chunk, |frame, header| {
        if header.next_offset() <= offset {
            return Ok(true);
        }
        match expected {
            None if header.base_offset > offset => {
                return Err(format!(
                    "offset {offset} is missing: the batch found starts at {}",
                    header.base_offset
                ));
            }
            Some(expected) if header.base_offset != expected => {
                return Err(format!(
                    "batch starts at offset {} where offset {expected} was expected",
                    header.base_offset
                ));
            }
            _ => {}
        }
        expected = Some(header.next_offset());
        let first_new = records.len();
        format::decode_records(frame, header, offset, &mut records)
            .map_err(|problem| problem.reason)?;
        // Stop adding records once `max_bytes` are collected, even inside a batch.
        for i in first_new..records.len() {
            bytes += records[i].record.size();
            if bytes >= max_bytes {
                records.truncate(i + 1);
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    Ok(records)
}

/// Calls `each(frame, header)` for every frame from `plan.position` up to `plan.limit`, reading
/// `chunk` bytes at a time (more when one frame is larger), after checking each frame's CRC.
/// `each` returns whether to go on, or what is wrong with the frame.
fn walk_frames(
    plan: &ReadPlan<'_>,
    chunk: usize,
    mut each: impl FnMut(&Bytes, &BatchHeader) -> Result<bool, String>,
) -> Result<()> {
    let mut position = plan.position;
    let mut want = chunk;
    while position < plan.limit {
        let len = (plan.limit - position).min(want as u64) as usize;
        let buf = plan.read(position, len)?;
        let mut at = 0;
        while at < buf.len() {
            let frame_position = position + at as u64;
            let header = match format::peek_header(&buf[at..]) {
                Ok(Some(header)) => header,
                Ok(None) => break,
                Err(problem) => return Err(corrupt(&plan.path, frame_position, problem)),
            };
            if buf.len() - at < header.frame_len {
                if at == 0 {
                    // A frame larger than the chunk: read it whole next time.
                    want = header.frame_len;
                }
                break;
            }
            let frame = buf.slice(at..at + header.frame_len);
            format::check_crc(&frame, &header)
                .map_err(|problem| corrupt(&plan.path, frame_position, problem))?;
            if !each(&frame, &header)
                .map_err(|reason| corrupt(&plan.path, frame_position, reason))?
            {
                return Ok(());
            }
            at += header.frame_len;
        }
        if at == 0 {
            // Nothing fit: either one frame is larger than the chunk (read it whole next time),
            // or the published bytes end inside a frame, which the writer never publishes.
            if want <= len || position + len as u64 == plan.limit {
                return Err(corrupt(
                    &plan.path,
                    position,
                    "the published part of the segment ends inside a batch",
                ));
            }
            continue;
        }
        position += at as u64;
        want = chunk;
    }
    Ok(())
}
