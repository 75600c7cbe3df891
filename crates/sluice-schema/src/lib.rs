//! The schema registry: subjects, versions and ids as Confluent's Schema Registry keeps them,
//! JSON Schema and Avro schemas, compatibility rules between versions, validation of events
//! at the collector, and the Confluent wire format of records on Kafka sources.
//!
//! This crate is pure: it holds no I/O. The store keeps the versions (`sluice-store`'s
//! `Schemas` role), the API serves Confluent's REST protocol over them (`sluice-api`), and the
//! collector asks a [`validate::Validators`] snapshot about every event (`sluice-ingest`).
//!
//! # Layout
//! - [`model`]: schema types, compatibility levels, a parsed schema.
//! - [`subject`]: what the registry stores (versions, per-subject settings) and how subjects
//!   name the events they describe.
//! - [`parse`]: a schema's text checked, bounded and parsed, and its canonical form.
//! - [`registry`]: one immutable snapshot of every version, and the registry's decisions
//!   over it (what a registration does, which level applies, lookups).
//! - [`compat`]: whether a new version is compatible with earlier ones, rule by rule.
//! - [`validate`]: compiled validators per tenant and event, and the violations they find.
//! - [`wire`]: Confluent's wire format (magic byte, schema id, payload) decoded to JSON.
//! - [`config`]: the `[schemas]` section.
//! - [`error`]: [`SchemaError`], with Confluent's error codes.

pub mod compat;
pub mod config;
pub mod error;
mod flat;
pub mod model;
pub mod parse;
pub mod registry;
pub mod subject;
pub mod validate;
pub mod wire;

pub use config::SchemasConfig;
pub use error::SchemaError;
pub use model::{Compatibility, ParsedSchema, SchemaType};
pub use registry::Registry;
pub use subject::{SchemaVersion, SubjectConfig, UnknownEvents, ValidationMode};
pub use validate::{SharedValidators, Validators, Violation};
