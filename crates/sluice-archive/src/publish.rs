//! Stage, commit, publish: how an archiver makes files visible exactly once, even while an
//! owner it replaced still runs.
//!
//! Readers see only the files under `events/`. An archiver writes a file there only by moving
//! it from its *staging directory*, `_sluice/staged/<partition>/<epoch>/` (the epoch is the
//! one its claim of the partition got from the store), and only after the store committed a
//! [`Note`] naming it:
//!
//! 1. **stage**: each file is written durably under the staging directory, by its final name
//!    (`_sluice/staged/0/7/events/tenant=shop/…/part-0-….parquet`);
//! 2. **commit**: one store transaction, fenced by the epoch, moves the position (a batch's
//!    end; a compaction keeps it) and replaces the partition's note with
//!    `{epoch, files, delete}`;
//! 3. **publish**: each file of the note is moved to its name (a rename and fsyncs in a
//!    directory; a server-side copy, then a delete, in S3), then the files of `delete` (a
//!    compaction's inputs) are deleted.
//!
//! A claim reads the last note, publishes it again, and only then deletes the staging
//! directories of older epochs. Publishing is idempotent: a staged file that is gone was
//! moved already (a note is committed only once all its files were staged, and an older
//! epoch's directory is deleted only after its note was published), and deleting a file
//! twice deletes it once. Every commit replaces the note, and an owner commits again only
//! after publishing, so only the last note can be unpublished.
//!
//! So an owner that was fenced out (paused past the group's session timeout, or still
//! running after a restart claimed its partition) never shows a file: its commit fails, and
//! what it staged stays in its own staging directory until the next claim or compaction
//! deletes it. One that committed before it was fenced may still be publishing while the new
//! owner publishes the same note; both move the same files to the same names, and the new
//! owner does nothing else until its own publish is done. A crash between a commit and its
//! publish leaves committed events invisible until the partition is claimed again — never
//! visible twice, and never visible uncommitted.

use crate::sink::ArchiveError;
use crate::target::Target;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sluice_core::time::Millis;
use sluice_store::{Commit, StoreBackend};
use std::io;
use std::sync::Arc;

/// Files moved or deleted at once.
const AT_ONCE: usize = 8;

/// What an archiver's commit makes visible (kept by the store with the position, see
/// `Checkpoints::committed_note`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// The epoch whose staging directory holds the files.
    pub epoch: u64,
    /// The files to publish, by their names under `events/`.
    pub files: Vec<String>,
    /// The files to delete once those are published: a compaction's inputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete: Vec<String>,
}

/// What a publish did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Staged files moved to their names (those not moved before).
    pub moved: usize,
    /// Files deleted (those still there).
    pub deleted: usize,
}

/// The staging directory of `partition`'s owner of `epoch`, relative to the root.
pub fn staging(partition: u32, epoch: u64) -> String {
    format!("_sluice/staged/{partition}/{epoch}/")
}

/// An archiver's claim of a partition: its commits are fenced by `epoch`.
#[derive(Debug, Clone)]
pub struct Owner {
    /// The store holding the archive's positions.
    pub store: StoreBackend,
    /// The store pipeline whose positions they are (`archive`, or `archive/<stream>`).
    pub pipeline: String,
    /// The partition of the source topic.
    pub partition: u32,
    /// The claim's epoch.
    pub epoch: u64,
}

/// A committed position: where a commit moves the partition (or leaves it, for a compaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// The first offset not archived.
    pub offset: u64,
    /// The latest event time archived.
    pub event_time: Option<Millis>,
    /// The log epoch the offset belongs to.
    pub log_epoch: u32,
}

impl Owner {
    /// Where this owner stages `name`.
    pub fn staged(&self, name: &str) -> String {
        format!("{}{name}", staging(self.partition, self.epoch))
    }

    /// Steps 2 and 3: commits `mark` with a note of `files` (staged already) and `delete`,
    /// then publishes it.
    pub async fn commit_and_publish(
        &self,
        target: &Target,
        mark: Mark,
        files: Vec<String>,
        delete: Vec<String>,
    ) -> Result<Published, ArchiveError> {
        let note = Note {
            epoch: self.epoch,
            files,
            delete,
        };
        let encoded = serde_json::to_vec(&note).map_err(io::Error::other);
        let commit = Commit {
            offset: mark.offset,
            event_time: mark.event_time,
            log_epoch: mark.log_epoch,
            metrics: Vec::new(),
            output: Vec::new(),
            note: Some(encoded.map_err(|source| io_error(target, source))?),
        };
        self.store
            .commit(&self.pipeline, self.partition, self.epoch, Arc::new(commit))
            .await?;
        publish(target, self.partition, &note).await
    }

    /// After the claim: publishes the last note again (whoever committed it), then deletes
    /// what older owners staged. Returns what the publish did and how many staged files
    /// were deleted.
    pub async fn recover(&self, target: &Target) -> Result<(Published, usize), ArchiveError> {
        let published = match self
            .store
            .committed_note(&self.pipeline, self.partition)
            .await?
        {
            Some(bytes) => {
                let note: Note = serde_json::from_slice(&bytes).map_err(|error| {
                    io_error(
                        target,
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "the store's note of archive partition {} is not sluice's ({error})",
                                self.partition
                            ),
                        ),
                    )
                })?;
                publish(target, self.partition, &note).await?
            }
            None => Published::default(),
        };
        let dropped = self.drop_older(target).await?;
        Ok((published, dropped))
    }

    /// Deletes the staging directories of this partition's older epochs (what fenced or
    /// crashed owners staged and never committed); how many files they held.
    pub async fn drop_older(&self, target: &Target) -> Result<usize, ArchiveError> {
        let under = format!("_sluice/staged/{}/", self.partition);
        let mut dropped = 0;
        for dir in target.list_dirs(&under).await? {
            if dir.parse::<u64>().is_ok_and(|epoch| epoch < self.epoch) {
                dropped += target.remove_all(&format!("{under}{dir}/")).await?;
            }
        }
        Ok(dropped)
    }
}

/// Step 3 for `note`: moves its staged files to their names, then deletes its `delete`.
pub async fn publish(
    target: &Target,
    partition: u32,
    note: &Note,
) -> Result<Published, ArchiveError> {
    let from = staging(partition, note.epoch);
    let moved: Vec<bool> = futures::stream::iter(note.files.iter().cloned())
        .map(|name| {
            let staged = format!("{from}{name}");
            async move { target.move_file(&staged, &name).await }
        })
        .buffer_unordered(AT_ONCE)
        .try_collect()
        .await?;
    let deleted: Vec<bool> = futures::stream::iter(note.delete.iter().cloned())
        .map(|name| async move { target.remove(&name).await })
        .buffer_unordered(AT_ONCE)
        .try_collect()
        .await?;
    Ok(Published {
        moved: moved.into_iter().filter(|&moved| moved).count(),
        deleted: deleted.into_iter().filter(|&deleted| deleted).count(),
    })
}

fn io_error(target: &Target, source: io::Error) -> ArchiveError {
    ArchiveError::Io {
        location: target.location(),
        source,
    }
}

#[cfg(test)]
mod tests;
