//! The raw event archive: every accepted event of the `events` topic, as Parquet files in a
//! Hive layout that DuckDB, Spark, Trino and Athena read as they are, kept for as long as the
//! operator keeps the files (the log keeps a week).
//!
//! # Layout
//!
//! Under the archive's root (`[archive] url`, default `<data-dir>/archive`; in S3, under
//! `s3://bucket/prefix`, the same names as object keys, see [`target`]):
//!
//! ```text
//! events/tenant=<tenant>/date=YYYY-MM-DD/hour=HH/part-<partition>-<first offset>.parquet
//! _sluice/staged/<partition>/<epoch>/events/…
//! streams/<stream>/events/tenant=<tenant>/…       (and streams/<stream>/_sluice/…)
//! ```
//!
//! Date and hour are the event time's (`timestamp`, UTC). `<first offset>` is the first log
//! offset of the *batch* the file came from, 20 digits so names sort by offset; a batch writes
//! one file into each (tenant, hour) it has events of, so one name never holds two batches.
//! Files whose names start with `.` are being written; readers' `*.parquet` globs skip them.
//! Compaction merges an hour's small files of a partition into
//! `part-<partition>-<first offset>-<last file's first offset>.parquet` ([`compact`]).
//! `_sluice/staged/` holds files written but not yet published ([`publish`]); `_sluice/` also
//! holds forget's lease. Readers read `events/` only.
//!
//! A derived stream named in `[archive] streams` (`CREATE STREAM`, `SESSIONS` or `IDENTITY`)
//! is archived the same way into an archive of its own under `streams/<stream>/`, with its
//! own store pipeline (`archive/<stream>`): only the records its writers committed (read
//! inside the committed ranges, as its readers read it, skipping the orphans a crashed writer
//! left), with the same columns except that `received_at` may be null and `type` is the
//! record's own (`session`). It has no promoted columns.

//! # Columns
//!
//! One row per event, in log order. The tenant, date and hour are the directories' (Hive
//! partition columns are not repeated inside the files, which Athena requires):
//!
//! | column | type | |
//! |---|---|---|
//! | `log_partition`, `log_offset` | INT32, INT64 | where the event is in the log: (partition, offset) is unique (signed: Hive, Athena and Spark have no unsigned types) |
//! | `message_id`, `type` | string, not null | |
//! | `event`, `name`, `category`, `user_id`, `anonymous_id`, `group_id`, `previous_id` | string | |
//! | `timestamp`, `received_at` | TIMESTAMP(ms, UTC), not null | event time (skew-corrected), arrival |
//! | `sent_at`, `original_timestamp` | TIMESTAMP(ms, UTC) | as the client reported |
//! | `properties`, `traits`, `context`, `integrations`, `channel`, `version`, `metadata`, `schema_violations` | string | the JSON text as stored in the log (`metadata` is Segment's `_metadata`) |
//!
//! After these come the promoted columns configured for the tenant ([`promote`]): typed values
//! from inside `properties`, `traits` or `context`.
//!
//! Every field of the normalized event ([`sluice_core::event::Event`]) has a column, so an
//! event read back from the archive is the event that was in the log. Pages are zstd (level 1);
//! columns are dictionary-encoded but those whose values rarely repeat (`message_id`,
//! `log_offset`, the four times, `properties`).
//!
//! # Exactly once
//!
//! One archiver per partition of `events` owns the store pipeline `archive` for that partition
//! (claimed, so an older owner is fenced out). Its committed position is the first offset not
//! yet archived. It reads a *batch* `[start, end)` until the batch's events reach
//! `roll-bytes` or its first event was read `roll-age` ago, then ([`publish`]):
//!
//! 1. **stages** each file of the batch durably in its staging directory
//!    `_sluice/staged/<partition>/<epoch>/` (a temporary file, fsync, rename, fsync of the
//!    directory; in S3 a put, or a multipart upload for a large file);
//! 2. **commits** `end` as the position, with a note naming the files, in one store
//!    transaction fenced by its epoch;
//! 3. **publishes** them: each is moved to its name under `events/` (a rename and fsyncs; in
//!    S3 a server-side copy and a delete).
//!
//! Meanwhile it reads the next batch (from `end`), which is staged only after that publish.
//!
//! After a crash the partition's next owner claims it, publishes the last note again (moves
//! of files already moved are skipped), and deletes the staging directories of older epochs:
//! what a batch that was never committed staged. Archiving resumes from the committed
//! position, and that batch's events are staged again, perhaps cut into other batches. So a
//! committed offset's event is in exactly one published file and an uncommitted one in none:
//! no row is missing or doubled, and readers never see a row that is not committed. An owner
//! that was fenced out while it still ran (in a cluster, a node paused past the group's
//! session timeout) cannot commit, so nothing it stages is ever published.
//!
//! In a cluster (nodes sharing a Kafka log and a PostgreSQL store), each node archives the
//! partitions the consumer group gives its pipelines, and stops archiving those it loses;
//! the archive is one bucket (or one shared directory) that every node writes.

//! # Read back
//!
//! [`history`] reads the archive back as the `events` topic's history: the log's records a
//! replay needs from before the log's start, in offset order, as the log held them.

pub mod compact;
pub mod config;
pub mod forget;
pub mod format;
pub mod history;
pub mod layout;
pub mod promote;
pub mod publish;
pub mod retention;
pub mod scan;
pub mod sink;
pub mod target;

pub use config::{ArchiveConfig, Location};
pub use sink::{Archive, ArchiveError, Archived, Partitions};
