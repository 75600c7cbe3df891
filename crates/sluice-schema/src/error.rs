//! [`SchemaError`]: every way a registry request can fail, with the HTTP status and the error
//! code Confluent's Schema Registry answers, so its clients react as they do against it.

use crate::compat::Incompatibility;

/// A registry request that cannot be done, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The subject has no version (or only soft-deleted ones the request did not ask for).
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    /// The subject has no such version.
    #[error("Version {version} not found for subject '{subject}'.")]
    VersionNotFound { subject: String, version: String },
    /// No schema with this id, or this schema is not registered under the subject.
    #[error("{0}")]
    SchemaNotFound(String),
    /// A permanent delete of a subject that was not soft-deleted first.
    #[error(
        "Subject '{0}' was not deleted first before being permanently deleted: delete it without permanent=true first"
    )]
    SubjectNotSoftDeleted(String),
    /// A permanent delete of a version that was not soft-deleted first.
    #[error(
        "Version {version} of subject '{subject}' was not deleted first before being permanently deleted: delete it without permanent=true first"
    )]
    VersionNotSoftDeleted { subject: String, version: u32 },
    /// The subject has no compatibility level of its own.
    #[error(
        "Subject '{0}' does not have subject-level compatibility configured: GET /config/{{subject}}?defaultToGlobal=true gives the level that applies"
    )]
    SubjectLevelNotConfigured(String),
    /// The new schema breaks the subject's compatibility level.
    #[error(
        "Schema being registered is incompatible with an earlier schema for subject '{subject}' under {level}: {}",
        problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Incompatible {
        subject: String,
        level: String,
        problems: Vec<Incompatibility>,
    },
    /// The schema text is not a valid schema of its type.
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    /// A version that is neither a positive number nor `latest`.
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    /// A compatibility level, validation mode or other setting that is not one of its values.
    #[error("{0}")]
    InvalidConfig(String),
    /// A request body that is not what the endpoint takes.
    #[error("{0}")]
    InvalidRequest(String),
    /// The schema text is over the registry's size limit.
    #[error("the schema is {size} bytes, over the limit of {limit} (schemas.max-schema-bytes)")]
    TooLarge { size: usize, limit: usize },
    /// The key may not do this (or no key was given).
    #[error("{0}")]
    Unauthorized(String),
    /// The key is valid but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The key's request rate is spent.
    #[error("{0}")]
    Limited(String),
    /// The store did not answer; nothing changed. Retry.
    #[error("the schema store is unavailable: {0}; retry shortly")]
    Unavailable(String),
    /// Something that should not happen.
    #[error("internal registry error: {0}")]
    Internal(String),
}

impl SchemaError {
    /// The HTTP status Confluent's registry answers with.
    pub fn status(&self) -> u16 {
        match self {
            SchemaError::SubjectNotFound(_)
            | SchemaError::VersionNotFound { .. }
            | SchemaError::SchemaNotFound(_)
            | SchemaError::SubjectNotSoftDeleted(_)
            | SchemaError::VersionNotSoftDeleted { .. }
            | SchemaError::SubjectLevelNotConfigured(_) => 404,
            SchemaError::Incompatible { .. } => 409,
            SchemaError::InvalidSchema(_)
            | SchemaError::InvalidVersion(_)
            | SchemaError::InvalidConfig(_)
            | SchemaError::InvalidRequest(_) => 422,
            SchemaError::TooLarge { .. } => 413,
            SchemaError::Unauthorized(_) => 401,
            SchemaError::Forbidden(_) => 403,
            SchemaError::Limited(_) => 429,
            SchemaError::Unavailable(_) => 503,
            SchemaError::Internal(_) => 500,
        }
    }

    /// Confluent's `error_code` for the body.
    pub fn code(&self) -> u32 {
        match self {
            SchemaError::SubjectNotFound(_) => 40401,
            SchemaError::VersionNotFound { .. } => 40402,
            SchemaError::SchemaNotFound(_) => 40403,
            SchemaError::SubjectNotSoftDeleted(_) => 40405,
            SchemaError::VersionNotSoftDeleted { .. } => 40407,
            SchemaError::SubjectLevelNotConfigured(_) => 40408,
            SchemaError::Incompatible { .. } => 409,
            SchemaError::InvalidSchema(_) => 42201,
            SchemaError::InvalidVersion(_) => 42202,
            SchemaError::InvalidConfig(_) => 42203,
            SchemaError::InvalidRequest(_) => 422,
            SchemaError::TooLarge { .. } => 413,
            SchemaError::Unauthorized(_) => 40101,
            SchemaError::Forbidden(_) => 40301,
            SchemaError::Limited(_) => 42901,
            SchemaError::Unavailable(_) => 50001,
            SchemaError::Internal(_) => 50001,
        }
    }
}
