//! [`ReadBuffer`]: records read into memory the consumer owns and reuses, for consumers that
//! read a partition from end to end (the stream engine, replays).
//!
//! [`Log::read`](crate::Log::read) hands out owned [`StoredRecord`]s: one vector entry, two
//! reference-counted slices and a header vector per record, and a fresh read buffer whenever
//! the previous batch is still alive. For a consumer that handles each batch before it reads
//! the next, [`Log::read_into`](crate::Log::read_into) fills a `ReadBuffer` instead: the
//! backend's bytes (for the file log, the batch frames exactly as stored, read straight into
//! the buffer) plus one small [`Span`] per record locating its parts in them. Nothing is
//! allocated per record, the memory is reused from read to read, and the bytes after the last
//! batch handed out stay in the buffer for the next read, so sequential reads touch every byte
//! of the segment once.
//!
//! Headers stay in their encoded form (`varint len, name, varint len, value` per header, the
//! file format's) and are decoded on demand by [`RecordRef::headers`]; header names were
//! checked to be UTF-8 when the buffer was filled.

use crate::record::{Header, Record, StoredRecord};
use bytes::Bytes;
use sluice_core::time::Millis;

/// Where one record's parts lie in a [`ReadBuffer`]'s bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) offset: u64,
    pub(crate) timestamp: Millis,
    /// Start of the key; `key_len == NO_KEY` when the record has none.
    pub(crate) key: u32,
    pub(crate) key_len: u32,
    pub(crate) value: u32,
    pub(crate) value_len: u32,
    /// The encoded headers: `headers..headers_end`, `header_count` of them.
    pub(crate) headers: u32,
    pub(crate) headers_end: u32,
    pub(crate) header_count: u32,
}

/// `Span::key_len` of a record without a key.
pub(crate) const NO_KEY: u32 = u32::MAX;

/// Bytes of the segment a file-log read left in the buffer after the batches it handed out:
/// the next sequential read starts from them instead of reading them again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cached {
    /// Identifies the source: the partition (its address) and the segment's base offset.
    pub(crate) source: (usize, u64),
    /// `bytes[start..filled]` hold the segment from `position` on.
    pub(crate) start: usize,
    pub(crate) position: u64,
    /// The offset of the first record in those bytes.
    pub(crate) next_offset: u64,
}

/// Records of one read, in memory that is reused by the next read into the same buffer.
#[derive(Debug, Default)]
pub struct ReadBuffer {
    /// Initialized storage; `bytes[..filled]` hold what was read.
    pub(crate) bytes: Vec<u8>,
    pub(crate) filled: usize,
    pub(crate) spans: Vec<Span>,
    pub(crate) end_offset: u64,
    pub(crate) cached: Option<Cached>,
}

impl ReadBuffer {
    /// An empty buffer; it grows to the size of the reads made into it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the last read returned no record.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The partition's end offset (the next offset to be appended) when the read was served.
    pub fn end_offset(&self) -> u64 {
        self.end_offset
    }

    /// The offset to read next: after the last record, or `requested` when empty.
    pub fn next_offset(&self, requested: u64) -> u64 {
        self.spans.last().map_or(requested, |last| last.offset + 1)
    }

    /// Record `index` (in offset order).
    pub fn get(&self, index: usize) -> Option<RecordRef<'_>> {
        self.spans.get(index).map(|span| self.view(span))
    }

    /// The records in offset order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RecordRef<'_>> + '_ {
        self.spans.iter().map(|span| self.view(span))
    }

    /// Bytes of memory the buffer holds (its reads' high-water mark).
    pub fn capacity_bytes(&self) -> usize {
        self.bytes.capacity() + self.spans.capacity() * std::mem::size_of::<Span>()
    }

    #[inline]
    fn view(&self, span: &Span) -> RecordRef<'_> {
        let part = |start: u32, len: u32| &self.bytes[start as usize..(start + len) as usize];
        RecordRef {
            offset: span.offset,
            timestamp: span.timestamp,
            key: (span.key_len != NO_KEY).then(|| part(span.key, span.key_len)),
            value: part(span.value, span.value_len),
            headers: &self.bytes[span.headers as usize..span.headers_end as usize],
            header_count: span.header_count,
        }
    }

    /// Forgets the records at and after `offset` (and any cached bytes, so the next read
    /// reads them again): for a reader that may read only below some offset.
    pub fn truncate_at(&mut self, offset: u64) {
        let keep = self.spans.partition_point(|span| span.offset < offset);
        if keep < self.spans.len() {
            self.spans.truncate(keep);
            self.cached = None;
        }
    }

    /// Forgets the records (and any cached bytes): the start of a read.
    pub fn clear(&mut self) {
        self.spans.clear();
        self.filled = 0;
        self.cached = None;
        self.end_offset = 0;
    }

    /// Adds a copy of `stored` after the records already held: how backends without a native
    /// [`Log::read_into`](crate::Log::read_into) fill the buffer.
    pub fn push(&mut self, stored: &StoredRecord) {
        self.cached = None;
        let record = &stored.record;
        let key = self.append(record.key.as_deref().unwrap_or_default());
        let value = self.append(&record.value);
        let headers = self.filled as u32;
        for header in &record.headers {
            let mut encoded = Vec::with_capacity(header.key.len() + header.value.len() + 4);
            put_varint(&mut encoded, header.key.len() as u64);
            encoded.extend_from_slice(header.key.as_bytes());
            put_varint(&mut encoded, header.value.len() as u64);
            encoded.extend_from_slice(&header.value);
            self.append(&encoded);
        }
        self.spans.push(Span {
            offset: stored.offset,
            timestamp: record.timestamp,
            key,
            key_len: record.key.as_ref().map_or(NO_KEY, |k| k.len() as u32),
            value,
            value_len: record.value.len() as u32,
            headers,
            headers_end: self.filled as u32,
            header_count: record.headers.len() as u32,
        });
    }

    /// Replaces the records with `batch`'s (a read that came as a [`ReadBatch`]).
    pub fn fill(&mut self, batch: &crate::ReadBatch) {
        self.clear();
        for record in &batch.records {
            self.push(record);
        }
        self.set_end_offset(batch.end_offset);
    }

    /// Sets the end offset reported with the records.
    pub fn set_end_offset(&mut self, end_offset: u64) {
        self.end_offset = end_offset;
    }

    fn append(&mut self, bytes: &[u8]) -> u32 {
        let start = self.filled;
        let end = start + bytes.len();
        if self.bytes.len() < end {
            self.bytes.resize(end.max(self.bytes.len() * 2), 0);
        }
        self.bytes[start..end].copy_from_slice(bytes);
        self.filled = end;
        start as u32
    }
}

/// One record in a [`ReadBuffer`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Position in the partition.
    pub offset: u64,
    /// The record's time.
    pub timestamp: Millis,
    /// The partitioning key, if the record has one.
    pub key: Option<&'a [u8]>,
    /// The payload.
    pub value: &'a [u8],
    /// The encoded headers.
    pub(crate) headers: &'a [u8],
    pub(crate) header_count: u32,
}

impl<'a> RecordRef<'a> {
    /// Number of headers.
    pub fn header_count(&self) -> usize {
        self.header_count as usize
    }

    /// The headers as (name, value) pairs, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let mut rest = self.headers;
        (0..self.header_count).map_while(move |_| {
            let (name, after) = take_field(rest)?;
            let (value, after) = take_field(after)?;
            rest = after;
            // Checked when the buffer was filled; a failure here would be a bug, not data.
            Some((std::str::from_utf8(name).ok()?, value))
        })
    }

    /// An owned copy, as [`Log::read`](crate::Log::read) returns it.
    pub fn to_stored(&self) -> StoredRecord {
        StoredRecord {
            offset: self.offset,
            record: Record {
                key: self.key.map(Bytes::copy_from_slice),
                value: Bytes::copy_from_slice(self.value),
                timestamp: self.timestamp,
                headers: self
                    .headers()
                    .map(|(key, value)| Header {
                        key: key.to_owned(),
                        value: Bytes::copy_from_slice(value),
                    })
                    .collect(),
            },
        }
    }
}

/// A varint length and that many bytes from the front of `bytes`.
fn take_field(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut len: u64 = 0;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        len |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let rest = &bytes[i + 1..];
            let len = usize::try_from(len).ok().filter(|&len| len <= rest.len())?;
            return Some(rest.split_at(len));
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(
        offset: u64,
        key: Option<&str>,
        value: &str,
        headers: &[(&str, &str)],
    ) -> StoredRecord {
        let mut record = Record::new(
            key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            Bytes::copy_from_slice(value.as_bytes()),
            1_700_000_000_000 + offset as i64,
        );
        record.headers = headers
            .iter()
            .map(|(k, v)| Header {
                key: (*k).into(),
                value: Bytes::copy_from_slice(v.as_bytes()),
            })
            .collect();
        StoredRecord { offset, record }
    }

    #[test]
    fn pushed_records_read_back_exactly() {
        let records = [
            stored(5, None, "first", &[]),
            stored(
                6,
                Some(""),
                "",
                &[("a", ""), ("trace", "x".repeat(300).as_str())],
            ),
            stored(7, Some("user-1"), &"v".repeat(1000), &[("é", "1")]),
        ];
        let mut buffer = ReadBuffer::new();
        for record in &records {
            buffer.push(record);
        }
        buffer.set_end_offset(9);
        assert_eq!(buffer.len(), 3);
        assert_eq!(buffer.end_offset(), 9);
        assert_eq!(buffer.next_offset(0), 8);
        let back: Vec<StoredRecord> = buffer.iter().map(|r| r.to_stored()).collect();
        assert_eq!(back, records);
        assert_eq!(buffer.get(1).unwrap().header_count(), 2);
        assert_eq!(buffer.get(3), None);

        buffer.clear();
        assert!(buffer.is_empty());
        assert_eq!(buffer.next_offset(42), 42);
    }
}
