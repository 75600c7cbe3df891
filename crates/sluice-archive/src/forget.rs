//! Erasure in the archive (`sluice archive forget --tenant T --user U`): every file of the
//! tenant that holds events whose `user_id` or `anonymous_id` is U — the events the collector
//! drops for an erased id — is rewritten without them, and a file that held only such events
//! is deleted. Each file is replaced whole (a temporary file renamed over it, or the object put
//! again), so a reader sees it with or without the user's rows, never half of it.
//!
//! Beside a running server: the archiver never writes into a published file again, and it
//! skips the events of ids erased through `DELETE /v1/users/{id}`. Files that are staged but
//! not published yet ([`crate::publish`]) are not touched: forget lists them first, then the
//! published files, and reports the tenant's staged ones as skipped (run forget again once
//! they are published). A file published between the two listings is in the second.

use crate::compact::{LEASE, Lease};
use crate::format::{self, Filtered};
use crate::sink::ArchiveError;
use crate::target::Target;
use futures::{StreamExt, TryStreamExt};
use sluice_core::time::Millis;
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
    /// Files staged but not published yet, by the names they will have; not read.
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

/// Removes `user`'s events from `tenant`'s published files in the archive. Holds the
/// compaction lease meanwhile, after waiting `grace` once it is taken (see
/// [`crate::compact`]).
pub async fn forget(
    target: &Target,
    tenant: &str,
    user: &str,
    grace: Duration,
) -> Result<Forgotten, ArchiveError> {
    let lease = Lease {
        until: sluice_core::time::now_millis() + LEASE_TTL,
    };
    target.write_record(LEASE, &lease).await?;
    tokio::time::sleep(grace).await;
    let forgotten = forget_leased(target, tenant, user).await;
    let released = target.remove(LEASE).await;
    let forgotten = forgotten?;
    released?;
    Ok(forgotten)
}

async fn forget_leased(
    target: &Target,
    tenant: &str,
    user: &str,
) -> Result<Forgotten, ArchiveError> {
    let tenant_dir = format!("events/tenant={tenant}/");
    // Staged first: a file published after this listing is in the next one.
    let skipped: Vec<String> = target
        .list("_sluice/staged/", ".parquet")
        .await?
        .into_iter()
        .filter_map(|staged| published_name(&staged).map(str::to_owned))
        .filter(|name| name.starts_with(&tenant_dir))
        .collect();
    let names = target.list(&tenant_dir, ".parquet").await?;
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

/// The name a staged file (`_sluice/staged/<partition>/<epoch>/<name>`) is published as.
fn published_name(staged: &str) -> Option<&str> {
    let rest = staged.strip_prefix("_sluice/staged/")?;
    let (_partition, rest) = rest.split_once('/')?;
    let (_epoch, name) = rest.split_once('/')?;
    Some(name)
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
