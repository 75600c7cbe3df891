//! The `[store]` config section, and the `[[metrics]]` tables.

use serde::Deserialize;
use sluice_core::config::{ByteSize, ConfigProblem, HumanDuration, Validate, join};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the store lives, as `store.url` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database (its URL, password included).
    Postgres(String),
}

/// `[store]`: where results live and how often pipelines checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StoreConfig {
    /// Empty: SQLite at `<data-dir>/store.db`; `sqlite:///absolute/path.db`; or
    /// `postgres://user:password@host:5432/database` for the PostgreSQL store.
    pub url: String,
    /// How often each pipeline partition commits its results and offset.
    pub checkpoint_interval: HumanDuration,
    /// Cap on the store file's size; `0` for none. Reaching it behaves like a full disk.
    pub max_size: ByteSize,
    /// The longest pause before a failed pipeline partition tries again.
    pub retry_max_backoff: HumanDuration,
}

impl StoreConfig {
    /// Where the store lives: a SQLite file, or a PostgreSQL database.
    pub fn location(&self, data_dir: &Path) -> Result<StoreLocation, String> {
        let url = self.url.trim();
        if url.is_empty() {
            return Ok(StoreLocation::Sqlite(data_dir.join("store.db")));
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "{url:?}: write sqlite:///absolute/path.db (three slashes)"
                ));
            }
            return Ok(StoreLocation::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            if let Err(error) = url.parse::<tokio_postgres::Config>() {
                return Err(format!(
                    "not a PostgreSQL URL ({error}): write postgres://user:password@host:5432/database"
                ));
            }
            return Ok(StoreLocation::Postgres(url.to_owned()));
        }
        Err(format!(
            "{url:?} is not a store URL: leave it empty (SQLite in the data dir), or write sqlite:///absolute/path.db or postgres://user:password@host:5432/database"
        ))
    }

    /// The SQLite file to use; an error for a PostgreSQL store.
    pub fn sqlite_path(&self, data_dir: &Path) -> Result<PathBuf, String> {
        match self.location(data_dir)? {
            StoreLocation::Sqlite(path) => Ok(path),
            StoreLocation::Postgres(_) => {
                Err("the store is a PostgreSQL database, not a SQLite file".into())
            }
        }
    }

    /// The size cap, if any.
    pub fn max_size(&self) -> Option<u64> {
        (self.max_size.bytes() > 0).then_some(self.max_size.bytes())
    }

    /// The checkpoint interval.
    pub fn checkpoint_interval(&self) -> Duration {
        self.checkpoint_interval.get()
    }

    /// The longest pause between two attempts of a failed pipeline partition.
    pub fn retry_max_backoff(&self) -> Duration {
        self.retry_max_backoff.get()
    }
}

impl Validate for StoreConfig {
    fn validate(&self, path: &str, problems: &mut Vec<ConfigProblem>) {
        match self.location(Path::new(".")) {
            Err(message) => problems.push(ConfigProblem::new(join(path, "url"), message)),
            Ok(StoreLocation::Postgres(_)) if self.max_size().is_some() => {
                problems.push(ConfigProblem::new(
                    join(path, "max-size"),
                    "caps the SQLite store only: set 0 with a PostgreSQL store (cap the database with the server's own means)",
                ));
            }
            Ok(_) => {}
        }
        let interval = self.checkpoint_interval.get();
        if interval < Duration::from_millis(10) || interval > Duration::from_secs(3600) {
            problems.push(ConfigProblem::new(
                join(path, "checkpoint-interval"),
                "must be between 10ms and 1h",
            ));
        }
        let backoff = self.retry_max_backoff.get();
        if backoff < Duration::from_millis(100) || backoff > Duration::from_secs(3600) {
            problems.push(ConfigProblem::new(
                join(path, "retry-max-backoff"),
                "must be between 100ms and 1h",
            ));
        }
    }
}

/// One `[[metrics]]` table: a metric created at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MetricConfig {
    /// The `CREATE METRIC` statement.
    pub sql: String,
    /// Compute it from the earliest retained offset (default false: from start-up on).
    #[serde(default)]
    pub backfill: bool,
}
