//! The admin API: every route needs an admin key (`admin-keys` in the config, or one made with
//! `POST /v1/admin/keys`) as `Authorization: Bearer KEY`.
//!
//! - [`dead_letters`]: `/v1/admin/dead-letters` — the latest events the collector refused.
//! - [`erasures`]: `DELETE /v1/users/{id}`, `/v1/admin/erasures` — erased users, whose events
//!   the collector drops.
//! - [`metrics`]: `/v1/admin/metrics` — define, list, describe, delete and replay metrics.
//! - [`tenants`]: `/v1/admin/tenants`, `/v1/admin/keys` — tenants, keys and their limits.

pub mod dead_letters;
pub mod erasures;
pub mod metrics;
pub mod tenants;
