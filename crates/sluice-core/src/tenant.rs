//! Tenants and their keys. Every event, metric and read belongs to exactly one tenant; a key
//! identifies its tenant and what it may do.

use crate::config::{ConfigProblem, Validate, join};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One `[[tenants]]` table in the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TenantConfig {
    /// Name, unique: lowercase letters, digits, `-` and `_`, at most 64 characters.
    pub name: String,
    /// Keys that may send events (HTTP Basic username or `writeKey` in the body).
    #[serde(default)]
    pub write_keys: Vec<String>,
    /// Keys that may read this tenant's metrics (`Authorization: Bearer …`).
    #[serde(default)]
    pub read_keys: Vec<String>,
    /// Requests per second each of its keys may make (unset: `[quotas]`'s; 0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
    /// Events per UTC day each of its write keys may send (unset: `[quotas]`'s; 0: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_per_day: Option<u64>,
}

/// Checks a tenant name: what the store and URLs can carry without quoting.
pub fn check_tenant_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid tenant name: use 1 to 64 lowercase letters, digits, '-' or '_'"
        ))
    }
}

/// The shortest key accepted: shorter keys are guessable.
pub const MIN_KEY_LEN: usize = 16;

/// Validates a list of tenants: names valid and unique, keys long enough and never shared.
pub fn validate_tenants(tenants: &[TenantConfig], path: &str, problems: &mut Vec<ConfigProblem>) {
    let mut names = HashMap::new();
    let mut keys: HashMap<&str, String> = HashMap::new();
    for (index, tenant) in tenants.iter().enumerate() {
        let here = format!("{path}[{index}]");
        if let Err(message) = check_tenant_name(&tenant.name) {
            problems.push(ConfigProblem::new(join(&here, "name"), message));
        }
        if let Some(first) = names.insert(tenant.name.as_str(), index) {
            problems.push(ConfigProblem::new(
                join(&here, "name"),
                format!(
                    "tenant {:?} is already defined at {path}[{first}]",
                    tenant.name
                ),
            ));
        }
        let all = [
            ("write-keys", &tenant.write_keys),
            ("read-keys", &tenant.read_keys),
        ];
        for (kind, list) in all {
            for (key_index, key) in list.iter().enumerate() {
                let at = format!("{}[{key_index}]", join(&here, kind));
                if key.len() < MIN_KEY_LEN || key.chars().any(|c| c.is_whitespace() || c == ':') {
                    problems.push(ConfigProblem::new(
                        at.clone(),
                        format!(
                            "keys must be at least {MIN_KEY_LEN} characters without spaces or ':'"
                        ),
                    ));
                }
                if let Some(first) = keys.insert(key.as_str(), at.clone()) {
                    problems.push(ConfigProblem::new(
                        at,
                        format!("the same key is already used at {first}"),
                    ));
                }
            }
        }
    }
}

impl Validate for Vec<TenantConfig> {
    fn validate(&self, path: &str, problems: &mut Vec<ConfigProblem>) {
        validate_tenants(self, path, problems);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str, write: &[&str]) -> TenantConfig {
        TenantConfig {
            name: name.into(),
            write_keys: write.iter().map(|k| k.to_string()).collect(),
            read_keys: vec![],
            requests_per_second: None,
            events_per_day: None,
        }
    }

    #[test]
    fn names_keys_and_duplicates_are_checked() {
        let tenants = vec![
            tenant("shop", &["wk_0123456789abcdef"]),
            tenant("Shop!", &["short"]),
            tenant("shop", &["wk_0123456789abcdef"]),
        ];
        let mut problems = Vec::new();
        validate_tenants(&tenants, "tenants", &mut problems);
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "tenants[1].name",
                "tenants[1].write-keys[0]",
                "tenants[2].name",
                "tenants[2].write-keys[0]"
            ]
        );
        assert!(
            problems[3]
                .message
                .contains("already used at tenants[0].write-keys[0]")
        );
    }
}
