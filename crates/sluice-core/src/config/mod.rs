//! Configuration primitives shared by every crate.
//!
//! Each crate defines the section of the config tree it owns (`kebab-case`,
//! `deny_unknown_fields`, no serde defaults: every default lives in the binary's embedded
//! `default.toml`) and implements [`Validate`] for the checks a type alone cannot express.
//! [`load`] assembles the tree from the defaults, a user file and `SLUICE__…` environment
//! variables and reports every problem at once, each with its path.

mod load;
mod units;

pub use load::{EnvVar, LoadedConfig, load};
pub use units::{ByteSize, HumanDuration};

use std::fmt;

/// One thing wrong with the configuration: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted path of the offending key (`limits.max-event-bytes`, `tenants[0].name`), or the
    /// source of the problem when it is not one key (a file, an environment variable).
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigProblem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// All problems found in one configuration, in the order they were found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigProblems(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        writeln!(
            f,
            "{count} problem{} in the configuration:",
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

/// Checks a config section cannot express in its types (ranges, relations between keys).
pub trait Validate {
    /// Pushes every problem found onto `problems`; `path` is this section's own path.
    fn validate(&self, path: &str, problems: &mut Vec<ConfigProblem>);
}

/// Joins a section path and a key: `join("limits", "max-depth")` is `limits.max-depth`.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}
