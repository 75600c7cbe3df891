//! Compatibility checks: may a new version of a subject's schema be registered after its
//! earlier versions, under the subject's [`Compatibility`] level?
//!
//! # Rules
//!
//! - **Which versions.** The latest earlier version only, or every earlier version when the
//!   level is `_TRANSITIVE`; nothing at all under `NONE`.
//! - **Which directions.** *Backward*: the new schema reads what the earlier one wrote.
//!   *Forward*: the earlier schema reads what the new one writes. `FULL` checks both.
//! - **Avro** ([`avro`]): Avro schema resolution, writer = the schema that wrote the data,
//!   reader = the one reading it, through `apache_avro::schema_compatibility`.
//! - **JSON Schema** ([`json`]): the set of documents the writing schema accepts must be a
//!   subset of what the reading schema accepts. One function, `subset_problems(narrow, wide)`,
//!   is called with (old, new) for backward and (new, old) for forward, exactly as Confluent
//!   runs its JSON Schema diff with the roles swapped.
//! - **Different languages** (an Avro version after a JSON one or the reverse) are always
//!   incompatible: rule `SCHEMA_TYPE_CHANGED`.
//! - **Every problem is reported**, in version order (oldest first), backward before forward
//!   for one version, so a user can fix them all in one go.
//!
//! Rule names follow Confluent's where one exists (see [`json`] and [`avro`] for the tables).

pub mod avro;
pub mod json;

use crate::model::{Compatibility, ParsedSchema};
use std::fmt;

/// One way a new schema breaks compatibility with an earlier version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// The earlier version compared with.
    pub version: u32,
    /// The rule broken, in Confluent's naming where one exists (e.g.
    /// `PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL`, `TYPE_NARROWED`,
    /// `READER_FIELD_MISSING_DEFAULT_VALUE`, `MISSING_UNION_BRANCH`).
    pub rule: &'static str,
    /// Where, as a JSON pointer into the schema (`#/properties/revenue`) or an Avro path
    /// (`/fields/2/type`).
    pub path: String,
    /// What changed and how to fix it, in one sentence.
    pub message: String,
    /// `"backward"` when the new schema cannot read data of that version, `"forward"` when that
    /// version cannot read the new schema's data.
    pub direction: &'static str,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {} ({} with version {}): {}",
            self.rule, self.path, self.direction, self.version, self.message
        )
    }
}

/// The direction named in [`Incompatibility::direction`] when the new schema cannot read data
/// of an earlier version.
pub const BACKWARD: &str = "backward";
/// The direction named in [`Incompatibility::direction`] when an earlier version cannot read the
/// new schema's data.
pub const FORWARD: &str = "forward";

/// The rule reported when a subject changes schema language between versions.
pub const SCHEMA_TYPE_CHANGED: &str = "SCHEMA_TYPE_CHANGED";

/// One problem found by a language's checker, before it is tied to a version and direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) rule: &'static str,
    pub(crate) path: String,
    pub(crate) message: String,
}

/// How messages name the schema that wrote the data and the one reading it ("the new schema",
/// "version 3").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Roles {
    pub(crate) writer: String,
    pub(crate) reader: String,
}

/// Every incompatibility of `new` with the `previous` versions (oldest first, each with its
/// version number) at `level`: the latest one only unless `level.transitive()`; nothing for
/// [`Compatibility::None`]; backward and/or forward per `level`. Schemas of different types are
/// incompatible (rule [`SCHEMA_TYPE_CHANGED`]).
pub fn check(
    level: Compatibility,
    new: &ParsedSchema,
    previous: &[(u32, &ParsedSchema)],
) -> Vec<Incompatibility> {
    let compared = if level.transitive() {
        previous
    } else {
        previous
            .last()
            .map(std::slice::from_ref)
            .unwrap_or_default()
    };
    let mut found = Vec::new();
    for &(version, old) in compared {
        if level.backward() {
            let problems = reads(new, old, version, BACKWARD);
            found.extend(tag(problems, version, BACKWARD));
        }
        if level.forward() {
            let problems = reads(old, new, version, FORWARD);
            found.extend(tag(problems, version, FORWARD));
        }
    }
    found
}

/// Every reason `reader` cannot read what `writer` wrote.
fn reads(
    reader: &ParsedSchema,
    writer: &ParsedSchema,
    version: u32,
    direction: &str,
) -> Vec<Problem> {
    let version_name = format!("version {version}");
    let roles = if direction == BACKWARD {
        Roles {
            writer: version_name,
            reader: "the new schema".to_string(),
        }
    } else {
        Roles {
            writer: "the new schema".to_string(),
            reader: version_name,
        }
    };
    match (reader, writer) {
        (ParsedSchema::Avro(reader), ParsedSchema::Avro(writer)) => {
            avro::problems(writer, reader, &roles)
        }
        (ParsedSchema::Json(reader), ParsedSchema::Json(writer)) => {
            json::subset_problems(writer, reader, &roles)
        }
        _ => {
            let (new, old) = if direction == BACKWARD {
                (reader, writer)
            } else {
                (writer, reader)
            };
            vec![Problem {
                rule: SCHEMA_TYPE_CHANGED,
                path: "#".to_string(),
                message: format!(
                    "the new schema is {} but version {version} is {}: register it under a new \
                     subject, or set the subject's compatibility to NONE",
                    new.schema_type(),
                    old.schema_type()
                ),
            }]
        }
    }
}

fn tag(
    problems: Vec<Problem>,
    version: u32,
    direction: &'static str,
) -> impl Iterator<Item = Incompatibility> {
    problems.into_iter().map(move |problem| Incompatibility {
        version,
        rule: problem.rule,
        path: problem.path,
        message: problem.message,
        direction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn json_schema(value: serde_json::Value) -> ParsedSchema {
        ParsedSchema::Json(value)
    }

    fn avro(text: &str) -> ParsedSchema {
        ParsedSchema::Avro(apache_avro::Schema::parse_str(text).expect("test schema parses"))
    }

    /// (version, rule, direction) of each incompatibility.
    fn summary(found: &[Incompatibility]) -> Vec<(u32, &'static str, &'static str)> {
        found
            .iter()
            .map(|i| (i.version, i.rule, i.direction))
            .collect()
    }

    /// v1 has `f: string`; v2 drops it; v3 brings it back as `int` with a default. Each step is
    /// backward compatible, v1 → v3 is not (a v3 reader cannot read v1's string `f`).
    fn avro_chain() -> [ParsedSchema; 3] {
        let record = |fields: &str| {
            avro(&format!(
                r#"{{"type":"record","name":"E","fields":[{{"name":"id","type":"long"}}{fields}]}}"#
            ))
        };
        [
            record(r#",{"name":"f","type":"string"}"#),
            record(""),
            record(r#",{"name":"f","type":"int","default":0}"#),
        ]
    }

    #[test]
    fn none_checks_nothing() {
        let old = json_schema(json!({"type": "string"}));
        let new = avro(r#""string""#);
        assert_eq!(check(Compatibility::None, &new, &[(1, &old)]), Vec::new());
    }

    #[test]
    fn backward_compares_with_the_latest_only_and_transitive_with_all() {
        let [v1, v2, v3] = avro_chain();
        assert_eq!(check(Compatibility::Backward, &v2, &[(1, &v1)]), Vec::new());
        assert_eq!(
            check(Compatibility::Backward, &v3, &[(1, &v1), (2, &v2)]),
            Vec::new()
        );
        let found = check(
            Compatibility::BackwardTransitive,
            &v3,
            &[(1, &v1), (2, &v2)],
        );
        assert_eq!(summary(&found), vec![(1, "TYPE_MISMATCH", BACKWARD)]);
        assert_eq!(found[0].path, "/fields/1/type");
    }

    #[test]
    fn forward_transitive_compares_with_every_version() {
        // Reversed chain: v3 → v1 is forward compatible step by step only.
        let [a, b, c] = avro_chain();
        let (v1, v2, v3) = (c, b, a);
        assert_eq!(
            check(Compatibility::Forward, &v3, &[(1, &v1), (2, &v2)]),
            Vec::new()
        );
        let found = check(Compatibility::ForwardTransitive, &v3, &[(1, &v1), (2, &v2)]);
        assert_eq!(summary(&found), vec![(1, "TYPE_MISMATCH", FORWARD)]);
    }

    #[test]
    fn full_checks_both_directions_and_full_transitive_every_version() {
        let v1 = json_schema(json!({"type": "string", "maxLength": 5}));
        let v2 = json_schema(json!({"type": "string"}));
        let v3 = json_schema(json!({"type": "string", "description": "unchanged"}));
        assert_eq!(
            check(Compatibility::Full, &v3, &[(1, &v1), (2, &v2)]),
            Vec::new()
        );
        let found = check(Compatibility::FullTransitive, &v3, &[(1, &v1), (2, &v2)]);
        assert_eq!(summary(&found), vec![(1, "MAX_LENGTH_ADDED", FORWARD)]);
        assert_eq!(found[0].path, "#/maxLength");
        // Full with the latest: narrowing breaks forward, widening breaks backward.
        let narrower = json_schema(json!({"type": "string", "maxLength": 3}));
        let found = check(Compatibility::Full, &narrower, &[(1, &v2)]);
        assert_eq!(summary(&found), vec![(1, "MAX_LENGTH_ADDED", BACKWARD)]);
        let found = check(Compatibility::Full, &v2, &[(1, &narrower)]);
        assert_eq!(summary(&found), vec![(1, "MAX_LENGTH_ADDED", FORWARD)]);
    }

    #[test]
    fn changing_the_schema_language_is_incompatible_both_ways() {
        let old = json_schema(json!({"type": "string"}));
        let new = avro(r#""string""#);
        let found = check(Compatibility::Full, &new, &[(4, &old)]);
        assert_eq!(
            summary(&found),
            vec![
                (4, SCHEMA_TYPE_CHANGED, BACKWARD),
                (4, SCHEMA_TYPE_CHANGED, FORWARD)
            ]
        );
        assert!(
            found[0]
                .message
                .contains("the new schema is AVRO but version 4 is JSON"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn problems_are_listed_oldest_version_first_and_display_reads_well() {
        let v1 = json_schema(json!({"type": "integer"}));
        let v2 = json_schema(json!({"type": "number"}));
        let new = json_schema(json!({"type": "string"}));
        let found = check(
            Compatibility::BackwardTransitive,
            &new,
            &[(1, &v1), (2, &v2)],
        );
        assert_eq!(
            summary(&found),
            vec![(1, "TYPE_CHANGED", BACKWARD), (2, "TYPE_CHANGED", BACKWARD)]
        );
        let text = found[1].to_string();
        assert!(
            text.starts_with("TYPE_CHANGED at # (backward with version 2): "),
            "{text}"
        );
        assert!(
            text.contains("the new schema no longer accepts number"),
            "{text}"
        );
    }
}
