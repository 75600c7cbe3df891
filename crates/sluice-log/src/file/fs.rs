//! Small filesystem helpers with the error messages the rest of the file log relies on.

use crate::LogError;
use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::Path;

/// Maps an I/O error to a [`LogError`]: a full disk gets its own variant, because it is the one
/// failure an operator can fix without a restart.
pub(crate) fn io_error(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LogError {
    move |source| {
        if source.kind() == ErrorKind::StorageFull {
            LogError::DiskFull {
                path: path.to_owned(),
            }
        } else {
            LogError::Io {
                op,
                path: path.to_owned(),
                source,
            }
        }
    }
}

/// Makes the entries of `dir` (files created, renamed or removed in it) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("syncing directory", dir))
}

/// Replaces `path` with `bytes` atomically and durably: a crash leaves the old or the new
/// content, never a mix (write a temporary file, sync it, rename it over, sync the directory).
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io_error("creating", &tmp))?;
    file.write_all(bytes).map_err(io_error("writing", &tmp))?;
    file.sync_all().map_err(io_error("syncing", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io_error("renaming into place", path))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Writes `bytes` to `path` through a temporary file and a rename, without syncing: for files
/// that are checked on read and rebuilt when damaged (segment indexes).
pub(crate) fn replace_unsynced(path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io_error("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error("renaming into place", path))
}

/// Removes a file, treating "already gone" as success.
pub(crate) fn remove_if_exists(path: &Path) -> Result<(), LogError> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != ErrorKind::NotFound => Err(io_error("removing", path)(error)),
        _ => Ok(()),
    }
}
