//! A partition's recorded gaps: offset ranges that recovery or `sluice log repair` found lost
//! (their batches were damaged and quarantined, or their segment file is missing) while later
//! batches survived with their offsets. Reads step over a recorded gap to the next offset that
//! exists; a hole between two segments that is *not* recorded is damage, and reads of it fail.
//!
//! Gaps only ever lie between segments: salvage puts the intact batches after damaged bytes in
//! a segment file of their own, named by their first offset, so every segment stays a run of
//! contiguous batches and its index stays as it is.
//!
//! The list lives in `<partition>/gaps`, written only once a partition has a gap and replaced
//! atomically (like [`epochs`](super::epochs)). Format: a [`table`](super::table) with magic
//! `"SLGP"` and entries `{ start: u64, end: u64 }` (little-endian, `start < end`), sorted,
//! neither overlapping nor touching.

use super::format::Malformed;
use super::fs::{atomic_write, io_error};
use super::table;
use crate::{LogError, Result};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The gap file's name in a partition directory.
pub const GAPS_FILE: &str = "gaps";
/// Magic bytes at the start of a gap file.
const MAGIC: &[u8; 4] = b"SLGP";
/// Bytes of one entry.
const ENTRY_LEN: usize = 16;

/// Serializes gaps to the file format.
pub fn encode(gaps: &[Range<u64>]) -> Vec<u8> {
    let entries: Vec<[u8; ENTRY_LEN]> = gaps
        .iter()
        .map(|gap| {
            let mut bytes = [0; ENTRY_LEN];
            bytes[..8].copy_from_slice(&gap.start.to_le_bytes());
            bytes[8..].copy_from_slice(&gap.end.to_le_bytes());
            bytes
        })
        .collect();
    table::encode(MAGIC, &entries)
}

/// Parses a gap file, checking its CRC and that the gaps are non-empty, sorted and apart.
pub fn decode(buf: &[u8]) -> Result<Vec<Range<u64>>, Malformed> {
    let entries = table::decode::<ENTRY_LEN>(buf, MAGIC, "gap file")?;
    let mut gaps: Vec<Range<u64>> = Vec::with_capacity(entries.len());
    for (i, bytes) in entries.iter().enumerate() {
        let gap = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
            ..u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes"));
        let apart = gaps.last().is_none_or(|prev| prev.end < gap.start);
        if gap.is_empty() || !apart {
            return Err(Malformed {
                at: table::entry_position(i, ENTRY_LEN),
                reason: "gaps must be non-empty, sorted and apart".to_owned(),
            });
        }
        gaps.push(gap);
    }
    Ok(gaps)
}

/// Adds `gap` to a sorted list, merging it with the gaps it overlaps or touches. Pure.
pub fn add(gaps: &mut Vec<Range<u64>>, gap: Range<u64>) {
    if gap.is_empty() {
        return;
    }
    let mut merged = gap;
    gaps.retain(|existing| {
        let apart = existing.end < merged.start || merged.end < existing.start;
        if !apart {
            merged = merged.start.min(existing.start)..merged.end.max(existing.end);
        }
        apart
    });
    let at = gaps.partition_point(|existing| existing.start < merged.start);
    gaps.insert(at, merged);
}

/// Whether the recorded gaps cover every offset of `range`.
pub fn covers(gaps: &[Range<u64>], range: &Range<u64>) -> bool {
    range.is_empty()
        || gaps
            .iter()
            .any(|gap| gap.start <= range.start && range.end <= gap.end)
}

/// The gap file of a partition directory.
pub fn path(partition_dir: &Path) -> PathBuf {
    partition_dir.join(GAPS_FILE)
}

/// Reads a partition's recorded gaps: none when it has no gap file.
pub(crate) fn load(partition_dir: &Path) -> Result<Vec<Range<u64>>> {
    let path = path(partition_dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error("reading", &path)(error)),
    };
    decode(&bytes).map_err(|problem| LogError::Corrupt {
        path: path.clone(),
        reason: format!("the partition's gap file is damaged ({problem})"),
    })
}

/// Records `new` gaps durably (nothing is written when they are recorded already).
pub(crate) fn record(
    partition_dir: &Path,
    gaps: &mut Vec<Range<u64>>,
    new: &[Range<u64>],
) -> Result<()> {
    let mut next = gaps.clone();
    for gap in new {
        add(&mut next, gap.clone());
    }
    if next != *gaps {
        atomic_write(&path(partition_dir), &encode(&next))?;
        *gaps = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_merge_and_cover() {
        let mut gaps = Vec::new();
        add(&mut gaps, 10..20);
        add(&mut gaps, 40..50);
        add(&mut gaps, 0..0);
        assert_eq!(gaps, [10..20, 40..50]);
        add(&mut gaps, 20..25);
        add(&mut gaps, 30..45);
        assert_eq!(gaps, [10..25, 30..50]);
        add(&mut gaps, 5..60);
        assert_eq!(gaps, vec![Range { start: 5, end: 60 }]);
        assert!(covers(&gaps, &(5..60)));
        assert!(covers(&gaps, &(7..7)));
        assert!(!covers(&gaps, &(4..6)));
        assert!(!covers(&[10..20, 20..30], &(15..25)), "only merged lists");
    }

    #[test]
    fn gap_files_round_trip_reject_damage_and_are_written_only_for_news() {
        let gaps = vec![3..5, 9..1_000_000_000_000];
        assert_eq!(decode(&encode(&gaps)).unwrap(), gaps);
        let empty = Range { start: 5, end: 5 };
        assert!(decode(&encode(&[empty])).is_err(), "empty gap");
        assert!(decode(&encode(&[3..5, 5..9])).is_err(), "touching gaps");
        assert!(decode(&encode(&[9..12, 3..5])).is_err(), "unsorted");

        let dir = tempfile::tempdir().unwrap();
        let mut recorded = load(dir.path()).unwrap();
        assert!(recorded.is_empty());
        record(dir.path(), &mut recorded, &[]).unwrap();
        assert!(!path(dir.path()).exists(), "nothing to record, no file");
        record(dir.path(), &mut recorded, &[9..12, 3..5]).unwrap();
        assert_eq!(load(dir.path()).unwrap(), [3..5, 9..12]);
        std::fs::write(path(dir.path()), b"SLGP").unwrap();
        let error = load(dir.path()).unwrap_err();
        assert!(error.to_string().contains("gap file is damaged"), "{error}");
    }
}
