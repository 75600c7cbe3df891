//! Reads into a consumer's [`ReadBuffer`]: the file log's side of
//! [`Log::read_into`](crate::Log::read_into).
//!
//! The batch frames are read with `pread` straight into the buffer's bytes (initialized once,
//! then reused: no zeroing and no allocation per read), checked (CRC, contiguity, records
//! against their header) and described by one [`Span`](crate::buffer::Span) per record. Reads
//! return whole batches. What the last `pread` brought beyond the batches handed out (usually
//! the start of the next batch) stays in the buffer with its file position, and the next read
//! of the following offset starts from it, so a sequential consumer reads each byte of a
//! segment once, in chunks of about `max_bytes`. Reads aim at `max_bytes` and a little more,
//! so that what is carried over (and moved to the front of the buffer) stays small.
//!
//! [`Partition::try_read_cached`] is the same read for the caller's own thread: each `pread`
//! becomes a `preadv2` with `RWF_NOWAIT`, which copies what the page cache holds and refuses
//! instead of waiting for the disk. A consumer that keeps up with the log (its data was just
//! written, or read ahead) then reads without a hop to the blocking pool, and the copied bytes
//! land in the cache of the core that goes on to decode them. When the data is not cached the
//! read stops, keeps what it copied for the next attempt, and the caller reads on the pool.

use super::format::{self, BATCH_HEADER_LEN};
use super::fs::io_error;
use super::partition::{Located, Partition};
use super::segment::corrupt;
use crate::Result;
use crate::buffer::{Cached, ReadBuffer};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

/// The smallest read: small `max_bytes` still read a useful chunk.
const MIN_READ: usize = 64 << 10;
/// The largest single read; bigger requests are served in several.
const MAX_READ: usize = 16 << 20;
/// A buffer grown beyond this (by one huge batch) is released when a read starts afresh.
const MAX_KEPT: usize = 32 << 20;

impl Partition {
    /// Reads whole published batches from the first offset at or after `offset` that exists
    /// into `buf` (blocking), replacing its records: until the batch that brings the records to `max_bytes`, or the end of the
    /// segment holding `offset`. At the end of the partition the buffer is left empty.
    pub(crate) fn read_into(
        &self,
        offset: u64,
        max_bytes: usize,
        buf: &mut ReadBuffer,
    ) -> Result<()> {
        self.read_into_waiting(offset, max_bytes, buf, Wait::Block)
            .map(|_| ())
    }

    /// [`Partition::read_into`] from the page cache only: `Ok(false)` (no records in `buf`)
    /// when a read would have to wait for the disk, or for a read larger than
    /// [`MAX_CACHED_READ`]; what was copied so far is kept in `buf` for the next read.
    pub(crate) fn try_read_cached(
        &self,
        offset: u64,
        max_bytes: usize,
        buf: &mut ReadBuffer,
    ) -> Result<bool> {
        if max_bytes > MAX_CACHED_READ {
            return Ok(false);
        }
        self.read_into_waiting(offset, max_bytes, buf, Wait::CachedOnly)
    }

    /// The read; `Ok(false)` only with [`Wait::CachedOnly`], when it stopped. Its steps: find
    /// where to read (under the segment lock), take up the bytes the last read carried over,
    /// then take every whole frame in the buffer and read on until `max_bytes` or the end of
    /// the segment, and carry over what is left.
    fn read_into_waiting(
        &self,
        offset: u64,
        max_bytes: usize,
        buf: &mut ReadBuffer,
        wait: Wait,
    ) -> Result<bool> {
        buf.spans.clear();
        let Some(start) = self.start_of_read(offset, buf)? else {
            return Ok(true);
        };
        // Bounds the buffer (and keeps its positions within `u32`).
        let max_bytes = max_bytes.min(MAX_READ);
        let chunk = max_bytes
            .saturating_add(max_bytes / 8)
            .clamp(MIN_READ, MAX_READ);
        let source = (self.read_id, start.base);
        let mut frames = Frames::resume(start, source, chunk, buf);
        loop {
            let need = match format::peek_header(&buf.bytes[frames.at..frames.filled]) {
                Ok(Some(header)) if frames.filled - frames.at >= header.frame_len => {
                    if frames.take(&header, buf)? >= max_bytes {
                        break;
                    }
                    continue;
                }
                Ok(Some(header)) => header.frame_len,
                Ok(None) => BATCH_HEADER_LEN,
                Err(problem) => return Err(frames.corrupt(problem)),
            };
            // The frame at `at` is not complete in the buffer: read on.
            match frames.read_more(need, buf, wait)? {
                More::Read => {}
                More::SegmentEnd => break,
                More::NotCached => return Ok(false),
            }
        }
        frames.carry_over(buf);
        Ok(true)
    }

    /// Where a read of `offset` starts, under the segment lock; `None` at the end of the
    /// partition. Sets the buffer's end offset either way.
    fn start_of_read(&self, offset: u64, buf: &mut ReadBuffer) -> Result<Option<Start>> {
        let segments = self.segments.read();
        let (at, offset) = match self.locate(&segments, offset)? {
            Located::At { segment, offset } => (segment, offset),
            Located::End(end) => {
                buf.end_offset = end;
                return Ok(None);
            }
        };
        buf.end_offset = segments.last().map_or(0, |s| s.index.end_offset);
        let segment = &segments[at];
        Ok(Some(Start {
            file: Arc::clone(&segment.file),
            path: segment.path.clone(),
            base: segment.base_offset,
            indexed: segment.index.position_for_offset(segment.relative(offset)),
            limit: segment.index.segment_bytes,
            offset,
        }))
    }
}

/// Where a read starts: the segment holding the offset, and the indexed position before it.
struct Start {
    file: Arc<File>,
    path: PathBuf,
    base: u64,
    indexed: u64,
    /// The segment's published bytes.
    limit: u64,
    /// The first offset that exists at or after the requested one.
    offset: u64,
}

/// One read's progress through the segment: `buf.bytes[..filled]` hold the segment from
/// `position` on; frames before `at` are taken.
struct Frames {
    start: Start,
    source: (usize, u64),
    chunk: usize,
    position: u64,
    filled: usize,
    at: usize,
    record_bytes: usize,
    /// The offset the next frame must start at, once one was taken.
    expected: Option<u64>,
}

/// What reading on did.
enum More {
    Read,
    SegmentEnd,
    NotCached,
}

impl Frames {
    /// Takes up the bytes the last read of this buffer carried over, when they continue at
    /// this read's offset; otherwise starts at the indexed position.
    fn resume(start: Start, source: (usize, u64), chunk: usize, buf: &mut ReadBuffer) -> Self {
        let (position, filled) = match buf.cached.take() {
            Some(cached)
                if cached.source == source
                    && cached.next_offset == start.offset
                    && cached.start <= buf.filled =>
            {
                buf.bytes.copy_within(cached.start..buf.filled, 0);
                (cached.position, buf.filled - cached.start)
            }
            _ => {
                if buf.bytes.len() > MAX_KEPT.max(2 * chunk) {
                    buf.bytes = Vec::new();
                }
                (start.indexed, 0)
            }
        };
        buf.filled = 0;
        Frames {
            start,
            source,
            chunk,
            position,
            filled,
            at: 0,
            record_bytes: 0,
            expected: None,
        }
    }

    fn corrupt(&self, problem: impl std::fmt::Display) -> crate::LogError {
        corrupt(&self.start.path, self.position + self.at as u64, problem)
    }

    /// Takes the whole frame at `at`: skipped when it ends before the read's offset (the index
    /// is sparse), otherwise checked (contiguity, CRC) and its records described in
    /// `buf.spans`. Returns the record bytes taken so far.
    fn take(&mut self, header: &format::BatchHeader, buf: &mut ReadBuffer) -> Result<usize> {
        let frame_len = header.frame_len;
        let offset = self.start.offset;
        if header.next_offset() <= offset {
            self.at += frame_len;
            return Ok(self.record_bytes);
        }
        match self.expected {
            None if header.base_offset > offset => {
                return Err(self.corrupt(format!(
                    "offset {offset} is missing: the batch found starts at {}",
                    header.base_offset
                )));
            }
            Some(expected) if header.base_offset != expected => {
                return Err(self.corrupt(format!(
                    "batch starts at offset {} where offset {expected} was expected",
                    header.base_offset
                )));
            }
            _ => {}
        }
        self.expected = Some(header.next_offset());
        let at = self.at;
        format::check_crc(&buf.bytes[at..at + frame_len], header)
            .map_err(|problem| self.corrupt(problem))?;
        self.record_bytes += format::decode_spans(&buf.bytes, at, header, offset, &mut buf.spans)
            .map_err(|problem| self.corrupt(problem))?;
        self.at += frame_len;
        Ok(self.record_bytes)
    }

    /// Reads on so that the frame at `at` (`need` bytes) is complete, aiming at `chunk` bytes
    /// in all: reading far past what the read returns would only be moved to the front of the
    /// buffer by the next read.
    fn read_more(&mut self, need: usize, buf: &mut ReadBuffer, wait: Wait) -> Result<More> {
        let (filled, at) = (self.filled, self.at);
        let file_at = self.position + filled as u64;
        if file_at >= self.start.limit {
            if at == filled {
                return Ok(More::SegmentEnd);
            }
            return Err(self.corrupt("the published part of the segment ends inside a batch"));
        }
        let want = (need - (filled - at))
            .max(self.chunk.saturating_sub(filled))
            .max(MIN_READ);
        let len = (self.start.limit - file_at).min(want as u64) as usize;
        if buf.bytes.len() < filled + len {
            buf.bytes.resize(filled + len, 0);
        }
        let into = &mut buf.bytes[filled..filled + len];
        match wait {
            Wait::Block => self
                .start
                .file
                .read_exact_at(into, file_at)
                .map_err(io_error("reading segment", &self.start.path))?,
            Wait::CachedOnly => {
                let copied = read_cached_at(&self.start.file, into, file_at);
                if copied < len {
                    // Keep every byte read so far (from `position` on) for the next read of
                    // this offset; it re-checks the frames from the start.
                    buf.spans.clear();
                    buf.filled = filled + copied;
                    buf.cached = Some(Cached {
                        source: self.source,
                        start: 0,
                        position: self.position,
                        next_offset: self.start.offset,
                    });
                    return Ok(More::NotCached);
                }
            }
        }
        self.filled += len;
        Ok(More::Read)
    }

    /// Leaves what follows the frames taken in the buffer, for the next read of the offset
    /// after them.
    fn carry_over(self, buf: &mut ReadBuffer) {
        buf.filled = self.filled;
        if self.at < self.filled {
            buf.cached = Some(Cached {
                source: self.source,
                start: self.at,
                position: self.position + self.at as u64,
                next_offset: self.expected.unwrap_or(self.start.offset),
            });
        }
    }
}

/// Whether a read may wait for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Block,
    /// Copy only what the page cache holds.
    CachedOnly,
}

/// The largest read [`Partition::try_read_cached`] does on the caller's thread: its copy
/// takes well under a millisecond.
pub(crate) const MAX_CACHED_READ: usize = 2 << 20;

/// Fills as much of `into` as the page cache holds from `position` on, without waiting for
/// the disk; returns how many bytes it copied. Any refusal (not cached, a kernel without
/// `RWF_NOWAIT`, an error) just ends the copy: the blocking read that follows reports errors.
fn read_cached_at(file: &std::fs::File, into: &mut [u8], position: u64) -> usize {
    use rustix::io::{Errno, ReadWriteFlags, preadv2};
    #[cfg(test)]
    let into = match tests::CACHED_BYTES.with(std::cell::Cell::get) {
        Some(cached) => {
            let cached = cached.min(into.len());
            &mut into[..cached]
        }
        None => into,
    };
    let mut copied = 0;
    while copied < into.len() {
        let rest = &mut into[copied..];
        match preadv2(
            file,
            &mut [std::io::IoSliceMut::new(rest)],
            position + copied as u64,
            ReadWriteFlags::NOWAIT,
        ) {
            Ok(0) => break,
            Ok(read) => copied += read,
            Err(Errno::INTR) => {}
            Err(_) => break,
        }
    }
    copied
}

#[cfg(test)]
mod tests {
    use crate::{FileLog, Log, LogConfig, ReadBuffer, ReadOptions, Record, TopicSpec};
    use bytes::Bytes;
    use std::cell::Cell;
    use std::time::Duration;

    thread_local! {
        /// When set, a cached-only read on this thread finds only this many bytes of each
        /// `preadv2` in the page cache (a stand-in for data the kernel must fetch).
        pub(super) static CACHED_BYTES: Cell<Option<usize>> = const { Cell::new(None) };
    }

    fn config() -> LogConfig {
        LogConfig::for_tests(64 * 1024)
    }

    /// Reads that find only part of the data cached stop, and the read on the blocking pool
    /// resumes from what they copied: every record comes back once, in order, whatever the
    /// point where the cached copy stopped.
    #[tokio::test(flavor = "current_thread")]
    async fn reads_that_stop_at_uncached_data_resume_where_they_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let log = FileLog::open(dir.path(), &config()).unwrap();
        log.create_topic(TopicSpec::new("t", 1)).await.unwrap();
        let mut values = Vec::new();
        for batch in 0..40u64 {
            let records: Vec<Record> = (0..7u64)
                .map(|i| {
                    let n = batch * 7 + i;
                    let value = format!("{n:05}-{}", "v".repeat((n % 300) as usize));
                    values.push(value.clone());
                    Record::new(None, Bytes::from(value), n as i64)
                })
                .collect();
            log.append("t", 0, records).await.unwrap();
        }
        let options = ReadOptions {
            max_bytes: 3_000,
            max_wait: Duration::ZERO,
        };
        for cached in [None, Some(0), Some(1), Some(13), Some(700), Some(5_000)] {
            CACHED_BYTES.with(|bytes| bytes.set(cached));
            let mut buffer = ReadBuffer::new();
            let mut read = Vec::new();
            let mut offset = 0;
            loop {
                log.read_into("t", 0, offset, options, &mut buffer)
                    .await
                    .unwrap();
                if buffer.is_empty() {
                    break;
                }
                for record in buffer.iter() {
                    assert_eq!(record.offset, offset, "cached {cached:?}");
                    read.push(String::from_utf8(record.value.to_vec()).unwrap());
                    offset += 1;
                }
            }
            assert_eq!(read, values, "cached {cached:?}");
        }
        CACHED_BYTES.with(|bytes| bytes.set(None));
    }
}
