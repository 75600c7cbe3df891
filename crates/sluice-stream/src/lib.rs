//! The stream engine: metrics defined in a small SQL dialect, computed continuously over
//! event-time windows of the `events` topic, as mergeable partial aggregates per partition.
//!
//! A metric (`CREATE METRIC name AS SELECT … FROM events WHERE … GROUP BY keys, window
//! WITH (…)`) is parsed into a typed [`plan::MetricPlan`]. Each source partition has one
//! [`engine::Processor`] holding every running metric's open windows; a
//! [`task::run_partition`] task feeds it record batches read from the log, interleaved with
//! control messages (ticks, checkpoint barriers, metric changes), and delivers what it
//! produces: window updates, late events, checkpoint snapshots. Results of different
//! partitions are partial states that merge exactly at query time: there is no shuffle.
//!
//! # Layout
//! - [`sql`]: the dialect → [`plan`]; errors carry line and column.
//! - [`plan`]: the typed plan (fields, expressions, aggregates, window, lateness).
//! - [`json`]: single-pass extraction of only the needed fields from an event's JSON.
//! - [`value`]: the value of a field or expression while an event is evaluated.
//! - [`eval`]: compiled expressions, typing rules, aggregate inputs.
//! - [`keys`]: the canonical encoding of (tenant, group key values).
//! - [`decimal`]: exact decimals for sums, minimums, maximums and averages.
//! - [`agg`]: partial states (count, sum, min, max, avg, HyperLogLog, DDSketch) and their
//!   versioned binary encoding.
//! - [`window`]: window assignment (tumbling, hopping, session), pure.
//! - [`watermark`]: a partition's event-time clock, idleness, watermarks.
//! - [`engine`]: the per-partition processor, its window table, outputs, checkpoints.
//! - [`render`]: keys and values as JSON text, as every reader of results shows them.
//! - [`alert`]: alert rules over a metric's windows: parsed, checked, evaluated per key, pure.
//! - [`task`]: the partition task over the `Log` trait (the only async, I/O code).
//! - [`config`]: the `[stream]` configuration section.
//! - `oracle` (feature `testing`): a brute-force reference evaluator the tests compare with.
//! - [`error`]: the crate's error type, [`StreamError`].

pub mod agg;
pub mod alert;
pub mod config;
pub mod decimal;
pub mod engine;
pub mod error;
pub mod eval;
pub mod identity;
pub mod json;
pub mod keys;
#[cfg(feature = "testing")]
pub mod oracle;
pub mod plan;
pub mod render;
pub mod sessions;
pub mod sql;
pub mod task;
pub mod value;
pub mod watermark;
pub mod window;

pub use error::{SqlError, StreamError};
