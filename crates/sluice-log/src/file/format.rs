//! Record batches on disk: pure functions from records to bytes and back. No I/O here, so every
//! rule is testable (and fuzzable) on plain byte slices; the module doc of [`crate::file`] shows
//! the layout as a pseudo-struct.
//!
//! The base offset sits *before* the CRC and is not covered by it (as in Kafka): an appender
//! encodes and checksums its batch in its own task, and the partition writer only patches the
//! eight offset bytes when it assigns offsets. A corrupt base offset is still caught, because
//! every reader and recovery check that batches are contiguous.

use crate::buffer::{NO_KEY, RecordRef, Span};
use crate::record::{Header, Record, StoredRecord};
use bytes::Bytes;
use sluice_core::time::Millis;
use std::fmt;

/// The only batch format version so far.
pub const MAGIC: u8 = 1;
/// Bytes before the first record: base offset, length, CRC, magic, attributes, record count,
/// first timestamp, max timestamp.
pub const BATCH_HEADER_LEN: usize = 38;
/// `length` counts the bytes after itself; this is where it ends.
const LENGTH_END: usize = 12;
/// The CRC covers everything after itself.
const CRC_END: usize = 16;
/// The smallest legal `length`: CRC and the rest of the header, with no record bytes.
const MIN_LENGTH: usize = BATCH_HEADER_LEN - LENGTH_END;
/// The largest frame any configuration can produce (`max-batch-bytes` is capped below this), so
/// a garbage length is rejected before anything tries to read that many bytes.
pub const MAX_FRAME_LEN: usize = 512 << 20;
/// The fewest bytes a record encodes to.
const MIN_RECORD_LEN: usize = 4;
/// The longest varint (a `u64` in 7-bit groups).
const MAX_VARINT_LEN: usize = 10;

/// Why bytes that should hold a batch do not. `at` is relative to the buffer given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Byte position of the problem in the buffer that was decoded.
    pub at: usize,
    /// What is wrong.
    pub reason: String,
}

impl Malformed {
    fn new(at: usize, reason: impl Into<String>) -> Self {
        Self {
            at,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.at)
    }
}

/// The fixed-size header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the batch's first record.
    pub base_offset: u64,
    /// Bytes of the whole frame, header included.
    pub frame_len: usize,
    /// CRC32C of the frame's bytes after the CRC field.
    pub crc: u32,
    /// Records in the batch (at least 1).
    pub record_count: u32,
    /// Timestamp of the first record (record timestamps are stored as deltas from it).
    pub first_timestamp: Millis,
    /// Largest record timestamp in the batch.
    pub max_timestamp: Millis,
}

impl BatchHeader {
    /// The offset after the batch's last record.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }
}

/// What [`encode_batch`] wrote, besides the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedBatch {
    /// Records in the batch.
    pub record_count: u32,
    /// Largest record timestamp.
    pub max_timestamp: Millis,
    /// Bytes of the frame.
    pub frame_len: usize,
}

/// Appends one batch frame holding `records` to `out`, with base offset 0 (the writer patches it
/// with [`set_base_offset`]). `records` must not be empty and must hold fewer than `u32::MAX`
/// records; the caller enforces the configured size limits first.
pub fn encode_batch(records: &[Record], out: &mut Vec<u8>) -> EncodedBatch {
    assert!(
        !records.is_empty() && records.len() < u32::MAX as usize,
        "a batch holds 1..u32::MAX records"
    );
    let start = out.len();
    let first_timestamp = records[0].timestamp;
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .max()
        .unwrap_or(first_timestamp);
    out.reserve(BATCH_HEADER_LEN + records.iter().map(encoded_record_bound).sum::<usize>());
    out.extend_from_slice(&0u64.to_le_bytes()); // base offset, patched by the writer
    out.extend_from_slice(&0u32.to_le_bytes()); // length, set by seal_frame
    out.extend_from_slice(&0u32.to_le_bytes()); // crc, set by seal_frame
    out.push(MAGIC);
    out.push(0); // attributes: reserved, must be 0
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    out.extend_from_slice(&first_timestamp.to_le_bytes());
    out.extend_from_slice(&max_timestamp.to_le_bytes());
    for record in records {
        encode_record(record, first_timestamp, out);
    }
    seal_frame(&mut out[start..]);
    EncodedBatch {
        record_count: records.len() as u32,
        max_timestamp,
        frame_len: out.len() - start,
    }
}

/// Sets a frame's `length` and `crc` fields from its bytes. `frame` must be at least
/// [`BATCH_HEADER_LEN`] long. Tests and the fuzz target use it to build frames around arbitrary
/// record bytes.
pub fn seal_frame(frame: &mut [u8]) {
    let length = (frame.len() - LENGTH_END) as u32;
    frame[8..LENGTH_END].copy_from_slice(&length.to_le_bytes());
    let crc = crc32c::crc32c(&frame[CRC_END..]);
    frame[LENGTH_END..CRC_END].copy_from_slice(&crc.to_le_bytes());
}

/// Writes the base offset into an encoded frame.
pub fn set_base_offset(frame: &mut [u8], base_offset: u64) {
    frame[..8].copy_from_slice(&base_offset.to_le_bytes());
}

/// An upper bound of a record's encoded size, for reserving buffer space.
fn encoded_record_bound(record: &Record) -> usize {
    4 * MAX_VARINT_LEN + record.size() + record.headers.len() * 2 * MAX_VARINT_LEN
}

fn encode_record(record: &Record, first_timestamp: Millis, out: &mut Vec<u8>) {
    put_varint(out, zigzag(record.timestamp.wrapping_sub(first_timestamp)));
    match &record.key {
        None => put_varint(out, 0),
        Some(key) => {
            put_varint(out, key.len() as u64 + 1);
            out.extend_from_slice(key);
        }
    }
    put_varint(out, record.value.len() as u64);
    out.extend_from_slice(&record.value);
    put_varint(out, record.headers.len() as u64);
    for header in &record.headers {
        put_varint(out, header.key.len() as u64);
        out.extend_from_slice(header.key.as_bytes());
        put_varint(out, header.value.len() as u64);
        out.extend_from_slice(&header.value);
    }
}

/// Reads the header of the frame at the start of `buf`. `Ok(None)` means `buf` is shorter than a
/// header (more bytes are needed, or the frame is torn). The header is checked for sanity, not
/// the CRC: see [`check_crc`].
pub fn peek_header(buf: &[u8]) -> Result<Option<BatchHeader>, Malformed> {
    if buf.len() < BATCH_HEADER_LEN {
        return Ok(None);
    }
    let length = u32_at(buf, 8) as usize;
    if length < MIN_LENGTH {
        return Err(Malformed::new(
            8,
            format!("batch length {length} is shorter than a batch header"),
        ));
    }
    let frame_len = LENGTH_END + length;
    if frame_len > MAX_FRAME_LEN {
        return Err(Malformed::new(
            8,
            format!("batch length {length} is larger than any batch sluice writes"),
        ));
    }
    if buf[16] != MAGIC {
        return Err(Malformed::new(
            16,
            format!("unknown batch format {} (expected {MAGIC})", buf[16]),
        ));
    }
    if buf[17] != 0 {
        return Err(Malformed::new(
            17,
            format!("unknown batch attributes {:#04x}", buf[17]),
        ));
    }
    let record_count = u32_at(buf, 18);
    if record_count == 0 {
        return Err(Malformed::new(18, "batch holds no records"));
    }
    // A record takes at least four bytes (timestamp delta, key, value and header counts).
    if record_count as usize > (length - MIN_LENGTH) / MIN_RECORD_LEN {
        return Err(Malformed::new(
            18,
            format!("batch claims {record_count} records, more than its {length} bytes can hold"),
        ));
    }
    let base_offset = u64_at(buf, 0);
    if base_offset.checked_add(u64::from(record_count)).is_none() {
        return Err(Malformed::new(0, "batch offsets overflow"));
    }
    Ok(Some(BatchHeader {
        base_offset,
        frame_len,
        crc: u32_at(buf, LENGTH_END),
        record_count,
        first_timestamp: u64_at(buf, 22) as i64,
        max_timestamp: u64_at(buf, 30) as i64,
    }))
}

/// Checks the CRC of a complete frame (`frame.len() == header.frame_len`).
pub fn check_crc(frame: &[u8], header: &BatchHeader) -> Result<(), Malformed> {
    debug_assert_eq!(frame.len(), header.frame_len);
    let actual = crc32c::crc32c(&frame[CRC_END..]);
    if actual == header.crc {
        Ok(())
    } else {
        Err(Malformed::new(
            LENGTH_END,
            format!(
                "batch at offset {} fails its checksum (stored {:#010x}, computed {actual:#010x})",
                header.base_offset, header.crc
            ),
        ))
    }
}

/// Decodes the records of a complete, CRC-checked frame, appending those at or after
/// `from_offset` to `out` (zero-copy: keys and values are slices of `frame`). Returns the summed
/// [`Record::size`] of the records appended. Every record is decoded, appended or not, so a
/// frame whose records do not match its header is always an error.
pub fn decode_records(
    frame: &Bytes,
    header: &BatchHeader,
    from_offset: u64,
    out: &mut Vec<StoredRecord>,
) -> Result<usize, Malformed> {
    let mut spans = Vec::new();
    let bytes = decode_spans(frame, 0, header, from_offset, &mut spans)?;
    out.reserve(spans.len());
    let part = |start: u32, len: u32| frame.slice(start as usize..(start + len) as usize);
    for span in spans {
        let view = RecordRef {
            offset: span.offset,
            timestamp: span.timestamp,
            key: None,
            value: &[],
            headers: &frame[span.headers as usize..span.headers_end as usize],
            header_count: span.header_count,
        };
        let headers = view
            .headers()
            .map(|(key, value)| Header {
                key: key.to_owned(),
                value: frame.slice_ref(value),
            })
            .collect();
        out.push(StoredRecord {
            offset: span.offset,
            record: Record {
                key: (span.key_len != NO_KEY).then(|| part(span.key, span.key_len)),
                value: part(span.value, span.value_len),
                timestamp: span.timestamp,
                headers,
            },
        });
    }
    Ok(bytes)
}

/// Decodes the records of the complete, CRC-checked frame that starts at `at` in `buf`, appending
/// a [`Span`] (positions in `buf`) for each record at or after `from_offset` to `out`. Returns
/// the summed [`Record::size`] of those records. Every record is decoded, kept or not, so a
/// frame whose records do not match its header is always an error; positions in the error are
/// relative to the frame. `buf` must be shorter than 4 GiB.
pub(crate) fn decode_spans(
    buf: &[u8],
    at: usize,
    header: &BatchHeader,
    from_offset: u64,
    out: &mut Vec<Span>,
) -> Result<usize, Malformed> {
    let frame = &buf[..at + header.frame_len];
    let mut cursor = Cursor {
        buf: frame,
        pos: at + BATCH_HEADER_LEN,
    };
    let malformed = |problem: Malformed| Malformed::new(problem.at - at, problem.reason);
    let mut bytes = 0;
    let mut max_timestamp = Millis::MIN;
    let skipped = from_offset.saturating_sub(header.base_offset);
    // Bounded by the frame's length (peek_header checks the count against it).
    out.reserve((u64::from(header.record_count).saturating_sub(skipped)) as usize);
    for index in 0..header.record_count {
        let delta = unzigzag(cursor.varint().map_err(malformed)?);
        let timestamp = header.first_timestamp.wrapping_add(delta);
        max_timestamp = max_timestamp.max(timestamp);
        let (key, key_len) = match cursor.varint().map_err(malformed)? {
            0 => (cursor.pos, NO_KEY),
            len => {
                let start = cursor.pos;
                cursor.skip(len - 1).map_err(malformed)?;
                (start, (len - 1) as u32)
            }
        };
        let value_len = cursor.varint().map_err(malformed)?;
        let value = cursor.pos;
        cursor.skip(value_len).map_err(malformed)?;
        let header_count = cursor.varint().map_err(malformed)?;
        // Each header takes at least two bytes.
        if header_count > (frame.len() - cursor.pos) as u64 / 2 {
            return Err(Malformed::new(
                cursor.pos - at,
                format!("record claims {header_count} headers, more than the batch can hold"),
            ));
        }
        let headers = cursor.pos;
        let mut header_bytes = 0;
        for _ in 0..header_count {
            let name_len = cursor.varint().map_err(malformed)?;
            let name_at = cursor.pos;
            cursor.skip(name_len).map_err(malformed)?;
            if std::str::from_utf8(&frame[name_at..cursor.pos]).is_err() {
                return Err(Malformed::new(name_at - at, "header name is not UTF-8"));
            }
            let value_len = cursor.varint().map_err(malformed)?;
            cursor.skip(value_len).map_err(malformed)?;
            header_bytes += name_len as usize + value_len as usize;
        }
        let offset = header.base_offset + u64::from(index);
        if offset >= from_offset {
            bytes += if key_len == NO_KEY {
                0
            } else {
                key_len as usize
            } + value_len as usize
                + header_bytes;
            out.push(Span {
                offset,
                timestamp,
                key: key as u32,
                key_len,
                value: value as u32,
                value_len: value_len as u32,
                headers: headers as u32,
                headers_end: cursor.pos as u32,
                header_count: header_count as u32,
            });
        }
    }
    if cursor.pos != frame.len() {
        return Err(Malformed::new(
            cursor.pos - at,
            format!(
                "{} bytes left over after the batch's last record",
                frame.len() - cursor.pos
            ),
        ));
    }
    if max_timestamp != header.max_timestamp {
        return Err(Malformed::new(
            30,
            format!(
                "batch max timestamp {} does not match its records' ({max_timestamp})",
                header.max_timestamp
            ),
        ));
    }
    Ok(bytes)
}

/// Where a scan of consecutive frames stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// Every byte belongs to a complete, valid frame.
    Clean,
    /// The frame at `at` is incomplete: a torn write at the end of a file, or a chunk boundary.
    Incomplete {
        /// Where the incomplete frame starts.
        at: usize,
    },
    /// The frame at `at` is invalid.
    Corrupt {
        /// Where the invalid frame starts.
        at: usize,
        /// What is wrong.
        problem: Malformed,
    },
}

/// Walks the frames at the start of `buf`, checking framing, CRCs and (from `expected_offset`)
/// offset contiguity, and calls `each(position, header)` for every valid frame. Records are not
/// decoded: a matching CRC means the writer encoded them.
pub fn scan_frames(
    buf: &[u8],
    mut expected_offset: Option<u64>,
    mut each: impl FnMut(usize, &BatchHeader),
) -> ScanStop {
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let header = match peek_header(rest) {
            Ok(Some(header)) => header,
            Ok(None) => return ScanStop::Incomplete { at: pos },
            Err(problem) => return ScanStop::Corrupt { at: pos, problem },
        };
        if rest.len() < header.frame_len {
            return ScanStop::Incomplete { at: pos };
        }
        if let Err(problem) = check_crc(&rest[..header.frame_len], &header) {
            return ScanStop::Corrupt { at: pos, problem };
        }
        if let Some(expected) = expected_offset
            && header.base_offset != expected
        {
            return ScanStop::Corrupt {
                at: pos,
                problem: Malformed::new(
                    0,
                    format!(
                        "batch starts at offset {} where offset {expected} was expected",
                        header.base_offset
                    ),
                ),
            };
        }
        expected_offset = Some(header.next_offset());
        each(pos, &header);
        pos += header.frame_len;
    }
    ScanStop::Clean
}

/// Where [`find_frame`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Search {
    /// The frame at `at` proves itself: a sane header that `accept` took, a matching CRC and
    /// records that decode as the header says.
    Found {
        /// Where the frame starts.
        at: usize,
        /// Its header.
        header: BatchHeader,
    },
    /// A candidate at `at` runs past the end of the buffer (which is not the end of the file):
    /// search again with a buffer that starts at `at` and holds `frame_len` bytes.
    Incomplete {
        /// Where the candidate starts.
        at: usize,
        /// How long it claims to be.
        frame_len: usize,
    },
    /// No frame starts before `next`: go on from there with more bytes (or stop at the end of
    /// the file).
    NotFound {
        /// The first position not searched.
        next: usize,
    },
}

/// Looks for the first frame at or after `from` that proves itself, byte by byte: after damaged
/// bytes, where the next intact batch starts is unknown. A candidate needs a sane header that
/// `accept(position, header)` takes (the caller checks its base offset is plausible), a CRC that
/// holds over the whole frame and records that decode; `at_eof` says the buffer ends where the
/// file does, so a candidate running past it is no frame.
pub fn find_frame(
    buf: &[u8],
    from: usize,
    at_eof: bool,
    mut accept: impl FnMut(usize, &BatchHeader) -> bool,
) -> Search {
    let mut at = from;
    while at + BATCH_HEADER_LEN <= buf.len() {
        let rest = &buf[at..];
        if let Ok(Some(header)) = peek_header(rest)
            && accept(at, &header)
        {
            if rest.len() < header.frame_len {
                if !at_eof {
                    return Search::Incomplete {
                        at,
                        frame_len: header.frame_len,
                    };
                }
            } else if check_crc(&rest[..header.frame_len], &header).is_ok()
                && decode_spans(rest, 0, &header, 0, &mut Vec::new()).is_ok()
            {
                return Search::Found { at, header };
            }
        }
        at += 1;
    }
    Search::NotFound { next: at }
}

/// The most records `len` bytes of batches can hold: bounds how many offsets damaged bytes can
/// have held, so a frame found after them with an implausible base offset is not trusted.
pub fn max_records_in(len: u64) -> u64 {
    len / MIN_RECORD_LEN as u64
}

/// Decodes a whole segment image: every frame must be complete, valid and contiguous. The fuzz
/// target's entry point, and a convenient oracle in tests.
pub fn decode_segment(buf: &[u8]) -> Result<Vec<StoredRecord>, Malformed> {
    let bytes = Bytes::copy_from_slice(buf);
    let mut frames = Vec::new();
    match scan_frames(buf, None, |pos, header| frames.push((pos, *header))) {
        ScanStop::Clean => {}
        ScanStop::Incomplete { at } => {
            return Err(Malformed::new(at, "segment ends inside a batch"));
        }
        ScanStop::Corrupt { at, problem } => {
            return Err(Malformed::new(at + problem.at, problem.reason));
        }
    }
    let mut records = Vec::new();
    for (pos, header) in frames {
        let frame = bytes.slice(pos..pos + header.frame_len);
        decode_records(&frame, &header, 0, &mut records)
            .map_err(|problem| Malformed::new(pos + problem.at, problem.reason))?;
    }
    Ok(records)
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, Malformed> {
        // Most lengths and deltas fit in one byte, and event values (128 B – 16 KiB) in two:
        // both are decoded inline, longer numbers and errors out of line.
        if let Some(&low) = self.buf.get(self.pos) {
            if low < 0x80 {
                self.pos += 1;
                return Ok(u64::from(low));
            }
            if let Some(&high) = self.buf.get(self.pos + 1)
                && high < 0x80
            {
                self.pos += 2;
                return Ok(u64::from(low & 0x7f) | (u64::from(high) << 7));
            }
        }
        self.varint_slow()
    }

    #[cold]
    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, Malformed> {
        let mut value: u64 = 0;
        for i in 0..MAX_VARINT_LEN {
            let Some(&byte) = self.buf.get(self.pos + i) else {
                return Err(Malformed::new(self.pos, "record ends inside a number"));
            };
            let bits = u64::from(byte & 0x7f);
            if i == MAX_VARINT_LEN - 1 && byte > 1 {
                return Err(Malformed::new(self.pos, "number does not fit in 64 bits"));
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                self.pos += i + 1;
                return Ok(value);
            }
        }
        Err(Malformed::new(self.pos, "number longer than 10 bytes"))
    }

    /// Steps over a field of `len` bytes.
    #[inline]
    fn skip(&mut self, len: u64) -> Result<(), Malformed> {
        let available = (self.buf.len() - self.pos) as u64;
        if len > available {
            return Err(Malformed::new(
                self.pos,
                format!("field of {len} bytes runs past the end of the batch ({available} left)"),
            ));
        }
        self.pos += len as usize;
        Ok(())
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: Option<&str>, value: &str, timestamp: Millis) -> Record {
        Record::new(
            key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            Bytes::copy_from_slice(value.as_bytes()),
            timestamp,
        )
    }

    fn sample() -> Vec<Record> {
        let mut with_headers = record(Some("user-1"), "{\"a\":1}", 1_700_000_000_500);
        with_headers.headers = vec![
            Header {
                key: "content-type".into(),
                value: Bytes::from_static(b"application/json"),
            },
            Header {
                key: "empty".into(),
                value: Bytes::new(),
            },
        ];
        vec![
            record(None, "first", 1_700_000_000_000),
            with_headers,
            record(Some(""), "", 1_699_999_999_000),
        ]
    }

    fn encode_at(records: &[Record], base_offset: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_batch(records, &mut out);
        set_base_offset(&mut out, base_offset);
        out
    }

    #[test]
    fn a_batch_round_trips_with_keys_headers_and_timestamps() {
        let records = sample();
        let frame = encode_at(&records, 42);
        let header = peek_header(&frame).unwrap().unwrap();
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.frame_len, frame.len());
        assert_eq!(header.record_count, 3);
        assert_eq!(header.first_timestamp, 1_700_000_000_000);
        assert_eq!(header.max_timestamp, 1_700_000_000_500);
        check_crc(&frame, &header).unwrap();
        let mut out = Vec::new();
        let bytes = decode_records(&Bytes::from(frame), &header, 0, &mut out).unwrap();
        assert_eq!(bytes, records.iter().map(Record::size).sum::<usize>());
        let offsets: Vec<u64> = out.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [42, 43, 44]);
        let decoded: Vec<Record> = out.into_iter().map(|r| r.record).collect();
        assert_eq!(decoded, records);
    }

    #[test]
    fn decoding_from_an_offset_inside_a_batch_skips_earlier_records() {
        let frame = Bytes::from(encode_at(&sample(), 10));
        let header = peek_header(&frame).unwrap().unwrap();
        let mut out = Vec::new();
        decode_records(&frame, &header, 12, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].offset, 12);
        assert_eq!(out[0].record.key.as_deref(), Some(&b""[..]));
    }

    #[test]
    fn extreme_timestamps_round_trip() {
        let records = vec![
            record(None, "a", Millis::MAX),
            record(None, "b", Millis::MIN),
            record(None, "c", 0),
        ];
        let frame = Bytes::from(encode_at(&records, 0));
        let header = peek_header(&frame).unwrap().unwrap();
        let mut out = Vec::new();
        decode_records(&frame, &header, 0, &mut out).unwrap();
        let times: Vec<Millis> = out.iter().map(|r| r.record.timestamp).collect();
        assert_eq!(times, [Millis::MAX, Millis::MIN, 0]);
    }

    #[test]
    fn varints_round_trip_at_their_boundaries() {
        for value in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, value);
            let bytes = Bytes::from(buf);
            let mut cursor = Cursor {
                buf: &bytes,
                pos: 0,
            };
            assert_eq!(cursor.varint().unwrap(), value);
            assert_eq!(cursor.pos, bytes.len());
        }
        for value in [0, 1, -1, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(value)), value);
        }
        let overlong = Bytes::from(vec![0xff; 11]);
        let mut cursor = Cursor {
            buf: &overlong,
            pos: 0,
        };
        assert!(cursor.varint().is_err());
    }

    #[test]
    fn a_flipped_bit_anywhere_after_the_offset_is_detected() {
        let frame = encode_at(&sample(), 7);
        for byte in 8..frame.len() {
            let mut damaged = frame.clone();
            damaged[byte] ^= 0x10;
            let detected = match peek_header(&damaged) {
                Err(_) | Ok(None) => true,
                Ok(Some(header)) => {
                    header.frame_len != damaged.len() || check_crc(&damaged, &header).is_err()
                }
            };
            assert!(detected, "flip at byte {byte} went unnoticed");
        }
    }

    #[test]
    fn headers_with_garbage_are_rejected_with_a_reason() {
        let mut frame = encode_at(&sample(), 0);
        frame[16] = 9;
        let error = peek_header(&frame).unwrap_err();
        assert!(error.reason.contains("unknown batch format 9"), "{error}");

        let mut frame = encode_at(&sample(), 0);
        frame[8..12].copy_from_slice(&3u32.to_le_bytes());
        let error = peek_header(&frame).unwrap_err();
        assert!(
            error.reason.contains("shorter than a batch header"),
            "{error}"
        );

        let mut frame = encode_at(&sample(), 0);
        frame[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        let error = peek_header(&frame).unwrap_err();
        assert!(error.reason.contains("larger than any batch"), "{error}");

        assert_eq!(peek_header(&frame[..BATCH_HEADER_LEN - 1]), Ok(None));
    }

    #[test]
    fn records_that_disagree_with_their_header_are_rejected_even_with_a_valid_crc() {
        // Claim one more record than the batch holds, then re-seal so the CRC matches.
        let mut frame = encode_at(&sample(), 0);
        frame[18..22].copy_from_slice(&4u32.to_le_bytes());
        seal_frame(&mut frame);
        let header = peek_header(&frame).unwrap().unwrap();
        check_crc(&frame, &header).unwrap();
        let error = decode_records(&Bytes::from(frame), &header, 0, &mut Vec::new()).unwrap_err();
        assert!(
            error.reason.contains("record ends inside a number"),
            "{error}"
        );

        // A wrong max timestamp.
        let mut frame = encode_at(&sample(), 0);
        frame[30..38].copy_from_slice(&5i64.to_le_bytes());
        seal_frame(&mut frame);
        let header = peek_header(&frame).unwrap().unwrap();
        let error = decode_records(&Bytes::from(frame), &header, 0, &mut Vec::new()).unwrap_err();
        assert!(error.reason.contains("max timestamp"), "{error}");
    }

    #[test]
    fn a_scan_stops_at_torn_corrupt_and_discontiguous_frames() {
        let mut segment = encode_at(&sample(), 0);
        let first_len = segment.len();
        segment.extend(encode_at(&sample()[..1], 3));
        let mut seen = Vec::new();
        assert_eq!(
            scan_frames(&segment, Some(0), |pos, h| seen.push((pos, h.base_offset))),
            ScanStop::Clean
        );
        assert_eq!(seen, [(0, 0), (first_len, 3)]);

        // Torn: the last frame is cut short.
        let torn = &segment[..segment.len() - 3];
        assert_eq!(
            scan_frames(torn, Some(0), |_, _| {}),
            ScanStop::Incomplete { at: first_len }
        );

        // Discontiguous: the second batch claims offset 4.
        let mut gap = segment.clone();
        set_base_offset(&mut gap[first_len..], 4);
        let ScanStop::Corrupt { at, problem } = scan_frames(&gap, Some(0), |_, _| {}) else {
            panic!("gap not detected");
        };
        assert_eq!(at, first_len);
        assert!(
            problem.reason.contains("offset 3 was expected"),
            "{problem}"
        );

        // Zeroes after a valid frame (a file extended but never written) are corrupt.
        let mut zeroes = segment.clone();
        zeroes.extend([0u8; 64]);
        assert!(matches!(
            scan_frames(&zeroes, Some(0), |_, _| {}),
            ScanStop::Corrupt { .. }
        ));
    }

    #[test]
    fn a_search_after_damage_finds_the_next_intact_frame_and_only_that() {
        let mut segment = encode_at(&sample(), 0);
        let second = segment.len();
        segment.extend(encode_at(&sample(), 3));
        let third = segment.len();
        segment.extend(encode_at(&sample()[..1], 6));
        // Damage the second frame's records: the search from inside it lands on the third.
        segment[second + 50] ^= 0x55;
        let found = find_frame(&segment, 0, true, |_, _| true);
        let Search::Found { at, header } = found else {
            panic!("nothing found: {found:?}");
        };
        assert_eq!(
            (at, header.base_offset),
            (0, 0),
            "the first frame is intact"
        );
        let found = find_frame(&segment, second, true, |_, _| true);
        assert!(
            matches!(found, Search::Found { at, header } if at == third && header.base_offset == 6),
            "{found:?}"
        );
        // The caller's check decides: a base offset it does not take is no frame.
        let found = find_frame(&segment, second, true, |_, h| h.base_offset != 6);
        assert_eq!(
            found,
            Search::NotFound {
                next: segment.len() - BATCH_HEADER_LEN + 1
            }
        );
        // A frame cut by the end of the buffer is asked for whole, unless the file ends there.
        let cut = &segment[..segment.len() - 1];
        assert_eq!(
            find_frame(cut, second, false, |_, _| true),
            Search::Incomplete {
                at: third,
                frame_len: segment.len() - third
            }
        );
        assert!(matches!(
            find_frame(cut, second, true, |_, _| true),
            Search::NotFound { .. }
        ));
        // A frame whose CRC holds but whose records disagree with its header is no frame.
        let mut lying = encode_at(&sample(), 9);
        lying[18..22].copy_from_slice(&4u32.to_le_bytes());
        seal_frame(&mut lying);
        assert!(matches!(
            find_frame(&lying, 0, true, |_, _| true),
            Search::NotFound { .. }
        ));
        assert_eq!(max_records_in(41), 10);
    }

    #[test]
    fn decode_segment_returns_every_record_or_an_error() {
        let mut segment = encode_at(&sample(), 0);
        segment.extend(encode_at(&sample(), 3));
        let records = decode_segment(&segment).unwrap();
        assert_eq!(records.len(), 6);
        assert_eq!(records[5].offset, 5);
        assert!(decode_segment(&segment[..segment.len() - 1]).is_err());
        assert!(decode_segment(&[]).unwrap().is_empty());
    }
}
