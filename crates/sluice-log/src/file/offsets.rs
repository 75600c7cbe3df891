//! Consumer group offsets: one JSON file per group in `groups/`, replaced atomically on every
//! commit (write a temporary file, sync, rename, sync the directory).

use super::fs::{atomic_write, io_error};
use crate::record::check_topic_name;
use crate::{LogError, Result};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What a group file holds: topic → partition → next offset to read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFile {
    version: u32,
    offsets: BTreeMap<String, BTreeMap<u32, u64>>,
}

/// Every group's committed offsets, cached in memory.
#[derive(Debug)]
pub(crate) struct OffsetStore {
    dir: PathBuf,
    /// Held across a commit's file replacement, so commits of one log are applied in order.
    groups: Mutex<HashMap<String, GroupFile>>,
}

impl OffsetStore {
    /// Loads every group file in `dir`.
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let mut groups = HashMap::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    dir: dir.to_owned(),
                    groups: Mutex::new(groups),
                });
            }
            Err(error) => return Err(io_error("listing", dir)(error)),
        };
        for entry in entries {
            let path = entry.map_err(io_error("listing", dir))?.path();
            let Some(group) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            let text = std::fs::read(&path).map_err(io_error("reading", &path))?;
            let file: GroupFile =
                serde_json::from_slice(&text).map_err(|error| LogError::Corrupt {
                    path: path.clone(),
                    reason: format!("not a consumer offsets file: {error}"),
                })?;
            groups.insert(group.to_owned(), file);
        }
        Ok(Self {
            dir: dir.to_owned(),
            groups: Mutex::new(groups),
        })
    }

    /// The committed offset of a group for a partition.
    pub(crate) fn get(&self, group: &str, topic: &str, partition: u32) -> Option<u64> {
        self.groups
            .lock()
            .get(group)?
            .offsets
            .get(topic)?
            .get(&partition)
            .copied()
    }

    /// Commits an offset durably (blocking).
    pub(crate) fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<()> {
        let mut groups = self.groups.lock();
        let mut updated = groups.get(group).cloned().unwrap_or(GroupFile {
            version: 1,
            offsets: BTreeMap::new(),
        });
        updated
            .offsets
            .entry(topic.to_owned())
            .or_default()
            .insert(partition, offset);
        std::fs::create_dir_all(&self.dir).map_err(io_error("creating", &self.dir))?;
        let text = serde_json::to_vec_pretty(&updated).expect("offsets serialize");
        atomic_write(&self.dir.join(format!("{group}.json")), &text)?;
        groups.insert(group.to_owned(), updated);
        Ok(())
    }
}

/// Group names follow the topic name rule, so they are safe file names.
pub(crate) fn check_group_name(group: &str) -> Result<()> {
    check_topic_name(group).map_err(|_| {
        LogError::Invalid(format!(
            "{group:?} is not a valid consumer group name: use 1 to 249 letters, digits, '.', '_' or '-'"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_survive_a_reload_and_leave_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let groups = dir.path().join("groups");
        let store = OffsetStore::load(&groups).unwrap();
        assert_eq!(store.get("g", "events", 0), None);
        store.commit("g", "events", 0, 10).unwrap();
        store.commit("g", "events", 3, 7).unwrap();
        store.commit("g.2", "events", 0, 1).unwrap();
        store.commit("g", "events", 0, 12).unwrap();
        let reloaded = OffsetStore::load(&groups).unwrap();
        assert_eq!(reloaded.get("g", "events", 0), Some(12));
        assert_eq!(reloaded.get("g", "events", 3), Some(7));
        assert_eq!(reloaded.get("g.2", "events", 0), Some(1));
        assert_eq!(reloaded.get("g", "other", 0), None);
        let names: Vec<String> = std::fs::read_dir(&groups)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| n.ends_with(".json")), "{names:?}");
        assert!(check_group_name("../etc").is_err());
    }
}
