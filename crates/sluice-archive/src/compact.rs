//! Compaction: an hour's small files of one partition merged into one. Each batch writes a
//! file into every (tenant, hour) it has events of, so an hour ends up with a file per
//! `roll-age` per partition (more with late events). The partition's archiver, which alone
//! writes its files, merges them after a commit, every [`COMPACT_INTERVAL`]: in each hour of
//! the last two days that ended `roll-age` ago or more, its files smaller than
//! [`SMALL_FILE`] — two or more, in offset order, up to [`MAX_OUTPUT`] in all — become
//!
//! ```text
//! part-<partition>-<first input's first offset>-<last input's first offset>.parquet
//! ```
//!
//! (20 digits each; a name no batch and no other compaction writes), rows in log order.
//!
//! # Protocol
//!
//! A compaction is published as a batch is ([`crate::publish`]): the output is staged, a
//! commit that keeps the position notes it with its inputs to delete, then the output is
//! moved to its name and the inputs deleted. After a crash the next owner finishes that
//! publish, so every row is in one file; between the move and the deletes a reader may see
//! an hour's rows twice for a moment. An owner that was fenced out cannot commit, so it
//! cannot show an output that overlaps one of the new owner's.
//!
//! `sluice archive forget` holds a lease (`_sluice/forget-lease.json`, `{until}`) while it
//! runs: compaction does not start while one is held, and, when one appeared while it staged
//! an output, deletes that output instead of committing it, so forget never rewrites an input
//! whose rows an output it cannot have seen would keep. Forget waits [`LEASE_GRACE`] after
//! taking the lease, for a compaction past that check to finish.

use crate::format;
use crate::layout::{DAY, HOUR, parse_hour_dir, parse_part};
use crate::publish::{Mark, Owner};
use crate::sink::ArchiveError;
use crate::target::Target;
use serde::{Deserialize, Serialize};
use sluice_core::time::Millis;
use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

/// How often a partition's archiver compacts.
pub const COMPACT_INTERVAL: Duration = Duration::from_secs(600);

/// Files at least this large are left as they are.
pub const SMALL_FILE: u64 = 16 << 20;

/// The most input bytes merged into one output.
pub const MAX_OUTPUT: u64 = 256 << 20;

/// How far back (in event time) hours are compacted.
const LOOKBACK: Millis = 48 * HOUR;

/// How long forget waits after taking its lease for a compaction past its check to finish.
pub const LEASE_GRACE: Duration = Duration::from_secs(10);

/// A compaction: files of one hour and partition, merged into one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compaction {
    /// The file written.
    pub output: String,
    /// The files merged into it, deleted once it is written.
    pub inputs: Vec<String>,
}

/// Forget's lease (`_sluice/forget-lease.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Until when it holds (epoch ms), unless removed before.
    pub until: Millis,
}

/// The name of forget's lease.
pub const LEASE: &str = "_sluice/forget-lease.json";

/// What a compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Files written.
    pub outputs: usize,
    /// Files merged into them and deleted.
    pub inputs: usize,
}

/// Whether forget holds its lease at `now`.
pub async fn lease_held(target: &Target, now: Millis) -> Result<bool, ArchiveError> {
    Ok(target
        .read_record::<Lease>(LEASE)
        .await?
        .is_some_and(|lease| lease.until > now))
}

/// Compacts the small files of `owner`'s partition of the hours of the last two days that
/// ended `settle` before `now`; `mark` is its committed position, which the commits keep.
pub async fn compact(
    target: &Target,
    owner: &Owner,
    mark: Mark,
    now: Millis,
    settle: Duration,
) -> Result<Compacted, ArchiveError> {
    let partition = owner.partition;
    let mut compacted = Compacted::default();
    if lease_held(target, now).await? {
        return Ok(compacted);
    }
    let settle = Millis::try_from(settle.as_millis()).unwrap_or(Millis::MAX);
    let (from, to) = (now - LOOKBACK, now.saturating_sub(settle));
    for (_, date_prefix, day) in target.dates().await? {
        if day + DAY <= from || day >= to {
            continue;
        }
        // By hour: this partition's small files, by first offset.
        let mut hours: BTreeMap<String, Vec<(u64, String, u64)>> = BTreeMap::new();
        for (name, size) in target.list_sized(&date_prefix, ".parquet").await? {
            let Some((hour_dir, file)) = name[date_prefix.len()..].split_once('/') else {
                continue;
            };
            let Some(hour) = parse_hour_dir(hour_dir) else {
                continue;
            };
            let end = day + hour + HOUR;
            if end <= from || end > to || size >= SMALL_FILE {
                continue;
            }
            if let Some((of, first, _)) = parse_part(file)
                && of == partition
            {
                let files = hours
                    .entry(format!("{date_prefix}{hour_dir}/"))
                    .or_default();
                files.push((first, name, size));
            }
        }
        for (hour_prefix, mut files) in hours {
            files.sort();
            let mut inputs = Vec::new();
            let mut bytes = 0;
            for (first, name, size) in files {
                if inputs.len() >= 2 && bytes + size > MAX_OUTPUT {
                    break;
                }
                bytes += size;
                inputs.push((first, name));
            }
            if inputs.len() < 2 {
                continue;
            }
            let (first, last) = (inputs[0].0, inputs[inputs.len() - 1].0);
            let compaction = Compaction {
                output: format!("{hour_prefix}part-{partition}-{first:020}-{last:020}.parquet"),
                inputs: inputs.into_iter().map(|(_, name)| name).collect(),
            };
            match run(target, owner, mark, &compaction).await? {
                Outcome::Merged => {
                    compacted.outputs += 1;
                    compacted.inputs += compaction.inputs.len();
                }
                Outcome::Different => {}
                Outcome::Leased => return Ok(compacted),
            }
        }
    }
    Ok(compacted)
}

/// How one compaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The inputs were merged and deleted.
    Merged,
    /// The inputs' schemas differ; nothing was written.
    Different,
    /// Forget's lease appeared meanwhile: the staged output was deleted, not committed.
    Leased,
}

/// Stage, commit, publish for one compaction.
async fn run(
    target: &Target,
    owner: &Owner,
    mark: Mark,
    compaction: &Compaction,
) -> Result<Outcome, ArchiveError> {
    let mut files = Vec::with_capacity(compaction.inputs.len());
    for input in &compaction.inputs {
        files.push(target.read(input).await?);
    }
    let output = compaction.output.clone();
    let merged = target
        .blocking(move || {
            format::merge(files).map_err(|error| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("merging the files of {output}: {error}"),
                )
            })
        })
        .await?;
    // The tenant's promoted columns changed between them: they are left as they are.
    let Some(merged) = merged else {
        tracing::debug!(output = %compaction.output, "files of different columns are not compacted");
        return Ok(Outcome::Different);
    };
    let staged = owner.staged(&compaction.output);
    target.replace(&staged, merged).await?;
    if lease_held(target, sluice_core::time::now_millis()).await? {
        target.remove(&staged).await?;
        return Ok(Outcome::Leased);
    }
    owner
        .commit_and_publish(
            target,
            mark,
            vec![compaction.output.clone()],
            compaction.inputs.clone(),
        )
        .await?;
    Ok(Outcome::Merged)
}

#[cfg(test)]
mod tests;
