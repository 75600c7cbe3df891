//! The serving layer: what users and operators call to manage and read metrics.
//!
//! # Layout
//! - [`admin`]: `/v1/admin/metrics` — define, list, describe, delete and replay metrics.
//! - [`auth`]: bearer keys.
//! - [`error`]: JSON error answers.

pub mod admin;
pub mod auth;
pub mod error;

pub use error::ApiError;
