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

use super::format::{self, BATCH_HEADER_LEN};
use super::fs::io_error;
use super::partition::Partition;
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
    /// Reads whole published batches from `offset` on into `buf` (blocking), replacing its
    /// records: until the batch that brings the records to `max_bytes`, or the end of the
    /// segment holding `offset`. At the end of the partition the buffer is left empty.
    pub(crate) fn read_into(
        &self,
        offset: u64,
        max_bytes: usize,
        buf: &mut ReadBuffer,
    ) -> Result<()> {
        buf.spans.clear();
        let (file, path, base, indexed, limit) = {
            let segments = self.segments.read();
            let start = segments.first().map_or(0, |s| s.base_offset);
            let end = segments.last().map_or(0, |s| s.index.end_offset);
            if offset < start || offset > end {
                return Err(self.out_of_range(offset, start, end));
            }
            buf.end_offset = end;
            if offset == end {
                return Ok(());
            }
            let segment = &segments[segments.partition_point(|s| s.base_offset <= offset) - 1];
            (
                Arc::clone(&segment.file),
                segment.path.clone(),
                segment.base_offset,
                segment.index.position_for_offset(segment.relative(offset)),
                segment.index.segment_bytes,
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
            file.read_exact_at(&mut buf.bytes[filled..filled + len], file_at)
                .map_err(io_error("reading segment", &path))?;
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
        Ok(())
    }
}
