//! `sluice query [METRIC] [--from T] [--to T] [--resolution R] [--top N] [--by AGG]
//! [--filter KEY:VALUE]… [--format table|json]`: reads a metric from a running sluice's query
//! API (`GET /v1/metrics/METRIC`) with a read key and prints it as a table or as the API's JSON.
//! Without METRIC it lists the metrics. Parameters are checked by the server, whose 400 says
//! what to fix (exit 2).

use crate::client::ReadTarget;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use hyper::Method;
use serde_json::Value;
use sluice_core::time::format_millis;

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The metric to read (leave out to list the metrics).
    metric: Option<String>,
    /// Start: RFC 3339, epoch ms, now or now-DURATION like now-24h [default: to − 1h].
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    from: Option<String>,
    /// End, exclusive [default: now].
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    to: Option<String>,
    /// `raw` (the metric's windows) or a duration like 1h or 1d.
    #[arg(long, value_name = "R")]
    resolution: Option<String>,
    /// Only the N group keys with the largest --by over the range.
    #[arg(long, value_name = "N")]
    top: Option<u32>,
    /// The aggregate --top ranks by [default: the first].
    #[arg(long, value_name = "AGGREGATE")]
    by: Option<String>,
    /// Only group keys with this value (repeat: values of one key are alternatives).
    #[arg(long = "filter", value_name = "KEY:VALUE")]
    filters: Vec<String>,
    /// Output: an aligned table, or the API's JSON answer as one line.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    target: ReadTarget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

pub fn run(args: QueryArgs) -> anyhow::Result<()> {
    let (target, key) = args.target.resolve()?;
    let path = match &args.metric {
        None => "/v1/metrics".to_owned(),
        Some(metric) => format!("/v1/metrics/{}?{}", encode(metric), query_string(&args)),
    };
    let answer = crate::client::call_json(&target, Method::GET, &path, &key, Bytes::new())?;
    match (args.format, &args.metric) {
        (Format::Json, _) => println!("{answer}"),
        (Format::Table, None) => print!("{}", metrics_table(&answer)),
        (Format::Table, Some(_)) => print!("{}", series_table(&answer)),
    }
    Ok(())
}

/// The series query's parameters, percent-encoded.
fn query_string(args: &QueryArgs) -> String {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    for (name, value) in [
        ("from", &args.from),
        ("to", &args.to),
        ("resolution", &args.resolution),
        ("by", &args.by),
    ] {
        if let Some(value) = value {
            pairs.push((name, value.clone()));
        }
    }
    if let Some(top) = args.top {
        pairs.push(("top", top.to_string()));
    }
    pairs.extend(args.filters.iter().map(|f| ("filter", f.clone())));
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes a query-string value (RFC 3986 unreserved characters stay).
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "NULL".into(),
        other => other.to_string(),
    }
}

/// Aligned columns, the header underlined.
pub(crate) fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if index > 0 {
                out.push_str("  ");
            }
            out.push_str(&format!("{cell:<width$}"));
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header);
    out.push_str(&line(
        &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
    ));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

fn metrics_table(answer: &Value) -> String {
    let header = ["metric", "keys", "values", "window"].map(str::to_owned);
    let rows: Vec<Vec<String>> = answer["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|metric| {
            let list = |values: &Value, field: Option<&str>| {
                values
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| text(field.map_or(v, |f| &v[f])))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let window = &metric["window"];
            let size = ["size_ms", "gap_ms"]
                .iter()
                .find_map(|f| window[*f].as_i64())
                .map_or(String::new(), |ms| format!(" {}s", ms / 1000));
            vec![
                text(&metric["name"]),
                list(&metric["keys"], None),
                list(&metric["values"], Some("name")),
                format!("{}{size}", text(&window["kind"])),
            ]
        })
        .collect();
    table(&header, &rows)
}

fn series_table(answer: &Value) -> String {
    let keys: Vec<String> = answer["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let columns: Vec<String> = answer["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let mut header = keys.clone();
    header.extend(["start".to_owned(), "end".to_owned(), "state".to_owned()]);
    header.extend(columns.iter().skip(3).cloned());
    let mut rows = Vec::new();
    for series in answer["series"].as_array().into_iter().flatten() {
        for point in series["points"].as_array().into_iter().flatten() {
            let mut row: Vec<String> = keys.iter().map(|k| text(&series["key"][k])).collect();
            let time = |index: usize| point[index].as_i64().map(format_millis).unwrap_or_default();
            row.push(time(0));
            row.push(time(1));
            row.push(if point[2] == true { "final" } else { "open" }.to_owned());
            row.extend(point.as_array().into_iter().flatten().skip(3).map(text));
            rows.push(row);
        }
    }
    if rows.is_empty() {
        return "no windows in the range\n".to_owned();
    }
    table(&header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_print_as_aligned_tables() {
        let answer = json!({
            "keys": ["url"], "columns": ["start", "end", "final", "views"],
            "series": [{"key": {"url": "/a"}, "points": [[0, 60000, true, 12], [60000, 120000, false, 3]]},
                       {"key": {"url": "/longer"}, "points": [[0, 60000, true, null]]}]
        });
        assert_eq!(
            series_table(&answer),
            "url      start                     end                       state  views\n\
             -------  ------------------------  ------------------------  -----  -----\n\
             /a       1970-01-01T00:00:00.000Z  1970-01-01T00:01:00.000Z  final  12\n\
             /a       1970-01-01T00:01:00.000Z  1970-01-01T00:02:00.000Z  open   3\n\
             /longer  1970-01-01T00:00:00.000Z  1970-01-01T00:01:00.000Z  final  NULL\n"
        );
        assert_eq!(encode("url:/a b&c"), "url:/a%20b%26c");
    }
}
