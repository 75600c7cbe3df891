//! The event model shared by every stage of sluice, and the primitives every crate's
//! configuration is built from. Pure code: no I/O, no async runtime.
//!
//! # Layout
//! - [`segment`]: the Segment HTTP Tracking API request shapes (track, page, screen, identify,
//!   group, alias, batch) as borrowed, zero-copy views of the request body.
//! - [`normalize`]: turns one Segment message into an [`Event`], enforcing [`Limits`] and
//!   correcting the client's clock skew; every rejection is an [`EventError`] with a field path.
//! - [`event`]: the normalized [`Event`] as it is stored in the `events` topic.
//! - [`json`]: fast scans of raw JSON (nesting depth, string lengths).
//! - [`time`]: event-time parsing and formatting (milliseconds since the Unix epoch).
//! - [`id`]: generated, time-ordered message ids.
//! - [`config`]: the config problem type, size and duration newtypes, and config loading
//!   (embedded defaults, a file, `SLUICE__…` environment overrides, every problem at once).
//! - [`tenant`]: tenants as configured.
//! - [`access`]: the key directory: key → tenant and role, request rates and daily quotas.
//! - [`erasure`]: the ids of erased users, whose events the collector drops.
//! - `synthetic` (feature `synthetic`): realistic synthetic events for benchmarks and demos.
//! - [`error`]: the classification every crate's error maps to (user, external, internal).

pub mod access;
pub mod config;
pub mod erasure;
pub mod error;
pub mod event;
pub mod id;
pub mod json;
pub mod limits;
pub mod normalize;
pub mod segment;
#[cfg(feature = "synthetic")]
pub mod synthetic;
pub mod tenant;
pub mod time;

pub use error::ErrorClass;
pub use event::{Event, EventType};
pub use limits::Limits;
pub use normalize::{EventError, EventErrorKind, NormalizeContext};
