//! [`Registry`]: one immutable snapshot of every stored version and setting, and the
//! registry's decisions over it. The API answers reads from the snapshot; a write is decided
//! here, done by the store (which refuses it if the subject changed meanwhile), and followed
//! by a new snapshot.
//!
//! **Registering** (Confluent's rules):
//! 1. the schema is parsed and checked ([`crate::parse`]);
//! 2. if a live version of the subject has the same type and canonical text, that version is
//!    the answer (registering is idempotent);
//! 3. otherwise it is checked against the subject's live versions at the level that applies
//!    (the subject's, else the tenant's, else `schemas.compatibility`): 409 with every broken
//!    rule if it is not compatible;
//! 4. it becomes the next version (after the highest ever used, soft-deleted ones included),
//!    with the id of the same schema elsewhere in the tenant, or a new id.

use crate::compat::{self, Incompatibility};
use crate::error::SchemaError;
use crate::model::{Compatibility, ParsedSchema, SchemaType};
use crate::parse::{self, Checked};
use crate::subject::{SchemaVersion, SubjectConfig};
use std::collections::{BTreeMap, HashMap};

/// A version as a request names it: a number, or the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionRef {
    /// The highest live version.
    Latest,
    /// This version.
    Number(u32),
}

impl VersionRef {
    /// Parses Confluent's version syntax: `latest`, `-1` (also latest) or 1..2^31-1.
    pub fn parse(text: &str) -> Result<Self, SchemaError> {
        match text {
            "latest" | "-1" => Ok(VersionRef::Latest),
            _ => match text.parse::<u32>() {
                Ok(number) if (1..=i32::MAX as u32).contains(&number) => {
                    Ok(VersionRef::Number(number))
                }
                _ => Err(SchemaError::InvalidVersion(text.to_owned())),
            },
        }
    }
}

/// What registering a schema under a subject comes to.
#[derive(Debug, Clone)]
pub enum Registration {
    /// The subject already has it live: this version is the answer.
    Existing(SchemaVersion),
    /// A new version: the store appends it if the subject's highest version is still
    /// `expected_latest` (with the id of the same schema elsewhere in the tenant, or a new one).
    New {
        /// The subject's highest version ever (soft-deleted ones included) when decided.
        expected_latest: Option<u32>,
        /// The schema's canonical text.
        canonical: String,
    },
}

/// Every version and setting, indexed.
#[derive(Debug, Default)]
pub struct Registry {
    /// By tenant, then subject: versions in ascending order.
    subjects: BTreeMap<String, BTreeMap<String, Vec<SchemaVersion>>>,
    /// Schema id → (tenant, subject, version) of its first registration.
    ids: HashMap<u32, (String, String, u32)>,
    settings: HashMap<(String, String), SubjectConfig>,
    default_compatibility: Compatibility,
}

impl Registry {
    /// Indexes what the store holds.
    pub fn new(
        versions: Vec<SchemaVersion>,
        settings: Vec<SubjectConfig>,
        default_compatibility: Compatibility,
    ) -> Self {
        let mut registry = Registry {
            default_compatibility,
            ..Registry::default()
        };
        for version in versions {
            registry.ids.entry(version.id).or_insert_with(|| {
                (
                    version.tenant.clone(),
                    version.subject.clone(),
                    version.version,
                )
            });
            registry
                .subjects
                .entry(version.tenant.clone())
                .or_default()
                .entry(version.subject.clone())
                .or_default()
                .push(version);
        }
        for versions in registry.subjects.values_mut().flat_map(|s| s.values_mut()) {
            versions.sort_by_key(|v| v.version);
        }
        for setting in settings {
            registry.subjects.entry(setting.tenant.clone()).or_default();
            registry
                .settings
                .insert((setting.tenant.clone(), setting.subject.clone()), setting);
        }
        registry
    }

    /// Every tenant with a version or a setting.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.subjects.keys().map(String::as_str)
    }

    /// A tenant's subjects with a live version (or any version, with `deleted`), sorted.
    pub fn subjects(&self, tenant: &str, deleted: bool) -> Vec<&str> {
        self.subjects
            .get(tenant)
            .into_iter()
            .flatten()
            .filter(|(_, versions)| versions.iter().any(|v| deleted || !v.deleted))
            .map(|(subject, _)| subject.as_str())
            .collect()
    }

    fn all_versions(&self, tenant: &str, subject: &str) -> &[SchemaVersion] {
        self.subjects
            .get(tenant)
            .and_then(|subjects| subjects.get(subject))
            .map_or(&[], Vec::as_slice)
    }

    fn live(&self, tenant: &str, subject: &str) -> impl Iterator<Item = &SchemaVersion> {
        self.all_versions(tenant, subject)
            .iter()
            .filter(|v| !v.deleted)
    }

    /// The subject's version numbers (live, or all with `deleted`); 40401 if it has none.
    pub fn versions(
        &self,
        tenant: &str,
        subject: &str,
        deleted: bool,
    ) -> Result<Vec<u32>, SchemaError> {
        let numbers: Vec<u32> = self
            .all_versions(tenant, subject)
            .iter()
            .filter(|v| deleted || !v.deleted)
            .map(|v| v.version)
            .collect();
        if numbers.is_empty() {
            return Err(SchemaError::SubjectNotFound(subject.to_owned()));
        }
        Ok(numbers)
    }

    /// The subject's latest live version.
    pub fn latest(&self, tenant: &str, subject: &str) -> Option<&SchemaVersion> {
        self.live(tenant, subject).last()
    }

    /// One version of a subject (a soft-deleted one only with `deleted`).
    pub fn version(
        &self,
        tenant: &str,
        subject: &str,
        version: VersionRef,
        deleted: bool,
    ) -> Result<&SchemaVersion, SchemaError> {
        let all = self.all_versions(tenant, subject);
        if !all.iter().any(|v| deleted || !v.deleted) {
            return Err(SchemaError::SubjectNotFound(subject.to_owned()));
        }
        let found = match version {
            VersionRef::Latest => all.iter().rev().find(|v| deleted || !v.deleted),
            VersionRef::Number(number) => all
                .iter()
                .find(|v| v.version == number && (deleted || !v.deleted)),
        };
        found.ok_or_else(|| SchemaError::VersionNotFound {
            subject: subject.to_owned(),
            version: match version {
                VersionRef::Latest => "latest".to_owned(),
                VersionRef::Number(n) => n.to_string(),
            },
        })
    }

    /// The schema with this id, if `tenant` has it (`None`: any tenant, for Kafka sources).
    pub fn by_id(&self, tenant: Option<&str>, id: u32) -> Result<&SchemaVersion, SchemaError> {
        let not_found = || SchemaError::SchemaNotFound(format!("Schema {id} not found"));
        let (owner, subject, version) = self.ids.get(&id).ok_or_else(not_found)?;
        if tenant.is_some_and(|tenant| tenant != owner) {
            return Err(not_found());
        }
        self.all_versions(owner, subject)
            .iter()
            .find(|v| v.version == *version)
            .ok_or_else(not_found)
    }

    /// Every (subject, version) of `tenant` that holds schema `id`.
    pub fn uses_of(&self, tenant: &str, id: u32, deleted: bool) -> Vec<(&str, u32)> {
        self.subjects
            .get(tenant)
            .into_iter()
            .flatten()
            .flat_map(|(subject, versions)| {
                versions
                    .iter()
                    .filter(move |v| v.id == id && (deleted || !v.deleted))
                    .map(move |v| (subject.as_str(), v.version))
            })
            .collect()
    }

    /// The version of `subject` holding this schema (Confluent's lookup).
    pub fn lookup(
        &self,
        tenant: &str,
        subject: &str,
        kind: SchemaType,
        checked: &Checked,
        deleted: bool,
    ) -> Result<&SchemaVersion, SchemaError> {
        if !self
            .all_versions(tenant, subject)
            .iter()
            .any(|v| deleted || !v.deleted)
        {
            return Err(SchemaError::SubjectNotFound(subject.to_owned()));
        }
        self.all_versions(tenant, subject)
            .iter()
            .rev()
            .find(|v| {
                (deleted || !v.deleted) && v.schema_type == kind && v.schema == checked.canonical
            })
            .ok_or_else(|| SchemaError::SchemaNotFound("Schema not found".to_owned()))
    }

    /// The tenant's own settings (empty when it has none).
    pub fn tenant_settings(&self, tenant: &str) -> SubjectConfig {
        self.settings
            .get(&(tenant.to_owned(), String::new()))
            .cloned()
            .unwrap_or_else(|| SubjectConfig {
                tenant: tenant.to_owned(),
                ..SubjectConfig::default()
            })
    }

    /// A subject's own settings, if it has any.
    pub fn subject_settings(&self, tenant: &str, subject: &str) -> Option<&SubjectConfig> {
        self.settings.get(&(tenant.to_owned(), subject.to_owned()))
    }

    /// The tenant's compatibility level (its own, else the config's).
    pub fn tenant_compatibility(&self, tenant: &str) -> Compatibility {
        self.tenant_settings(tenant)
            .compatibility
            .unwrap_or(self.default_compatibility)
    }

    /// The level a new version of `subject` is checked at.
    pub fn compatibility(&self, tenant: &str, subject: &str) -> Compatibility {
        self.subject_settings(tenant, subject)
            .and_then(|s| s.compatibility)
            .unwrap_or_else(|| self.tenant_compatibility(tenant))
    }

    /// What registering `checked` under `subject` does, or why it may not.
    pub fn register(
        &self,
        tenant: &str,
        subject: &str,
        kind: SchemaType,
        checked: &Checked,
    ) -> Result<Registration, SchemaError> {
        if let Some(existing) = self
            .live(tenant, subject)
            .find(|v| v.schema_type == kind && v.schema == checked.canonical)
        {
            return Ok(Registration::Existing(existing.clone()));
        }
        let level = self.compatibility(tenant, subject);
        let problems = self.check(tenant, subject, level, &checked.parsed, None)?;
        if !problems.is_empty() {
            return Err(SchemaError::Incompatible {
                subject: subject.to_owned(),
                level: level.to_string(),
                problems,
            });
        }
        Ok(Registration::New {
            expected_latest: self.all_versions(tenant, subject).last().map(|v| v.version),
            canonical: checked.canonical.clone(),
        })
    }

    /// The incompatibilities of `new` with the subject's live versions at `level` — with one
    /// version only when `against` names it.
    pub fn check(
        &self,
        tenant: &str,
        subject: &str,
        level: Compatibility,
        new: &ParsedSchema,
        against: Option<u32>,
    ) -> Result<Vec<Incompatibility>, SchemaError> {
        let mut previous = Vec::new();
        for version in self.live(tenant, subject) {
            if against.is_some_and(|number| number != version.version) {
                continue;
            }
            let parsed = parse::parse(version.schema_type, &version.schema, usize::MAX).map_err(
                |error| {
                    SchemaError::Internal(format!(
                        "stored version {} of {subject:?} does not parse: {error}",
                        version.version
                    ))
                },
            )?;
            previous.push((version.version, parsed.parsed));
        }
        let previous: Vec<(u32, &ParsedSchema)> = previous.iter().map(|(v, p)| (*v, p)).collect();
        Ok(compat::check(level, new, &previous))
    }
}
