//! Erasure in the archive (`sluice archive forget --tenant T --user U`): every file of the
//! tenant that holds events whose `user_id` or `anonymous_id` is U — the events the collector
//! drops for an erased id — is rewritten without them, and a file that held only such events
//! is deleted. Each file is replaced whole (a temporary file renamed over it, or the object put
//! again), so a reader sees it with or without the user's rows, never half of it.
//!
//! Beside a running server: the archiver never writes into a file of a committed batch again,
//! and it skips the events of ids erased through `DELETE /v1/users/{id}`. The files of a batch
//! not yet committed are not touched: after a crash the archiver's next start deletes them and
//! archives their events again, and a rewrite could put one back. So forget lists the files
//! first, then reads the archive's committed positions from the store, then the pending
//! records: a listed file of a pending record whose `start` is its partition's position (or
//! that has no position) is skipped and reported (run forget again once it is committed).
//! A listed file is of a committed batch or of the one batch its partition's pending record
//! names (a record is written before its files, and the next one only after that commit), so
//! the check after the listing sees every uncommitted one.

use crate::compact::{LEASE, Lease};
use crate::format::{self, Filtered};
use crate::layout::Layout;
use crate::sink::{ArchiveError, PIPELINE};
use crate::target::Target;
use futures::{StreamExt, TryStreamExt};
use sluice_core::time::Millis;
use sluice_store::StoreBackend;
use std::collections::{HashMap, HashSet};
use std::io;
use std::time::Duration;

/// Files read and rewritten at once.
const CONCURRENCY: usize = 4;

/// A file that held events of the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    /// The file, relative to the archive's root.
    pub name: String,
    /// Its rows before.
    pub rows: usize,
    /// The user's rows, removed.
    pub removed: usize,
    /// Whether the file was deleted (all its rows were the user's).
    pub deleted: bool,
}

/// What a forget did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Files of the tenant read.
    pub scanned: usize,
    /// Files that held the user's events, by name.
    pub changed: Vec<Changed>,
    /// Files of batches not committed yet, not read.
    pub skipped: Vec<String>,
}

impl Forgotten {
    /// The user's rows removed in all.
    pub fn removed(&self) -> usize {
        self.changed.iter().map(|changed| changed.removed).sum()
    }
}

/// How long forget's lease holds unless forget removes it first: longer than any forget runs
/// (a forget that crashed only holds compaction off this long).
const LEASE_TTL: Millis = 24 * 3_600_000;

/// Removes `user`'s events from `tenant`'s files in the archive; `store` holds the archive's
/// committed positions (`None`: there is no store, so nothing was committed). Holds the
/// compaction lease meanwhile, after waiting `grace` once it is taken (see
/// [`crate::compact`]).
pub async fn forget(
    target: &Target,
    tenant: &str,
    user: &str,
    store: Option<&StoreBackend>,
    grace: Duration,
) -> Result<Forgotten, ArchiveError> {
    let lease = Lease {
        until: sluice_core::time::now_millis() + LEASE_TTL,
    };
    target.write_record(LEASE, &lease).await?;
    tokio::time::sleep(grace).await;
    let forgotten = forget_leased(target, tenant, user, store).await;
    let released = target.remove(LEASE).await;
    let forgotten = forgotten?;
    released?;
    Ok(forgotten)
}

async fn forget_leased(
    target: &Target,
    tenant: &str,
    user: &str,
    store: Option<&StoreBackend>,
) -> Result<Forgotten, ArchiveError> {
    let listed = target
        .list(&format!("events/tenant={tenant}/"), ".parquet")
        .await?;
    let uncommitted = uncommitted_files(target, store).await?;
    let (skipped, names): (Vec<String>, Vec<String>) = listed
        .into_iter()
        .partition(|name| uncommitted.contains(name));
    let scanned = names.len();
    let mut changed: Vec<Changed> = futures::stream::iter(names)
        .map(|name| forget_in(target, name, user))
        .buffer_unordered(CONCURRENCY)
        .try_filter_map(|changed| async move { Ok(changed) })
        .try_collect()
        .await?;
    changed.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Forgotten {
        scanned,
        changed,
        skipped,
    })
}

/// The files of batches not committed: those of each pending record whose `start` is its
/// partition's committed position, or that has none.
async fn uncommitted_files(
    target: &Target,
    store: Option<&StoreBackend>,
) -> Result<HashSet<String>, ArchiveError> {
    let positions: HashMap<u32, u64> = match store {
        Some(store) => store
            .positions(PIPELINE)
            .await?
            .into_iter()
            .map(|(partition, position)| (partition, position.offset))
            .collect(),
        None => HashMap::new(),
    };
    let mut files = HashSet::new();
    for name in target.list("_sluice/", ".json").await? {
        let partition = name
            .strip_prefix("_sluice/pending-")
            .and_then(|rest| rest.strip_suffix(".json"))
            .and_then(|partition| partition.parse::<u32>().ok());
        let Some(partition) = partition.filter(|p| Layout::pending_name(*p) == name) else {
            continue;
        };
        let Some(pending) = target.read_pending(partition).await? else {
            continue;
        };
        if positions
            .get(&partition)
            .is_none_or(|at| *at == pending.start)
        {
            files.extend(pending.files);
        }
    }
    Ok(files)
}

/// Removes `user`'s rows from the file `name`; what changed, if anything did.
async fn forget_in(
    target: &Target,
    name: String,
    user: &str,
) -> Result<Option<Changed>, ArchiveError> {
    let bytes = target.read(&name).await?;
    let (user, file) = (user.to_owned(), name.clone());
    let Filtered {
        rows,
        removed,
        rewritten,
    } = target
        .blocking(move || {
            format::without_user(bytes, &user).map_err(|error| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{file} cannot be read as an archive file ({error})"),
                )
            })
        })
        .await?;
    if removed == 0 {
        return Ok(None);
    }
    let deleted = match rewritten {
        Some(bytes) => {
            target.replace(&name, bytes).await?;
            false
        }
        None => {
            target.remove(&name).await?;
            true
        }
    };
    Ok(Some(Changed {
        name,
        rows,
        removed,
        deleted,
    }))
}

#[cfg(test)]
mod tests;
