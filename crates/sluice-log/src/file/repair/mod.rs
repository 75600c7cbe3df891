//! Checking and repairing a log on disk: what `sluice log verify` and `sluice log repair` run.
//!
//! [`verify`] reads every segment of the chosen partitions from end to end, without trusting
//! their indexes and without changing anything: frames, CRCs, offsets, indexes that would be
//! trusted, holes between segments, the epoch and gap files. For each damaged stretch it also
//! looks for the intact batches after it, so it can say exactly what a repair would keep.
//!
//! [`repair`] needs the log's lock (no server may run). It [salvages](super::salvage) every
//! damaged segment, sealed ones included: intact batches are kept with their offsets, damaged
//! bytes are quarantined, their offsets recorded as gaps (a cut tail of the active segment
//! starts a new epoch). Offsets that no segment file holds become recorded gaps too, indexes
//! that disagree with their segment are rewritten, and damaged epoch or gap files are moved to
//! the quarantine and rebuilt. Afterwards the log opens without damage and every read works on
//! what is left; what was lost is in the returned reports (and logged).

use super::epochs;
use super::fs::{atomic_write, io_error, sync_dir};
use super::gaps;
use super::index::SegmentIndex;
use super::salvage::{Salvaged, Salvager, log_salvage, quarantine_dir};
use super::segment::{Damaged, Segment, load_index, log_path, scan_file, segment_bases, survey};
use super::topic;
use crate::config::LogConfig;
use crate::record::EpochStart;
use crate::{LogError, Result};
use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which partitions to check or repair: every one, one topic's, or one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Only this topic.
    pub topic: Option<String>,
    /// Only this partition (of every chosen topic).
    pub partition: Option<u32>,
}

/// Something wrong in a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Bytes of a segment that hold no intact batch.
    Damaged {
        /// The segment file.
        segment: PathBuf,
        /// The bytes and the offsets they held.
        damaged: Damaged,
        /// Offsets of the intact batches found after the damage in the same file, which a
        /// repair keeps (`None`: none).
        intact_after: Option<Range<u64>>,
    },
    /// Offsets between two segments that no segment file holds and no recorded gap covers.
    Missing {
        /// The segment after them.
        segment: PathBuf,
        /// The offsets.
        offsets: Range<u64>,
    },
    /// A segment holds offsets the next segment also claims.
    Overlap {
        /// The later segment.
        segment: PathBuf,
        /// Offsets both hold.
        offsets: Range<u64>,
    },
    /// A segment index that would be trusted disagrees with its segment.
    Index {
        /// The index file.
        path: PathBuf,
        /// What disagrees.
        reason: String,
    },
    /// A partition file (epochs, gaps) cannot be read.
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Damaged {
                segment,
                damaged,
                intact_after,
            } => {
                let what = if damaged.torn {
                    "torn last batch"
                } else {
                    "damaged"
                };
                write!(
                    f,
                    "{}: {what} bytes {}..{} ({} bytes): {}; {}",
                    segment.display(),
                    damaged.bytes.start,
                    damaged.bytes.end,
                    damaged.bytes.end - damaged.bytes.start,
                    damaged.reason,
                    lost_offsets(damaged.first_offset, damaged.end_offset)
                )?;
                if let Some(intact) = intact_after {
                    write!(
                        f,
                        "; intact batches after it hold offsets {}..{}",
                        intact.start, intact.end
                    )?;
                }
                Ok(())
            }
            Problem::Missing { segment, offsets } => write!(
                f,
                "offsets {}..{} ({} records) before {} are in no segment file",
                offsets.start,
                offsets.end,
                offsets.end - offsets.start,
                segment.display()
            ),
            Problem::Overlap { segment, offsets } => write!(
                f,
                "{} starts inside the previous segment: offsets {}..{} are in both",
                segment.display(),
                offsets.start,
                offsets.end
            ),
            Problem::Index { path, reason } | Problem::File { path, reason } => {
                write!(f, "{}: {reason}", path.display())
            }
        }
    }
}

/// "offsets 10..14 lost (4 records)", or "offsets from 10 on lost" when the end is unknown.
pub fn lost_offsets(first: u64, end: Option<u64>) -> String {
    match end {
        Some(end) if end > first => {
            format!("offsets {first}..{end} lost ({} records)", end - first)
        }
        Some(_) => "no offsets lost".to_owned(),
        None => format!("offsets from {first} on lost (how many cannot be told)"),
    }
}

/// What [`verify`] found in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionCheck {
    pub topic: String,
    pub partition: u32,
    /// Segment files.
    pub segments: usize,
    /// The first offset of the first segment.
    pub start_offset: u64,
    /// The offset after the last intact record.
    pub end_offset: u64,
    /// Offsets recorded as lost by earlier repairs or recoveries.
    pub gaps: Vec<Range<u64>>,
    /// The partition's epochs.
    pub epochs: Vec<EpochStart>,
    /// What is wrong; empty when the partition is intact.
    pub problems: Vec<Problem>,
}

/// What [`repair`] did to one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionRepair {
    pub topic: String,
    pub partition: u32,
    /// Every damaged segment salvaged: what was lost, where it went, what was kept.
    pub salvaged: Vec<Salvaged>,
    /// Offsets no segment file held, now recorded as lost.
    pub missing: Vec<Range<u64>>,
    /// Indexes rewritten because they disagreed with their segment.
    pub indexes: Vec<PathBuf>,
    /// Damaged partition files (epochs, gaps) rebuilt, and where the damaged copy went.
    pub rebuilt: Vec<(PathBuf, PathBuf)>,
}

impl PartitionRepair {
    /// Nothing needed repairing.
    pub fn is_untouched(&self) -> bool {
        self.salvaged.is_empty()
            && self.missing.is_empty()
            && self.indexes.is_empty()
            && self.rebuilt.is_empty()
    }
}

/// Checks the chosen partitions of the log in `log_dir` without changing anything.
/// `writer_running`: a server writes the log meanwhile, so an incomplete last batch of an active
/// segment is being written, not damage.
pub fn verify(
    log_dir: &Path,
    config: &LogConfig,
    selection: &Selection,
    writer_running: bool,
) -> Result<Vec<PartitionCheck>> {
    let interval = config.index_interval_bytes.bytes();
    chosen_partitions(log_dir, selection)?
        .into_iter()
        .map(|(topic, partition, dir)| {
            verify_partition(&dir, topic, partition, interval, writer_running)
        })
        .collect()
}

fn verify_partition(
    dir: &Path,
    topic: String,
    partition: u32,
    interval: u64,
    writer_running: bool,
) -> Result<PartitionCheck> {
    let mut problems = Vec::new();
    let epochs = epochs::load(dir).unwrap_or_else(|error| {
        problems.push(file_problem(epochs::path(dir), error));
        epochs::initial()
    });
    let gaps = gaps::load(dir).unwrap_or_else(|error| {
        problems.push(file_problem(gaps::path(dir), error));
        Vec::new()
    });
    let bases = segment_bases(dir)?;
    let mut previous_end: Option<u64> = None;
    for (i, &base_offset) in bases.iter().enumerate() {
        let path = log_path(dir, base_offset);
        let next_base = bases.get(i + 1).copied();
        if let Some(end) = previous_end {
            problems.extend(hole_problem(&path, end, base_offset, &gaps));
        }
        let file = File::open(&path).map_err(io_error("opening segment", &path))?;
        let file_len = file
            .metadata()
            .map_err(io_error("reading metadata of", &path))?
            .len();
        let empty = SegmentIndex::empty(base_offset);
        let outcome = scan_file(&file, &path, base_offset, empty, file_len, interval)?;
        if outcome.invalid_tail.is_none() {
            problems.extend(index_problem(&path, base_offset, file_len, &outcome.index));
            previous_end = Some(outcome.index.end_offset);
            continue;
        }
        if writer_running && next_base.is_none() && outcome.torn {
            // The server is writing the last batch.
            previous_end = Some(outcome.index.end_offset);
            continue;
        }
        let survey = survey(
            &file,
            &path,
            base_offset,
            file_len,
            outcome,
            next_base,
            interval,
        )?;
        for (i, damaged) in survey.damaged.iter().enumerate() {
            let after = &survey.runs[i + 1..];
            let intact_after = after
                .first()
                .zip(after.last())
                .map(|(first, last)| first.base_offset..last.index.end_offset);
            problems.push(Problem::Damaged {
                segment: path.clone(),
                damaged: damaged.clone(),
                intact_after,
            });
        }
        // `damaged[i]` follows `runs[i]`: as many of each means the file ends in damage.
        let last_run = survey.runs.last().expect("a survey has a run");
        let tail = (survey.damaged.len() == survey.runs.len())
            .then(|| survey.damaged.last())
            .flatten();
        previous_end = Some(
            tail.and_then(|d| d.end_offset)
                .unwrap_or(last_run.index.end_offset),
        );
    }
    Ok(PartitionCheck {
        topic,
        partition,
        segments: bases.len(),
        start_offset: bases.first().copied().unwrap_or(0),
        end_offset: previous_end.unwrap_or(0),
        gaps,
        epochs,
        problems,
    })
}

/// Repairs the chosen partitions of the log in `log_dir`, holding its lock (so no server runs
/// meanwhile: [`LogError::Locked`] otherwise).
pub fn repair(
    log_dir: &Path,
    config: &LogConfig,
    selection: &Selection,
) -> Result<Vec<PartitionRepair>> {
    if !log_dir.join("topics").is_dir() {
        return Err(LogError::Invalid(format!(
            "there is no log in {}; check --data-dir",
            log_dir.display()
        )));
    }
    let _lock = super::lock_dir(log_dir)?;
    let interval = config.index_interval_bytes.bytes();
    chosen_partitions(log_dir, selection)?
        .into_iter()
        .map(|(topic, partition, dir)| repair_partition(log_dir, &dir, topic, partition, interval))
        .collect()
}

fn repair_partition(
    log_dir: &Path,
    dir: &Path,
    topic: String,
    partition: u32,
    interval: u64,
) -> Result<PartitionRepair> {
    let quarantine = quarantine_dir(log_dir, &topic, partition);
    let mut done = PartitionRepair {
        topic: topic.clone(),
        partition,
        ..PartitionRepair::default()
    };
    let mut epochs = match epochs::load(dir) {
        Ok(epochs) => Some(epochs),
        Err(LogError::Corrupt { .. }) => {
            done.rebuilt
                .push(set_aside(&epochs::path(dir), &quarantine)?);
            None
        }
        Err(error) => return Err(error),
    };
    let mut gaps = match gaps::load(dir) {
        Ok(gaps) => gaps,
        Err(LogError::Corrupt { .. }) => {
            done.rebuilt.push(set_aside(&gaps::path(dir), &quarantine)?);
            Vec::new()
        }
        Err(error) => return Err(error),
    };
    let salvager = Salvager {
        dir,
        quarantine: &quarantine,
        topic: &topic,
        partition,
    };
    let bases = segment_bases(dir)?;
    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    // Until a damaged epoch file is rebuilt, salvage adds epochs to a scratch list.
    let mut scratch = epochs::initial();
    for (i, &base_offset) in bases.iter().enumerate() {
        let path = log_path(dir, base_offset);
        let next_base = bases.get(i + 1).copied();
        let file = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_error("opening segment", &path))?;
        let file_len = file
            .metadata()
            .map_err(io_error("reading metadata of", &path))?
            .len();
        let file = Arc::new(file);
        let empty = SegmentIndex::empty(base_offset);
        let outcome = scan_file(&file, &path, base_offset, empty, file_len, interval)?;
        if outcome.invalid_tail.is_none() {
            if next_base.is_some()
                && index_problem(&path, base_offset, file_len, &outcome.index).is_some()
            {
                super::segment::write_index(&path, &outcome.index)?;
                done.indexes.push(super::segment::index_path(&path));
            }
            segments.push(Segment {
                base_offset,
                path,
                file,
                index: outcome.index,
                damage: None,
            });
            continue;
        }
        let survey = survey(
            &file,
            &path,
            base_offset,
            file_len,
            outcome,
            next_base,
            interval,
        )?;
        let (salvaged_segments, salvaged) = salvager.salvage(
            &path,
            &file,
            base_offset,
            &survey,
            next_base,
            epochs.as_mut().unwrap_or(&mut scratch),
            &mut gaps,
        )?;
        log_salvage(&topic, partition, &salvaged);
        segments.extend(salvaged_segments);
        done.salvaged.push(salvaged);
    }
    for pair in segments.windows(2) {
        let (end, next) = (pair[0].index.end_offset, pair[1].base_offset);
        if end > next {
            return Err(LogError::Corrupt {
                path: pair[1].path.clone(),
                reason: format!(
                    "segment starts at offset {next} but the previous segment ends at {end}: the two overlap, which no repair can sort out; move the one that does not belong out of the partition directory"
                ),
            });
        }
        if end < next && !gaps::covers(&gaps, &(end..next)) {
            tracing::error!(
                topic,
                partition,
                first_offset = end,
                end_offset = next,
                "offsets in no segment file recorded as lost"
            );
            done.missing.push(end..next);
        }
    }
    if done
        .rebuilt
        .iter()
        .any(|(path, _)| *path == gaps::path(dir))
    {
        // Written even when empty: the damaged file was set aside.
        for gap in &done.missing {
            gaps::add(&mut gaps, gap.clone());
        }
        atomic_write(&gaps::path(dir), &gaps::encode(&gaps))?;
    } else {
        gaps::record(dir, &mut gaps, &done.missing)?;
    }
    if epochs.is_none() {
        // The history is lost: a new epoch at the end tells every consumer whose position lies
        // beyond it to come back.
        let end = segments.last().map_or(0, |s| s.index.end_offset);
        let mut rebuilt = epochs::initial();
        epochs::start(dir, &mut rebuilt, end)?;
    }
    Ok(done)
}

/// Moves a damaged partition file to the quarantine; returns both paths.
fn set_aside(path: &Path, quarantine: &Path) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(quarantine)
        .map_err(io_error("creating quarantine directory", quarantine))?;
    let name = path.file_name().map_or_else(
        || "file".to_owned(),
        |name| name.to_string_lossy().into_owned(),
    );
    let target = quarantine.join(format!(
        "{name}-damaged-{}",
        sluice_core::time::now_millis()
    ));
    std::fs::rename(path, &target).map_err(io_error("moving to the quarantine", path))?;
    sync_dir(quarantine)?;
    Ok((path.to_owned(), target))
}

/// A trusted index (its length matches the segment's) that disagrees with the scan.
fn index_problem(
    path: &Path,
    base_offset: u64,
    file_len: u64,
    scanned: &SegmentIndex,
) -> Option<Problem> {
    let index = load_index(path, base_offset, file_len)?;
    let agrees = index.end_offset == scanned.end_offset
        && index.max_timestamp == scanned.max_timestamp
        && index
            .entries
            .iter()
            .all(|entry| u64::from(entry.position) < scanned.segment_bytes);
    (!agrees).then(|| Problem::Index {
        path: super::segment::index_path(path),
        reason: format!(
            "the index says the segment ends at offset {} (newest record {}), its batches end at {} (newest {})",
            index.end_offset, index.max_timestamp, scanned.end_offset, scanned.max_timestamp
        ),
    })
}

/// Offsets between two segments that no recorded gap covers.
fn hole_problem(next: &Path, end: u64, base: u64, gaps: &[Range<u64>]) -> Option<Problem> {
    if end > base {
        return Some(Problem::Overlap {
            segment: next.to_owned(),
            offsets: base..end,
        });
    }
    let missing = end..base;
    (!gaps::covers(gaps, &missing)).then(|| Problem::Missing {
        segment: next.to_owned(),
        offsets: missing,
    })
}

fn file_problem(path: PathBuf, error: LogError) -> Problem {
    let reason = match error {
        LogError::Corrupt { reason, .. } => reason,
        other => other.to_string(),
    };
    Problem::File { path, reason }
}

/// The chosen partitions: (topic, partition, directory), by topic name and partition.
fn chosen_partitions(log_dir: &Path, selection: &Selection) -> Result<Vec<(String, u32, PathBuf)>> {
    let topics_dir = log_dir.join("topics");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&topics_dir).map_err(io_error("listing", &topics_dir))? {
        let path = entry.map_err(io_error("listing", &topics_dir))?.path();
        if let Some(name) = path.file_name().and_then(|n| n.to_str())
            && path.is_dir()
            && crate::record::check_topic_name(name).is_ok()
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    if let Some(topic) = &selection.topic
        && !names.contains(topic)
    {
        return Err(LogError::UnknownTopic(topic.clone()));
    }
    let mut chosen = Vec::new();
    for name in names {
        if selection.topic.as_ref().is_some_and(|t| *t != name) {
            continue;
        }
        let topic_dir = topics_dir.join(&name);
        let Some(meta) = topic::read_meta(&topic_dir)? else {
            continue;
        };
        if let Some(partition) = selection.partition
            && partition >= meta.partitions
        {
            return Err(LogError::UnknownPartition {
                topic: name,
                partition,
                partitions: meta.partitions,
            });
        }
        for id in 0..meta.partitions {
            if selection.partition.is_none_or(|p| p == id) {
                chosen.push((name.clone(), id, topic::partition_dir(&topic_dir, id)));
            }
        }
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests;
