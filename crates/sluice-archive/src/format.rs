//! The archive's Parquet files: the Arrow schema of the columns in the crate docs, a builder
//! that turns events into one record batch, and the writer settings.

use crate::promote::{self, Columns};
use arrow_array::builder::{
    Int32Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use serde_json::value::RawValue;
use sluice_core::event::Event;
use sluice_core::time::Millis;
use std::borrow::Cow;
use std::io::Write;
use std::sync::{Arc, OnceLock};

/// The string columns after `type`, in schema order: the event's optional text fields.
pub(crate) const TEXT: [&str; 7] = [
    "event",
    "name",
    "category",
    "user_id",
    "anonymous_id",
    "group_id",
    "previous_id",
];

/// The JSON columns, in schema order: the event's nested values, as their JSON text.
pub(crate) const JSON: [&str; 8] = [
    "properties",
    "traits",
    "context",
    "integrations",
    "channel",
    "version",
    "metadata",
    "schema_violations",
];

/// The zstd level of every page: 1 makes files as small as 3 (zstd's default) did here, with
/// ~10 % less of the archive's CPU (docs/BENCHMARKS.md).
const ZSTD_LEVEL: i32 = 1;

/// Columns written without a dictionary: values almost never repeat in a file (ids, offsets,
/// times, the properties' JSON), so one only costs CPU, and plain pages compress better (an
/// event took 34.6 B instead of 44.3).
const NO_DICTIONARY: [&str; 7] = [
    "message_id",
    "log_offset",
    "timestamp",
    "received_at",
    "sent_at",
    "original_timestamp",
    "properties",
];

fn timestamp(name: &str, nullable: bool) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        nullable,
    )
}

/// The files' schema.
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    Arc::clone(SCHEMA.get_or_init(|| base_schema(false)))
}

/// The schema of a derived stream's files: [`schema`] with `received_at` nullable (a
/// session record has none; a routed event keeps its own).
pub fn derived_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    Arc::clone(SCHEMA.get_or_init(|| base_schema(true)))
}

fn base_schema(derived: bool) -> SchemaRef {
    {
        let mut fields = vec![
            Field::new("log_partition", DataType::Int32, false),
            Field::new("log_offset", DataType::Int64, false),
            Field::new("message_id", DataType::Utf8, false),
            Field::new("type", DataType::Utf8, false),
        ];
        fields.extend(TEXT.map(|name| Field::new(name, DataType::Utf8, true)));
        fields.extend([
            timestamp("timestamp", false),
            timestamp("received_at", derived),
            timestamp("sent_at", true),
            timestamp("original_timestamp", true),
        ]);
        fields.extend(JSON.map(|name| Field::new(name, DataType::Utf8, true)));
        Arc::new(Schema::new(fields))
    }
}

/// Events becoming one record batch, column by column.
#[derive(Debug)]
pub struct Rows {
    partition: Int32Builder,
    offset: Int64Builder,
    message_id: StringBuilder,
    kind: StringBuilder,
    text: [StringBuilder; TEXT.len()],
    times: [TimestampMillisecondBuilder; 4],
    json: [StringBuilder; JSON.len()],
    columns: Arc<Columns>,
    promoted: Vec<promote::Builder>,
    /// Scratch memory of the promoted columns' scans.
    scratch: promote::Scratch,
    len: usize,
}

impl Default for Rows {
    fn default() -> Self {
        static NONE: OnceLock<Arc<Columns>> = OnceLock::new();
        Self::new(Arc::clone(NONE.get_or_init(Columns::none)))
    }
}

/// How many rows, and how many bytes of text in each string column, rows hold (or are to
/// hold): what [`Rows::with_capacity`] reserves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    /// Rows.
    pub rows: usize,
    /// Bytes of `message_id`, `type`, the [`TEXT`] and the [`JSON`] columns, in that order.
    pub bytes: [usize; 2 + TEXT.len() + JSON.len()],
}

impl Capacity {
    /// This capacity and an eighth more.
    pub fn with_headroom(self) -> Capacity {
        let more = |n: usize| n + n / 8;
        Capacity {
            rows: more(self.rows),
            bytes: self.bytes.map(more),
        }
    }
}

impl Rows {
    /// Rows with `columns` promoted after the base columns.
    pub fn new(columns: Arc<Columns>) -> Self {
        Self::with_capacity(columns, Capacity::default())
    }

    /// Rows with `columns` promoted, with room for `capacity` reserved: rows that grow to
    /// their size move no bytes and touch no fresh memory on the way (growing by doubling
    /// copies each column about twice and faults in twice its memory).
    pub fn with_capacity(columns: Arc<Columns>, capacity: Capacity) -> Self {
        let rows = capacity.rows;
        let mut bytes = capacity.bytes.into_iter();
        let mut strings = || StringBuilder::with_capacity(rows, bytes.next().unwrap_or(0));
        Self {
            partition: Int32Builder::with_capacity(rows),
            offset: Int64Builder::with_capacity(rows),
            message_id: strings(),
            kind: strings(),
            text: std::array::from_fn(|_| strings()),
            times: std::array::from_fn(|_| TimestampMillisecondBuilder::with_capacity(rows)),
            json: std::array::from_fn(|_| strings()),
            promoted: columns
                .list
                .iter()
                .map(|column| promote::Builder::new(column.kind))
                .collect(),
            columns,
            scratch: promote::Scratch::default(),
            len: 0,
        }
    }

    /// What the rows hold so far.
    pub fn capacity(&self) -> Capacity {
        let strings = [&self.message_id, &self.kind]
            .into_iter()
            .chain(&self.text)
            .chain(&self.json);
        let mut bytes = [0; 2 + TEXT.len() + JSON.len()];
        for (bytes, builder) in bytes.iter_mut().zip(strings) {
            *bytes = builder.values_slice().len();
        }
        Capacity {
            rows: self.len,
            bytes,
        }
    }

    /// The schema of the rows' record batch.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.columns.schema)
    }
}

/// One event's values as the archive's columns hold them, borrowed from a parsed [`Event`]
/// ([`Fields::of`]) or straight from a log record's JSON (`crate::scan`).
#[derive(Debug, Clone, PartialEq)]
pub struct Fields<'a> {
    /// `message_id`.
    pub message_id: Cow<'a, str>,
    /// The tenant (not a column: the files' directory).
    pub tenant: Cow<'a, str>,
    /// `type`: one of the Segment Spec's for an event; a derived record's own (`session`).
    pub kind: Cow<'a, str>,
    /// The [`TEXT`] columns' values, in their order.
    pub text: [Option<Cow<'a, str>>; TEXT.len()],
    /// `timestamp`.
    pub timestamp: Millis,
    /// `received_at` (an event always has one).
    pub received_at: Option<Millis>,
    /// `sent_at`.
    pub sent_at: Option<Millis>,
    /// `original_timestamp`.
    pub original_timestamp: Option<Millis>,
    /// The [`JSON`] columns' values as their JSON text, in their order.
    pub json: [Option<&'a str>; JSON.len()],
}

impl<'a> Fields<'a> {
    /// The fields of `event`.
    pub fn of(event: &'a Event<'_>) -> Self {
        let text = |value: &'a Option<Cow<'_, str>>| value.as_deref().map(Cow::Borrowed);
        let raw = |value: &'a Option<Cow<'_, RawValue>>| value.as_deref().map(RawValue::get);
        Fields {
            message_id: Cow::Borrowed(&event.message_id),
            tenant: Cow::Borrowed(&event.tenant),
            kind: Cow::Borrowed(event.kind.as_str()),
            text: [
                text(&event.event),
                text(&event.name),
                text(&event.category),
                text(&event.user_id),
                text(&event.anonymous_id),
                text(&event.group_id),
                text(&event.previous_id),
            ],
            timestamp: event.timestamp,
            received_at: Some(event.received_at),
            sent_at: event.sent_at,
            original_timestamp: event.original_timestamp,
            json: [
                raw(&event.properties),
                raw(&event.traits),
                raw(&event.context),
                raw(&event.integrations),
                raw(&event.channel),
                raw(&event.version),
                raw(&event.metadata),
                raw(&event.schema_violations),
            ],
        }
    }

    /// `user_id`.
    pub fn user_id(&self) -> Option<&str> {
        self.text[3].as_deref()
    }

    /// `anonymous_id`.
    pub fn anonymous_id(&self) -> Option<&str> {
        self.text[4].as_deref()
    }
}

impl Rows {
    /// Adds the event at `offset` of log partition `partition`.
    pub fn push(&mut self, partition: u32, offset: u64, event: &Fields<'_>) {
        // Signed, as Hive, Athena and Spark read them (they have no unsigned integers): a
        // partition number and an offset are far below their maxima.
        self.partition.append_value(partition as i32);
        self.offset.append_value(offset as i64);
        self.message_id.append_value(&event.message_id);
        self.kind.append_value(&event.kind);
        for (builder, value) in self.text.iter_mut().zip(&event.text) {
            builder.append_option(value.as_deref());
        }
        let times = [
            Some(event.timestamp),
            event.received_at,
            event.sent_at,
            event.original_timestamp,
        ];
        for (builder, value) in self.times.iter_mut().zip(times) {
            builder.append_option(value);
        }
        for (builder, value) in self.json.iter_mut().zip(event.json) {
            builder.append_option(value);
        }
        if !self.promoted.is_empty() {
            promote::append(&self.columns, &mut self.promoted, event, &mut self.scratch);
        }
        self.len += 1;
    }

    /// How many events were added.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The events as one record batch of [`schema`] and the promoted columns.
    pub fn finish(mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.message_id.finish()),
            Arc::new(self.kind.finish()),
        ];
        columns.extend(
            self.text
                .iter_mut()
                .map(|builder| Arc::new(builder.finish()) as ArrayRef),
        );
        columns.extend(
            self.times
                .iter_mut()
                .map(|builder| Arc::new(builder.finish().with_timezone("UTC")) as ArrayRef),
        );
        columns.extend(
            self.json
                .iter_mut()
                .map(|builder| Arc::new(builder.finish()) as ArrayRef),
        );
        columns.extend(self.promoted.iter_mut().map(promote::Builder::finish));
        // The columns are built from the schema's own lists, so they always match it.
        RecordBatch::try_new(Arc::clone(&self.columns.schema), columns)
            .expect("the archive's columns match its schema")
    }
}

/// The writer settings of every file: zstd pages, dictionaries where values repeat, statistics
/// (so engines skip row groups by time or offset).
fn properties() -> WriterProperties {
    let mut builder = WriterProperties::builder().set_compression(Compression::ZSTD(
        ZstdLevel::try_new(ZSTD_LEVEL).expect("a valid zstd level"),
    ));
    for column in NO_DICTIONARY {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    builder.build()
}

/// Writes `rows` as one Parquet file into `out`, and returns `out`.
pub fn write<W: Write + Send>(rows: Rows, out: W) -> Result<W, ParquetError> {
    let schema = rows.schema();
    write_batches(schema, [rows.finish()], out)
}

/// Writes record batches of `schema` as one Parquet file to `out`.
fn write_batches<W: Write + Send>(
    schema: SchemaRef,
    batches: impl IntoIterator<Item = RecordBatch>,
    out: W,
) -> Result<W, ParquetError> {
    let mut writer = ArrowWriter::try_new(out, schema, Some(properties()))?;
    for batch in batches {
        writer.write(&batch)?;
    }
    writer.into_inner()
}

/// Archive files merged into one, their rows in the files' order (one input's batches in
/// memory at a time); `None` when their schemas differ (the tenant's promoted columns changed
/// between them).
pub fn merge(files: Vec<bytes::Bytes>) -> Result<Option<Vec<u8>>, ParquetError> {
    let readers = files
        .into_iter()
        .map(parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new)
        .collect::<Result<Vec<_>, _>>()?;
    let Some(schema) = readers.first().map(|reader| Arc::clone(reader.schema())) else {
        return Ok(None);
    };
    if readers.iter().any(|reader| **reader.schema() != *schema) {
        return Ok(None);
    }
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(properties()))?;
    for reader in readers {
        for batch in reader.build()? {
            writer.write(&batch?)?;
        }
    }
    writer.into_inner().map(Some)
}

/// What [`without_user`] found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filtered {
    /// Rows in the file.
    pub rows: usize,
    /// Rows whose `user_id` or `anonymous_id` was the user's.
    pub removed: usize,
    /// The file without them, when some were removed and some are left.
    pub rewritten: Option<Vec<u8>>,
}

/// The archive file `file` without the rows whose `user_id` or `anonymous_id` is `user` (the
/// events the collector drops for an erased id), in the same order and settings.
pub fn without_user(file: bytes::Bytes, user: &str) -> Result<Filtered, ParquetError> {
    use arrow_array::cast::AsArray;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?;
    let schema = Arc::clone(reader.schema());
    let reader = reader.build()?;
    let (mut rows, mut removed, mut kept) = (0, 0, Vec::new());
    for batch in reader {
        let batch = batch?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|column| column.as_string_opt::<i32>())
                .ok_or_else(|| {
                    ParquetError::General(format!(
                        "the file has no string column {name}: it is no archive file of sluice"
                    ))
                })
        };
        let (user_ids, anonymous_ids) = (column("user_id")?, column("anonymous_id")?);
        let keep: arrow_array::BooleanArray = user_ids
            .iter()
            .zip(anonymous_ids.iter())
            .map(|(user_id, anonymous_id)| {
                Some(user_id != Some(user) && anonymous_id != Some(user))
            })
            .collect();
        rows += batch.num_rows();
        removed += keep.false_count();
        kept.push(arrow_select::filter::filter_record_batch(&batch, &keep)?);
    }
    let rewritten = if removed == 0 || removed == rows {
        None
    } else {
        Some(write_batches(schema, kept, Vec::new())?)
    };
    Ok(Filtered {
        rows,
        removed,
        rewritten,
    })
}

#[cfg(test)]
mod tests;
