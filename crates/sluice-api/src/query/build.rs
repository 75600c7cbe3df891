//! Answers from cells: per group key, the windows in range from three sources — stored rows
//! older than the cache's horizon, the cache of final windows, and the live snapshot (windows
//! not final yet) — filtered, ranked for top-N, rolled up to the resolution, and handed to a
//! [`Sink`] (JSON text for REST, values for GraphQL and the CLI).

use crate::error::ApiError;
use crate::query::cache::Series;
use crate::query::cells::{Cell, KeySeries, bucket_close, close_of};
use crate::query::live::LiveSnapshot;
use crate::query::params::SeriesQuery;
use sluice_core::time::Millis;
use sluice_stream::agg::{OutputValue, PartialState};
use sluice_stream::plan::MetricPlan;
use sluice_stream::render;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// Receives an answer, series by series.
pub(crate) trait Sink {
    /// A series starts.
    fn series(&mut self, key: &KeySeries);
    /// One point of the current series; `rendered` is `[start,end,final,values…]`.
    fn point(
        &mut self,
        start: Millis,
        end: Millis,
        is_final: bool,
        values: &[OutputValue],
        rendered: &str,
    );
}

/// Where an answer's windows come from.
#[derive(Debug)]
pub(crate) struct Sources<'a> {
    pub(crate) plan: &'a MetricPlan,
    /// Windows closing at or before this are final.
    pub(crate) frontier: Millis,
    /// Final windows older than the cache's horizon, read from the store for this query.
    pub(crate) old: &'a BTreeMap<Box<[u8]>, KeySeries>,
    /// The cache.
    pub(crate) cache: &'a Series,
    /// Windows not final yet (`None` when the range holds none).
    pub(crate) live: Option<&'a LiveSnapshot>,
}

/// How large an answer was.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) series: usize,
    pub(crate) points: usize,
}

#[derive(Clone, Copy)]
struct CellRef<'a> {
    start: Millis,
    end: Millis,
    is_final: bool,
    cached: bool,
    cell: &'a Cell,
}

struct Selected<'a> {
    series: &'a KeySeries,
    cells: Vec<CellRef<'a>>,
}

/// Builds the answer to `query` into `sink`: selects each key's windows in range, ranks them
/// for top-N, checks the answer's size, and emits it.
pub(crate) fn build(
    sources: &Sources<'_>,
    query: &SeriesQuery,
    max_points: usize,
    max_series: usize,
    sink: &mut impl Sink,
) -> Result<Summary, ApiError> {
    let mut selected = select(sources, query);
    if let Some(top) = query.top {
        selected = top_n(sources.plan, selected, top, query.by);
    }
    if selected.len() > max_series {
        return Err(ApiError::bad_request(
            "too_many_series",
            format!(
                "{} series match, more than api.max-series ({max_series}): add filters or top=N",
                selected.len()
            ),
        ));
    }
    let points = count_points(&selected, query.resolution);
    if points > max_points {
        return Err(ApiError::bad_request(
            "too_many_points",
            format!(
                "the answer has {points} points, more than api.max-points ({max_points}): ask for a coarser resolution, a shorter range, filters or top=N"
            ),
        ));
    }
    for entry in &selected {
        sink.series(entry.series);
        match query.resolution {
            None => {
                for cell in &entry.cells {
                    sink.point(
                        cell.start,
                        cell.end,
                        cell.is_final,
                        &cell.cell.values,
                        &cell.cell.rendered,
                    );
                }
            }
            Some(every) => roll_up(sources, entry, every, sink),
        }
    }
    Ok(Summary {
        series: selected.len(),
        points,
    })
}

/// Every group key the query accepts that has windows in range, in key order, each with its
/// windows from the three sources in time order.
fn select<'a>(sources: &Sources<'a>, query: &SeriesQuery) -> Vec<Selected<'a>> {
    let mut keys: BTreeSet<&[u8]> = BTreeSet::new();
    keys.extend(sources.old.keys().map(|k| &**k));
    keys.extend(sources.cache.keys.keys().map(|k| &**k));
    if let Some(live) = sources.live {
        keys.extend(live.keys.keys().map(|k| &**k));
    }
    let mut selected = Vec::new();
    for bytes in keys {
        let old = sources.old.get(bytes);
        let cached = sources.cache.keys.get(bytes);
        let live = sources.live.and_then(|live| live.keys.get(bytes));
        let Some(series) = cached.or(live).or(old) else {
            continue;
        };
        if !query.accepts(series.key.values()) {
            continue;
        }
        let cells = cells_in_range(sources, query, [old, cached, live]);
        if !cells.is_empty() {
            selected.push(Selected { series, cells });
        }
    }
    selected
}

/// One key's windows in the query's range from its `[old, cached, live]` series, in time
/// order; live windows that are final by now are left to the other two.
fn cells_in_range<'a>(
    sources: &Sources<'a>,
    query: &SeriesQuery,
    [old, cached, live]: [Option<&'a KeySeries>; 3],
) -> Vec<CellRef<'a>> {
    let range = (query.from, Millis::MIN)..(query.to, Millis::MIN);
    let mut cells: Vec<CellRef<'_>> = Vec::new();
    for (source, is_final, cached) in [(old, true, false), (cached, true, true)] {
        if let Some(source) = source {
            cells.extend(
                source
                    .cells
                    .range(range.clone())
                    .map(|(&(start, end), cell)| CellRef {
                        start,
                        end,
                        is_final,
                        cached,
                        cell,
                    }),
            );
        }
    }
    if let Some(live) = live {
        cells.extend(
            live.cells
                .range(range)
                .filter(|((_, end), _)| close_of(sources.plan, *end) > sources.frontier)
                .map(|(&(start, end), cell)| CellRef {
                    start,
                    end,
                    is_final: false,
                    cached: false,
                    cell,
                }),
        );
    }
    // The sources are each in order and the live windows mostly follow the final ones: this
    // sort is a merge of a few runs.
    cells.sort_by_key(|cell| (cell.start, cell.end));
    cells
}

/// The `top` keys by aggregate `by` over the whole range, largest first (ties in key order).
fn top_n<'a>(
    plan: &MetricPlan,
    selected: Vec<Selected<'a>>,
    top: usize,
    by: usize,
) -> Vec<Selected<'a>> {
    let mut ranked: Vec<(OutputValue, Selected<'_>)> = selected
        .into_iter()
        .map(|entry| {
            let mut state = entry.cells[0].cell.state.clone();
            for cell in &entry.cells[1..] {
                let _ = state.merge(&cell.cell.state);
            }
            let value = state
                .states
                .get(by)
                .zip(plan.aggregates.get(by))
                .map_or(OutputValue::Null, |(state, aggregate)| {
                    state.finalize(&aggregate.kind)
                });
            (value, entry)
        })
        .collect();
    ranked.sort_by(|(a, x), (b, y)| compare(b, a).then_with(|| x.series.json.cmp(&y.series.json)));
    ranked.truncate(top);
    ranked.into_iter().map(|(_, entry)| entry).collect()
}

/// The points the answer will have: one per window, or per bucket of `resolution` holding
/// windows.
fn count_points(selected: &[Selected<'_>], resolution: Option<Millis>) -> usize {
    selected
        .iter()
        .map(|entry| match resolution {
            None => entry.cells.len(),
            Some(every) => {
                let mut buckets = entry
                    .cells
                    .iter()
                    .map(|cell| bucket_of(cell.start, every))
                    .collect::<Vec<_>>();
                buckets.dedup();
                buckets.len()
            }
        })
        .sum()
}

fn bucket_of(start: Millis, every: Millis) -> Millis {
    start - start.rem_euclid(every)
}

/// Emits one point per bucket of `every` that holds windows.
fn roll_up(sources: &Sources<'_>, entry: &Selected<'_>, every: Millis, sink: &mut impl Sink) {
    let plan = sources.plan;
    let kinds = || plan.aggregates.iter().map(|a| &a.kind);
    let level = entry
        .series
        .rollups
        .iter()
        .find(|(level, _)| *level == every)
        .map(|(_, buckets)| buckets);
    let mut index = 0;
    while index < entry.cells.len() {
        let bucket = bucket_of(entry.cells[index].start, every);
        let mut last = index;
        while last < entry.cells.len() && bucket_of(entry.cells[last].start, every) == bucket {
            last += 1;
        }
        let group = &entry.cells[index..last];
        index = last;
        let end = bucket.saturating_add(every);
        let is_final =
            group.iter().all(|cell| cell.is_final) && bucket_close(plan, end) <= sources.frontier;
        let all_cached = group.iter().all(|cell| cell.cached) && bucket >= sources.cache.horizon;
        if let (true, Some(rollup)) = (all_cached, level.and_then(|buckets| buckets.get(&bucket))) {
            if is_final {
                let (values, rendered) = rollup.rendered.get_or_init(|| {
                    let values: Box<[OutputValue]> =
                        rollup.state.finalize(kinds()).into_boxed_slice();
                    let rendered = render::point(bucket, end, true, &values).into_boxed_str();
                    (values, rendered)
                });
                sink.point(bucket, end, true, values, rendered);
            } else {
                emit(plan, bucket, end, false, &rollup.state, sink);
            }
            continue;
        }
        let mut state: PartialState = group[0].cell.state.clone();
        for cell in &group[1..] {
            let _ = state.merge(&cell.cell.state);
        }
        emit(plan, bucket, end, is_final, &state, sink);
    }
}

fn emit(
    plan: &MetricPlan,
    start: Millis,
    end: Millis,
    is_final: bool,
    state: &PartialState,
    sink: &mut impl Sink,
) {
    let values = state.finalize(plan.aggregates.iter().map(|a| &a.kind));
    let rendered = render::point(start, end, is_final, &values);
    sink.point(start, end, is_final, &values, &rendered);
}

/// Orders aggregate values for top-N: NULL lowest, numbers by value, an overflowed sum
/// highest (it is beyond every number).
fn compare(a: &OutputValue, b: &OutputValue) -> Ordering {
    let number = |value: &OutputValue| match value {
        OutputValue::Null => None,
        OutputValue::Overflow => Some(f64::INFINITY),
        OutputValue::Count(count) => Some(*count as f64),
        OutputValue::Decimal(number) => Some(number.to_f64()),
        OutputValue::Float(number) => Some(*number),
    };
    match (number(a), number(b)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => x.total_cmp(&y),
    }
}

/// Writes the answer as the JSON of `GET /v1/metrics/{name}`'s `series` array.
#[derive(Debug, Default)]
pub(crate) struct JsonSink {
    pub(crate) out: String,
    open: bool,
    points: usize,
}

impl JsonSink {
    pub(crate) fn with_capacity(capacity: usize) -> JsonSink {
        JsonSink {
            out: String::with_capacity(capacity),
            open: false,
            points: 0,
        }
    }

    /// Closes the last series.
    pub(crate) fn finish(&mut self) {
        if self.open {
            self.out.push_str("]}");
            self.open = false;
        }
    }
}

impl Sink for JsonSink {
    fn series(&mut self, key: &KeySeries) {
        if self.open {
            self.out.push_str("]},");
        }
        self.out.push_str("{\"key\":");
        self.out.push_str(&key.json);
        self.out.push_str(",\"points\":[");
        self.open = true;
        self.points = 0;
    }

    fn point(&mut self, _: Millis, _: Millis, _: bool, _: &[OutputValue], rendered: &str) {
        if self.points > 0 {
            self.out.push(',');
        }
        self.out.push_str(rendered);
        self.points += 1;
    }
}

/// One point of a series, as values.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Window (or bucket) start, epoch ms.
    pub start: Millis,
    /// Window (or bucket) end, epoch ms, exclusive.
    pub end: Millis,
    /// Whether it can no longer change.
    pub is_final: bool,
    /// The aggregates' values, in the metric's order.
    pub values: Vec<OutputValue>,
}

/// One group key's points, as values.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesValues {
    /// The group key as a JSON object.
    pub key: serde_json::Value,
    /// Its points in time order.
    pub points: Vec<Point>,
}

/// Collects the answer as values (GraphQL, the CLI's table).
#[derive(Debug, Default)]
pub(crate) struct ValueSink {
    pub(crate) series: Vec<SeriesValues>,
}

impl Sink for ValueSink {
    fn series(&mut self, key: &KeySeries) {
        self.series.push(SeriesValues {
            key: serde_json::from_str(&key.json).unwrap_or_default(),
            points: Vec::new(),
        });
    }

    fn point(
        &mut self,
        start: Millis,
        end: Millis,
        is_final: bool,
        values: &[OutputValue],
        _: &str,
    ) {
        if let Some(series) = self.series.last_mut() {
            series.points.push(Point {
                start,
                end,
                is_final,
                values: values.to_vec(),
            });
        }
    }
}
