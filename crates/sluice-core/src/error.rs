//! How an error is classified, so every layer can answer it the same way: a user error becomes
//! a 4xx response or exit code 2, an external error is retried with backoff, an internal error is
//! a bug or a broken invariant that is logged loudly.

/// Who has to act on an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The input or configuration was wrong; the message says how to fix it.
    User,
    /// Something outside sluice failed (disk, network, a dependency); retrying may help.
    External,
    /// A bug or a broken invariant inside sluice.
    Internal,
}

/// Implemented by every crate's error type.
pub trait Classify {
    /// Who has to act on this error.
    fn class(&self) -> ErrorClass;
}
