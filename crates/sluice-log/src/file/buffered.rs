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
use std::os::unix::fs::FileExt;
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

    /// The read; `Ok(false)` only with [`Wait::CachedOnly`], when it stopped.
    fn read_into_waiting(
        &self,
        offset: u64,
        max_bytes: usize,
        buf: &mut ReadBuffer,
        wait: Wait,
    ) -> Result<bool> {
        buf.spans.clear();
        let (file, path, base, indexed, limit, offset) = {
            let segments = self.segments.read();
            let (at, offset) = match self.locate(&segments, offset)? {
                Located::At { segment, offset } => (segment, offset),
                Located::End(end) => {
                    buf.end_offset = end;
                    return Ok(true);
                }
            };
            buf.end_offset = segments.last().map_or(0, |s| s.index.end_offset);
            let segment = &segments[at];
            (
                Arc::clone(&segment.file),
                segment.path.clone(),
                segment.base_offset,
                segment.index.position_for_offset(segment.relative(offset)),
                segment.index.segment_bytes,
                offset,
            )
        };
        let source = (self.read_id, base);
        // Bounds the buffer (and keeps its positions within `u32`).
        let max_bytes = max_bytes.min(MAX_READ);
        let chunk = max_bytes
            .saturating_add(max_bytes / 8)
            .clamp(MIN_READ, MAX_READ);
        // `bytes[..filled]` hold the segment from `position` on.
        let (position, mut filled) = match buf.cached.take() {
            Some(cached)
                if cached.source == source
                    && cached.next_offset == offset
                    && cached.start <= buf.filled =>
            {
                buf.bytes.copy_within(cached.start..buf.filled, 0);
                (cached.position, buf.filled - cached.start)
            }
            _ => {
                if buf.bytes.len() > MAX_KEPT.max(2 * chunk) {
                    buf.bytes = Vec::new();
                }
                (indexed, 0)
            }
        };
        buf.filled = 0;
        let mut at = 0;
        let mut record_bytes = 0;
        let mut expected: Option<u64> = None;
        loop {
            let frame_position = position + at as u64;
            let need = match format::peek_header(&buf.bytes[at..filled]) {
                Ok(Some(header)) if filled - at >= header.frame_len => {
                    let frame_len = header.frame_len;
                    if header.next_offset() <= offset {
                        // Before the offset (the index is sparse): neither checked nor kept.
                        at += frame_len;
                        continue;
                    }
                    match expected {
                        None if header.base_offset > offset => {
                            return Err(corrupt(
                                &path,
                                frame_position,
                                format!(
                                    "offset {offset} is missing: the batch found starts at {}",
                                    header.base_offset
                                ),
                            ));
                        }
                        Some(expected) if header.base_offset != expected => {
                            return Err(corrupt(
                                &path,
                                frame_position,
                                format!(
                                    "batch starts at offset {} where offset {expected} was expected",
                                    header.base_offset
                                ),
                            ));
                        }
                        _ => {}
                    }
                    expected = Some(header.next_offset());
                    format::check_crc(&buf.bytes[at..at + frame_len], &header)
                        .map_err(|problem| corrupt(&path, frame_position, problem))?;
                    record_bytes +=
                        format::decode_spans(&buf.bytes, at, &header, offset, &mut buf.spans)
                            .map_err(|problem| corrupt(&path, frame_position, problem))?;
                    at += frame_len;
                    if record_bytes >= max_bytes {
                        break;
                    }
                    continue;
                }
                Ok(Some(header)) => header.frame_len,
                Ok(None) => BATCH_HEADER_LEN,
                Err(problem) => return Err(corrupt(&path, frame_position, problem)),
            };
            // The frame at `at` is not complete in the buffer: read on.
            let file_at = position + filled as u64;
            if file_at >= limit {
                if at == filled {
                    break;
                }
                return Err(corrupt(
                    &path,
                    frame_position,
                    "the published part of the segment ends inside a batch",
                ));
            }
            // Finish the frame, and aim at `chunk` bytes in all: reading far past what the read
            // returns would only be moved to the front of the buffer by the next read.
            let want = (need - (filled - at))
                .max(chunk.saturating_sub(filled))
                .max(MIN_READ);
            let len = (limit - file_at).min(want as u64) as usize;
            if buf.bytes.len() < filled + len {
                buf.bytes.resize(filled + len, 0);
            }
            let into = &mut buf.bytes[filled..filled + len];
            match wait {
                Wait::Block => file
                    .read_exact_at(into, file_at)
                    .map_err(io_error("reading segment", &path))?,
                Wait::CachedOnly => {
                    let copied = read_cached_at(&file, into, file_at);
                    if copied < len {
                        // Keep every byte read so far (from `position` on) for the next read
                        // of this offset; it re-checks the frames from the start.
                        buf.spans.clear();
                        buf.filled = filled + copied;
                        buf.cached = Some(Cached {
                            source,
                            start: 0,
                            position,
                            next_offset: offset,
                        });
                        return Ok(false);
                    }
                }
            }
            filled += len;
        }
        buf.filled = filled;
        if at < filled {
            buf.cached = Some(Cached {
                source,
                start: at,
                position: position + at as u64,
                next_offset: expected.unwrap_or(offset),
            });
        }
        Ok(true)
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
