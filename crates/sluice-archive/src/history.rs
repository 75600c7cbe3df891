//! The archive as the `events` topic's history ([`sluice_log::history`]): a replay from a time
//! older than the log's retention reads the events retention removed from the archive, at
//! their log offsets, then goes on in the log.
//!
//! # Reading a partition in offset order
//!
//! A partition's events are spread over one file per (tenant, hour) of each batch, and
//! compaction merges an hour's files of several batches. The names say enough to merge them
//! back into offset order without opening them: a file `part-P-F[-L]` holds offsets from `F`
//! (the first batch's first offset) up to, not including, the next batch's first offset
//! after `L` (batches are consecutive, and every batch with events wrote a file), so a read
//! from offset `o` opens the files whose range holds `o`, then each next file when the merge
//! reaches its `F`. A merge cursor per partition keeps the open files between
//! reads, so a partition read from end to end opens each file once, and holds at any time
//! the files of the batches being merged (one per tenant and hour of a batch, plus the
//! compacted files spanning it). An event read back is rebuilt from its columns, byte for
//! byte the JSON the collector appended ([`Event::write_json`]), with the partition key and
//! the receive time as key and timestamp.
//!
//! The archive is listed when a cursor starts (unless a listing under a second old is at
//! hand); a cursor that has read every listed file before the log's start is let go, so a
//! read after the log's start moved on lists the files archived since.
//!
//! An offset read twice (compaction's output and its inputs both listed for a moment; a
//! batch after a log repair reusing offsets) is returned once. A file gone when it is opened
//! (compaction, retention or forget replaced it) makes the cursor list the archive again and
//! resume at the offset it had reached.
//!
//! # Finding an offset by time
//!
//! The first offset whose receive time is at or after `T` comes from the files' footers
//! (row groups' min and max of `received_at` and `log_offset`), walked from the newest file
//! back. Receive times follow offsets up to the delay between a request's arrival and its
//! append, which stays far below [`APPEND_DELAY`]: once a file's latest receive time is
//! before `T - APPEND_DELAY`, every event before its first offset was received before `T`,
//! and the walk stops (after the files spanning that offset). Footers whose range straddles
//! `T` are settled by reading the two columns.

use crate::format;
use crate::layout::parse_part;
use crate::sink::ArchiveError;
use crate::target::Target;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use arrow_array::{Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::{FooterTail, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;
use serde_json::value::RawValue;
use sluice_core::event::{Event, EventType};
use sluice_core::time::Millis;
use sluice_log::history::{History, HistoryFuture};
use sluice_log::{LogError, Record, StoredRecord};
use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

/// Far more than a request waits between its arrival (its events' `received_at`) and the
/// append of its events.
pub const APPEND_DELAY: Millis = 10 * 60 * 1000;

/// Rows decoded at a time from an open file.
const BATCH_ROWS: usize = 1024;

/// Footers read at once.
const FOOTERS_AT_ONCE: usize = 16;

/// How often a read lists the archive again when files vanish under it.
const RELISTS: usize = 3;

/// A listing younger than this is used again rather than made anew.
const FRESH: Duration = Duration::from_secs(1);

/// The archive, read as the history of the topic it archives.
#[derive(Debug)]
pub struct ArchiveHistory {
    target: Target,
    topic: String,
    /// Every partition's files, listed at the first read and again when files vanished.
    index: tokio::sync::Mutex<Option<Arc<Index>>>,
    /// One merge cursor per partition read.
    cursors: parking_lot::Mutex<BTreeMap<u32, Arc<tokio::sync::Mutex<Option<Cursor>>>>>,
}

/// The archive's files, per partition, in order of first offset.
#[derive(Debug)]
struct Index {
    partitions: BTreeMap<u32, Vec<Span>>,
    listed: std::time::Instant,
}

/// One file and the offsets it may hold.
#[derive(Debug, Clone)]
struct Span {
    name: Arc<str>,
    size: u64,
    tenant: Arc<str>,
    first: u64,
    /// One past the last offset it may hold (`u64::MAX` for the newest batch's files).
    end: u64,
}

impl Index {
    fn from_names(names: Vec<(String, u64)>) -> Index {
        let mut parsed: BTreeMap<u32, Vec<(Span, u64)>> = BTreeMap::new();
        for (name, size) in names {
            let mut parts = name.split('/');
            let (Some("events"), Some(tenant), Some(_date), Some(_hour), Some(file), None) = (
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
            ) else {
                continue;
            };
            let (Some(tenant), Some((partition, first, last))) =
                (tenant.strip_prefix("tenant="), parse_part(file))
            else {
                continue;
            };
            let span = Span {
                tenant: tenant.into(),
                name: name.as_str().into(),
                size,
                first,
                end: u64::MAX,
            };
            parsed.entry(partition).or_default().push((span, last));
        }
        let partitions = parsed
            .into_iter()
            .map(|(partition, files)| {
                // Every batch start the names show: a file ends before the next one after its
                // last batch's.
                let mut starts: Vec<u64> = files
                    .iter()
                    .flat_map(|(span, last)| [span.first, *last])
                    .collect();
                starts.sort_unstable();
                starts.dedup();
                let mut spans: Vec<Span> = files
                    .into_iter()
                    .map(|(mut span, last)| {
                        let next = starts.partition_point(|&start| start <= last);
                        span.end = starts.get(next).copied().unwrap_or(u64::MAX);
                        span
                    })
                    .collect();
                spans.sort_by(|a, b| (a.first, &a.name).cmp(&(b.first, &b.name)));
                (partition, spans)
            })
            .collect();
        Index {
            partitions,
            listed: std::time::Instant::now(),
        }
    }

    fn files(&self, partition: u32) -> &[Span] {
        self.partitions.get(&partition).map_or(&[], Vec::as_slice)
    }
}

/// A partition's merge of its files into offset order (see the module docs).
struct Cursor {
    index: Arc<Index>,
    partition: u32,
    /// The offset the next read is expected from; every offset before it was returned.
    next: u64,
    /// The first file not opened yet.
    pending: usize,
    open: Vec<Option<OpenFile>>,
    /// The open files by the offset of their next row.
    heap: BinaryHeap<Reverse<(u64, usize)>>,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("partition", &self.partition)
            .field("next", &self.next)
            .field("pending", &self.pending)
            .field("open", &self.heap.len())
            .finish()
    }
}

/// An open file: its rows being decoded, a batch at a time.
struct OpenFile {
    tenant: Arc<str>,
    name: Arc<str>,
    reader: ParquetRecordBatchReader,
    columns: Columns,
    row: usize,
}

/// The current batch's columns an event is rebuilt from, looked up once per batch.
struct Columns {
    rows: usize,
    offset: Int64Array,
    message_id: StringArray,
    kind: StringArray,
    text: [StringArray; format::TEXT.len()],
    /// `timestamp`, `received_at`, `sent_at`, `original_timestamp`.
    times: [TimestampMillisecondArray; 4],
    json: [StringArray; format::JSON.len()],
}

impl Columns {
    fn of(batch: &RecordBatch) -> Result<Columns, String> {
        let text = |name: &str| -> Result<StringArray, String> {
            batch
                .column_by_name(name)
                .and_then(|column| column.as_string_opt::<i32>())
                .cloned()
                .ok_or_else(|| format!("no string column {name}"))
        };
        let time = |name: &str| -> Result<TimestampMillisecondArray, String> {
            batch
                .column_by_name(name)
                .and_then(|column| column.as_primitive_opt::<TimestampMillisecondType>())
                .cloned()
                .ok_or_else(|| format!("no timestamp column {name}"))
        };
        let each = |names: &[&str]| {
            names
                .iter()
                .map(|name| text(name))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Columns {
            rows: batch.num_rows(),
            offset: batch
                .column_by_name("log_offset")
                .and_then(|column| column.as_primitive_opt::<Int64Type>())
                .cloned()
                .ok_or("no log_offset column")?,
            message_id: text("message_id")?,
            kind: text("type")?,
            text: each(&format::TEXT)?
                .try_into()
                .map_err(|_| "text columns".to_owned())?,
            times: [
                time("timestamp")?,
                time("received_at")?,
                time("sent_at")?,
                time("original_timestamp")?,
            ],
            json: each(&format::JSON)?
                .try_into()
                .map_err(|_| "JSON columns".to_owned())?,
        })
    }
}

impl OpenFile {
    fn open(span: &Span, bytes: Bytes) -> Result<Option<OpenFile>, String> {
        let mut reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|error| error.to_string())?
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|error| error.to_string())?;
        match reader
            .next()
            .transpose()
            .map_err(|error| error.to_string())?
        {
            Some(batch) if batch.num_rows() > 0 => Ok(Some(OpenFile {
                tenant: Arc::clone(&span.tenant),
                name: Arc::clone(&span.name),
                reader,
                columns: Columns::of(&batch)?,
                row: 0,
            })),
            _ => Ok(None),
        }
    }

    /// The offset of the current row.
    fn offset(&self) -> u64 {
        self.columns.offset.value(self.row) as u64
    }

    /// Moves to the next row; `false` at the end of the file.
    fn advance(&mut self) -> Result<bool, String> {
        self.row += 1;
        while self.row >= self.columns.rows {
            match self
                .reader
                .next()
                .transpose()
                .map_err(|error| error.to_string())?
            {
                Some(batch) => {
                    self.columns = Columns::of(&batch)?;
                    self.row = 0;
                }
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// The current row as the record the log held.
    fn record(&self, offset: u64) -> Result<StoredRecord, String> {
        let (columns, row) = (&self.columns, self.row);
        fn optional(column: &StringArray, row: usize) -> Option<&str> {
            column.is_valid(row).then(|| column.value(row))
        }
        let text = |index: usize| optional(&columns.text[index], row).map(Cow::Borrowed);
        let time = |index: usize| {
            let column = &columns.times[index];
            column.is_valid(row).then(|| column.value(row))
        };
        let json = |index: usize| -> Result<Option<Cow<'_, RawValue>>, String> {
            optional(&columns.json[index], row)
                .map(|text| {
                    serde_json::from_str::<&RawValue>(text)
                        .map(Cow::Borrowed)
                        .map_err(|error| format!("{} is no JSON: {error}", format::JSON[index]))
                })
                .transpose()
        };
        let kind = columns.kind.value(row);
        let event = Event {
            message_id: Cow::Borrowed(columns.message_id.value(row)),
            tenant: Cow::Borrowed(&self.tenant),
            kind: kind
                .parse::<EventType>()
                .map_err(|()| format!("type {kind:?} is no event type"))?,
            event: text(0),
            name: text(1),
            category: text(2),
            user_id: text(3),
            anonymous_id: text(4),
            group_id: text(5),
            previous_id: text(6),
            timestamp: time(0).ok_or("timestamp is null")?,
            received_at: time(1).ok_or("received_at is null")?,
            sent_at: time(2),
            original_timestamp: time(3),
            properties: json(0)?,
            traits: json(1)?,
            context: json(2)?,
            integrations: json(3)?,
            channel: json(4)?,
            version: json(5)?,
            metadata: json(6)?,
            schema_violations: json(7)?,
        };
        Ok(StoredRecord {
            offset,
            record: Record::new(
                Some(Bytes::copy_from_slice(event.partition_key().as_bytes())),
                event.to_json(),
                event.received_at,
            ),
        })
    }
}

/// What a file's footer says about its rows.
#[derive(Debug, Clone, Copy)]
struct Footer {
    min_offset: u64,
    min_received: Millis,
    max_received: Millis,
}

impl Footer {
    fn of(metadata: &ParquetMetaData) -> Option<Footer> {
        let columns = metadata.file_metadata().schema_descr();
        let position =
            |name: &str| (0..columns.num_columns()).find(|&i| columns.column(i).name() == name);
        let (offset, received) = (position("log_offset")?, position("received_at")?);
        let mut footer: Option<Footer> = None;
        for group in metadata.row_groups() {
            let range = |column: usize| match group.column(column).statistics()? {
                Statistics::Int64(values) => Some((*values.min_opt()?, *values.max_opt()?)),
                _ => None,
            };
            let ((min_offset, _), (min_received, max_received)) =
                (range(offset)?, range(received)?);
            let merged = Footer {
                min_offset: min_offset as u64,
                min_received,
                max_received,
            };
            footer = Some(match footer {
                None => merged,
                Some(was) => Footer {
                    min_offset: was.min_offset.min(merged.min_offset),
                    min_received: was.min_received.min(merged.min_received),
                    max_received: was.max_received.max(merged.max_received),
                },
            });
        }
        footer
    }
}

impl ArchiveHistory {
    /// The archive at `target`, as the history of `topic`.
    pub fn new(target: Target, topic: &str) -> Self {
        Self {
            target,
            topic: topic.to_owned(),
            index: tokio::sync::Mutex::new(None),
            cursors: parking_lot::Mutex::new(BTreeMap::new()),
        }
    }

    fn failed(&self, what: &str, reason: impl std::fmt::Display) -> LogError {
        LogError::Unavailable {
            what: format!("{what} in the archive {}", self.target.location()),
            reason: reason.to_string(),
        }
    }

    /// The index, listed again unless the one held is at most `max_age` old.
    async fn index(&self, max_age: Duration) -> Result<Arc<Index>, LogError> {
        let mut held = self.index.lock().await;
        if let Some(index) = held.as_ref()
            && index.listed.elapsed() <= max_age
        {
            return Ok(Arc::clone(index));
        }
        let names = self
            .target
            .list_sized("events/", ".parquet")
            .await
            .map_err(|error| self.failed("listing the files", error))?;
        let index = Arc::new(Index::from_names(names));
        *held = Some(Arc::clone(&index));
        Ok(index)
    }

    /// An archive file that is not what sluice writes.
    fn invalid(&self, name: &str, reason: impl std::fmt::Display) -> ArchiveError {
        ArchiveError::Io {
            location: self.target.location(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{name} is no archive file of sluice: {reason}"),
            ),
        }
    }

    /// What the footer of `span`'s file says; `None` when the file is gone.
    async fn footer(&self, span: &Span) -> Result<Option<Footer>, ArchiveError> {
        const SUFFIX: u64 = 64 << 10;
        let (name, size) = (&*span.name, span.size);
        let suffix_start = size.saturating_sub(SUFFIX);
        let Some(mut suffix) = self.target.read_range(name, suffix_start..size).await? else {
            return Ok(None);
        };
        let invalid = |reason: String| self.invalid(name, reason);
        let tail: &[u8; 8] = suffix
            .get(suffix.len().saturating_sub(8)..)
            .and_then(|tail| tail.try_into().ok())
            .ok_or_else(|| invalid("shorter than a footer".into()))?;
        let length = FooterTail::try_new(tail)
            .map_err(|error| invalid(error.to_string()))?
            .metadata_length() as u64;
        if length + 8 > suffix.len() as u64 {
            let start = size
                .checked_sub(length + 8)
                .ok_or_else(|| invalid("its footer is longer than the file".into()))?;
            match self.target.read_range(name, start..size).await? {
                Some(bytes) => suffix = bytes,
                None => return Ok(None),
            }
        }
        let metadata_end = suffix.len() - 8;
        let metadata = ParquetMetaDataReader::decode_metadata(
            &suffix[metadata_end - length as usize..metadata_end],
        )
        .map_err(|error| invalid(error.to_string()))?;
        Ok(Footer::of(&metadata))
    }

    /// The first offset of a file whose receive time is at or after `timestamp`.
    async fn first_received_at(
        &self,
        name: &str,
        timestamp: Millis,
    ) -> Result<Option<u64>, ArchiveError> {
        let Some(bytes) = self.target.read_if_there(name).await? else {
            return Ok(None);
        };
        let invalid = |error: parquet::errors::ParquetError| self.invalid(name, error);
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(invalid)?;
        let schema = builder.parquet_schema();
        let mask = ProjectionMask::columns(schema, ["log_offset", "received_at"]);
        let mut first: Option<u64> = None;
        for batch in builder.with_projection(mask).build().map_err(invalid)? {
            let batch = batch.map_err(|error| invalid(error.into()))?;
            let (Some(offsets), Some(received)) = (
                batch
                    .column_by_name("log_offset")
                    .and_then(|column| column.as_primitive_opt::<Int64Type>()),
                batch
                    .column_by_name("received_at")
                    .and_then(|column| column.as_primitive_opt::<TimestampMillisecondType>()),
            ) else {
                return Err(invalid(parquet::errors::ParquetError::General(
                    "no log_offset or received_at column".into(),
                )));
            };
            for (offset, received) in offsets.values().iter().zip(received.values()) {
                if *received >= timestamp {
                    let offset = *offset as u64;
                    first = Some(first.map_or(offset, |first| first.min(offset)));
                }
            }
        }
        Ok(first)
    }

    async fn offset_for_time_in(
        &self,
        partition: u32,
        timestamp: Millis,
        before: u64,
    ) -> Result<Option<u64>, ArchiveError> {
        let index = self.index(FRESH).await?;
        let files: Vec<&Span> = index
            .files(partition)
            .iter()
            .filter(|span| span.first < before)
            .collect();
        // Newest first, until a file received entirely before `timestamp - APPEND_DELAY`.
        let mut footers: Vec<(&Span, Footer)> = Vec::new();
        let mut bound = None;
        let mut walked = files.len();
        for chunk in files.rchunks(FOOTERS_AT_ONCE) {
            let mut reads = Vec::with_capacity(chunk.len());
            for span in chunk {
                reads.push(self.footer(span));
            }
            let read = futures::future::try_join_all(reads).await?;
            walked -= chunk.len();
            for (span, footer) in chunk.iter().zip(read).rev() {
                let Some(footer) = footer else { continue };
                if footer.max_received < timestamp - APPEND_DELAY {
                    bound = Some(bound.map_or(span.first, |bound: u64| bound.max(span.first)));
                }
                footers.push((span, footer));
            }
            if bound.is_some() {
                break;
            }
        }
        // Older files that still reach past the bound (compacted ones).
        if let Some(bound) = bound {
            for span in files[..walked].iter().filter(|span| span.end > bound) {
                if let Some(footer) = self.footer(span).await? {
                    footers.push((span, footer));
                }
            }
        }
        let mut candidates: Vec<(&Span, Footer)> = footers
            .into_iter()
            .filter(|(_, footer)| footer.max_received >= timestamp)
            .collect();
        candidates.sort_by_key(|(_, footer)| footer.min_offset);
        let mut best: Option<u64> = None;
        for (span, footer) in candidates {
            if best.is_some_and(|best| best <= footer.min_offset) {
                break;
            }
            let first = if footer.min_received >= timestamp {
                Some(footer.min_offset)
            } else {
                self.first_received_at(&span.name, timestamp).await?
            };
            if let Some(first) = first.filter(|&first| first < before) {
                best = Some(best.map_or(first, |best| best.min(first)));
            }
        }
        Ok(best)
    }

    fn cursor_of(&self, partition: u32) -> Arc<tokio::sync::Mutex<Option<Cursor>>> {
        Arc::clone(self.cursors.lock().entry(partition).or_default())
    }

    async fn read_from(
        &self,
        partition: u32,
        offset: u64,
        before: u64,
        max_bytes: usize,
    ) -> Result<Vec<StoredRecord>, LogError> {
        let slot = self.cursor_of(partition);
        let mut slot = slot.lock().await;
        let mut relists = 0;
        loop {
            let cursor = match slot.take() {
                Some(cursor) if cursor.next == offset => cursor,
                _ => Cursor::seek(self.index(FRESH).await?, partition, offset),
            };
            match self.merge(cursor, before, max_bytes).await {
                Ok((cursor, records, false)) => {
                    *slot = Some(cursor);
                    return Ok(records);
                }
                // Everything its listing holds before `before` was read: the next read is the
                // log's (or, if the log's start moved on meanwhile, starts anew with a listing
                // that has the files archived since).
                Ok((_, records, true)) => {
                    *slot = None;
                    return Ok(records);
                }
                // A file vanished (compaction, retention or forget): list again, go on where
                // the merge got to.
                Err(Merge::Vanished(cursor, records)) if relists < RELISTS => {
                    relists += 1;
                    tracing::debug!(
                        partition,
                        next = cursor.next,
                        "an archive file vanished during a replay: listing the archive again"
                    );
                    let index = self.index(Duration::ZERO).await?;
                    if !records.is_empty() {
                        *slot = Some(Cursor::seek(index, partition, cursor.next));
                        return Ok(records);
                    }
                }
                Err(Merge::Vanished(cursor, _)) => {
                    return Err(self.failed(
                        &format!("reading partition {partition} from offset {}", cursor.next),
                        "its files keep being replaced",
                    ));
                }
                Err(Merge::Failed(error)) => {
                    return Err(self.failed(&format!("reading partition {partition}"), error));
                }
            }
        }
    }

    /// Records from the cursor's position, before `before`, up to `max_bytes`, the cursor, and
    /// whether it read everything its listing holds before `before` (the next read is the
    /// log's, unless files were archived since the listing: the cursor's open files are let
    /// go).
    async fn merge(
        &self,
        mut cursor: Cursor,
        before: u64,
        max_bytes: usize,
    ) -> Result<(Cursor, Vec<StoredRecord>, bool), Merge> {
        let mut records = Vec::new();
        let mut bytes = 0;
        loop {
            let top = cursor.heap.peek().map(|Reverse((offset, _))| *offset);
            let pending = cursor
                .index
                .files(cursor.partition)
                .get(cursor.pending)
                .filter(|span| span.first < before)
                .cloned();
            if let Some(span) = pending.filter(|span| top.is_none_or(|top| span.first <= top)) {
                cursor.pending += 1;
                let Some(file) = self
                    .target
                    .read_if_there(&span.name)
                    .await
                    .map_err(|error| Merge::Failed(error.to_string()))?
                else {
                    return Err(Merge::Vanished(cursor, records));
                };
                cursor.push(
                    OpenFile::open(&span, file)
                        .map_err(|reason| Merge::Failed(format!("{}: {reason}", span.name)))?,
                )?;
                continue;
            }
            let Some(top) = top.filter(|&top| top < before) else {
                return Ok((cursor, records, true));
            };
            let Some(Reverse((_, slot))) = cursor.heap.pop() else {
                return Ok((cursor, records, true));
            };
            let file = cursor.open[slot]
                .as_mut()
                .expect("a file in the heap is open");
            if top >= cursor.next {
                let record = file
                    .record(top)
                    .map_err(|reason| Merge::Failed(format!("{}: {reason}", file.name)))?;
                bytes += record.record.size();
                records.push(record);
                cursor.next = top + 1;
            }
            let more = file
                .advance()
                .map_err(|reason| Merge::Failed(format!("{}: {reason}", file.name)))?;
            if more {
                cursor.heap.push(Reverse((file.offset(), slot)));
            } else {
                cursor.open[slot] = None;
            }
            if bytes >= max_bytes {
                return Ok((cursor, records, false));
            }
        }
    }
}

/// Why a merge stopped early.
enum Merge {
    /// A file listed is not there any more: the cursor and the records read before.
    Vanished(Cursor, Vec<StoredRecord>),
    Failed(String),
}

impl Cursor {
    /// A cursor at `offset`: the files whose range holds it are opened at its first read.
    fn seek(index: Arc<Index>, partition: u32, offset: u64) -> Cursor {
        let files = index.files(partition);
        // Files starting at or before the offset that may still hold it are opened first,
        // then every one after it in order: those before the first such file are done.
        let pending = files
            .iter()
            .position(|span| span.end > offset)
            .unwrap_or(files.len());
        Cursor {
            index,
            partition,
            next: offset,
            pending,
            open: Vec::new(),
            heap: BinaryHeap::new(),
        }
    }

    fn push(&mut self, file: Option<OpenFile>) -> Result<(), Merge> {
        let Some(file) = file else {
            return Ok(());
        };
        let offset = file.offset();
        let slot = match self.open.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.open.push(None);
                self.open.len() - 1
            }
        };
        self.open[slot] = Some(file);
        self.heap.push(Reverse((offset, slot)));
        Ok(())
    }
}

impl History for ArchiveHistory {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn start(&self, partition: u32) -> HistoryFuture<'_, Option<u64>> {
        Box::pin(async move {
            let index = self.index(FRESH).await?;
            Ok(index.files(partition).first().map(|span| span.first))
        })
    }

    fn offset_for_time(
        &self,
        partition: u32,
        timestamp: Millis,
        before: u64,
    ) -> HistoryFuture<'_, Option<u64>> {
        Box::pin(async move {
            self.offset_for_time_in(partition, timestamp, before)
                .await
                .map_err(|error| self.failed("finding an offset by time", error))
        })
    }

    fn read(
        &self,
        partition: u32,
        offset: u64,
        before: u64,
        max_bytes: usize,
    ) -> HistoryFuture<'_, Vec<StoredRecord>> {
        Box::pin(self.read_from(partition, offset, before, max_bytes))
    }
}

#[cfg(test)]
mod tests;
