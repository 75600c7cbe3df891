//! Opening a partition directory after a clean shutdown or a crash.
//!
//! Rules (also in the module doc of [`crate::file`]):
//! - Segments are the `<20-digit base offset>.log` files, in offset order; the last is active.
//! - A segment's `.idx` is used when it matches the file's length (segments only grow by
//!   appends, so it then describes exactly the file's bytes); else the segment is scanned.
//! - The active segment is scanned from its start (unless a clean close left a matching
//!   `.idx`). The first incomplete frame, bad CRC or offset gap ends the intact data. Then it
//!   is [salvaged](super::salvage): every intact batch after damaged bytes is kept with its
//!   offsets, the damaged bytes go to the quarantine and their offsets become a recorded
//!   [gap](super::gaps) (logged at ERROR), and a torn or damaged tail is cut. Acknowledged data
//!   is never in a torn tail: in `fsync` mode an append is acknowledged only after the sync that
//!   made it and everything before it durable. A cut moves the partition's end offset back, so
//!   a new epoch starts there ([`epochs`]), made durable before the truncation.
//! - A sealed segment was synced before the next one was created, so damage in it is not a
//!   crash's doing and is not repaired here: its intact prefix stays readable, reads of the
//!   offsets after it up to the next segment fail with [`LogError::Corrupt`] (logged at ERROR
//!   once), and `sluice log repair` salvages it. The rest of the log opens normally.
//! - Consecutive segments are contiguous (`base offset == previous end offset`), or the offsets
//!   between them are a recorded gap; otherwise those offsets are damage (a segment file was
//!   removed or lost) and reads of them fail the same way.
//! - Read-only opens apply the same rules without changing any file: a torn tail is ignored.

use super::epochs;
use super::fs::{io_error, remove_if_exists, sync_dir};
use super::gaps;
use super::index::SegmentIndex;
use super::salvage::{Salvager, log_salvage};
use super::segment::{
    self, Damage, Segment, load_index, parse_log_name, scan_file, survey, write_index,
};
use crate::record::EpochStart;
use crate::{LogError, Result};
use std::fs::File;
use std::ops::Range;
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

/// Which partition is being opened, and where its damaged bytes go.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartitionPlace<'a> {
    /// The partition directory.
    pub(crate) dir: &'a Path,
    /// `<log>/quarantine/<topic>/<partition>`.
    pub(crate) quarantine: &'a Path,
    pub(crate) topic: &'a str,
    pub(crate) partition: u32,
}

/// What recovery keeps while opening one partition's segments.
struct Opening<'a> {
    place: PartitionPlace<'a>,
    mode: OpenMode,
    epochs: Vec<EpochStart>,
    gaps: Vec<Range<u64>>,
}

/// Opens every segment of a partition, repairing what a crash left behind.
pub(crate) fn open_partition(place: PartitionPlace<'_>, mode: OpenMode) -> Result<OpenedPartition> {
    let dir = place.dir;
    let epochs = epochs::load(dir)?;
    let gaps = gaps::load(dir).unwrap_or_else(|error| {
        tracing::error!(topic = place.topic, partition = place.partition, %error, "every hole between this partition's segments counts as damage; `sluice log repair` rewrites the gap file");
        Vec::new()
    });
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

    let mut opening = Opening {
        place,
        mode,
        epochs,
        gaps,
    };
    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    for (i, &base_offset) in bases.iter().enumerate() {
        let next_base = bases.get(i + 1).copied();
        let opened = opening.open_segment(base_offset, next_base)?;
        segments.extend(opened);
    }
    mark_missing_offsets(&mut segments, &opening.gaps, place)?;
    if !mode.read_only {
        let unreadable: u64 = segments
            .iter()
            .filter_map(|s| s.damage.as_ref())
            .map(|d| d.offsets.end - d.offsets.start)
            .sum();
        let labels = [
            ("topic", place.topic.to_owned()),
            ("partition", place.partition.to_string()),
        ];
        metrics::gauge!("sluice_log_damaged_offsets", &labels).set(unreadable as f64);
    }
    Ok(OpenedPartition {
        segments,
        epochs: opening.epochs,
    })
}

impl Opening<'_> {
    /// Opens one segment; salvaging the active one can split it in several.
    fn open_segment(&mut self, base_offset: u64, next_base: Option<u64>) -> Result<Vec<Segment>> {
        let path = segment::log_path(self.place.dir, base_offset);
        let file = File::options()
            .read(true)
            .write(!self.mode.read_only)
            .open(&path)
            .map_err(io_error("opening segment", &path))?;
        let file_len = file
            .metadata()
            .map_err(io_error("reading metadata of", &path))?
            .len();
        if file_len > u64::from(u32::MAX) {
            return Err(LogError::Corrupt {
                path,
                reason: format!(
                    "segment is {file_len} bytes, larger than any segment sluice writes"
                ),
            });
        }
        let file = Arc::new(file);
        // Segments only grow by appends, so an index that matches the file's length describes
        // exactly its bytes, even if it was written before a later crash (and the crash's torn
        // tail was truncated back to that length).
        if let Some(index) = load_index(&path, base_offset, file_len) {
            return Ok(vec![segment_of(&path, file, base_offset, index)]);
        }
        let empty = SegmentIndex::empty(base_offset);
        let interval = self.mode.index_interval;
        let outcome = scan_file(&file, &path, base_offset, empty, file_len, interval)?;
        let Some(reason) = outcome.invalid_tail.clone() else {
            if !self.mode.read_only
                && next_base.is_some()
                && let Err(error) = write_index(&path, &outcome.index)
            {
                tracing::warn!(segment = %path.display(), %error, "could not write a rebuilt segment index");
            }
            return Ok(vec![segment_of(&path, file, base_offset, outcome.index)]);
        };
        let valid = outcome.index.segment_bytes;
        let Some(next_base) = next_base else {
            if self.mode.read_only {
                tracing::debug!(segment = %path.display(), valid_bytes = valid, %reason, "ignoring an incomplete tail (read-only)");
                return Ok(vec![segment_of(&path, file, base_offset, outcome.index)]);
            }
            let survey = survey(&file, &path, base_offset, file_len, outcome, None, interval)?;
            let salvager = Salvager {
                dir: self.place.dir,
                quarantine: self.place.quarantine,
                topic: self.place.topic,
                partition: self.place.partition,
            };
            let (segments, salvaged) = salvager.salvage(
                &path,
                &file,
                base_offset,
                &survey,
                None,
                &mut self.epochs,
                &mut self.gaps,
            )?;
            log_salvage(self.place.topic, self.place.partition, &salvaged);
            return Ok(segments);
        };
        let end_offset = outcome.index.end_offset;
        let lost = end_offset..next_base.max(end_offset);
        if !self.mode.read_only && !lost.is_empty() && gaps::covers(&self.gaps, &lost) {
            // A salvage recorded these offsets as lost and moved every intact batch after them
            // to later segments, then stopped before it cut this file: finish it.
            tracing::warn!(topic = self.place.topic, partition = self.place.partition, segment = %path.display(), valid_bytes = valid, "finishing an interrupted salvage: cutting the quarantined tail of a segment");
            file.set_len(valid)
                .map_err(io_error("truncating the salvaged tail of", &path))?;
            file.sync_all()
                .map_err(io_error("syncing truncated", &path))?;
            if let Err(error) = write_index(&path, &outcome.index) {
                tracing::warn!(segment = %path.display(), %error, "could not write a rebuilt segment index");
            }
            return Ok(vec![segment_of(&path, file, base_offset, outcome.index)]);
        }
        let damage = Damage {
            path: path.clone(),
            bytes: valid..file_len,
            offsets: lost,
            reason: format!("sealed segment is damaged: {reason}"),
        };
        tracing::error!(
            topic = self.place.topic,
            partition = self.place.partition,
            segment = %path.display(),
            from_byte = damage.bytes.start,
            to_byte = damage.bytes.end,
            first_offset = damage.offsets.start,
            end_offset = damage.offsets.end,
            %reason,
            "a sealed segment is damaged: reads of these offsets fail until `sluice log repair` salvages it; the rest of the log works"
        );
        let mut segment = segment_of(&path, file, base_offset, outcome.index);
        segment.damage = Some(Arc::new(damage));
        Ok(vec![segment])
    }
}

/// Marks offsets between consecutive segments that no recorded gap covers as damage: a segment
/// file was removed or lost. Overlapping segments cannot be told apart and fail the open.
fn mark_missing_offsets(
    segments: &mut [Segment],
    gaps: &[Range<u64>],
    place: PartitionPlace<'_>,
) -> Result<()> {
    for i in 1..segments.len() {
        let (before, after) = segments.split_at_mut(i);
        let previous = before.last_mut().expect("a segment before");
        let next = &after[0];
        let end = previous.index.end_offset;
        if previous.damage.is_some() || end == next.base_offset {
            continue;
        }
        if end > next.base_offset {
            return Err(LogError::Corrupt {
                path: next.path.clone(),
                reason: format!(
                    "segment starts at offset {} but the previous segment ends at {end}: the two overlap; move the one that does not belong out of the partition directory",
                    next.base_offset
                ),
            });
        }
        let missing = end..next.base_offset;
        if gaps::covers(gaps, &missing) {
            continue;
        }
        tracing::error!(
            topic = place.topic,
            partition = place.partition,
            segment = %next.path.display(),
            first_offset = missing.start,
            end_offset = missing.end,
            "offsets before this segment are in no segment file: reads of them fail until `sluice log repair` records them as lost"
        );
        previous.damage = Some(Arc::new(Damage {
            path: next.path.clone(),
            bytes: 0..0,
            offsets: missing,
            reason: "no segment file holds these offsets (a segment file was removed or lost)"
                .to_owned(),
        }));
    }
    Ok(())
}

fn segment_of(path: &Path, file: Arc<File>, base_offset: u64, index: SegmentIndex) -> Segment {
    Segment {
        base_offset,
        path: path.to_owned(),
        file,
        index,
        damage: None,
    }
}

/// Removes temporary files of interrupted writes and indexes whose segment retention deleted.
fn remove_leftovers(leftovers: &[PathBuf], bases: &[u64], dir: &Path) {
    for path in leftovers {
        let is_tmp = path.extension().is_some_and(|e| e == "tmp");
        let known = path
            .file_name()
            .is_some_and(|name| name == epochs::EPOCHS_FILE || name == gaps::GAPS_FILE);
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
        } else if path.extension().is_none_or(|e| e != "idx") && !known {
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
    let bases = segment::segment_bases(dir)?;
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
        segments.push(segment_of(
            &path,
            Arc::new(file),
            end,
            SegmentIndex::empty(end),
        ));
        changed = true;
    }
}
