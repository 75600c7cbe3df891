//! The sparse index of a segment: pure functions, no I/O.
//!
//! One list of entries serves as both the offset index and the time index. An entry is added
//! before a batch once at least `index-interval-bytes` were written since the previous entry, and
//! says three things about that batch's position in the segment file:
//! - the batch there starts at `relative_offset` (offset lookups: the last entry at or before an
//!   offset is where to start reading);
//! - every record *before* it has a timestamp at most `max_timestamp_before` (time lookups: the
//!   last entry whose `max_timestamp_before` is below a time `T` is where to start looking for
//!   the first record at or after `T`). These maxima never decrease, so both keys are sorted.
//!
//! An index file (`.idx`) is written when a segment is sealed, and for the active segment at a
//! clean close. It records the segment length it describes and ends with a CRC; a missing,
//! damaged or stale index (a different segment length) is rebuilt by scanning the segment.

use super::format::Malformed;
use sluice_core::time::Millis;

/// Magic bytes at the start of an index file.
const INDEX_MAGIC: &[u8; 4] = b"SLIX";
/// The index file format version.
const INDEX_VERSION: u8 = 1;
/// Bytes of the fixed part of an index file: magic, version, padding, segment bytes, end offset,
/// max timestamp, entry count.
const INDEX_HEADER_LEN: usize = 4 + 1 + 3 + 8 + 8 + 8 + 4;
/// Bytes of one entry.
const ENTRY_LEN: usize = 16;

/// One point of the sparse index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Offset of the batch at `position`, relative to the segment's base offset.
    pub relative_offset: u32,
    /// Byte position of a batch in the segment file.
    pub position: u32,
    /// Largest timestamp of every record before `position` in this segment.
    pub max_timestamp_before: Millis,
}

/// What a segment holds, as far as reads and retention need to know without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SegmentIndex {
    /// Bytes of the segment file this index describes.
    pub segment_bytes: u64,
    /// The offset after the segment's last record (its base offset when empty).
    pub end_offset: u64,
    /// Largest record timestamp in the segment; `Millis::MIN` when empty.
    pub max_timestamp: Millis,
    /// Sparse entries in position order.
    pub entries: Vec<IndexEntry>,
}

impl SegmentIndex {
    /// The index of an empty segment starting at `base_offset`.
    pub fn empty(base_offset: u64) -> Self {
        Self {
            segment_bytes: 0,
            end_offset: base_offset,
            max_timestamp: Millis::MIN,
            entries: Vec::new(),
        }
    }

    /// Accounts for a batch written at the segment's end, adding an entry when `interval` bytes
    /// passed since the previous one. `relative_offset` is the batch's base offset minus the
    /// segment's; `next_offset` the offset after its last record.
    pub fn push_batch(
        &mut self,
        relative_offset: u32,
        next_offset: u64,
        frame_len: u64,
        max_timestamp: Millis,
        interval: u64,
    ) {
        let position = self.segment_bytes;
        let last_position = self.entries.last().map_or(0, |e| u64::from(e.position));
        if position > 0 && position - last_position >= interval {
            self.entries.push(IndexEntry {
                relative_offset,
                position: position as u32,
                max_timestamp_before: self.max_timestamp,
            });
        }
        self.segment_bytes += frame_len;
        self.end_offset = next_offset;
        self.max_timestamp = self.max_timestamp.max(max_timestamp);
    }

    /// Where to start reading for `relative_offset`: the position of the last indexed batch
    /// starting at or before it (0 when none is).
    pub fn position_for_offset(&self, relative_offset: u32) -> u64 {
        let after = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_offset);
        after
            .checked_sub(1)
            .map_or(0, |i| u64::from(self.entries[i].position))
    }

    /// Where to start looking for the first record at or after `timestamp`: every record before
    /// the returned position is older than `timestamp`.
    pub fn position_for_time(&self, timestamp: Millis) -> u64 {
        let after = self
            .entries
            .partition_point(|e| e.max_timestamp_before < timestamp);
        after
            .checked_sub(1)
            .map_or(0, |i| u64::from(self.entries[i].position))
    }
}

/// Serializes an index to the `.idx` file format.
pub fn encode_index(index: &SegmentIndex) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_HEADER_LEN + index.entries.len() * ENTRY_LEN + 4);
    out.extend_from_slice(INDEX_MAGIC);
    out.push(INDEX_VERSION);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&index.segment_bytes.to_le_bytes());
    out.extend_from_slice(&index.end_offset.to_le_bytes());
    out.extend_from_slice(&index.max_timestamp.to_le_bytes());
    out.extend_from_slice(&(index.entries.len() as u32).to_le_bytes());
    for entry in &index.entries {
        out.extend_from_slice(&entry.relative_offset.to_le_bytes());
        out.extend_from_slice(&entry.position.to_le_bytes());
        out.extend_from_slice(&entry.max_timestamp_before.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Parses an `.idx` file for a segment starting at `base_offset`, checking its CRC and that its
/// entries are ordered and inside the segment. The caller still checks `segment_bytes` against
/// the segment file's length (a stale index describes a different length).
pub fn decode_index(buf: &[u8], base_offset: u64) -> Result<SegmentIndex, Malformed> {
    let bad = |at: usize, reason: &str| Malformed {
        at,
        reason: reason.to_owned(),
    };
    if buf.len() < INDEX_HEADER_LEN + 4 {
        return Err(bad(0, "index file is shorter than its header"));
    }
    let (body, crc) = buf.split_at(buf.len() - 4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err(bad(body.len(), "index file fails its checksum"));
    }
    if &body[..4] != INDEX_MAGIC || body[4] != INDEX_VERSION {
        return Err(bad(0, "not a sluice index file of a known version"));
    }
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4 bytes"));
    let segment_bytes = u64_at(8);
    let end_offset = u64_at(16);
    let max_timestamp = u64_at(24) as Millis;
    let count = u32_at(32) as usize;
    if body.len() != INDEX_HEADER_LEN + count * ENTRY_LEN {
        return Err(bad(32, "index entry count does not match the file length"));
    }
    if end_offset < base_offset || segment_bytes > u64::from(u32::MAX) {
        return Err(bad(8, "index describes an impossible segment"));
    }
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let at = INDEX_HEADER_LEN + i * ENTRY_LEN;
        let entry = IndexEntry {
            relative_offset: u32_at(at),
            position: u32_at(at + 4),
            max_timestamp_before: u64_at(at + 8) as Millis,
        };
        let ordered = entries.last().is_none_or(|prev: &IndexEntry| {
            prev.relative_offset < entry.relative_offset
                && prev.position < entry.position
                && prev.max_timestamp_before <= entry.max_timestamp_before
        });
        let inside = u64::from(entry.position) < segment_bytes
            && base_offset + u64::from(entry.relative_offset) < end_offset
            && entry.max_timestamp_before <= max_timestamp;
        if !ordered || !inside {
            return Err(bad(
                at,
                "index entries are out of order or outside the segment",
            ));
        }
        entries.push(entry);
    }
    Ok(SegmentIndex {
        segment_bytes,
        end_offset,
        max_timestamp,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten batches of 100 bytes and 2 records each, timestamps rising with a dip at batch 5.
    fn sample(interval: u64) -> SegmentIndex {
        let mut index = SegmentIndex::empty(1000);
        for batch in 0..10u32 {
            let timestamp = if batch == 5 {
                0
            } else {
                Millis::from(batch) * 10
            };
            index.push_batch(
                batch * 2,
                1000 + u64::from(batch * 2 + 2),
                100,
                timestamp,
                interval,
            );
        }
        index
    }

    #[test]
    fn entries_follow_the_interval_and_track_the_running_max_timestamp() {
        let index = sample(250);
        assert_eq!(index.segment_bytes, 1000);
        assert_eq!(index.end_offset, 1020);
        assert_eq!(index.max_timestamp, 90);
        let positions: Vec<u32> = index.entries.iter().map(|e| e.position).collect();
        assert_eq!(positions, [300, 600, 900]);
        let maxima: Vec<Millis> = index
            .entries
            .iter()
            .map(|e| e.max_timestamp_before)
            .collect();
        assert_eq!(maxima, [20, 40, 80]);
        assert_eq!(sample(1).entries.len(), 9);
    }

    #[test]
    fn lookups_return_the_last_entry_at_or_before_the_key() {
        let index = sample(250);
        assert_eq!(index.position_for_offset(0), 0);
        assert_eq!(index.position_for_offset(5), 0);
        assert_eq!(index.position_for_offset(6), 300);
        assert_eq!(index.position_for_offset(13), 600);
        assert_eq!(index.position_for_offset(19), 900);
        assert_eq!(index.position_for_time(Millis::MIN), 0);
        assert_eq!(index.position_for_time(20), 0);
        assert_eq!(index.position_for_time(21), 300);
        assert_eq!(index.position_for_time(81), 900);
    }

    #[test]
    fn index_files_round_trip_and_reject_damage() {
        let index = sample(250);
        let bytes = encode_index(&index);
        assert_eq!(decode_index(&bytes, 1000).unwrap(), index);
        assert_eq!(
            decode_index(&encode_index(&SegmentIndex::empty(7)), 7).unwrap(),
            SegmentIndex::empty(7)
        );
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1;
            assert!(
                decode_index(&damaged, 1000).is_err(),
                "flip at {at} accepted"
            );
        }
        assert!(decode_index(&bytes[..bytes.len() - 1], 1000).is_err());
        // The same bytes describe an impossible segment at a later base offset.
        assert!(decode_index(&bytes, 1015).is_err());
    }
}
