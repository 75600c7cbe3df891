//! Opening the log from command-line tools (`topics`, `tail`) beside, or instead of, a server.
//!
//! A tool first tries to take the data directory's lock. When it gets it, no server runs: the
//! tool opens the log for reading and writing (recovering it, as `serve` would) and keeps the
//! lock until it exits. When a server holds the lock, tools that only read open the log
//! read-only: nothing is changed or repaired, and a batch the server is still writing is
//! invisible until complete. Tools that write say to stop the server first.

use crate::UserError;
use crate::config::Config;
use crate::data_dir::{self, DataDirLock};
use sluice_core::error::{Classify, ErrorClass};
use sluice_log::{LogBackend, LogError};

/// What a tool needs to do with the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only reads: read-only access beside a running server is enough.
    Read,
    /// Writes (creates topics): needs the log to itself.
    Write,
}

/// A log opened by a tool, with the data directory lock when it was free.
#[derive(Debug)]
pub struct ToolLog {
    /// The log.
    pub log: LogBackend,
    /// Opened read-only beside a running server.
    pub read_only: bool,
    _lock: Option<DataDirLock>,
}

/// Opens the configured log for a tool.
pub async fn open(config: &Config, access: Access) -> anyhow::Result<ToolLog> {
    let dir = &config.data_dir;
    if access == Access::Read && !dir.is_dir() {
        return Err(UserError(format!(
            "there is no data directory at {}; point --data-dir (or data-dir in the config) at the one sluice serve uses",
            dir.display()
        ))
        .into());
    }
    let lock = data_dir::lock_if_free(dir)?;
    if lock.is_some() {
        match LogBackend::open(&config.log, dir).await {
            Ok(log) => {
                return Ok(ToolLog {
                    log,
                    read_only: false,
                    _lock: lock,
                });
            }
            // The log lives outside the data dir (`file://…`) and another process holds it.
            Err(LogError::Locked { .. }) => {}
            Err(error) => return Err(user_or_internal(error)),
        }
    }
    if access == Access::Write {
        return Err(UserError(format!(
            "the log of data dir {} is in use by another sluice process (a running `sluice serve`?); stop it, then run this command again",
            dir.display()
        ))
        .into());
    }
    let log = LogBackend::open_read_only(&config.log, dir)
        .await
        .map_err(user_or_internal)?;
    Ok(ToolLog {
        log,
        read_only: true,
        _lock: None,
    })
}

/// Maps a log error to exit code 2 when the user can fix it (unknown topic, bad offset).
pub fn user_or_internal(error: LogError) -> anyhow::Error {
    if error.class() == ErrorClass::User {
        UserError(error.to_string()).into()
    } else {
        error.into()
    }
}

/// A runtime for a command-line tool.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}
