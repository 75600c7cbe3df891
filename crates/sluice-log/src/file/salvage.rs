//! Salvaging a damaged segment: keep every intact batch, quarantine the damaged bytes, record
//! what was lost. Recovery does it for the active segment at every open; `sluice log repair`
//! for any segment.
//!
//! A [`Survey`] of the segment says where its intact runs of batches and its damaged stretches
//! are. Salvage then, in this order, so that a crash at any point leaves a state the next open
//! or repair finishes:
//! 1. copies every damaged stretch to `<log>/quarantine/<topic>/<partition>/<base>-<byte>.bin`
//!    with a `.json` beside it saying what it was (synced). A torn last batch (a crash in the
//!    middle of a write, nothing after it) is not quarantined: nothing acknowledged in `fsync`
//!    mode lies there.
//! 2. records the offsets lost between runs, and after the last run of a sealed segment, as
//!    [gaps](super::gaps); for the active segment, a cut tail starts a new
//!    [epoch](super::epochs) at the new end. Both files are durable before anything is cut.
//! 3. writes each run after the first to a segment file of its own, named by its first offset
//!    (tmp, sync, rename, sync dir), with its index: gaps only ever lie between segments.
//! 4. truncates the original file to its first run and syncs it.
//!
//! A crash after 3 leaves the original segment sealed with a damaged tail whose offsets are a
//! recorded gap up to the next segment: recovery then only finishes step 4.

use super::epochs;
use super::fs::{io_error, sync_dir};
use super::gaps;
use super::segment::{self, Damaged, Run, Segment, Survey, log_path};
use crate::Result;
use crate::record::EpochStart;
use serde::Serialize;
use sluice_core::time::{format_millis, now_millis};
use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The directory, under the log's, that damaged bytes are moved to.
pub const QUARANTINE_DIR: &str = "quarantine";
/// `<log>/quarantine/<topic>/<partition>`: where a partition's damaged bytes go.
pub fn quarantine_dir(log_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    log_dir
        .join(QUARANTINE_DIR)
        .join(topic)
        .join(partition.to_string())
}

/// Bytes copied at a time.
const COPY_CHUNK: usize = 4 << 20;

/// A partition being salvaged, and where its damaged bytes go.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Salvager<'a> {
    /// The partition directory.
    pub(crate) dir: &'a Path,
    /// `<log>/quarantine/<topic>/<partition>`.
    pub(crate) quarantine: &'a Path,
    pub(crate) topic: &'a str,
    pub(crate) partition: u32,
}

/// One damaged stretch of a segment and where its bytes went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// The segment file it was in.
    pub segment: PathBuf,
    /// What was damaged and which offsets it held.
    pub damaged: Damaged,
    /// The quarantine file holding the bytes; `None` for a torn last batch.
    pub quarantined: Option<PathBuf>,
}

impl Loss {
    /// How many offsets were lost, when that can be told.
    pub fn records(&self) -> Option<u64> {
        self.damaged
            .end_offset
            .map(|end| end.saturating_sub(self.damaged.first_offset))
    }
}

/// What salvaging one segment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvaged {
    /// The damaged stretches, in file order.
    pub losses: Vec<Loss>,
    /// Segment files created for the intact runs after damage.
    pub created: Vec<PathBuf>,
    /// Offset ranges recorded as gaps.
    pub gaps: Vec<Range<u64>>,
    /// The epoch started because the segment's tail was cut (active segments only).
    pub epoch: Option<EpochStart>,
}

/// The `.json` written beside each quarantined stretch.
#[derive(Debug, Serialize)]
struct QuarantineNote<'a> {
    topic: &'a str,
    partition: u32,
    segment: &'a Path,
    bytes: [u64; 2],
    first_offset: u64,
    end_offset: Option<u64>,
    records_lost: Option<u64>,
    reason: &'a str,
    quarantined_at: String,
}

impl Salvager<'_> {
    /// Salvages the segment at `path` (open as `file`, starting at `base_offset`) as `survey`
    /// describes it; `limit` is the next segment's base offset (`None` for the active
    /// segment). Returns the segments that replace it, in offset order, and what was done.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn salvage(
        &self,
        path: &Path,
        file: &Arc<File>,
        base_offset: u64,
        survey: &Survey,
        limit: Option<u64>,
        epochs: &mut Vec<EpochStart>,
        recorded: &mut Vec<Range<u64>>,
    ) -> Result<(Vec<Segment>, Salvaged)> {
        let active = limit.is_none();
        let losses = self.quarantine(path, file, base_offset, &survey.damaged)?;
        let (lost, epoch) = self.record_losses(survey, limit, epochs, recorded)?;
        let mut segments = Vec::with_capacity(survey.runs.len());
        let mut created = Vec::new();
        for (i, run) in survey.runs.iter().enumerate().skip(1) {
            let last = i + 1 == survey.runs.len();
            let (segment, new_path) = self.write_run(path, file, run, !(active && last))?;
            created.push(new_path);
            segments.push(segment);
        }
        let first = &survey.runs[0];
        file.set_len(first.index.segment_bytes)
            .map_err(io_error("truncating the damaged tail of", path))?;
        file.sync_all()
            .map_err(io_error("syncing truncated", path))?;
        let sealed = !active || survey.runs.len() > 1;
        if sealed && let Err(error) = segment::write_index(path, &first.index) {
            tracing::warn!(segment = %path.display(), %error, "could not write a segment index");
        }
        segments.insert(
            0,
            Segment {
                base_offset,
                path: path.to_owned(),
                file: Arc::clone(file),
                index: first.index.clone(),
                damage: None,
            },
        );
        Ok((
            segments,
            Salvaged {
                losses,
                created,
                gaps: lost,
                epoch,
            },
        ))
    }

    /// Step 1: copies every damaged stretch (but a torn last batch) to the quarantine.
    fn quarantine(
        &self,
        path: &Path,
        file: &File,
        base_offset: u64,
        damaged: &[Damaged],
    ) -> Result<Vec<Loss>> {
        let mut losses = Vec::with_capacity(damaged.len());
        for stretch in damaged {
            let quarantined = if stretch.torn {
                None
            } else {
                Some(self.quarantine_one(path, file, base_offset, stretch)?)
            };
            losses.push(Loss {
                segment: path.to_owned(),
                damaged: stretch.clone(),
                quarantined,
            });
        }
        if losses.iter().any(|loss| loss.quarantined.is_some()) {
            // The files, and the directories create_dir_all may have made: all durable before
            // anything is cut.
            for dir in self.quarantine.ancestors().take(3) {
                sync_dir(dir)?;
            }
        }
        Ok(losses)
    }

    fn quarantine_one(
        &self,
        path: &Path,
        file: &File,
        base_offset: u64,
        stretch: &Damaged,
    ) -> Result<PathBuf> {
        std::fs::create_dir_all(self.quarantine)
            .map_err(io_error("creating quarantine directory", self.quarantine))?;
        let name = format!("{base_offset:020}-{}", stretch.bytes.start);
        let bin = self.quarantine.join(format!("{name}.bin"));
        let mut out = File::create(&bin).map_err(io_error("creating", &bin))?;
        copy_range(file, path, stretch.bytes.clone(), &mut out, &bin)?;
        out.sync_all().map_err(io_error("syncing", &bin))?;
        let note = QuarantineNote {
            topic: self.topic,
            partition: self.partition,
            segment: path,
            bytes: [stretch.bytes.start, stretch.bytes.end],
            first_offset: stretch.first_offset,
            end_offset: stretch.end_offset,
            records_lost: stretch
                .end_offset
                .map(|end| end.saturating_sub(stretch.first_offset)),
            reason: &stretch.reason,
            quarantined_at: format_millis(now_millis()),
        };
        let json = self.quarantine.join(format!("{name}.json"));
        let text = serde_json::to_vec_pretty(&note).expect("a quarantine note serializes");
        let mut out = File::create(&json).map_err(io_error("creating", &json))?;
        out.write_all(&text)
            .and_then(|()| out.sync_all())
            .map_err(io_error("writing", &json))?;
        Ok(bin)
    }

    /// Step 2: the gaps between runs (and after a sealed segment's last one) and, for a cut
    /// active tail, a new epoch; both durable.
    fn record_losses(
        &self,
        survey: &Survey,
        limit: Option<u64>,
        epochs: &mut Vec<EpochStart>,
        recorded: &mut Vec<Range<u64>>,
    ) -> Result<(Vec<Range<u64>>, Option<EpochStart>)> {
        let mut lost = Vec::new();
        for stretch in &survey.damaged {
            if let Some(end) = stretch.end_offset
                && stretch.first_offset < end
            {
                lost.push(stretch.first_offset..end);
            }
        }
        gaps::record(self.dir, recorded, &lost)?;
        let cut = limit.is_none()
            && survey
                .damaged
                .last()
                .is_some_and(|last| last.end_offset.is_none());
        let epoch = if cut {
            let end = survey
                .runs
                .last()
                .expect("a survey has a run")
                .index
                .end_offset;
            Some(epochs::start(self.dir, epochs, end)?)
        } else {
            None
        };
        Ok((lost, epoch))
    }

    /// Step 3: one run to a segment file of its own (and its index when `sealed`).
    fn write_run(
        &self,
        path: &Path,
        file: &File,
        run: &Run,
        sealed: bool,
    ) -> Result<(Segment, PathBuf)> {
        let new_path = log_path(self.dir, run.base_offset);
        let tmp = new_path.with_extension("tmp");
        let mut out = File::create(&tmp).map_err(io_error("creating", &tmp))?;
        copy_range(file, path, run.bytes(), &mut out, &tmp)?;
        out.sync_all().map_err(io_error("syncing", &tmp))?;
        drop(out);
        std::fs::rename(&tmp, &new_path).map_err(io_error("renaming into place", &new_path))?;
        sync_dir(self.dir)?;
        if sealed && let Err(error) = segment::write_index(&new_path, &run.index) {
            tracing::warn!(segment = %new_path.display(), %error, "could not write a segment index");
        }
        let file = File::options()
            .read(true)
            .write(true)
            .open(&new_path)
            .map_err(io_error("opening segment", &new_path))?;
        let segment = Segment {
            base_offset: run.base_offset,
            path: new_path.clone(),
            file: Arc::new(file),
            index: run.index.clone(),
            damage: None,
        };
        Ok((segment, new_path))
    }
}

/// Copies `range` of `file` to `out`, a chunk at a time.
fn copy_range(
    file: &File,
    path: &Path,
    range: Range<u64>,
    out: &mut File,
    out_path: &Path,
) -> Result<()> {
    let mut position = range.start;
    while position < range.end {
        let len = (range.end - position).min(COPY_CHUNK as u64) as usize;
        let buf = segment::read_at(file, path, position, len)?;
        out.write_all(&buf).map_err(io_error("writing", out_path))?;
        position += len as u64;
    }
    Ok(())
}

/// Logs what salvaging a segment lost: at ERROR for damage (acknowledged records may be gone),
/// at WARN for a torn last batch alone (what a crash in the middle of a write leaves).
pub(crate) fn log_salvage(topic: &str, partition: u32, salvaged: &Salvaged) {
    let labels = [
        ("topic", topic.to_owned()),
        ("partition", partition.to_string()),
    ];
    for loss in &salvaged.losses {
        if loss.quarantined.is_some() {
            let bytes = loss.damaged.bytes.end - loss.damaged.bytes.start;
            metrics::counter!("sluice_log_quarantined_bytes_total", &labels).increment(bytes);
            metrics::counter!("sluice_log_records_lost_total", &labels)
                .increment(loss.records().unwrap_or(0));
        }
        let stretch = &loss.damaged;
        let quarantined = loss
            .quarantined
            .as_ref()
            .map_or_else(String::new, |q| q.display().to_string());
        if stretch.torn {
            tracing::warn!(
                topic,
                partition,
                segment = %loss.segment.display(),
                from_byte = stretch.bytes.start,
                to_byte = stretch.bytes.end,
                end_offset = stretch.first_offset,
                reason = %stretch.reason,
                "truncating the torn last batch of a segment"
            );
        } else {
            tracing::error!(
                topic,
                partition,
                segment = %loss.segment.display(),
                from_byte = stretch.bytes.start,
                to_byte = stretch.bytes.end,
                first_offset = stretch.first_offset,
                end_offset = stretch.end_offset,
                records_lost = loss.records(),
                quarantined = %quarantined,
                reason = %stretch.reason,
                "damaged log data: the records of these bytes are lost (quarantined); every intact batch around them was kept"
            );
        }
    }
    for created in &salvaged.created {
        tracing::info!(topic, partition, segment = %created.display(), "intact batches after damage moved to a segment of their own");
    }
    if let Some(epoch) = salvaged.epoch {
        tracing::warn!(
            topic,
            partition,
            epoch = epoch.epoch,
            start_offset = epoch.start_offset,
            "the partition's end moved back: a new epoch starts at its new end"
        );
    }
}
