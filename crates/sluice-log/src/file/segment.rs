//! Segment files: naming, positional reads, scanning a file's frames into an index, and index
//! files. Everything here is synchronous; callers run it on blocking threads.

use super::format::{self, BatchHeader, ScanStop};
use super::fs::{io_error, replace_unsynced};
use super::index::{SegmentIndex, decode_index, encode_index};
use crate::{LogError, Result};
use std::ffi::OsStr;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Width of the zero-padded base offset in file names, so names sort like offsets.
const NAME_DIGITS: usize = 20;
/// Bytes read at a time when scanning a segment.
const SCAN_CHUNK: usize = 4 << 20;

/// One segment as readers see it: the file and what has been published of it.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset of the segment's first record (the number in its file name).
    pub(crate) base_offset: u64,
    /// The `.log` file.
    pub(crate) path: PathBuf,
    /// The open file, shared by readers (positional reads) and, for the active segment, the
    /// writer. Retention may delete the file while a reader still holds it: it stays readable.
    pub(crate) file: Arc<File>,
    /// The published extent and sparse index. Readers never look past `index.segment_bytes`.
    pub(crate) index: SegmentIndex,
    /// Damage found at open after the readable part, up to the next segment: reads of those
    /// offsets fail until `sluice log repair` salvages what it can and records the rest as lost.
    pub(crate) damage: Option<Arc<Damage>>,
}

/// Offsets of a partition that cannot be read: damaged bytes of a sealed segment, or offsets no
/// segment file holds. Reads that touch them fail with [`LogError::Corrupt`]; they are never
/// skipped silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    /// The damaged segment file (for missing offsets: the segment before them).
    pub(crate) path: PathBuf,
    /// The bytes of `path` that hold no intact batch (empty for missing offsets).
    pub(crate) bytes: Range<u64>,
    /// The offsets that cannot be read.
    pub(crate) offsets: Range<u64>,
    /// What is wrong.
    pub(crate) reason: String,
}

impl Damage {
    /// The error for a read that touches the damage, at `requested`.
    pub(crate) fn error(&self, requested: u64) -> LogError {
        let bytes = if self.bytes.is_empty() {
            String::new()
        } else {
            format!(" (bytes {}..{})", self.bytes.start, self.bytes.end)
        };
        LogError::Corrupt {
            path: self.path.clone(),
            reason: format!(
                "offset {requested} lies in offsets {}..{} that cannot be read{bytes}: {}",
                self.offsets.start, self.offsets.end, self.reason
            ),
        }
    }

    /// The error for a search by time whose answer may be among the damaged records.
    pub(crate) fn time_error(&self, timestamp: i64) -> LogError {
        LogError::Corrupt {
            path: self.path.clone(),
            reason: format!(
                "the first record at or after time {timestamp} may be among offsets {}..{}, which cannot be read: {}",
                self.offsets.start, self.offsets.end, self.reason
            ),
        }
    }
}

impl Segment {
    /// The offset relative to this segment's base, as stored in the index.
    pub(crate) fn relative(&self, offset: u64) -> u32 {
        u32::try_from(offset - self.base_offset).expect("a segment holds fewer than 2^32 offsets")
    }
}

/// `<dir>/<base offset, 20 digits>.log`.
pub fn log_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:0NAME_DIGITS$}.log"))
}

/// The index file beside a segment file.
pub fn index_path(log_path: &Path) -> PathBuf {
    log_path.with_extension("idx")
}

/// The base offset in a segment file name, or `None` for other files.
pub fn parse_log_name(name: &OsStr) -> Option<u64> {
    let name = name.to_str()?;
    let digits = name.strip_suffix(".log")?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The base offsets of a partition's segment files, in order.
pub(crate) fn segment_bases(dir: &Path) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error("listing partition", dir))? {
        let entry = entry.map_err(io_error("listing partition", dir))?;
        if let Some(base) = parse_log_name(&entry.file_name()) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Reads exactly `len` bytes at `position`.
pub(crate) fn read_at(file: &File, path: &Path, position: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, position)
        .map_err(io_error("reading segment", path))?;
    Ok(buf)
}

/// How a scan of a segment file ended.
#[derive(Debug)]
pub(crate) struct ScanOutcome {
    /// The index of the valid prefix; `index.segment_bytes` is its length.
    pub(crate) index: SegmentIndex,
    /// Why the scan stopped before the end of the file, if it did.
    pub(crate) invalid_tail: Option<String>,
    /// It stopped at a batch that runs past the end of the file.
    pub(crate) torn: bool,
}

/// Scans a segment file from the end of what `index` already describes (the start, for
/// `SegmentIndex::empty`), checking every frame (framing, CRC, offsets contiguous with the
/// index) and extending the index. Stops at the first incomplete or invalid frame.
pub(crate) fn scan_file(
    file: &File,
    path: &Path,
    base_offset: u64,
    index: SegmentIndex,
    file_len: u64,
    index_interval: u64,
) -> Result<ScanOutcome> {
    scan_from(file, path, 0, base_offset, index, file_len, index_interval)
}

/// [`scan_file`] of the batches that start at byte `start` of the file (and offset
/// `base_offset`): the index's positions are relative to `start`.
fn scan_from(
    file: &File,
    path: &Path,
    start: u64,
    base_offset: u64,
    mut index: SegmentIndex,
    file_len: u64,
    index_interval: u64,
) -> Result<ScanOutcome> {
    let mut position: u64 = start + index.segment_bytes;
    let mut want = SCAN_CHUNK;
    while position < file_len {
        let len = (file_len - position).min(want as u64) as usize;
        let buf = read_at(file, path, position, len)?;
        let expected = index.end_offset;
        let mut push = |_: usize, header: &BatchHeader| {
            let relative = u32::try_from(header.base_offset - base_offset).unwrap_or(u32::MAX);
            index.push_batch(
                relative,
                header.next_offset(),
                header.frame_len as u64,
                header.max_timestamp,
                index_interval,
            );
        };
        match format::scan_frames(&buf, Some(expected), &mut push) {
            ScanStop::Clean => {
                position += buf.len() as u64;
                want = SCAN_CHUNK;
            }
            ScanStop::Incomplete { at } => {
                let at_end = position + buf.len() as u64 == file_len;
                if at_end {
                    return Ok(ScanOutcome {
                        invalid_tail: Some(format!(
                            "the batch at byte {} ends past the end of the file (a torn write)",
                            position + at as u64
                        )),
                        torn: true,
                        index,
                    });
                }
                // A frame straddles the chunk boundary: read again from its start, making sure
                // the next read holds the whole frame.
                let needed = format::peek_header(&buf[at..])
                    .ok()
                    .flatten()
                    .map_or(format::BATCH_HEADER_LEN, |h| h.frame_len);
                position += at as u64;
                want = SCAN_CHUNK.max(needed);
            }
            ScanStop::Corrupt { at, problem } => {
                return Ok(ScanOutcome {
                    invalid_tail: Some(format!(
                        "the batch at byte {} is invalid: {}",
                        position + at as u64,
                        problem.reason
                    )),
                    torn: false,
                    index,
                });
            }
        }
    }
    Ok(ScanOutcome {
        index,
        invalid_tail: None,
        torn: false,
    })
}

/// A run of intact, contiguous batches in a segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Where the run's first batch starts in the file.
    pub position: u64,
    /// The run's first offset.
    pub base_offset: u64,
    /// The run's index, positions relative to `position`: `index.segment_bytes` is the run's
    /// length and `index.end_offset` the offset after its last record.
    pub index: SegmentIndex,
}

impl Run {
    /// The bytes of the file the run covers.
    pub fn bytes(&self) -> Range<u64> {
        self.position..self.position + self.index.segment_bytes
    }
}

/// Bytes of a segment file that hold no intact batch, and the offsets they held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damaged {
    /// The damaged bytes.
    pub bytes: Range<u64>,
    /// The first offset lost: where the intact batches before the damage end.
    pub first_offset: u64,
    /// The offset after the last one lost: where the next intact batch (or the next segment)
    /// starts; `None` when nothing follows (a cut tail: how many offsets it held is unknown).
    pub end_offset: Option<u64>,
    /// What is wrong with the first damaged batch.
    pub reason: String,
    /// Nothing but an incomplete last batch: what a crash in the middle of a write leaves.
    pub torn: bool,
}

/// What a segment file holds: runs of intact batches, separated by damage. `runs[0]` starts at
/// byte 0 (and may be empty); `damaged[i]` follows `runs[i]`, and `runs[i + 1]` follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survey {
    /// The intact runs, in file order.
    pub runs: Vec<Run>,
    /// The damaged ranges, in file order.
    pub damaged: Vec<Damaged>,
}

impl Survey {
    /// A segment without damage: one run.
    pub fn is_intact(&self) -> bool {
        self.damaged.is_empty()
    }
}

/// Surveys a segment file whose strict scan from its start (`first`) stopped at an invalid
/// frame: after each damaged stretch, looks for the next batch that proves itself (sane
/// header, CRC, records that decode, and a base offset after the last intact one that the
/// damaged bytes could have led to, below `limit` when the next segment's base is known), then
/// scans on from it. Only runs on damage: intact segments cost the one strict scan.
pub(crate) fn survey(
    file: &File,
    path: &Path,
    base_offset: u64,
    file_len: u64,
    first: ScanOutcome,
    limit: Option<u64>,
    index_interval: u64,
) -> Result<Survey> {
    let mut runs = vec![Run {
        position: 0,
        base_offset,
        index: first.index,
    }];
    let mut damaged = Vec::new();
    let mut stop = first.invalid_tail.map(|reason| (reason, first.torn));
    while let Some((reason, torn)) = stop.take() {
        let last = runs.last().expect("a survey has a run");
        let damage_at = last.position + last.index.segment_bytes;
        let lost_from = last.index.end_offset;
        let accept = |position: u64, header: &BatchHeader| {
            let most = format::max_records_in(position - damage_at);
            header.base_offset > lost_from
                && header.base_offset - lost_from <= most
                && limit.is_none_or(|limit| header.next_offset() <= limit)
        };
        let Some((position, header)) = find_after(file, path, damage_at + 1, file_len, accept)?
        else {
            damaged.push(Damaged {
                bytes: damage_at..file_len,
                first_offset: lost_from,
                end_offset: limit,
                reason,
                torn,
            });
            break;
        };
        damaged.push(Damaged {
            bytes: damage_at..position,
            first_offset: lost_from,
            end_offset: Some(header.base_offset),
            reason,
            torn: false,
        });
        let empty = SegmentIndex::empty(header.base_offset);
        let outcome = scan_from(
            file,
            path,
            position,
            header.base_offset,
            empty,
            file_len,
            index_interval,
        )?;
        stop = outcome.invalid_tail.map(|reason| (reason, outcome.torn));
        runs.push(Run {
            position,
            base_offset: header.base_offset,
            index: outcome.index,
        });
    }
    Ok(Survey { runs, damaged })
}

/// The first frame at or after byte `from` that proves itself (see [`format::find_frame`]).
fn find_after(
    file: &File,
    path: &Path,
    from: u64,
    file_len: u64,
    mut accept: impl FnMut(u64, &BatchHeader) -> bool,
) -> Result<Option<(u64, BatchHeader)>> {
    let mut position = from;
    let mut want = SCAN_CHUNK;
    while position + format::BATCH_HEADER_LEN as u64 <= file_len {
        let len = (file_len - position).min(want as u64) as usize;
        let buf = read_at(file, path, position, len)?;
        let at_eof = position + len as u64 == file_len;
        match format::find_frame(&buf, 0, at_eof, |at, header| {
            accept(position + at as u64, header)
        }) {
            format::Search::Found { at, header } => {
                return Ok(Some((position + at as u64, header)));
            }
            format::Search::Incomplete { at, frame_len } => {
                position += at as u64;
                want = SCAN_CHUNK.max(frame_len);
            }
            format::Search::NotFound { next } => {
                if at_eof {
                    return Ok(None);
                }
                position += next as u64;
                want = SCAN_CHUNK;
            }
        }
    }
    Ok(None)
}

/// Loads a segment's `.idx` file if it exists, is intact and describes exactly `file_len` bytes.
pub(crate) fn load_index(log_path: &Path, base_offset: u64, file_len: u64) -> Option<SegmentIndex> {
    let bytes = std::fs::read(index_path(log_path)).ok()?;
    let index = decode_index(&bytes, base_offset).ok()?;
    (index.segment_bytes == file_len).then_some(index)
}

/// Writes a segment's `.idx` file. Not synced: a damaged index is detected and rebuilt.
pub(crate) fn write_index(log_path: &Path, index: &SegmentIndex) -> Result<()> {
    replace_unsynced(&index_path(log_path), &encode_index(index))
}

/// The error for an invalid frame inside the published part of a segment.
pub(crate) fn corrupt(path: &Path, position: u64, reason: impl std::fmt::Display) -> LogError {
    LogError::Corrupt {
        path: path.to_owned(),
        reason: format!("at byte {position}: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use bytes::Bytes;
    use std::io::Write;

    fn frame(base: u64, values: &[&str]) -> Vec<u8> {
        let records: Vec<Record> = values
            .iter()
            .map(|v| Record::new(None, Bytes::copy_from_slice(v.as_bytes()), 5))
            .collect();
        let mut out = Vec::new();
        format::encode_batch(&records, &mut out);
        format::set_base_offset(&mut out, base);
        out
    }

    #[test]
    fn names_sort_like_offsets_and_other_files_are_ignored() {
        let dir = Path::new("/p");
        let path = log_path(dir, 42);
        assert_eq!(path, Path::new("/p/00000000000000000042.log"));
        assert_eq!(parse_log_name(path.file_name().unwrap()), Some(42));
        assert_eq!(index_path(&path), Path::new("/p/00000000000000000042.idx"));
        for other in [
            "42.log",
            "00000000000000000042.idx",
            "0000000000000000004x.log",
        ] {
            assert_eq!(parse_log_name(OsStr::new(other)), None, "{other}");
        }
    }

    #[test]
    fn a_scan_indexes_valid_frames_across_chunks_and_reports_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), 100);
        let mut file = File::create(&path).unwrap();
        let big = "x".repeat(SCAN_CHUNK / 3);
        let mut expected = 0u64;
        for i in 0..5u64 {
            let bytes = frame(100 + i * 2, &[&big, "y"]);
            expected += bytes.len() as u64;
            file.write_all(&bytes).unwrap();
        }
        let torn = frame(110, &["z"]);
        file.write_all(&torn[..torn.len() - 1]).unwrap();
        drop(file);
        let file = File::open(&path).unwrap();
        let len = file.metadata().unwrap().len();
        let outcome = scan_file(&file, &path, 100, SegmentIndex::empty(100), len, 1024).unwrap();
        assert_eq!(outcome.index.segment_bytes, expected);
        assert_eq!(outcome.index.end_offset, 110);
        assert_eq!(outcome.index.entries.len(), 4);
        assert!(
            outcome.invalid_tail.unwrap().contains("torn write"),
            "tail not reported"
        );
    }

    #[test]
    fn stale_or_damaged_index_files_are_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), 0);
        let mut index = SegmentIndex::empty(0);
        index.push_batch(0, 3, 100, 9, 10);
        write_index(&path, &index).unwrap();
        assert_eq!(load_index(&path, 0, 100), Some(index));
        assert_eq!(load_index(&path, 0, 150), None, "stale length accepted");
        std::fs::write(index_path(&path), b"garbage").unwrap();
        assert_eq!(load_index(&path, 0, 100), None);
    }
}
