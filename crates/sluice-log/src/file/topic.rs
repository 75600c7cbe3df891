//! Topics on disk: `topics/<name>/topic.json` (partition count and retention overrides) beside
//! one directory per partition.

use super::fs::{atomic_write, io_error, sync_dir};
use super::partition::Partition;
use crate::config::{LogConfig, MAX_PARTITIONS};
use crate::record::{TopicSpec, check_topic_name};
use crate::{LogError, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The metadata file in a topic directory, written last when a topic is created: a topic
/// directory without it is an interrupted creation.
pub(crate) const TOPIC_FILE: &str = "topic.json";

/// What `topic.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct TopicMeta {
    /// Format version of this file.
    pub(crate) version: u32,
    /// Number of partitions.
    pub(crate) partitions: u32,
    /// Retention age override in milliseconds (`0` keeps segments regardless of age); absent
    /// means the log's default.
    pub(crate) retention_age_ms: Option<u64>,
    /// Retention size override in bytes (`0` means no limit); absent means the log's default.
    pub(crate) retention_bytes: Option<u64>,
}

impl TopicMeta {
    pub(crate) fn from_spec(spec: &TopicSpec) -> Self {
        Self {
            version: 1,
            partitions: spec.partitions,
            retention_age_ms: spec
                .retention_age
                .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
            retention_bytes: spec.retention_bytes,
        }
    }

    /// The retention age in force: the override, else the default; `None` keeps everything.
    pub(crate) fn retention_age(&self, config: &LogConfig) -> Option<Duration> {
        match self.retention_age_ms {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
            None => config.default_retention_age(),
        }
    }

    /// The retention size in force; `None` means no limit.
    pub(crate) fn retention_bytes(&self, config: &LogConfig) -> Option<u64> {
        match self.retention_bytes {
            Some(0) => None,
            Some(bytes) => Some(bytes),
            None => config.default_retention_bytes(),
        }
    }
}

/// A topic and its partitions.
#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) name: String,
    pub(crate) meta: TopicMeta,
    pub(crate) partitions: Vec<Arc<Partition>>,
}

/// Checks a topic spec before anything is written.
pub(crate) fn check_spec(spec: &TopicSpec) -> Result<()> {
    check_topic_name(&spec.name).map_err(LogError::Invalid)?;
    if !(1..=MAX_PARTITIONS).contains(&spec.partitions) {
        return Err(LogError::Invalid(format!(
            "topic {:?} cannot have {} partitions: use 1 to {MAX_PARTITIONS}",
            spec.name, spec.partitions
        )));
    }
    Ok(())
}

/// The directory of partition `id` of a topic.
pub(crate) fn partition_dir(topic_dir: &Path, id: u32) -> PathBuf {
    topic_dir.join(id.to_string())
}

/// Creates a topic's directories, each partition's first segment, and finally `topic.json`.
/// Safe to repeat after an interrupted attempt: existing directories and segments are kept.
pub(crate) fn create_on_disk(topic_dir: &Path, meta: &TopicMeta) -> Result<()> {
    std::fs::create_dir_all(topic_dir).map_err(io_error("creating topic directory", topic_dir))?;
    for id in 0..meta.partitions {
        let dir = partition_dir(topic_dir, id);
        std::fs::create_dir_all(&dir).map_err(io_error("creating partition directory", &dir))?;
        let first = super::segment::log_path(&dir, 0);
        let has_segment = std::fs::read_dir(&dir)
            .map_err(io_error("listing", &dir))?
            .filter_map(|entry| entry.ok())
            .any(|entry| super::segment::parse_log_name(&entry.file_name()).is_some());
        if !has_segment {
            std::fs::File::create(&first).map_err(io_error("creating segment", &first))?;
        }
        sync_dir(&dir)?;
    }
    sync_dir(topic_dir)?;
    let text = serde_json::to_vec_pretty(meta).expect("topic metadata serializes");
    atomic_write(&topic_dir.join(TOPIC_FILE), &text)?;
    sync_dir(topic_dir.parent().unwrap_or(Path::new(".")))
}

/// Reads `topic.json`; `Ok(None)` when the topic's creation never finished.
pub(crate) fn read_meta(topic_dir: &Path) -> Result<Option<TopicMeta>> {
    let path = topic_dir.join(TOPIC_FILE);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("reading", &path)(error)),
    };
    let meta: TopicMeta = serde_json::from_slice(&text).map_err(|error| LogError::Corrupt {
        path: path.clone(),
        reason: format!("not valid topic metadata: {error}"),
    })?;
    if meta.version != 1 || !(1..=MAX_PARTITIONS).contains(&meta.partitions) {
        return Err(LogError::Corrupt {
            path,
            reason: format!(
                "unsupported version {} or partition count {}",
                meta.version, meta.partitions
            ),
        });
    }
    Ok(Some(meta))
}
