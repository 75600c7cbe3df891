//! Exports: every window of a metric in a range, one tenant's, as CSV or NDJSON, written to
//! the client while it is read (`GET /v1/metrics/{name}/export`).
//!
//! An export is consistent at the moment it starts: it takes the frontier then (windows
//! closing at or before it are final) and the live snapshot of the open windows, then
//! - walks the final windows in the store page by page ([`RowPage`], by window start): one
//!   final row per key and window, every partition's part merged in already, so memory holds
//!   one page, not the range;
//! - then writes the open windows of the snapshot.
//!
//! Rows come in window-start order (final ones first, then open ones), group keys in their
//! encoded order within a start. Values are those of the JSON API: the same merge and
//! finalization, rendered the same way. A replay that replaces the metric while an export
//! runs ends the export with an error instead of a silently short file.

use super::Serving;
use super::cells::{bucket_close, close_of};
use super::params::{SeriesParams, SeriesQuery};
use crate::error::ApiError;
use bytes::Bytes;
use futures::Stream;
use sluice_core::time::{Millis, now_millis};
use sluice_store::{RowCursor, RowPage, StoredRow};
use sluice_stream::StreamError;
use sluice_stream::agg::{OutputValue, PartialState};
use sluice_stream::keys::{GroupKey, KeyValue};
use sluice_stream::plan::{AggregateKind, MetricPlan};
use sluice_stream::render;
use std::fmt::Write as _;
use std::sync::Arc;

/// Bytes written before they are handed to the connection.
const CHUNK_BYTES: usize = 64 << 10;

/// Group keys whose text an export keeps (forgotten all at once past it: memory stays bounded
/// whatever the range).
const KEYS_KEPT: usize = 65_536;

/// How an export is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// A header line (key names, `start`, `end`, `final`, aggregate names), then one line per
    /// window (RFC 4180 quoting; no value is an empty field).
    Csv,
    /// One JSON object per line: `{"key": {…}, "start", "end", "final", "values": {…}}`.
    Ndjson,
}

impl ExportFormat {
    /// The answer's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Ndjson => "application/x-ndjson",
        }
    }
}

/// An export's parameters as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportParams {
    /// `from`, `to` and `filter`, as in a series query.
    pub series: SeriesParams,
    /// `format=csv|ndjson` (default ndjson).
    pub format: ExportFormat,
}

impl ExportParams {
    /// From a query string's pairs; names other than `from`, `to`, `filter` and `format` are
    /// refused.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<ExportParams, ApiError> {
        let mut params = ExportParams {
            series: SeriesParams::default(),
            format: ExportFormat::Ndjson,
        };
        for (name, value) in pairs {
            match name.as_str() {
                "from" => params.series.from = Some(value),
                "to" => params.series.to = Some(value),
                "filter" => params.series.filters.push(value),
                "format" => {
                    params.format = match value.as_str() {
                        "csv" => ExportFormat::Csv,
                        "ndjson" => ExportFormat::Ndjson,
                        other => {
                            return Err(ApiError::bad_request(
                                "invalid_format",
                                format!("format={other:?}: use format=csv or format=ndjson"),
                            ));
                        }
                    }
                }
                other => {
                    return Err(ApiError::bad_request(
                        "unknown_parameter",
                        format!(
                            "unknown parameter {other:?}: an export takes from, to, filter=KEY:VALUE and format=csv|ndjson"
                        ),
                    ));
                }
            }
        }
        Ok(params)
    }
}

impl Serving {
    /// The export of `params` for `tenant`: checked now (an error here is the answer), then
    /// written as the returned stream is polled.
    pub async fn export(
        self: &Arc<Serving>,
        tenant: &str,
        metric: &str,
        params: ExportParams,
    ) -> Result<impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static, ApiError> {
        // The frontier as the pipelines have committed it, not a tenant cache's: an export
        // reads the store itself and need not load the tenant's windows into memory.
        let (plan, generation) = self.plan(metric)?;
        let frontier = self.source.frontier(metric).await?;
        if frontier.generation != generation {
            return Err(super::replaced(metric));
        }
        let frontier = frontier.watermark.unwrap_or(Millis::MIN);
        let query =
            super::params::resolve(&plan, &params.series, now_millis(), self.config.max_series)?;
        // As for a series answer: the range reaches windows that are not final.
        let open =
            if bucket_close(&plan, query.to) > frontier || close_of(&plan, query.to) > frontier {
                let live = self
                    .snapshot(metric, tenant, &plan, generation, frontier)
                    .await?;
                open_windows(&plan, &query, frontier, &live)
            } else {
                Vec::new()
            };
        let mut out = String::with_capacity(CHUNK_BYTES + 4096);
        if params.format == ExportFormat::Csv {
            csv_header(&plan, &mut out);
        }
        let value_names = render::aggregate_names(&plan)
            .into_iter()
            .map(|name| {
                let mut key = String::new();
                render::string(name, &mut key);
                key.push(':');
                key
            })
            .collect();
        let kinds = plan.aggregates.iter().map(|a| a.kind).collect();
        let exporter = Exporter {
            serving: Arc::clone(self),
            page: RowPage {
                metric: metric.to_owned(),
                generation,
                tenant: tenant.to_owned(),
                start_from: query.from,
                start_before: query.to,
                end_upto: frontier.saturating_sub(plan.allowed_lateness),
                after: None,
                limit: self.config.export_page_rows,
            },
            plan,
            query,
            format: params.format,
            value_names,
            reading: None,
            stored_done: false,
            open: Some(open),
            kinds,
            keys: foldhash::HashMap::default(),
            out,
        };
        Ok(futures::stream::try_unfold(
            exporter,
            |mut exporter| async move {
                match exporter.next_chunk().await {
                    Ok(Some(chunk)) => Ok(Some((chunk, exporter))),
                    Ok(None) => Ok(None),
                    Err(error) => {
                        tracing::warn!(metric = %exporter.page.metric, %error, "an export ended early");
                        Err(std::io::Error::other(error.to_string()))
                    }
                }
            },
        ))
    }
}

/// The open windows of the snapshot in the query's range and filters, by start then key.
fn open_windows(
    plan: &MetricPlan,
    query: &SeriesQuery,
    frontier: Millis,
    live: &super::live::LiveSnapshot,
) -> Vec<OpenWindow> {
    let range = (query.from, Millis::MIN)..(query.to, Millis::MIN);
    let mut open = Vec::new();
    for (bytes, series) in &live.keys {
        if !query.accepts(series.key.values()) {
            continue;
        }
        for (&(start, end), cell) in series.cells.range(range.clone()) {
            if close_of(plan, end) > frontier {
                open.push(OpenWindow {
                    start,
                    end,
                    key: bytes.clone(),
                    group: Arc::clone(&series.key),
                    values: cell.values.clone(),
                });
            }
        }
    }
    open.sort_by(|a, b| (a.start, &a.key, a.end).cmp(&(b.start, &b.key, b.end)));
    open
}

/// One open window to write.
struct OpenWindow {
    start: Millis,
    end: Millis,
    key: Box<[u8]>,
    group: Arc<GroupKey>,
    values: Box<[OutputValue]>,
}

/// An export in progress.
struct Exporter {
    serving: Arc<Serving>,
    plan: Arc<MetricPlan>,
    query: SeriesQuery,
    format: ExportFormat,
    /// The aggregates' names as JSON keys (`"name":`).
    value_names: Box<[String]>,
    /// The next page to read (its cursor is the last row read).
    page: RowPage,
    /// The read of that page, started before the page before it is written (the store reads
    /// on its own thread while this one formats rows).
    reading: Option<tokio::task::JoinHandle<Result<Vec<StoredRow>, sluice_store::StoreError>>>,
    stored_done: bool,
    /// The open windows, until written.
    open: Option<Vec<OpenWindow>>,
    /// The metric's aggregates.
    kinds: Vec<AggregateKind>,
    /// Per encoded group key, its text (`None`: the query's filters leave it out). Hashed
    /// with foldhash, randomly seeded (keys are what senders wrote).
    keys: foldhash::HashMap<Box<[u8]>, Option<Box<str>>>,
    out: String,
}

impl Exporter {
    /// The next chunk of the answer; `None` at the end.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, ApiError> {
        while self.out.len() < CHUNK_BYTES {
            if !self.stored_done {
                self.read_page().await?;
            } else if let Some(open) = self.open.take() {
                for window in open {
                    let row = Row {
                        start: window.start,
                        end: window.end,
                        is_final: false,
                        key: &window.group,
                        values: &window.values,
                    };
                    row.write(&self.plan, self.format, &self.value_names, &mut self.out);
                }
            } else {
                break;
            }
        }
        if self.out.is_empty() {
            return Ok(None);
        }
        let chunk = std::mem::replace(&mut self.out, String::with_capacity(CHUNK_BYTES + 4096));
        Ok(Some(Bytes::from(chunk)))
    }

    /// Reads the next page of final windows (started while the page before was written),
    /// starts reading the one after, and writes this one.
    async fn read_page(&mut self) -> Result<(), ApiError> {
        let reading = match self.reading.take() {
            Some(reading) => reading,
            None => self.start_reading(),
        };
        // A read that panicked is reported as the store's reads are when their thread goes.
        let rows = reading
            .await
            .unwrap_or(Err(sluice_store::StoreError::Closed))?;
        // Checked once the page is in: a replay that replaced the metric since the read
        // began has deleted its rows, and the page may be short.
        let serving = &self.serving;
        match serving.plan(&self.page.metric) {
            Ok((_, generation)) if generation == self.page.generation => {}
            _ => {
                return Err(ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "replaced",
                    format!(
                        "metric {:?} was replaced or deleted during the export; export again",
                        self.page.metric
                    ),
                ));
            }
        }
        self.stored_done = rows.len() < self.page.limit;
        if let Some(last) = rows.last() {
            self.page.after = Some(RowCursor::of(last));
        }
        if !self.stored_done {
            self.reading = Some(self.start_reading());
        }
        self.write_final(&rows)
    }

    /// Starts reading [`Self::page`] on the store's threads.
    fn start_reading(
        &self,
    ) -> tokio::task::JoinHandle<Result<Vec<StoredRow>, sluice_store::StoreError>> {
        let store = self.serving.store.clone();
        let page = self.page.clone();
        tokio::spawn(async move { store.rows_page(page).await })
    }

    /// Writes final rows (one per key and window, by start then key). A key's text is made
    /// once and kept (keys recur in every window start), up to [`KEYS_KEPT`] keys.
    fn write_final(&mut self, rows: &[StoredRow]) -> Result<(), ApiError> {
        for stored in rows {
            let corrupt =
                |reason: StreamError| super::corrupt(&self.page.metric, reason.to_string());
            if !self.keys.contains_key(stored.key.as_slice()) {
                let key = GroupKey::from_bytes(&stored.key).map_err(corrupt)?;
                let text = self
                    .query
                    .accepts(key.values())
                    .then(|| key_text(&self.plan, self.format, &key).into_boxed_str());
                if self.keys.len() >= KEYS_KEPT {
                    self.keys.clear();
                }
                self.keys
                    .insert(stored.key.clone().into_boxed_slice(), text);
            }
            let Some(Some(key)) = self.keys.get(stored.key.as_slice()) else {
                continue;
            };
            let state = PartialState::decode(&stored.state, Some(&self.kinds)).map_err(corrupt)?;
            let values = state.finalize(&self.kinds);
            self.out.push_str(key);
            let window = (stored.window_start, stored.window_end, true);
            write_window(
                self.format,
                window,
                &values,
                &self.value_names,
                &mut self.out,
            );
        }
        Ok(())
    }
}

/// One window to write.
struct Row<'a> {
    start: Millis,
    end: Millis,
    is_final: bool,
    key: &'a GroupKey,
    values: &'a [OutputValue],
}

impl Row<'_> {
    /// Appends the row; `value_names` are the aggregates' names rendered as JSON keys
    /// (`"name":`), once per export.
    fn write(
        &self,
        plan: &MetricPlan,
        format: ExportFormat,
        value_names: &[String],
        out: &mut String,
    ) {
        out.push_str(&key_text(plan, format, self.key));
        write_window(
            format,
            (self.start, self.end, self.is_final),
            self.values,
            value_names,
            out,
        );
    }
}

/// The start of a row, up to its window: `{"key":{…},` or the key's CSV fields and commas.
fn key_text(plan: &MetricPlan, format: ExportFormat, key: &GroupKey) -> String {
    let mut out = String::new();
    match format {
        ExportFormat::Ndjson => {
            out.push_str("{\"key\":");
            out.push_str(&render::key_object(plan, key));
            out.push(',');
        }
        ExportFormat::Csv => {
            for value in key.values() {
                csv_key(value, &mut out);
                out.push(',');
            }
        }
    }
    out
}

/// The rest of a row after its key: the window, whether it is final, and the values.
fn write_window(
    format: ExportFormat,
    (start, end, is_final): (Millis, Millis, bool),
    values: &[OutputValue],
    value_names: &[String],
    out: &mut String,
) {
    match format {
        ExportFormat::Ndjson => {
            let _ = write!(
                out,
                "\"start\":{start},\"end\":{end},\"final\":{is_final},\"values\":{{"
            );
            for (index, (name, value)) in value_names.iter().zip(values).enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(name);
                render::value(value, out);
            }
            out.push_str("}}\n");
        }
        ExportFormat::Csv => {
            let _ = write!(out, "{start},{end},{is_final}");
            for value in values {
                out.push(',');
                csv_value(value, out);
            }
            out.push('\n');
        }
    }
}

fn csv_header(plan: &MetricPlan, out: &mut String) {
    let names = plan
        .key_names
        .iter()
        .map(String::as_str)
        .chain(["start", "end", "final"])
        .chain(render::aggregate_names(plan));
    for (index, name) in names.enumerate() {
        if index > 0 {
            out.push(',');
        }
        csv_text(name, out);
    }
    out.push('\n');
}

/// A text field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_text(text: &str, out: &mut String) {
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

fn csv_key(value: &KeyValue, out: &mut String) {
    match value {
        KeyValue::Null => {}
        KeyValue::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
        KeyValue::Number(number) => {
            let _ = write!(out, "{number}");
        }
        KeyValue::Text(text) => csv_text(text, out),
    }
}

fn csv_value(value: &OutputValue, out: &mut String) {
    match value {
        OutputValue::Null => {}
        OutputValue::Overflow => out.push_str("overflow"),
        OutputValue::Float(number) if !number.is_finite() => {}
        other => render::value(other, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_and_say_what_to_write() {
        let pairs = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        let params =
            ExportParams::from_pairs(pairs(&[("format", "csv"), ("filter", "url:/a")])).unwrap();
        assert_eq!(params.format, ExportFormat::Csv);
        assert_eq!(params.series.filters, ["url:/a"]);
        assert_eq!(
            ExportParams::from_pairs(vec![]).unwrap().format,
            ExportFormat::Ndjson
        );
        let error = ExportParams::from_pairs(pairs(&[("format", "xml")])).unwrap_err();
        assert!(error.to_string().contains("format=csv"), "{error}");
        let error = ExportParams::from_pairs(pairs(&[("top", "3")])).unwrap_err();
        assert!(error.to_string().contains("format=csv|ndjson"), "{error}");
    }

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        let mut out = String::new();
        csv_text("plain", &mut out);
        out.push('|');
        csv_text("a,b", &mut out);
        out.push('|');
        csv_text("say \"hi\"", &mut out);
        out.push('|');
        csv_value(&OutputValue::Null, &mut out);
        out.push('|');
        csv_value(&OutputValue::Overflow, &mut out);
        out.push('|');
        csv_value(&OutputValue::Count(7), &mut out);
        assert_eq!(out, "plain|\"a,b\"|\"say \"\"hi\"\"\"||overflow|7");
    }
}
