//! Opening a partition directory after a clean shutdown or a crash.
//!
//! Rules (also in the module doc of [`crate::file`]):
//! - Segments are the `<20-digit base offset>.log` files, in offset order; the last is active.
//! - A sealed segment was synced before the next one was created, so it must be intact: its
//!   `.idx` is used when it matches the file's length, else the segment is scanned and the index
//!   rewritten; a sealed segment that fails the scan is an error, not something to truncate.
//! - The active segment is scanned from its start (unless a clean close left an `.idx` matching
//!   its length):
//!   the first incomplete frame, bad CRC or offset gap ends the valid data, and everything after
//!   it is truncated and logged. Acknowledged data is never past that point: in `fsync` mode an
//!   append is acknowledged only after the sync that made it and everything before it durable.
//!   A cut moves the partition's end offset back, so a new epoch starts there ([`epochs`]),
//!   made durable before the truncation.
//! - Consecutive segments must be contiguous (`base offset == previous end offset`).
//! - Read-only opens apply the same rules without changing any file: a torn tail is ignored.

use super::epochs;
use super::fs::{io_error, remove_if_exists, sync_dir};
use super::index::SegmentIndex;
use super::segment::{self, Segment, load_index, parse_log_name, scan_file};
use crate::record::EpochStart;
use crate::{LogError, Result};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What to do while opening.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenMode {
    /// No truncation, no index writes, no file creation.
    pub(crate) read_only: bool,
    /// `index-interval-bytes`, for indexes rebuilt by scanning.
    pub(crate) index_interval: u64,
}

/// A partition as recovery left it.
#[derive(Debug)]
pub(crate) struct OpenedPartition {
    /// Segments in offset order; the last is the active one.
    pub(crate) segments: Vec<Segment>,
    /// The partition's epochs, oldest first.
    pub(crate) epochs: Vec<EpochStart>,
}

/// Opens every segment of the partition in `dir`, repairing what a crash left behind.
pub(crate) fn open_partition(
    dir: &Path,
    topic: &str,
    partition: u32,
    mode: OpenMode,
) -> Result<OpenedPartition> {
    let mut epochs = epochs::load(dir)?;
    let mut bases = Vec::new();
    let mut leftovers = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error("listing partition", dir))? {
        let entry = entry.map_err(io_error("listing partition", dir))?;
        let name = entry.file_name();
        if let Some(base) = parse_log_name(&name) {
            bases.push(base);
        } else {
            leftovers.push(entry.path());
        }
    }
    bases.sort_unstable();
    if bases.is_empty() {
        if mode.read_only {
            return Err(LogError::Corrupt {
                path: dir.to_owned(),
                reason: "partition directory holds no segment file".to_owned(),
            });
        }
        let path = segment::log_path(dir, 0);
        File::create(&path).map_err(io_error("creating segment", &path))?;
        sync_dir(dir)?;
        bases.push(0);
    }
    if !mode.read_only {
        remove_leftovers(&leftovers, &bases, dir);
    }

    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    let last = bases.len() - 1;
    for (i, &base_offset) in bases.iter().enumerate() {
        let path = segment::log_path(dir, base_offset);
        let place = Place {
            dir,
            topic,
            partition,
            active: i == last,
        };
        let segment = open_segment(&path, base_offset, place, mode, &mut epochs)?;
        if let Some(previous) = segments.last()
            && previous.index.end_offset != base_offset
        {
            return Err(LogError::Corrupt {
                path,
                reason: format!(
                    "segment starts at offset {base_offset} but the previous segment ends at {}; offsets in between are missing",
                    previous.index.end_offset
                ),
            });
        }
        segments.push(segment);
    }
    Ok(OpenedPartition { segments, epochs })
}

/// Where a segment being opened belongs.
#[derive(Debug, Clone, Copy)]
struct Place<'a> {
    dir: &'a Path,
    topic: &'a str,
    partition: u32,
    /// The partition's last segment, the one appends go to.
    active: bool,
}

fn open_segment(
    path: &Path,
    base_offset: u64,
    place: Place<'_>,
    mode: OpenMode,
    epochs: &mut Vec<EpochStart>,
) -> Result<Segment> {
    let Place {
        dir,
        topic,
        partition,
        active,
    } = place;
    let file = File::options()
        .read(true)
        .write(!mode.read_only)
        .open(path)
        .map_err(io_error("opening segment", path))?;
    let file_len = file
        .metadata()
        .map_err(io_error("reading metadata of", path))?
        .len();
    if file_len > u64::from(u32::MAX) {
        return Err(LogError::Corrupt {
            path: path.to_owned(),
            reason: format!("segment is {file_len} bytes, larger than any segment sluice writes"),
        });
    }
    // Segments only grow by appends, so an index that matches the file's length describes
    // exactly its bytes, even if it was written before a later crash (and the crash's torn
    // tail was truncated back to that length).
    if let Some(index) = load_index(path, base_offset, file_len) {
        return Ok(segment_of(path, file, base_offset, index));
    }
    let empty = SegmentIndex::empty(base_offset);
    let outcome = scan_file(
        &file,
        path,
        base_offset,
        empty,
        file_len,
        mode.index_interval,
    )?;
    let valid = outcome.index.segment_bytes;
    if let Some(reason) = outcome.invalid_tail {
        if !active {
            return Err(LogError::Corrupt {
                path: path.to_owned(),
                reason: format!(
                    "sealed segment is damaged: {reason}; the {} bytes from byte {valid} on cannot be read",
                    file_len - valid
                ),
            });
        }
        if mode.read_only {
            tracing::debug!(segment = %path.display(), valid_bytes = valid, %reason, "ignoring an incomplete tail (read-only)");
        } else {
            // The end offset moves back: later appends reuse the offsets cut off, which a reader
            // may have seen. The new epoch is durable before the cut.
            let epoch = epochs::start(dir, epochs, outcome.index.end_offset)?;
            tracing::warn!(
                topic,
                partition,
                segment = %path.display(),
                valid_bytes = valid,
                truncated_bytes = file_len - valid,
                end_offset = outcome.index.end_offset,
                epoch = epoch.epoch,
                %reason,
                "truncating the torn or corrupt tail of a segment; a new epoch starts at its end"
            );
            file.set_len(valid)
                .map_err(io_error("truncating torn tail of", path))?;
            file.sync_all()
                .map_err(io_error("syncing truncated", path))?;
        }
    }
    if !mode.read_only
        && !active
        && let Err(error) = segment::write_index(path, &outcome.index)
    {
        tracing::warn!(segment = %path.display(), %error, "could not write a rebuilt segment index");
    }
    Ok(segment_of(path, file, base_offset, outcome.index))
}

fn segment_of(path: &Path, file: File, base_offset: u64, index: SegmentIndex) -> Segment {
    Segment {
        base_offset,
        path: path.to_owned(),
        file: Arc::new(file),
        index,
    }
}

/// Removes temporary files of interrupted writes and indexes whose segment retention deleted.
fn remove_leftovers(leftovers: &[PathBuf], bases: &[u64], dir: &Path) {
    for path in leftovers {
        let is_tmp = path.extension().is_some_and(|e| e == "tmp");
        let orphan_index = path.extension().is_some_and(|e| e == "idx")
            && path
                .with_extension("log")
                .file_name()
                .and_then(parse_log_name)
                .is_some_and(|base| bases.binary_search(&base).is_err());
        if is_tmp || orphan_index {
            if let Err(error) = remove_if_exists(path) {
                tracing::warn!(%error, "could not remove a leftover file");
            }
        } else if path.extension().is_none_or(|e| e != "idx")
            && path
                .file_name()
                .is_none_or(|name| name != epochs::EPOCHS_FILE)
        {
            tracing::warn!(file = %path.display(), dir = %dir.display(), "ignoring an unexpected file in a partition directory");
        }
    }
}

/// Catches up with a log another process writes (read-only opens): forgets segments its
/// retention deleted, extends the last known segment with the complete frames written since,
/// and opens segments created since. Returns whether anything changed.
pub(crate) fn refresh_read_only(
    dir: &Path,
    segments: &mut Vec<Segment>,
    index_interval: u64,
) -> Result<bool> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error("listing partition", dir))? {
        let entry = entry.map_err(io_error("listing partition", dir))?;
        if let Some(base) = parse_log_name(&entry.file_name()) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    let Some(&first) = bases.first() else {
        return Ok(false);
    };
    let mut changed = false;
    // Keep at least the last segment: it is what new frames extend.
    while segments.len() > 1 && segments[0].base_offset < first {
        segments.remove(0);
        changed = true;
    }
    loop {
        let last = segments.last_mut().expect("a partition has a segment");
        let file_len = last
            .file
            .metadata()
            .map_err(io_error("reading metadata of", &last.path))?
            .len();
        if file_len > last.index.segment_bytes {
            let before = last.index.segment_bytes;
            let index = std::mem::take(&mut last.index);
            let outcome = scan_file(
                &last.file,
                &last.path,
                last.base_offset,
                index,
                file_len,
                index_interval,
            )?;
            last.index = outcome.index;
            changed |= last.index.segment_bytes > before;
        }
        let end = last.index.end_offset;
        // The writer creates the next segment only after the last one is complete.
        if !bases.contains(&end) || end == last.base_offset {
            return Ok(changed);
        }
        let path = segment::log_path(dir, end);
        let file = File::open(&path).map_err(io_error("opening segment", &path))?;
        segments.push(segment_of(&path, file, end, SegmentIndex::empty(end)));
        changed = true;
    }
}
