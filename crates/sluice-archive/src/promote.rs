//! Promoted columns (`[[archive.columns]]`): values inside an event's `properties`, `traits` or
//! `context`, written as typed columns after the base columns, for every tenant or one, so
//! engines filter and sum them without parsing JSON:
//!
//! ```toml
//! [[archive.columns]]
//! tenant = "shop"               # omitted: every tenant
//! path = "properties.revenue"   # properties. / traits. / context. then keys, dot-separated
//! name = "revenue"              # omitted: the path's last key
//! type = "decimal(12,2)"        # string, bigint, double, boolean, timestamp, decimal(p,s)
//! ```
//!
//! A value that is missing, `null`, or not of the column's type (a string that does not parse
//! as one, a number out of a decimal's range) is NULL in the column; the JSON column keeps the
//! value as sent either way. `bigint`, `double` and `decimal` take numbers and numeric
//! strings (a decimal is rounded half away from zero to its scale), `boolean` takes booleans
//! and `"true"`/`"false"`, `timestamp` takes RFC 3339 strings and epoch milliseconds, and
//! `string` takes strings, numbers and booleans (as their JSON text). Of a key an object has
//! twice, the first counts (as in metrics). Files of a tenant whose columns changed have
//! different schemas: read them with `union_by_name = true` (DuckDB) or `mergeSchema` (Spark).

use crate::format;
use arrow_array::ArrayRef;
use arrow_array::builder::{
    BooleanBuilder, Decimal128Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;
use sluice_stream::json::{FieldSet, KeyOrder, Kind as JsonKind, Slot};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// The most promoted columns one tenant's files may have.
pub const MAX_COLUMNS: usize = 64;

/// One `[[archive.columns]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ColumnConfig {
    /// The tenant whose files get the column; `None`: every tenant's.
    #[serde(default)]
    pub tenant: Option<String>,
    /// `properties.`, `traits.` or `context.`, then keys separated by dots.
    pub path: String,
    /// The column's name; `None`: the path's last key.
    #[serde(default)]
    pub name: Option<String>,
    /// `string`, `bigint`, `double`, `boolean`, `timestamp` or `decimal(p,s)`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// UTF-8 text.
    String,
    /// 64-bit signed integer.
    Bigint,
    /// 64-bit float.
    Double,
    /// Boolean.
    Boolean,
    /// TIMESTAMP(ms, UTC).
    Timestamp,
    /// DECIMAL(precision, scale).
    Decimal {
        /// 1 to 38 digits.
        precision: u8,
        /// 0 to `precision` digits after the point.
        scale: i8,
    },
}

/// Where a promoted value is: which JSON column, then keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Properties,
    Traits,
    Context,
}

/// A promoted column, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promoted {
    /// The column's name.
    pub name: String,
    source: Source,
    keys: Vec<String>,
    /// Its type.
    pub kind: Kind,
}

/// Names no promoted column may take: the base columns, and the Hive partition columns.
fn reserved(name: &str) -> bool {
    ["tenant", "date", "hour"].contains(&name) || format::schema().field_with_name(name).is_ok()
}

impl ColumnConfig {
    /// The column, or what is wrong with it and how to fix it.
    pub fn parse(&self) -> Result<Promoted, String> {
        let (source, rest) = match self.path.split_once('.') {
            Some(("properties", rest)) => (Source::Properties, rest),
            Some(("traits", rest)) => (Source::Traits, rest),
            Some(("context", rest)) => (Source::Context, rest),
            _ => {
                return Err(format!(
                    "path {:?} must start with properties., traits. or context. and name a key (properties.revenue)",
                    self.path
                ));
            }
        };
        let keys: Vec<String> = rest.split('.').map(str::to_owned).collect();
        if keys.iter().any(String::is_empty) || keys.len() > 8 {
            return Err(format!(
                "path {:?} must name 1 to 8 non-empty keys after its first part",
                self.path
            ));
        }
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| keys[keys.len() - 1].to_ascii_lowercase());
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(format!(
                "column name {name:?} must be 1 to 64 lower-case letters, digits and '_', not starting with a digit (set name = \"...\")"
            ));
        }
        if reserved(&name) {
            return Err(format!(
                "column name {name:?} is taken by a column every file has: set name = \"...\" to another"
            ));
        }
        let kind = parse_kind(&self.kind)?;
        Ok(Promoted {
            name,
            source,
            keys,
            kind,
        })
    }
}

fn parse_kind(text: &str) -> Result<Kind, String> {
    let kind = match text {
        "string" => Kind::String,
        "bigint" => Kind::Bigint,
        "double" => Kind::Double,
        "boolean" => Kind::Boolean,
        "timestamp" => Kind::Timestamp,
        _ => {
            let decimal = text
                .strip_prefix("decimal(")
                .and_then(|rest| rest.strip_suffix(')'))
                .and_then(|inner| inner.split_once(','))
                .and_then(|(p, s)| {
                    Some((p.trim().parse::<u8>().ok()?, s.trim().parse::<i8>().ok()?))
                })
                .filter(|&(p, s)| (1..=38).contains(&p) && s >= 0 && s as u8 <= p);
            match decimal {
                Some((precision, scale)) => Kind::Decimal { precision, scale },
                None => {
                    return Err(format!(
                        "type {text:?} is not one of string, bigint, double, boolean, timestamp, decimal(p,s) (p 1 to 38, s 0 to p)"
                    ));
                }
            }
        }
    };
    Ok(kind)
}

/// The promoted columns of a tenant's files and the schema they make.
#[derive(Debug)]
pub struct Columns {
    /// In the order of the config.
    pub list: Vec<Promoted>,
    /// The base columns, then these.
    pub schema: SchemaRef,
    /// Per JSON column the columns read from (`properties`, `traits`, `context`): the
    /// scanner's set of their paths, and each such column's index in `list` and slot.
    scans: Vec<SourceScan>,
}

/// How the promoted values inside one JSON column are found.
#[derive(Debug)]
struct SourceScan {
    /// The JSON column's index in [`format::JSON`].
    json: usize,
    set: FieldSet,
    /// (index in [`Columns::list`], slot of its path in `set`).
    columns: Vec<(usize, usize)>,
}

impl Columns {
    fn new(list: Vec<Promoted>) -> Columns {
        let base = format::schema();
        let schema = if list.is_empty() {
            base
        } else {
            let mut fields: Vec<Field> = base
                .fields()
                .iter()
                .map(|field| field.as_ref().clone())
                .collect();
            fields.extend(list.iter().map(|column| {
                let data_type = match column.kind {
                    Kind::String => DataType::Utf8,
                    Kind::Bigint => DataType::Int64,
                    Kind::Double => DataType::Float64,
                    Kind::Boolean => DataType::Boolean,
                    Kind::Timestamp => {
                        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
                    }
                    Kind::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
                };
                Field::new(&column.name, data_type, true)
            }));
            Arc::new(Schema::new(fields))
        };
        let mut scans = Vec::new();
        for (json, source) in [Source::Properties, Source::Traits, Source::Context]
            .into_iter()
            .enumerate()
        {
            let mut paths: Vec<&[String]> = Vec::new();
            let mut columns = Vec::new();
            for (index, column) in list.iter().enumerate() {
                if column.source != source {
                    continue;
                }
                // Columns of one path share its slot.
                let slot = match paths
                    .iter()
                    .position(|path| *path == column.keys.as_slice())
                {
                    Some(slot) => slot,
                    None => {
                        paths.push(&column.keys);
                        paths.len() - 1
                    }
                };
                columns.push((index, slot));
            }
            if !columns.is_empty() {
                let paths: Vec<Vec<&str>> = paths
                    .iter()
                    .map(|keys| keys.iter().map(String::as_str).collect())
                    .collect();
                scans.push(SourceScan {
                    json,
                    set: FieldSet::new(&paths),
                    columns,
                });
            }
        }
        Columns {
            list,
            schema,
            scans,
        }
    }

    /// No promoted column.
    pub fn none() -> Arc<Columns> {
        Arc::new(Columns::new(Vec::new()))
    }

    /// A derived stream's columns: the base columns of [`format::derived_schema`], none
    /// promoted.
    pub fn derived() -> Arc<Columns> {
        Arc::new(Columns {
            list: Vec::new(),
            schema: format::derived_schema(),
            scans: Vec::new(),
        })
    }
}

/// Every tenant's promoted columns.
#[derive(Debug)]
pub struct Promotions {
    every: Arc<Columns>,
    by_tenant: HashMap<String, Arc<Columns>>,
}

impl Promotions {
    /// From the config's entries (valid config only: entries that do not parse are left out).
    pub fn new(configs: &[ColumnConfig]) -> Promotions {
        let parsed: Vec<(Option<String>, Promoted)> = configs
            .iter()
            .filter_map(|config| Some((config.tenant.clone(), config.parse().ok()?)))
            .collect();
        let every: Vec<Promoted> = parsed
            .iter()
            .filter(|(tenant, _)| tenant.is_none())
            .map(|(_, column)| column.clone())
            .collect();
        let mut by_tenant: HashMap<String, Vec<Promoted>> = HashMap::new();
        for (tenant, column) in &parsed {
            if let Some(tenant) = tenant {
                by_tenant
                    .entry(tenant.clone())
                    .or_insert_with(|| every.clone())
                    .push(column.clone());
            }
        }
        Promotions {
            every: Arc::new(Columns::new(every)),
            by_tenant: by_tenant
                .into_iter()
                .map(|(tenant, list)| (tenant, Arc::new(Columns::new(list))))
                .collect(),
        }
    }

    /// A derived stream's: [`Columns::derived`] for every tenant.
    pub fn derived() -> Promotions {
        Promotions {
            every: Columns::derived(),
            by_tenant: HashMap::new(),
        }
    }

    /// `tenant`'s columns.
    pub fn of(&self, tenant: &str) -> Arc<Columns> {
        Arc::clone(self.by_tenant.get(tenant).unwrap_or(&self.every))
    }

    /// Problems of the config's entries: each entry's own, and names taken twice in a
    /// tenant's files; `(index, message)`.
    pub fn problems(configs: &[ColumnConfig]) -> Vec<(usize, String)> {
        let mut problems = Vec::new();
        let mut names: Vec<(Option<&str>, String, usize)> = Vec::new();
        for (index, config) in configs.iter().enumerate() {
            if let Some(tenant) = &config.tenant
                && let Err(problem) = sluice_core::tenant::check_tenant_name(tenant)
            {
                problems.push((index, problem));
            }
            match config.parse() {
                Ok(column) => {
                    let tenant = config.tenant.as_deref();
                    let clash = names.iter().find(|(other, name, _)| {
                        *name == column.name
                            && (other.is_none() || tenant.is_none() || *other == tenant)
                    });
                    if let Some((_, name, first)) = clash {
                        problems.push((
                            index,
                            format!("column name {name:?} is already columns[{first}]'s in the same tenant's files: set name = \"...\""),
                        ));
                    }
                    names.push((tenant, column.name, index));
                }
                Err(problem) => problems.push((index, problem)),
            }
        }
        let mut per_tenant: HashMap<Option<&str>, usize> = HashMap::new();
        for config in configs {
            *per_tenant.entry(config.tenant.as_deref()).or_default() += 1;
        }
        let every = per_tenant.get(&None).copied().unwrap_or(0);
        if per_tenant
            .iter()
            .any(|(tenant, count)| count + if tenant.is_some() { every } else { 0 } > MAX_COLUMNS)
        {
            problems.push((
                configs.len() - 1,
                format!("a tenant's files may have at most {MAX_COLUMNS} promoted columns"),
            ));
        }
        problems
    }
}

/// One promoted column being built.
#[derive(Debug)]
pub(crate) enum Builder {
    String(StringBuilder),
    Bigint(Int64Builder),
    Double(Float64Builder),
    Boolean(BooleanBuilder),
    Timestamp(TimestampMillisecondBuilder),
    Decimal(Decimal128Builder, u8, i8),
}

impl Builder {
    pub(crate) fn new(kind: Kind) -> Builder {
        match kind {
            Kind::String => Builder::String(StringBuilder::new()),
            Kind::Bigint => Builder::Bigint(Int64Builder::new()),
            Kind::Double => Builder::Double(Float64Builder::new()),
            Kind::Boolean => Builder::Boolean(BooleanBuilder::new()),
            Kind::Timestamp => Builder::Timestamp(TimestampMillisecondBuilder::new()),
            Kind::Decimal { precision, scale } => {
                Builder::Decimal(Decimal128Builder::new(), precision, scale)
            }
        }
    }

    /// Appends `value` as this column's type (NULL when it is none of it).
    fn append(&mut self, value: Option<Found<'_>>) {
        match self {
            Builder::String(builder) => builder.append_option(value.map(|value| match value {
                Found::Text(text) => text,
                // As their JSON text.
                Found::Number(number) => Cow::Borrowed(number),
                Found::Bool(flag) => Cow::Borrowed(if flag { "true" } else { "false" }),
            })),
            Builder::Bigint(builder) => {
                builder.append_option(value.and_then(|value| match value {
                    Found::Number(number) => number.parse::<i64>().ok().or_else(|| {
                        number
                            .parse::<f64>()
                            .ok()
                            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                            .map(|f| f as i64)
                    }),
                    Found::Text(text) => text.trim().parse().ok(),
                    Found::Bool(_) => None,
                }))
            }
            Builder::Double(builder) => {
                builder.append_option(value.and_then(|value| match value {
                    Found::Number(number) => number.parse::<f64>().ok().filter(|f| f.is_finite()),
                    Found::Text(text) => text.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
                    Found::Bool(_) => None,
                }))
            }
            Builder::Boolean(builder) => {
                builder.append_option(value.and_then(|value| match value {
                    Found::Bool(flag) => Some(flag),
                    Found::Text(text) => match &*text {
                        "true" => Some(true),
                        "false" => Some(false),
                        _ => None,
                    },
                    Found::Number(_) => None,
                }))
            }
            Builder::Timestamp(builder) => {
                builder.append_option(value.and_then(|value| match value {
                    Found::Number(number) => number.parse::<i64>().ok(),
                    Found::Text(text) => sluice_core::time::parse_rfc3339_millis(&text).ok(),
                    Found::Bool(_) => None,
                }))
            }
            Builder::Decimal(builder, precision, scale) => {
                let text = value.and_then(|value| match value {
                    Found::Number(number) => Some(Cow::Borrowed(number)),
                    Found::Text(text) => Some(text),
                    Found::Bool(_) => None,
                });
                builder
                    .append_option(text.and_then(|text| decimal(text.trim(), *precision, *scale)));
            }
        }
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::String(builder) => Arc::new(builder.finish()),
            Builder::Bigint(builder) => Arc::new(builder.finish()),
            Builder::Double(builder) => Arc::new(builder.finish()),
            Builder::Boolean(builder) => Arc::new(builder.finish()),
            Builder::Timestamp(builder) => Arc::new(builder.finish().with_timezone("UTC")),
            Builder::Decimal(builder, precision, scale) => Arc::new(
                builder
                    .finish()
                    .with_precision_and_scale(*precision, *scale)
                    .expect("precision and scale were checked"),
            ),
        }
    }
}

/// Scratch memory of the promoted columns' scans, one per [`Rows`](format::Rows).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    slots: Vec<Slot>,
    /// Per JSON column scanned, the key order its objects had so far.
    shapes: Vec<KeyOrder>,
}

/// Appends each promoted column's value of `event` to its builder. Each JSON column that
/// columns read from is scanned once for all their paths (the stream engine's scanner: the
/// values' byte ranges, nothing else decoded; of a key written twice the first counts, as in
/// metrics); values are taken from their text as they are.
pub(crate) fn append(
    columns: &Columns,
    builders: &mut [Builder],
    event: &format::Fields<'_>,
    scratch: &mut Scratch,
) {
    scratch
        .shapes
        .resize_with(columns.scans.len(), KeyOrder::default);
    let Scratch { slots, shapes } = scratch;
    for (scan, shape) in columns.scans.iter().zip(shapes) {
        let text = event.json[scan.json];
        // Not an object (or malformed): no value of its paths.
        let found = text.is_some_and(|text| {
            scan.set
                .scan_with(text.as_bytes(), slots, shape, 0, &mut |_| false)
                .is_ok()
        });
        for &(index, slot) in &scan.columns {
            let value = match text {
                Some(text) if found => Found::of(text, slots[slot]),
                _ => None,
            };
            builders[index].append(value);
        }
    }
}

/// A promoted value as found in its JSON text.
#[derive(Debug, Clone, PartialEq)]
enum Found<'a> {
    Text(Cow<'a, str>),
    /// A number's JSON text.
    Number(&'a str),
    Bool(bool),
}

impl<'a> Found<'a> {
    /// The value of `slot` in `text`; `None` when missing, `null`, or an object or array (no
    /// column type takes those).
    fn of(text: &'a str, slot: Slot) -> Option<Found<'a>> {
        let (start, end) = (slot.start as usize, slot.end as usize);
        match slot.kind {
            JsonKind::Missing | JsonKind::Null | JsonKind::Composite => None,
            JsonKind::True => Some(Found::Bool(true)),
            JsonKind::False => Some(Found::Bool(false)),
            JsonKind::String => text.get(start..end).map(|s| Found::Text(Cow::Borrowed(s))),
            JsonKind::EscapedString => text
                .get(start.checked_sub(1)?..end + 1)
                .and_then(|quoted| serde_json::from_str::<String>(quoted).ok())
                .map(|s| Found::Text(Cow::Owned(s))),
            JsonKind::Number => text.get(start..end).map(Found::Number),
        }
    }
}

/// The decimal `text` (`-12.345`, `1e3`) scaled by 10^`scale` and rounded half away from
/// zero, when it has at most `precision` digits.
fn decimal(text: &str, precision: u8, scale: i8) -> Option<i128> {
    let scale = u32::try_from(scale).ok()?;
    let limit = 10i128.checked_pow(u32::from(precision))?;
    let value = if text.contains(['e', 'E']) {
        let float: f64 = text.parse().ok()?;
        let scaled = (float * 10f64.powi(scale as i32)).round();
        (scaled.is_finite() && scaled.abs() < 1e38).then_some(scaled as i128)?
    } else {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if (whole.is_empty() && fraction.is_empty())
            || !whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let mut value: i128 = 0;
        for b in whole.bytes() {
            value = value.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
        }
        let mut fraction = fraction.bytes();
        for _ in 0..scale {
            let digit = fraction.next().map_or(0, |b| i128::from(b - b'0'));
            value = value.checked_mul(10)?.checked_add(digit)?;
        }
        if fraction.next().is_some_and(|b| b >= b'5') {
            value = value.checked_add(1)?;
        }
        if negative { -value } else { value }
    };
    (value.abs() < limit).then_some(value)
}

#[cfg(test)]
mod tests;
