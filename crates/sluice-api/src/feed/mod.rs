//! A subscription's view of one metric: what changed since it last looked. WebSocket push and
//! GraphQL subscriptions both poll a [`Feed`] once per `api.push-interval`.
//!
//! Each poll reads the tenant's live snapshot (shared with every query and subscriber: one
//! engine read per `api.live-max-age` however many ask) and the cache of final windows, and
//! reports, among the windows passing the filters:
//! - open windows whose values changed since they were last reported (so a busy window is one
//!   change per poll, its intermediate versions coalesced away);
//! - windows that became final since the last poll, with their final values — also those that
//!   opened and closed in between without ever being seen open;
//! - windows reported open that vanished without becoming final (merged session bounds), as
//!   `removed`.
//!
//! A poll reports at most [`MAX_CHANGES`] windows; past that (a backfill finishing, a huge
//! metric) it says so once and the subscriber should query the range instead.

use crate::error::ApiError;
use crate::query::Serving;
use crate::query::cells::{KeySeries, close_of};
use crate::query::params::{SeriesParams, SeriesQuery, resolve};
use crate::query::render;
use sluice_core::time::{Millis, now_millis};
use sluice_stream::agg::OutputValue;
use sluice_stream::plan::{MetricPlan, WindowSpec};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Most windows one poll reports.
pub const MAX_CHANGES: usize = 10_000;

/// One window that changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The group key as a JSON object.
    pub key: Arc<str>,
    /// Window start, epoch ms.
    pub start: Millis,
    /// Window end, epoch ms.
    pub end: Millis,
    /// Whether it can no longer change.
    pub is_final: bool,
    /// The window no longer exists (a session merged into another); no values.
    pub removed: bool,
    /// The aggregates' values.
    pub values: Vec<OutputValue>,
}

impl Change {
    /// As a JSON object: `{"key", "start", "end", "final", "values": {name: value}}` or
    /// `{"key", "start", "end", "removed": true}`.
    pub fn to_json(&self, plan: &MetricPlan) -> serde_json::Value {
        let key: serde_json::Value = serde_json::from_str(&self.key).unwrap_or_default();
        if self.removed {
            return serde_json::json!({"key": key, "start": self.start, "end": self.end, "removed": true});
        }
        serde_json::json!({
            "key": key,
            "start": self.start,
            "end": self.end,
            "final": self.is_final,
            "values": render::values_json(plan, &self.values),
        })
    }
}

/// What one poll found.
#[derive(Debug, Clone, PartialEq)]
pub enum Changes {
    /// These windows changed (possibly none).
    Windows(Vec<Change>),
    /// More than [`MAX_CHANGES`] windows changed at once: read the range with a query.
    TooMany(usize),
}

type WindowId = (Box<[u8]>, Millis, Millis);

/// One subscription to one tenant's metric.
#[derive(Debug)]
pub struct Feed {
    serving: Arc<Serving>,
    tenant: String,
    metric: String,
    filters: SeriesQuery,
    plan: Arc<MetricPlan>,
    /// Open windows reported, with a hash of their rendered values.
    sent: HashMap<WindowId, u64>,
    /// The cache frontier at the last poll (`None` before the first).
    frontier: Option<Millis>,
}

impl Feed {
    /// A feed of `metric` for `tenant`, with `filters` (`KEY:VALUE`, as in queries).
    pub async fn new(
        serving: Arc<Serving>,
        tenant: &str,
        metric: &str,
        filters: Vec<String>,
    ) -> Result<Feed, ApiError> {
        let cache = serving.cache(metric, tenant).await?;
        let params = SeriesParams {
            filters,
            ..SeriesParams::default()
        };
        let filters = resolve(
            &cache.plan,
            &params,
            now_millis(),
            serving.config().max_series,
        )?;
        Ok(Feed {
            plan: Arc::clone(&cache.plan),
            serving,
            tenant: tenant.to_owned(),
            metric: metric.to_owned(),
            filters,
            sent: HashMap::new(),
            frontier: None,
        })
    }

    /// The metric's plan.
    pub fn plan(&self) -> &Arc<MetricPlan> {
        &self.plan
    }

    /// The metric's name.
    pub fn metric(&self) -> &str {
        &self.metric
    }

    /// What changed since the last poll; the first poll reports every open window.
    pub async fn poll(&mut self) -> Result<Changes, ApiError> {
        let cache = self.serving.cache(&self.metric, &self.tenant).await?;
        if !Arc::ptr_eq(&cache.plan, &self.plan) {
            return Err(ApiError::new(
                axum::http::StatusCode::GONE,
                "metric_replaced",
                format!(
                    "metric {:?} was deleted or redefined; subscribe again",
                    self.metric
                ),
            ));
        }
        let snapshot = self.serving.live(&cache).await?;
        let series = cache.series.read();
        let frontier = series.frontier;
        let plan = &*self.plan;
        let mut changes = Vec::new();
        let mut seen: HashMap<WindowId, u64> = HashMap::with_capacity(self.sent.len());
        for (bytes, live) in &snapshot.keys {
            if !self.filters.accepts(live.key.values()) {
                continue;
            }
            for (&(start, end), cell) in &live.cells {
                if close_of(plan, end) <= frontier {
                    continue;
                }
                let id = (bytes.clone(), start, end);
                let hash = hash(&cell.rendered);
                if self.sent.get(&id) != Some(&hash) {
                    changes.push(change(live, start, end, false, &cell.values));
                }
                seen.insert(id, hash);
            }
        }
        if let Some(previous) = self.frontier
            && frontier > previous
        {
            let earliest = earliest_start(plan, previous);
            for (bytes, key) in &series.keys {
                if !self.filters.accepts(key.key.values()) {
                    continue;
                }
                for (&(start, end), cell) in key.cells.range((earliest, Millis::MIN)..) {
                    let close = close_of(plan, end);
                    if close > previous && close <= frontier {
                        self.sent.remove(&(bytes.clone(), start, end));
                        changes.push(change(key, start, end, true, &cell.values));
                    }
                    if changes.len() > MAX_CHANGES {
                        break;
                    }
                }
            }
        }
        // Reported open, now neither open nor (just) final: merged away.
        for (id, _) in self.sent.drain() {
            if !seen.contains_key(&id) && close_of(plan, id.2) > frontier {
                let key = snapshot
                    .keys
                    .get(&id.0)
                    .or_else(|| series.keys.get(&id.0))
                    .map(|key| Arc::clone(&key.json));
                if let Some(key) = key {
                    changes.push(Change {
                        key,
                        start: id.1,
                        end: id.2,
                        is_final: false,
                        removed: true,
                        values: Vec::new(),
                    });
                }
            }
        }
        self.sent = seen;
        self.frontier = Some(frontier);
        if changes.len() > MAX_CHANGES {
            return Ok(Changes::TooMany(changes.len()));
        }
        Ok(Changes::Windows(changes))
    }
}

fn change(
    key: &KeySeries,
    start: Millis,
    end: Millis,
    is_final: bool,
    values: &[OutputValue],
) -> Change {
    Change {
        key: Arc::clone(&key.json),
        start,
        end,
        is_final,
        removed: false,
        values: values.to_vec(),
    }
}

fn hash(text: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// The earliest start of a window closing after `frontier`.
fn earliest_start(plan: &MetricPlan, frontier: Millis) -> Millis {
    let span = match plan.window {
        WindowSpec::Tumble { size } => size,
        WindowSpec::Hop { size, .. } => size,
        // Sessions have no bound on their length; a day covers every realistic one.
        WindowSpec::Session { .. } => 86_400_000,
    };
    frontier
        .saturating_sub(plan.allowed_lateness)
        .saturating_sub(span)
}
