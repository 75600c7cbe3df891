//! The `[archive]` section.

use serde::Deserialize;
use sluice_core::config::{ByteSize, ConfigProblem, HumanDuration, Validate, join};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `[archive]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Whether accepted events are archived.
    pub enabled: bool,
    /// Where: `file:///absolute/path`, or empty for `<data-dir>/archive`.
    pub url: String,
    /// A batch is written once its events' JSON reaches this size.
    pub roll_bytes: ByteSize,
    /// … or once its first event was read this long ago.
    pub roll_age: HumanDuration,
}

const MIN_ROLL_BYTES: u64 = 1 << 20;
const MAX_ROLL_BYTES: u64 = 1 << 30;
const MIN_ROLL_AGE: Duration = Duration::from_secs(1);
const MAX_ROLL_AGE: Duration = Duration::from_secs(24 * 3600);

impl ArchiveConfig {
    /// The archive's root directory, given the data directory. Valid config only.
    pub fn root(&self, data_dir: &Path) -> PathBuf {
        match self.url.strip_prefix("file://") {
            Some(path) => PathBuf::from(path),
            None => data_dir.join("archive"),
        }
    }

    /// The batch size at which files are written.
    pub fn roll_bytes(&self) -> usize {
        self.roll_bytes.as_usize()
    }

    /// The batch age at which files are written.
    pub fn roll_age(&self) -> Duration {
        self.roll_age.get()
    }
}

impl Validate for ArchiveConfig {
    fn validate(&self, path: &str, problems: &mut Vec<ConfigProblem>) {
        let url = &self.url;
        if !url.is_empty() {
            match url.strip_prefix("file://") {
                Some(dir) if dir.starts_with('/') => {}
                Some(_) => problems.push(ConfigProblem::new(
                    join(path, "url"),
                    format!(
                        "{url:?} is not an absolute file URL: write file:///absolute/path (three slashes), or \"\" for <data-dir>/archive"
                    ),
                )),
                None if url.starts_with("s3://") => problems.push(ConfigProblem::new(
                    join(path, "url"),
                    format!(
                        "{url:?}: this build archives to a directory only (file:///absolute/path); S3 is not supported yet"
                    ),
                )),
                None => problems.push(ConfigProblem::new(
                    join(path, "url"),
                    format!(
                        "{url:?} is not an archive location: write file:///absolute/path, or \"\" for <data-dir>/archive"
                    ),
                )),
            }
        }
        let bytes = self.roll_bytes.bytes();
        if !(MIN_ROLL_BYTES..=MAX_ROLL_BYTES).contains(&bytes) {
            problems.push(ConfigProblem::new(
                join(path, "roll-bytes"),
                format!(
                    "{} is out of range: use 1MiB to 1GiB (each partition holds up to this much in memory)",
                    self.roll_bytes
                ),
            ));
        }
        let age = self.roll_age.get();
        if !(MIN_ROLL_AGE..=MAX_ROLL_AGE).contains(&age) {
            problems.push(ConfigProblem::new(
                join(path, "roll-age"),
                format!(
                    "{} is out of range: use 1s to 24h (how long a batch may wait before it is written)",
                    self.roll_age
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, roll_bytes: u64, roll_age: Duration) -> ArchiveConfig {
        ArchiveConfig {
            enabled: true,
            url: url.to_owned(),
            roll_bytes: ByteSize(roll_bytes),
            roll_age: HumanDuration(roll_age),
        }
    }

    fn problems(config: &ArchiveConfig) -> Vec<String> {
        let mut problems = Vec::new();
        config.validate("archive", &mut problems);
        problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn locations_and_bounds_are_checked_with_how_to_fix_them() {
        let minute = Duration::from_secs(60);
        let good = config("", 64 << 20, minute);
        assert!(problems(&good).is_empty());
        assert_eq!(good.root(Path::new("/d")), PathBuf::from("/d/archive"));
        let file = config("file:///srv/archive", 64 << 20, minute);
        assert!(problems(&file).is_empty());
        assert_eq!(file.root(Path::new("/d")), PathBuf::from("/srv/archive"));

        let relative = problems(&config("file://archive", 64 << 20, minute));
        assert!(relative[0].contains("three slashes"), "{relative:?}");
        let s3 = problems(&config("s3://bucket/prefix", 64 << 20, minute));
        assert!(s3[0].contains("S3 is not supported yet"), "{s3:?}");
        let other = problems(&config("ftp://x", 1, Duration::ZERO));
        assert_eq!(other.len(), 3, "{other:?}");
        assert!(other[1].starts_with("archive.roll-bytes: "), "{other:?}");
        assert!(other[2].contains("1s to 24h"), "{other:?}");
    }
}
