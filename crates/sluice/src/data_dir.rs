//! The data directory: created on first start, and locked so that two processes never write
//! the same log and store (which would corrupt both).

use crate::UserError;
use std::fs::{File, TryLockError};
use std::path::Path;

/// The lock file inside the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// Holds the data directory for as long as it lives.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Creates `dir` if needed and takes its exclusive lock.
pub fn lock(dir: &Path) -> Result<DataDirLock, UserError> {
    lock_if_free(dir)?.ok_or_else(|| {
        UserError(format!(
            "data dir {} is in use by another sluice process; stop it or choose another --data-dir",
            dir.display()
        ))
    })
}

/// Like [`lock`], but `Ok(None)` when another process holds the lock (tools then fall back to
/// read-only access).
pub fn lock_if_free(dir: &Path) -> Result<Option<DataDirLock>, UserError> {
    std::fs::create_dir_all(dir).map_err(|error| {
        UserError(format!(
            "cannot create data dir {}: {error}; choose another with --data-dir",
            dir.display()
        ))
    })?;
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| UserError(format!("cannot open {}: {error}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(DataDirLock { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(error)) => Err(UserError(format!(
            "cannot lock {}: {error}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = lock(&data).unwrap();
        let error = lock(&data).unwrap_err();
        assert!(
            error.0.contains("in use by another sluice process"),
            "{error}"
        );
        drop(first);
        lock(&data).unwrap();
    }
}
