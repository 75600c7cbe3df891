//! The `[schemas]` section: the registry's defaults and bounds, and a directory of schema
//! files registered at start.

use crate::model::Compatibility;
use crate::subject::{UnknownEvents, ValidationMode};
use serde::Deserialize;
use sluice_core::config::{ByteSize, ConfigProblem, HumanDuration, Validate, join};
use std::path::PathBuf;

/// `[schemas]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SchemasConfig {
    /// What the collector does with events a schema describes, for tenants that set nothing.
    pub validation: ValidationMode,
    /// What the collector does with events no schema describes, for tenants that set nothing.
    pub unknown_events: UnknownEvents,
    /// The compatibility level of subjects and tenants that set none.
    pub compatibility: Compatibility,
    /// The largest schema text accepted.
    pub max_schema_bytes: ByteSize,
    /// The most versions (live or soft-deleted) a tenant may hold.
    pub max_versions_per_tenant: usize,
    /// A directory of `<tenant>/<subject>.json` and `<tenant>/<subject>.avsc` files registered
    /// at start (empty: none); see [`SchemasConfig::dir`].
    pub dir: String,
    /// How often a node reads the registry back from the store (what other nodes registered).
    pub refresh_interval: HumanDuration,
}

impl Default for SchemasConfig {
    fn default() -> Self {
        SchemasConfig {
            validation: ValidationMode::Off,
            unknown_events: UnknownEvents::Allow,
            compatibility: Compatibility::Backward,
            max_schema_bytes: ByteSize(256 * 1024),
            max_versions_per_tenant: 10_000,
            dir: String::new(),
            refresh_interval: HumanDuration(std::time::Duration::from_secs(5)),
        }
    }
}

impl SchemasConfig {
    /// The directory of schema files registered at start, if one is set.
    pub fn dir(&self) -> Option<PathBuf> {
        (!self.dir.is_empty()).then(|| PathBuf::from(&self.dir))
    }
}

impl Validate for SchemasConfig {
    fn validate(&self, path: &str, problems: &mut Vec<ConfigProblem>) {
        let bytes = self.max_schema_bytes.bytes();
        if !(1024..=16 * 1024 * 1024).contains(&bytes) {
            problems.push(ConfigProblem::new(
                join(path, "max-schema-bytes"),
                format!("must be between 1 KiB and 16 MiB, not {bytes} bytes"),
            ));
        }
        if self.max_versions_per_tenant == 0 {
            problems.push(ConfigProblem::new(
                join(path, "max-versions-per-tenant"),
                "must be at least 1",
            ));
        }
        if self.refresh_interval.get().is_zero() {
            problems.push(ConfigProblem::new(
                join(path, "refresh-interval"),
                "must be more than 0s",
            ));
        }
        if let Some(dir) = self.dir()
            && !dir.is_dir()
        {
            problems.push(ConfigProblem::new(
                join(path, "dir"),
                format!(
                    "{} is not a directory: create it with one folder per tenant holding <subject>.json or <subject>.avsc files, or leave dir out",
                    dir.display()
                ),
            ));
        }
    }
}
