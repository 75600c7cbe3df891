//! Erasure in the archive (`sluice archive forget --tenant T --user U`): every file of the
//! tenant that holds events whose `user_id` or `anonymous_id` is U — the events the collector
//! drops for an erased id — is rewritten without them, and a file that held only such events
//! is deleted. Each file is replaced whole (a temporary file renamed over it, or the object put
//! again), so a reader sees it with or without the user's rows, never half of it.
//!
//! The archiver never writes into a file of a committed batch, and it skips the events of ids
//! erased through `DELETE /v1/users/{id}`, so forgetting while the server runs is safe once the
//! id is erased there. One window remains: a batch never committed before a crash has its
//! files deleted by the archiver's next start; a forget rewriting one of them at that moment
//! can put it back. Forget after the archiver is running (or while the server is stopped).

use crate::format::{self, Filtered};
use crate::sink::ArchiveError;
use crate::target::Target;
use futures::{StreamExt, TryStreamExt};
use std::io;

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
}

impl Forgotten {
    /// The user's rows removed in all.
    pub fn removed(&self) -> usize {
        self.changed.iter().map(|changed| changed.removed).sum()
    }
}

/// Removes `user`'s events from `tenant`'s files in the archive.
pub async fn forget(target: &Target, tenant: &str, user: &str) -> Result<Forgotten, ArchiveError> {
    let names = target.list(&format!("events/tenant={tenant}/")).await?;
    let scanned = names.len();
    let mut changed: Vec<Changed> = futures::stream::iter(names)
        .map(|name| forget_in(target, name, user))
        .buffer_unordered(CONCURRENCY)
        .try_filter_map(|changed| async move { Ok(changed) })
        .try_collect()
        .await?;
    changed.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Forgotten { scanned, changed })
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
