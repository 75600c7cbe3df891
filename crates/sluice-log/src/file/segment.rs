//! Segment files: naming, positional reads, scanning a file's frames into an index, and index
//! files. Everything here is synchronous; callers run it on blocking threads.

use super::format::{self, BatchHeader, ScanStop};
use super::fs::{io_error, replace_unsynced};
use super::index::{SegmentIndex, decode_index, encode_index};
use crate::{LogError, Result};
use std::ffi::OsStr;
use std::fs::File;
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
}

/// Scans a segment file from the end of what `index` already describes (the start, for
/// `SegmentIndex::empty`), checking every frame (framing, CRC, offsets contiguous with the
/// index) and extending the index. Stops at the first incomplete or invalid frame.
pub(crate) fn scan_file(
    file: &File,
    path: &Path,
    base_offset: u64,
    mut index: SegmentIndex,
    file_len: u64,
    index_interval: u64,
) -> Result<ScanOutcome> {
    let mut position: u64 = index.segment_bytes;
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
                    index,
                });
            }
        }
    }
    Ok(ScanOutcome {
        index,
        invalid_tail: None,
    })
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
