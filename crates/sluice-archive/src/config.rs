//! The `[archive]` section.

use crate::promote::{ColumnConfig, Promotions};
use serde::Deserialize;
use sluice_core::config::{ByteSize, ConfigProblem, HumanDuration, Validate, join};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `[archive]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Whether accepted events are archived.
    pub enabled: bool,
    /// Where: `file:///absolute/path`, `s3://bucket/prefix` (endpoint, region and credentials
    /// from the usual AWS environment variables), or empty for `<data-dir>/archive`.
    pub url: String,
    /// A batch is written once its events' JSON reaches this size.
    pub roll_bytes: ByteSize,
    /// … or once its first event was read this long ago.
    pub roll_age: HumanDuration,
    /// Archived hours (of event time) that ended longer ago than this are deleted; `0s` keeps
    /// them forever.
    pub retention: HumanDuration,
    /// Per tenant, instead of `retention` (`0s`: forever).
    pub tenant_retention: BTreeMap<String, HumanDuration>,
    /// Values inside the JSON columns written as typed columns too ([`crate::promote`]).
    #[serde(default)]
    pub columns: Vec<ColumnConfig>,
    /// Derived streams archived too, each into `streams/<name>/`.
    #[serde(default)]
    pub streams: Vec<String>,
}

const MIN_ROLL_BYTES: u64 = 1 << 20;
const MAX_ROLL_BYTES: u64 = 1 << 30;
const MIN_ROLL_AGE: Duration = Duration::from_secs(1);
const MAX_ROLL_AGE: Duration = Duration::from_secs(24 * 3600);
const MIN_RETENTION: Duration = Duration::from_secs(3600);
const MAX_RETENTION: Duration = Duration::from_secs(100 * 366 * 24 * 3600);

/// Where the archive is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory.
    Dir(PathBuf),
    /// An S3 bucket, under a key prefix (`""` for the bucket's root).
    S3 {
        /// The bucket.
        bucket: String,
        /// The prefix, without leading or trailing `/`.
        prefix: String,
    },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir(dir) => write!(f, "{}", dir.display()),
            Location::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl ArchiveConfig {
    /// Where the archive is, given the data directory. Valid config only.
    pub fn location(&self, data_dir: &Path) -> Location {
        if let Some(path) = self.url.strip_prefix("file://") {
            return Location::Dir(PathBuf::from(path));
        }
        match self.url.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                Location::S3 {
                    bucket: bucket.to_owned(),
                    prefix: prefix.trim_end_matches('/').to_owned(),
                }
            }
            None => Location::Dir(data_dir.join("archive")),
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

    /// How long `tenant`'s archived hours are kept; `None`: forever.
    pub fn retention_of(&self, tenant: &str) -> Option<Duration> {
        let retention = self
            .tenant_retention
            .get(tenant)
            .unwrap_or(&self.retention)
            .get();
        (!retention.is_zero()).then_some(retention)
    }

    /// Whether any tenant's archive has a retention.
    pub fn has_retention(&self) -> bool {
        !self.retention.get().is_zero()
            || self
                .tenant_retention
                .values()
                .any(|retention| !retention.get().is_zero())
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
                None => match url.strip_prefix("s3://") {
                    Some(rest) => {
                        if let Err(problem) = check_s3(rest) {
                            problems.push(ConfigProblem::new(
                                join(path, "url"),
                                format!("{url:?}: {problem}"),
                            ));
                        }
                    }
                    None => problems.push(ConfigProblem::new(
                        join(path, "url"),
                        format!(
                            "{url:?} is not an archive location: write file:///absolute/path, s3://bucket/prefix, or \"\" for <data-dir>/archive"
                        ),
                    )),
                },
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
        let check_retention = |key: String, retention: HumanDuration, problems: &mut Vec<_>| {
            let value = retention.get();
            if !value.is_zero() && !(MIN_RETENTION..=MAX_RETENTION).contains(&value) {
                problems.push(ConfigProblem::new(
                    key,
                    format!(
                        "{retention} is out of range: use 1h to 36500d (archived hours older than this are deleted), or 0s to keep them forever"
                    ),
                ));
            }
        };
        check_retention(join(path, "retention"), self.retention, problems);
        for (index, problem) in Promotions::problems(&self.columns) {
            problems.push(ConfigProblem::new(
                format!("{}[{index}]", join(path, "columns")),
                problem,
            ));
        }
        for (tenant, retention) in &self.tenant_retention {
            let key = join(&join(path, "tenant-retention"), tenant);
            check_retention(key.clone(), *retention, problems);
            if let Err(problem) = sluice_core::tenant::check_tenant_name(tenant) {
                problems.push(ConfigProblem::new(key, problem));
            }
        }
        for (index, name) in self.streams.iter().enumerate() {
            let key = format!("{}[{index}]", join(path, "streams"));
            if !sluice_stream::sql::is_valid_name(name) {
                problems.push(ConfigProblem::new(
                    key,
                    format!(
                        "{name:?} is no derived stream's name: 1 to {} lowercase letters, digits and _, starting with a letter (the name of a CREATE STREAM, SESSIONS or IDENTITY)",
                        sluice_stream::sql::MAX_NAME_LEN
                    ),
                ));
            } else if self.streams[..index].contains(name) {
                problems.push(ConfigProblem::new(key, format!("{name:?} is listed twice")));
            }
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

/// Checks the part of an S3 URL after `s3://`: a bucket name as S3 allows it, then an optional
/// prefix of non-empty segments.
fn check_s3(rest: &str) -> Result<(), String> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !valid_bucket {
        return Err(format!(
            "{bucket:?} is not an S3 bucket name: 3 to 63 lower-case letters, digits, '.' and '-', starting and ending with a letter or digit (write s3://bucket/prefix)"
        ));
    }
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return Ok(());
    }
    let bad_segment = prefix.split('/').find(|segment| {
        segment.is_empty()
            || *segment == "."
            || *segment == ".."
            || segment
                .chars()
                .any(|c| c.is_control() || "\\{}^%`[]\"<>~#|*?".contains(c))
    });
    match bad_segment {
        Some(segment) => Err(format!(
            "the prefix {prefix:?} has the segment {segment:?}: use non-empty segments of letters, digits and -_.=!'()&$@,;:+ (no \"//\", \".\" or \"..\")"
        )),
        None => Ok(()),
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
            retention: HumanDuration(Duration::ZERO),
            tenant_retention: BTreeMap::new(),
            columns: Vec::new(),
            streams: Vec::new(),
        }
    }

    #[test]
    fn archived_streams_are_named_as_streams_once_each() {
        let mut config = config("", 1 << 20, Duration::from_secs(1));
        config.streams = vec![
            "visits".into(),
            "Orders".into(),
            "visits".into(),
            "people".into(),
        ];
        assert_eq!(
            problems(&config),
            [
                "archive.streams[1]: \"Orders\" is no derived stream's name: 1 to 64 lowercase letters, digits and _, starting with a letter (the name of a CREATE STREAM, SESSIONS or IDENTITY)",
                "archive.streams[2]: \"visits\" is listed twice",
            ]
        );
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
        let dir = |path: &str| Location::Dir(PathBuf::from(path));
        assert_eq!(good.location(Path::new("/d")), dir("/d/archive"));
        let file = config("file:///srv/archive", 64 << 20, minute);
        assert!(problems(&file).is_empty());
        assert_eq!(file.location(Path::new("/d")), dir("/srv/archive"));
        for (url, bucket, prefix) in [
            ("s3://events-raw", "events-raw", ""),
            ("s3://events-raw/", "events-raw", ""),
            (
                "s3://my.bucket-1/sluice/prod/",
                "my.bucket-1",
                "sluice/prod",
            ),
        ] {
            let s3 = config(url, 64 << 20, minute);
            assert!(problems(&s3).is_empty(), "{url}: {:?}", problems(&s3));
            let location = s3.location(Path::new("/d"));
            let expected = Location::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            };
            assert_eq!(location, expected, "{url}");
            assert_eq!(location.to_string(), url.trim_end_matches('/'));
        }

        let relative = problems(&config("file://archive", 64 << 20, minute));
        assert!(relative[0].contains("three slashes"), "{relative:?}");
        for (url, says) in [
            ("s3://Bucket/x", "is not an S3 bucket name"),
            ("s3://ab", "is not an S3 bucket name"),
            ("s3:///prefix", "is not an S3 bucket name"),
            ("s3://bucket-/x", "is not an S3 bucket name"),
            ("s3://bucket/a//b", "the segment \"\""),
            ("s3://bucket/a/../b", "the segment \"..\""),
            ("s3://bucket/a b/c{d}", "the segment \"c{d}\""),
        ] {
            let found = problems(&config(url, 64 << 20, minute));
            assert!(
                found.len() == 1 && found[0].contains(says),
                "{url}: {found:?}"
            );
        }
        let other = problems(&config("ftp://x", 1, Duration::ZERO));
        assert_eq!(other.len(), 3, "{other:?}");
        assert!(other[1].starts_with("archive.roll-bytes: "), "{other:?}");
        assert!(other[2].contains("1s to 24h"), "{other:?}");
    }

    #[test]
    fn retention_is_per_tenant_with_a_default_and_checked() {
        let day = Duration::from_secs(86_400);
        let mut config = config("", 64 << 20, Duration::from_secs(60));
        assert!(!config.has_retention());
        assert_eq!(config.retention_of("shop"), None, "forever by default");
        config.retention = HumanDuration(400 * day);
        config
            .tenant_retention
            .insert("shop".into(), HumanDuration(30 * day));
        config
            .tenant_retention
            .insert("audit".into(), HumanDuration(Duration::ZERO));
        assert!(problems(&config).is_empty(), "{:?}", problems(&config));
        assert!(config.has_retention());
        config.columns.push(ColumnConfig {
            tenant: None,
            path: "properties.x".into(),
            name: None,
            kind: "int".into(),
        });
        let found = problems(&config);
        assert!(
            found.len() == 1 && found[0].starts_with("archive.columns[0]: type \"int\""),
            "{found:?}"
        );
        config.columns.clear();
        assert_eq!(config.retention_of("shop"), Some(30 * day));
        assert_eq!(config.retention_of("blog"), Some(400 * day));
        assert_eq!(config.retention_of("audit"), None);

        config.retention = HumanDuration(Duration::from_secs(60));
        config
            .tenant_retention
            .insert("Bad Name".into(), HumanDuration(day));
        let found = problems(&config);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("archive.retention: 1m is out of range"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("archive.tenant-retention.Bad Name: ")
                && found[1].contains("not a valid tenant name"),
            "{found:?}"
        );
    }
}
