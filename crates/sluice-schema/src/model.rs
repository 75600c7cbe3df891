//! What the registry holds, as plain values: schema types, compatibility levels, and a schema
//! parsed once from its text.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The language a schema is written in (Confluent's `schemaType`; absent means Avro).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    /// Apache Avro, Confluent's default.
    #[default]
    Avro,
    /// JSON Schema (draft 2020-12 unless the schema's `$schema` names another draft).
    Json,
}

impl SchemaType {
    /// The name Confluent's API uses (`AVRO`, `JSON`).
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Json => "JSON",
        }
    }
}

impl fmt::Display for SchemaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SchemaType {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_uppercase().as_str() {
            "AVRO" => Ok(SchemaType::Avro),
            "JSON" => Ok(SchemaType::Json),
            _ => Err(format!(
                "schemaType {text:?} is not supported: use \"JSON\" or \"AVRO\""
            )),
        }
    }
}

/// A compatibility level: which earlier versions of a subject a new version is checked
/// against, and in which direction.
///
/// - **Backward**: readers using the new schema can read data written with the old one
///   (for JSON Schema: every document the old schema accepts, the new one accepts).
/// - **Forward**: readers using the old schema can read data written with the new one.
/// - **Full**: both.
///
/// The plain forms compare with the latest version only; the `_TRANSITIVE` forms with every
/// version still registered. `NONE` checks nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compatibility {
    /// No check.
    None,
    /// The new version reads data of the latest (the default, as in Confluent's registry).
    #[default]
    Backward,
    /// The new version reads data of every earlier version.
    BackwardTransitive,
    /// The latest version reads data of the new one.
    Forward,
    /// Every earlier version reads data of the new one.
    ForwardTransitive,
    /// Backward and forward with the latest version.
    Full,
    /// Backward and forward with every earlier version.
    FullTransitive,
}

impl Compatibility {
    /// Every level, for error messages.
    pub const ALL: [Compatibility; 7] = [
        Compatibility::None,
        Compatibility::Backward,
        Compatibility::BackwardTransitive,
        Compatibility::Forward,
        Compatibility::ForwardTransitive,
        Compatibility::Full,
        Compatibility::FullTransitive,
    ];

    /// The name Confluent's API uses (`BACKWARD_TRANSITIVE`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Compatibility::None => "NONE",
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardTransitive => "FORWARD_TRANSITIVE",
            Compatibility::Full => "FULL",
            Compatibility::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Whether the new version must read the data of the versions it is compared with.
    pub fn backward(self) -> bool {
        matches!(
            self,
            Compatibility::Backward
                | Compatibility::BackwardTransitive
                | Compatibility::Full
                | Compatibility::FullTransitive
        )
    }

    /// Whether the versions it is compared with must read the new version's data.
    pub fn forward(self) -> bool {
        matches!(
            self,
            Compatibility::Forward
                | Compatibility::ForwardTransitive
                | Compatibility::Full
                | Compatibility::FullTransitive
        )
    }

    /// Whether every earlier version is compared, not only the latest.
    pub fn transitive(self) -> bool {
        matches!(
            self,
            Compatibility::BackwardTransitive
                | Compatibility::ForwardTransitive
                | Compatibility::FullTransitive
        )
    }
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compatibility {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Compatibility::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                let names: Vec<&str> = Compatibility::ALL.iter().map(|l| l.as_str()).collect();
                format!(
                    "{text:?} is not a compatibility level: use one of {}",
                    names.join(", ")
                )
            })
    }
}

/// A schema parsed from its text, in its language's own model.
#[derive(Debug, Clone)]
pub enum ParsedSchema {
    /// An Avro schema.
    Avro(apache_avro::Schema),
    /// A JSON Schema document.
    Json(serde_json::Value),
}

impl ParsedSchema {
    /// The language of the schema.
    pub fn schema_type(&self) -> SchemaType {
        match self {
            ParsedSchema::Avro(_) => SchemaType::Avro,
            ParsedSchema::Json(_) => SchemaType::Json,
        }
    }
}
