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
//! _sluice/pending-<partition>.json
//! ```
//!
//! Date and hour are the event time's (`timestamp`, UTC). `<first offset>` is the first log
//! offset of the *batch* the file came from, 20 digits so names sort by offset; a batch writes
//! one file into each (tenant, hour) it has events of, so one name never holds two batches.
//! Files whose names start with `.` are being written; readers' `*.parquet` globs skip them.
//! Compaction merges an hour's small files of a partition into
//! `part-<partition>-<first offset>-<last file's first offset>.parquet` ([`compact`]);
//! `_sluice/` also holds compaction records and forget's lease.
//!
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
//! `roll-bytes` or its first event was read `roll-age` ago, then:
//!
//! 1. writes `_sluice/pending-<partition>.json`, `{start, end, files}`, durably (a temporary
//!    file, fsync, rename, fsync of the directory);
//! 2. writes each file of the batch the same way (the directories made on the way are fsynced
//!    into their parents);
//! 3. commits `end` as the position, in one store transaction fenced by its epoch.
//!
//! Meanwhile it reads the next batch (from `end`), whose pending record is written only after
//! that commit: one batch is pending at a time.
//!
//! After a crash the archiver claims the partition again and reads the pending record: when
//! its `start` is the committed position, step 3 never happened, so its files (written or
//! not, and their temporary files) are deleted before archiving resumes from `start`, and the
//! next batch writes them again, perhaps with other bounds. When `start` is before the position, the batch was
//! committed and the record is stale. In S3 each step is a request (a multipart upload for a
//! large file) that S3 holds durably once it succeeded, and reads after writes see it, so the
//! steps and this argument are the same. So a committed offset's event is in exactly one file,
//! an uncommitted one in none once the archiver is running: no row is missing or doubled.
//! Between a crash and the restart, files of the uncommitted batch may be visible to readers.
//!
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
pub mod retention;
pub mod scan;
pub mod sink;
pub mod target;

pub use config::{ArchiveConfig, Location};
pub use sink::{Archive, ArchiveError};
