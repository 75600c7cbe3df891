//! Reading metrics: the serving engine behind REST, GraphQL, WebSocket push and the CLI.
//!
//! Every read is one tenant's. An answer merges three sources (see [`build`]): the cache of
//! final windows ([`cache`], kept per metric and tenant, advanced from the store as windows
//! become final), a live snapshot of the windows that are not final yet ([`live`], read from
//! the stream engine and the store at most once per `api.live-max-age` however many readers
//! ask), and, for ranges older than `api.cache-horizon`, stored rows read for the query.
//!
//! # Layout
//! - [`params`]: query parameters, checked against the metric.
//! - [`cells`]: windows merged across partitions, with roll-ups.
//! - [`cache`], [`live`]: the two in-memory sources.
//! - [`build`]: filters, top-N, roll-ups, sinks.
//! - [`export`]: a whole range streamed as CSV or NDJSON, page by page from the store.
//!
//! Keys and values are written as JSON text by `sluice_stream::render`, the one renderer every
//! reader of results shares (the PostgreSQL store's BI views too).

pub mod build;
pub(crate) mod cache;
pub(crate) mod cells;
pub mod export;
pub(crate) mod live;
pub mod params;
pub mod profiles;

use crate::config::ApiConfig;
use crate::error::ApiError;
use build::{JsonSink, Sink, Sources, Summary, ValueSink};
use cache::TenantCache;
use cells::{KeySeries, close_of, merge_rows, series_of};
use futures::future::BoxFuture;
use live::LiveSnapshot;
use params::{SeriesParams, SeriesQuery};
use serde::Serialize;
use sluice_core::time::{Millis, now_millis};
use sluice_log::Log;
use sluice_pipelines::{PipelineError, Pipelines};
use sluice_store::{RowRange, StoreBackend};
use sluice_stream::engine::output::LiveWindows;
use sluice_stream::plan::{AggregateKind, MetricPlan, WindowSpec};
use sluice_stream::render;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use build::{Point, SeriesValues};

/// A metric's current generation and, per partition, its state the store does not have yet.
pub type LiveAnswer = (u32, Vec<(u32, LiveWindows)>);

/// How far a metric generation's committed results are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frontier {
    /// The generation.
    pub generation: u32,
    /// The lowest committed watermark of the partitions that have one; `None` while a
    /// partition that has not committed one still has events to process (its first events
    /// may fall anywhere) or while no partition has seen an event. Partitions that have
    /// processed every record of their source partition without seeing an event do not count.
    pub watermark: Option<Millis>,
    /// Whether this node computes the metric's first partition (in a cluster one node does:
    /// it evaluates the metric's alert rules and delivers their notifications).
    pub first_partition_here: bool,
}

impl Frontier {
    /// The frontier of per-partition (committed watermark, committed offset, end offset).
    pub fn of(
        generation: u32,
        partitions: impl IntoIterator<Item = (Option<Millis>, u64, u64)>,
    ) -> Frontier {
        let mut lowest: Option<Millis> = None;
        for (watermark, committed, end) in partitions {
            match watermark {
                Some(watermark) => lowest = Some(lowest.map_or(watermark, |l| l.min(watermark))),
                None if committed >= end => {}
                None => {
                    return Frontier {
                        generation,
                        watermark: None,
                        first_partition_here: false,
                    };
                }
            }
        }
        Frontier {
            generation,
            watermark: lowest,
            first_partition_here: false,
        }
    }
}

/// Where metric definitions and live state come from (the pipelines; a trait so the serving
/// layer is not generic over the log backend).
pub trait MetricSource: Send + Sync + 'static {
    /// A metric's plan and current generation.
    fn plan(&self, name: &str) -> Option<(Arc<MetricPlan>, u32)>;
    /// Every metric's plan and current generation.
    fn plans(&self) -> Vec<(Arc<MetricPlan>, u32)>;
    /// The current generation and how far its committed results are final.
    fn frontier<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Frontier, PipelineError>>;
    /// The current generation and, per partition, the state the store does not have yet.
    fn live_windows<'a>(
        &'a self,
        name: &'a str,
        tenant: &'a str,
    ) -> BoxFuture<'a, Result<LiveAnswer, PipelineError>>;
}

impl<L: Log> MetricSource for Pipelines<L> {
    fn plan(&self, name: &str) -> Option<(Arc<MetricPlan>, u32)> {
        Pipelines::plan(self, name)
    }

    fn plans(&self) -> Vec<(Arc<MetricPlan>, u32)> {
        Pipelines::plans(self)
    }

    fn frontier<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Frontier, PipelineError>> {
        Box::pin(async move {
            let status = self.status(Some(name)).await?;
            let Some(status) = status.first() else {
                return Err(PipelineError::Store(
                    sluice_store::StoreError::UnknownMetric(name.to_owned()),
                ));
            };
            let mut frontier = Frontier::of(
                status.record.generation,
                status
                    .partitions
                    .iter()
                    .map(|p| (p.watermark, p.committed_offset, p.end_offset)),
            );
            frontier.first_partition_here = status.partitions.iter().any(|partition| {
                partition.partition == 0
                    && partition.state != sluice_pipelines::PartitionState::Elsewhere
            });
            Ok(frontier)
        })
    }

    fn live_windows<'a>(
        &'a self,
        name: &'a str,
        tenant: &'a str,
    ) -> BoxFuture<'a, Result<LiveAnswer, PipelineError>> {
        Box::pin(Pipelines::live_windows(self, name, Some(tenant)))
    }
}

/// `GET /v1/sessions/{name}/open`: the open sessions' count.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OpenSessions {
    /// The sessions' name.
    pub sessions: String,
    /// The key's tenant.
    pub tenant: String,
    /// Sessions open now (not yet written as records).
    pub open: u64,
}

/// A metric as listed to readers: its shape, never its SQL.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MetricInfo {
    /// Name.
    pub name: String,
    /// Group key names (the tenant is implicit).
    pub keys: Vec<String>,
    /// Aggregates, in the order of each point's values.
    pub values: Vec<ValueInfo>,
    /// The window.
    pub window: WindowInfo,
    /// How long after a window's end it may still change, ms.
    pub allowed_lateness_ms: Millis,
    /// Resolutions it rolls up to without reading every window (`raw` always works).
    pub rollups: Vec<String>,
}

/// One aggregate of a metric.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ValueInfo {
    /// Column name.
    pub name: String,
    /// `count`, `count_distinct`, `sum`, `min`, `max`, `avg`, `approx_percentile`.
    pub aggregate: &'static str,
    /// The quantile, for `approx_percentile`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
}

/// A metric's window.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WindowInfo {
    /// `tumble`, `hop` or `session`.
    pub kind: &'static str,
    /// Length (tumble, hop), ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_ms: Option<Millis>,
    /// Distance between starts (hop), ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slide_ms: Option<Millis>,
    /// Inactivity gap (session), ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap_ms: Option<Millis>,
}

impl MetricInfo {
    fn of(plan: &MetricPlan) -> MetricInfo {
        let names = render::aggregate_names(plan);
        let values = plan
            .aggregates
            .iter()
            .zip(names)
            .map(|(aggregate, name)| {
                let (kind, quantile) = match aggregate.kind {
                    AggregateKind::CountStar | AggregateKind::Count => ("count", None),
                    AggregateKind::CountDistinct => ("count_distinct", None),
                    AggregateKind::Sum => ("sum", None),
                    AggregateKind::Min => ("min", None),
                    AggregateKind::Max => ("max", None),
                    AggregateKind::Avg => ("avg", None),
                    AggregateKind::ApproxPercentile { quantile } => {
                        ("approx_percentile", Some(quantile))
                    }
                    // Sessions' summaries; sessions are not queried as metrics.
                    AggregateKind::First => ("first", None),
                    AggregateKind::Last => ("last", None),
                };
                ValueInfo {
                    name: name.to_owned(),
                    aggregate: kind,
                    quantile,
                }
            })
            .collect();
        let window = match plan.window {
            WindowSpec::Tumble { size } => WindowInfo {
                kind: "tumble",
                size_ms: Some(size),
                slide_ms: None,
                gap_ms: None,
            },
            WindowSpec::Hop { slide, size } => WindowInfo {
                kind: "hop",
                size_ms: Some(size),
                slide_ms: Some(slide),
                gap_ms: None,
            },
            WindowSpec::Session { gap } => WindowInfo {
                kind: "session",
                size_ms: None,
                slide_ms: None,
                gap_ms: Some(gap),
            },
        };
        MetricInfo {
            name: plan.name.clone(),
            keys: plan.key_names.clone(),
            values,
            window,
            allowed_lateness_ms: plan.allowed_lateness,
            rollups: cells::levels(plan)
                .into_iter()
                .map(|level| if level == 3_600_000 { "1h" } else { "1d" }.to_owned())
                .collect(),
        }
    }
}

/// A query's answer as values, with what it covered.
#[derive(Debug, Clone)]
pub struct SeriesAnswer {
    /// The metric.
    pub metric: MetricInfo,
    /// Windows starting at or after this.
    pub from: Millis,
    /// Windows starting before this.
    pub to: Millis,
    /// Bucket size, `None` for the metric's windows.
    pub resolution: Option<Millis>,
    /// Windows closing (end + allowed lateness) at or before this are final.
    pub watermark: Option<Millis>,
    /// The series.
    pub series: Vec<SeriesValues>,
}

/// The serving engine: caches per (metric, tenant) and the sources they are filled from.
pub struct Serving {
    pub(crate) source: Arc<dyn MetricSource>,
    pub(crate) store: StoreBackend,
    config: ApiConfig,
    caches: parking_lot::Mutex<HashMap<(String, String), Arc<TenantCache>>>,
    cached_windows: AtomicUsize,
    started: Instant,
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serving")
            .field("caches", &self.caches.lock().len())
            .field(
                "cached_windows",
                &self.cached_windows.load(Ordering::Relaxed),
            )
            .finish()
    }
}

/// The prepared state of one read: its cache, with the live snapshot when the range needs one.
pub(crate) struct Prepared {
    pub(crate) cache: Arc<TenantCache>,
    pub(crate) query: SeriesQuery,
    pub(crate) live: Option<Arc<LiveSnapshot>>,
    pub(crate) old: BTreeMap<Box<[u8]>, KeySeries>,
}

impl Serving {
    /// A serving engine over `source` and `store`.
    pub fn new(
        source: Arc<dyn MetricSource>,
        store: StoreBackend,
        config: ApiConfig,
    ) -> Arc<Serving> {
        Arc::new(Serving {
            source,
            store,
            config,
            caches: parking_lot::Mutex::new(HashMap::new()),
            cached_windows: AtomicUsize::new(0),
            started: Instant::now(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ApiConfig {
        &self.config
    }

    /// Every metric, by name (not the derived streams: they have no windows).
    pub fn metrics(&self) -> Vec<MetricInfo> {
        let mut metrics: Vec<MetricInfo> = self
            .source
            .plans()
            .iter()
            .filter(|(plan, _)| !plan.is_stream())
            .map(|(plan, _)| MetricInfo::of(plan))
            .collect();
        metrics.sort_by(|a, b| a.name.cmp(&b.name));
        metrics
    }

    /// One metric.
    pub fn metric(&self, name: &str) -> Result<MetricInfo, ApiError> {
        let (plan, _) = self.plan(name)?;
        Ok(MetricInfo::of(&plan))
    }

    pub(crate) fn plan(&self, name: &str) -> Result<(Arc<MetricPlan>, u32), ApiError> {
        let (plan, generation) = self.source.plan(name).ok_or_else(|| {
            ApiError::not_found(format!(
                "no metric named {name:?}: GET /v1/metrics lists them"
            ))
        })?;
        if plan.is_stream() {
            return Err(ApiError::bad_request(
                "stream",
                format!(
                    "{name:?} is a derived stream, not a metric: it has records, not windows. Read them with `sluice tail {name}` (or from topic {name} of the log), or count them with a metric FROM {name}"
                ),
            ));
        }
        Ok((plan, generation))
    }

    fn now(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }

    /// The cache of `tenant`'s `metric`, for its current definition and generation, with
    /// the frontier advanced (at most once per `api.live-max-age`).
    pub(crate) async fn cache(
        &self,
        metric: &str,
        tenant: &str,
    ) -> Result<Arc<TenantCache>, ApiError> {
        let (plan, generation) = self.plan(metric)?;
        let horizon = self.horizon(now_millis());
        let cache = {
            let mut caches = self.caches.lock();
            let key = (metric.to_owned(), tenant.to_owned());
            match caches.get(&key) {
                Some(cache)
                    if Arc::ptr_eq(&cache.plan, &plan) && cache.generation == generation =>
                {
                    Arc::clone(cache)
                }
                _ => {
                    let cache =
                        Arc::new(TenantCache::new(metric, tenant, plan, generation, horizon));
                    if let Some(old) = caches.insert(key, Arc::clone(&cache)) {
                        self.release(&old);
                    }
                    cache
                }
            }
        };
        cache.touch(self.now());
        self.advance(&cache, horizon).await?;
        Ok(cache)
    }

    fn horizon(&self, now: Millis) -> Millis {
        let start = now.saturating_sub(self.config.cache_horizon_ms()).max(0);
        start - start.rem_euclid(86_400_000)
    }

    fn release(&self, cache: &TenantCache) {
        let accounted = cache.accounted.swap(0, Ordering::Relaxed);
        self.cached_windows.fetch_sub(accounted, Ordering::Relaxed);
    }

    /// Brings the cache's frontier up to the committed watermarks.
    async fn advance(&self, cache: &Arc<TenantCache>, horizon: Millis) -> Result<(), ApiError> {
        let max_age = self.config.live_max_age.get();
        let mut checked = cache.advancing.lock().await;
        if checked.is_some_and(|at| at.elapsed() < max_age) {
            return Ok(());
        }
        let frontier = self.source.frontier(&cache.metric).await?;
        let (true, Some(frontier)) = (frontier.generation == cache.generation, frontier.watermark)
        else {
            // Nothing is known final (or the generation is being replaced: the next read
            // builds a new cache).
            *checked = Some(Instant::now());
            return Ok(());
        };
        let (mut current, current_horizon) = {
            let series = cache.series.read();
            (series.frontier, series.horizon)
        };
        if frontier < current {
            // A partition's first watermark is behind what was final: start over.
            tracing::debug!(metric = %cache.metric, tenant = %cache.tenant, frontier, current, "frontier moved back; rebuilding the cache");
            *cache.series.write() = cache::Series::new(horizon);
            self.account(cache, 0);
            current = Millis::MIN;
        }
        if horizon > current_horizon {
            let dropped = cache.series.write().prune(horizon);
            if dropped > 0 {
                self.account(cache, cache.series.read().windows);
            }
        }
        if frontier > current {
            return self
                .advance_locked(cache, horizon, frontier, current, checked)
                .await;
        }
        *checked = Some(Instant::now());
        Ok(())
    }

    async fn advance_locked(
        &self,
        cache: &Arc<TenantCache>,
        horizon: Millis,
        frontier: Millis,
        current: Millis,
        mut checked: tokio::sync::MutexGuard<'_, Option<Instant>>,
    ) -> Result<(), ApiError> {
        let plan = &cache.plan;
        let lateness = plan.allowed_lateness;
        let rows = self
            .store
            .rows_in(RowRange {
                metric: cache.metric.clone(),
                generation: cache.generation,
                tenant: cache.tenant.clone(),
                end_after: current.saturating_sub(lateness),
                end_upto: frontier.saturating_sub(lateness),
                start_from: horizon.max(cells::starts_after(plan, current.saturating_sub(lateness))),
                start_before: Millis::MAX,
                limit: self.config.max_store_rows,
            })
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "too_much_data",
                    format!(
                        "more than api.max-store-rows ({}) rows of metric {:?} became final at once; raise it or lower api.cache-horizon",
                        self.config.max_store_rows, cache.metric
                    ),
                )
            })?;
        let merged = merge_rows(plan, &rows).map_err(|reason| corrupt(&cache.metric, reason))?;
        let windows = {
            let mut series = cache.series.write();
            series.add(plan, &cache.levels, merged, frontier);
            series.windows
        };
        self.account(cache, windows);
        *checked = Some(Instant::now());
        drop(checked);
        self.evict(cache);
        Ok(())
    }

    fn account(&self, cache: &TenantCache, windows: usize) {
        let before = cache.accounted.swap(windows, Ordering::Relaxed);
        if windows >= before {
            self.cached_windows
                .fetch_add(windows - before, Ordering::Relaxed);
        } else {
            self.cached_windows
                .fetch_sub(before - windows, Ordering::Relaxed);
        }
    }

    /// Drops the least recently used caches (other than `keep`) while over the budget, and
    /// caches of metrics that no longer exist.
    fn evict(&self, keep: &Arc<TenantCache>) {
        let max = self.config.cache_max_windows;
        let mut caches = self.caches.lock();
        caches.retain(|(metric, _), cache| {
            let current = self.source.plan(metric).is_some_and(|(plan, generation)| {
                Arc::ptr_eq(&plan, &cache.plan) && generation == cache.generation
            });
            if !current {
                self.release(cache);
            }
            current
        });
        if self.cached_windows.load(Ordering::Relaxed) <= max {
            return;
        }
        let mut order: Vec<((String, String), i64)> = caches
            .iter()
            .filter(|(_, cache)| !Arc::ptr_eq(cache, keep))
            .map(|(key, cache)| (key.clone(), cache.last_used.load(Ordering::Relaxed)))
            .collect();
        order.sort_by_key(|(_, used)| *used);
        for (key, _) in order {
            if self.cached_windows.load(Ordering::Relaxed) <= max {
                break;
            }
            if let Some(cache) = caches.remove(&key) {
                self.release(&cache);
            }
        }
        if self.cached_windows.load(Ordering::Relaxed) > max {
            tracing::warn!(metric = %keep.metric, tenant = %keep.tenant, windows = keep.accounted.load(Ordering::Relaxed), max, "one cache is larger than api.cache-max-windows; it is dropped after this read");
            let key = (keep.metric.clone(), keep.tenant.clone());
            if caches
                .get(&key)
                .is_some_and(|cache| Arc::ptr_eq(cache, keep))
                && let Some(cache) = caches.remove(&key)
            {
                self.release(&cache);
            }
        }
    }

    /// The live snapshot of a cache, no older than `api.live-max-age`.
    pub(crate) async fn live(
        &self,
        cache: &Arc<TenantCache>,
    ) -> Result<Arc<LiveSnapshot>, ApiError> {
        let max_age = self.config.live_max_age.get();
        let fresh = |snapshot: &Option<Arc<LiveSnapshot>>| {
            snapshot
                .as_ref()
                .filter(|snapshot| snapshot.taken.elapsed() < max_age)
                .cloned()
        };
        if let Some(snapshot) = fresh(&cache.snapshot.read()) {
            return Ok(snapshot);
        }
        let _refreshing = cache.refreshing.lock().await;
        if let Some(snapshot) = fresh(&cache.snapshot.read()) {
            return Ok(snapshot);
        }
        let frontier = cache.series.read().frontier;
        let snapshot = self
            .snapshot(
                &cache.metric,
                &cache.tenant,
                &cache.plan,
                cache.generation,
                frontier,
            )
            .await?;
        let snapshot = Arc::new(snapshot);
        *cache.snapshot.write() = Some(Arc::clone(&snapshot));
        Ok(snapshot)
    }

    /// The engine state of `tenant`'s windows of `metric` in the partitions this node computes,
    /// if `generation` is still current.
    async fn live_partitions(
        &self,
        metric: &str,
        tenant: &str,
        generation: u32,
    ) -> Result<Vec<(u32, LiveWindows)>, ApiError> {
        let (current, partitions) = self
            .source
            .live_windows(metric, tenant)
            .await
            .map_err(ApiError::from)?;
        if current != generation {
            return Err(replaced(metric));
        }
        Ok(partitions)
    }

    /// A live snapshot of `tenant`'s windows of `metric` (generation `generation`) closing
    /// after `frontier`: the engine's state first, then the store's (see the `live` module).
    pub(crate) async fn snapshot(
        &self,
        metric: &str,
        tenant: &str,
        plan: &MetricPlan,
        generation: u32,
        frontier: Millis,
    ) -> Result<LiveSnapshot, ApiError> {
        let taken = Instant::now();
        let partitions = self.live_partitions(metric, tenant, generation).await?;
        let end_after = frontier.saturating_sub(plan.allowed_lateness);
        // A partition that answered has every window it has not made final: its stored open
        // rows are not needed (see `live`).
        let answered = partitions.iter().map(|(partition, _)| *partition).collect();
        let range = RowRange {
            metric: metric.to_owned(),
            generation,
            tenant: tenant.to_owned(),
            end_after,
            end_upto: Millis::MAX,
            start_from: cells::starts_after(plan, end_after),
            start_before: Millis::MAX,
            limit: self.config.max_store_rows,
        };
        let stored = self
            .store
            .live_rows(range, answered)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "too_much_data",
                    format!(
                        "more than api.max-store-rows ({}) windows of metric {metric:?} are not final yet: is a pipeline stuck? (GET /v1/admin/metrics/{metric})",
                        self.config.max_store_rows
                    ),
                )
            })?;
        live::build(plan, frontier, taken, &stored, partitions)
            .map_err(|reason| corrupt(metric, reason))
    }

    /// How many of `tenant`'s sessions of `name` (`CREATE SESSIONS`) are open now: those of
    /// the partitions this node computes from their engines, the others' from their stored
    /// rows (as of their last checkpoint).
    pub async fn open_sessions(&self, tenant: &str, name: &str) -> Result<OpenSessions, ApiError> {
        let (plan, generation) = self.source.plan(name).ok_or_else(|| {
            ApiError::not_found(format!(
                "no sessions named {name:?}: GET /v1/admin/metrics lists definitions"
            ))
        })?;
        if !matches!(plan.output, sluice_stream::plan::Output::Sessions { .. }) {
            return Err(ApiError::bad_request(
                "not_sessions",
                format!(
                    "{name:?} is not a CREATE SESSIONS definition: query a metric with GET /v1/metrics/{name}"
                ),
            ));
        }
        let partitions = self.live_partitions(name, tenant, generation).await?;
        let live: usize = partitions.iter().map(|(_, live)| live.open.len()).sum();
        let range = RowRange {
            metric: name.to_owned(),
            generation,
            tenant: tenant.to_owned(),
            end_after: Millis::MIN,
            end_upto: Millis::MAX,
            start_from: Millis::MIN,
            start_before: Millis::MAX,
            limit: self.config.max_store_rows,
        };
        let answered = partitions.iter().map(|(partition, _)| *partition).collect();
        let stored = self.store.live_rows(range, answered).await?.ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "too_much_data",
                format!(
                    "more than api.max-store-rows ({}) sessions of {name:?} are open on other nodes",
                    self.config.max_store_rows
                ),
            )
        })?;
        let elsewhere = stored
            .rows
            .iter()
            .filter(|row| row.partition.is_some())
            .count();
        Ok(OpenSessions {
            sessions: name.to_owned(),
            tenant: tenant.to_owned(),
            open: (live + elsewhere) as u64,
        })
    }

    /// Everything a read of `params` needs: the cache, the live snapshot if the range
    /// reaches windows that are not final, and stored rows older than the horizon.
    pub(crate) async fn prepare(
        &self,
        tenant: &str,
        metric: &str,
        params: &SeriesParams,
    ) -> Result<Prepared, ApiError> {
        let cache = self.cache(metric, tenant).await?;
        let query = params::resolve(&cache.plan, params, now_millis(), self.config.max_series)?;
        let (frontier, horizon) = {
            let series = cache.series.read();
            (series.frontier, series.horizon)
        };
        let plan = &cache.plan;
        let needs_live =
            cells::bucket_close(plan, query.to) > frontier || close_of(plan, query.to) > frontier;
        let live = if needs_live {
            Some(self.live(&cache).await?)
        } else {
            None
        };
        let old = if query.from < horizon {
            self.old_cells(&cache, &query, frontier, horizon).await?
        } else {
            BTreeMap::new()
        };
        Ok(Prepared {
            cache,
            query,
            live,
            old,
        })
    }

    async fn old_cells(
        &self,
        cache: &TenantCache,
        query: &SeriesQuery,
        frontier: Millis,
        horizon: Millis,
    ) -> Result<BTreeMap<Box<[u8]>, KeySeries>, ApiError> {
        let plan = &cache.plan;
        let rows = self
            .store
            .rows_in(RowRange {
                metric: cache.metric.clone(),
                generation: cache.generation,
                tenant: cache.tenant.clone(),
                end_after: Millis::MIN,
                end_upto: frontier.saturating_sub(plan.allowed_lateness),
                start_from: query.from,
                start_before: query.to.min(horizon),
                limit: self.config.max_store_rows,
            })
            .await?
            .ok_or_else(|| {
                ApiError::bad_request(
                    "too_much_data",
                    format!(
                        "the range reads more than api.max-store-rows ({}) stored windows older than the cache: ask for a shorter range",
                        self.config.max_store_rows
                    ),
                )
            })?;
        let merged = merge_rows(plan, &rows).map_err(|reason| corrupt(&cache.metric, reason))?;
        Ok(series_of(plan, merged, |_| true))
    }

    fn build(
        &self,
        prepared: &Prepared,
        sink: &mut impl Sink,
    ) -> Result<(Summary, Millis), ApiError> {
        let series = prepared.cache.series.read();
        let sources = Sources {
            plan: &prepared.cache.plan,
            frontier: series.frontier,
            old: &prepared.old,
            cache: &series,
            live: prepared.live.as_deref(),
        };
        let summary = build::build(
            &sources,
            &prepared.query,
            self.config.max_points,
            self.config.max_series,
            sink,
        )?;
        Ok((summary, series.frontier))
    }

    /// The answer to a read as JSON text (`GET /v1/metrics/{name}`).
    pub async fn series_json(
        &self,
        tenant: &str,
        metric: &str,
        params: &SeriesParams,
    ) -> Result<String, ApiError> {
        let prepared = self.prepare(tenant, metric, params).await?;
        let info = MetricInfo::of(&prepared.cache.plan);
        let mut sink = JsonSink::with_capacity(4096);
        let (_, frontier) = self.build(&prepared, &mut sink)?;
        sink.finish();
        let query = &prepared.query;
        let mut out = String::with_capacity(sink.out.len() + 512);
        out.push_str("{\"metric\":");
        render::string(&info.name, &mut out);
        out.push_str(",\"tenant\":");
        render::string(tenant, &mut out);
        use std::fmt::Write as _;
        let _ = write!(
            out,
            ",\"from\":{},\"to\":{},\"resolution_ms\":",
            query.from, query.to
        );
        match query.resolution {
            Some(every) => {
                let _ = write!(out, "{every}");
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"watermark\":");
        if frontier == Millis::MIN {
            out.push_str("null");
        } else {
            let _ = write!(out, "{frontier}");
        }
        out.push_str(",\"keys\":");
        out.push_str(&serde_json::to_string(&info.keys).unwrap_or_default());
        out.push_str(",\"columns\":[\"start\",\"end\",\"final\"");
        for value in &info.values {
            out.push(',');
            render::string(&value.name, &mut out);
        }
        out.push_str("],\"series\":[");
        out.push_str(&sink.out);
        out.push_str("]}");
        Ok(out)
    }

    /// The answer to a read as values (GraphQL, the CLI).
    pub async fn series(
        &self,
        tenant: &str,
        metric: &str,
        params: &SeriesParams,
    ) -> Result<SeriesAnswer, ApiError> {
        let prepared = self.prepare(tenant, metric, params).await?;
        let mut sink = ValueSink::default();
        let (_, frontier) = self.build(&prepared, &mut sink)?;
        Ok(SeriesAnswer {
            metric: MetricInfo::of(&prepared.cache.plan),
            from: prepared.query.from,
            to: prepared.query.to,
            resolution: prepared.query.resolution,
            watermark: (frontier != Millis::MIN).then_some(frontier),
            series: sink.series,
        })
    }

    /// How long subscriptions wait between two pushes.
    pub fn push_interval(&self) -> Duration {
        self.config.push_interval.get()
    }
}

/// The metric's generation changed under a read (a replay finished).
fn replaced(metric: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "replaced",
        format!("metric {metric:?} was just replaced by a replay; retry"),
    )
}

fn corrupt(metric: &str, reason: String) -> ApiError {
    tracing::error!(metric, %reason, "a stored window cannot be read");
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "corrupt",
        format!(
            "metric {metric:?} has a damaged stored window ({reason}); replay it (POST /v1/admin/metrics/{metric}/replay)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::Frontier;

    #[test]
    fn partitions_with_events_to_process_and_no_watermark_hold_finality_back() {
        let of =
            |parts: &[(Option<i64>, u64, u64)]| Frontier::of(3, parts.iter().copied()).watermark;
        assert_eq!(of(&[(Some(50), 9, 9), (Some(40), 1, 5)]), Some(40));
        assert_eq!(
            of(&[(Some(50), 9, 9), (None, 0, 5)]),
            None,
            "its first events may be old"
        );
        assert_eq!(
            of(&[(Some(50), 9, 9), (None, 5, 5)]),
            Some(50),
            "an empty partition waits for nothing"
        );
        assert_eq!(of(&[(None, 0, 0)]), None);
    }
}
