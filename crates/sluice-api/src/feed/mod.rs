//! What subscriptions are sent. WebSocket push and GraphQL subscriptions both read a [`Feed`]:
//! one subscription's view of one tenant's metric, through its filters.
//!
//! The work is shared: a [`hub`] per (metric, tenant) with subscribers reads the tenant's live
//! snapshot and cache of final windows once per `api.push-interval`, finds what changed, renders
//! each changed window once, and publishes it under a sequence number. A feed only remembers
//! the last sequence it took (its cursor): taking is a walk over the windows changed since,
//! through the feed's filters — proportional to what changed, not to the metric's open windows
//! — and costs nothing while nobody asks (a client that does not read is not polled). A feed
//! reports, among the windows passing its filters:
//! - open windows whose values changed since it last took (a busy window is one change however
//!   many versions it went through; a feed that was not read for a while gets each window once,
//!   with its latest values);
//! - windows that became final since, with their final values — also those that opened and
//!   closed in between without ever being seen open;
//! - windows reported open that vanished without becoming final (merged session bounds), as
//!   `removed`.
//!
//! The first take reports every open window. One take reports at most [`MAX_CHANGES`] windows;
//! past that (a backfill finishing, a huge metric) it says so and the subscriber should query
//! the range instead.

pub(crate) mod hub;

pub use hub::Hubs;

use crate::error::ApiError;
use crate::query::Serving;
use crate::query::params::{SeriesParams, SeriesQuery, resolve};
use axum::http::StatusCode;
use hub::Hub;
use sluice_core::time::{Millis, now_millis};
use sluice_stream::agg::OutputValue;
use sluice_stream::keys::GroupKey;
use sluice_stream::plan::MetricPlan;
use std::sync::Arc;
use tokio::sync::watch;

/// Most windows one take reports.
pub const MAX_CHANGES: usize = 10_000;

/// One window that changed, rendered once for every subscriber.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The group key.
    pub key: Arc<GroupKey>,
    /// The group key as a JSON object.
    pub key_json: Arc<str>,
    /// Window start, epoch ms.
    pub start: Millis,
    /// Window end, epoch ms.
    pub end: Millis,
    /// Whether it can no longer change.
    pub is_final: bool,
    /// The window no longer exists (a session merged into another); no values.
    pub removed: bool,
    /// The aggregates' values.
    pub values: Box<[OutputValue]>,
    /// As the JSON object `/v1/live` sends: `{"key", "start", "end", "final", "values":
    /// {name: value}}` or `{"key", "start", "end", "removed": true}`.
    pub json: Box<str>,
}

impl Change {
    /// The values as a JSON object of the metric's aggregate names.
    pub fn values_json(&self, plan: &MetricPlan) -> serde_json::Value {
        sluice_stream::render::values_json(plan, &self.values)
    }
}

/// What one take found.
#[derive(Debug, Clone, PartialEq)]
pub enum Changes {
    /// These windows changed (never empty).
    Windows(Vec<Arc<Change>>),
    /// More than [`MAX_CHANGES`] windows changed at once: read the range with a query.
    TooMany(usize),
}

/// One subscription to one tenant's metric.
#[derive(Debug)]
pub struct Feed {
    hub: Arc<Hub>,
    published: watch::Receiver<u64>,
    filters: SeriesQuery,
    /// Where it is in the hub's publications.
    cursor: hub::Cursor,
    /// Take even without a new publication (the first take, after falling behind).
    pending: bool,
}

impl Feed {
    /// A feed of `metric` for `tenant`, with `filters` (`KEY:VALUE`, as in queries), from the
    /// hub of `hubs` that serves them (started if none runs).
    pub async fn new(
        serving: Arc<Serving>,
        hubs: &Arc<Hubs>,
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
        let (hub, published) = hubs.join(&serving, metric, tenant, &cache.plan);
        Ok(Feed {
            hub,
            published,
            filters,
            cursor: hub::Cursor::default(),
            pending: true,
        })
    }

    /// The metric's plan.
    pub fn plan(&self) -> &Arc<MetricPlan> {
        self.hub.plan()
    }

    /// The metric's name.
    pub fn metric(&self) -> &str {
        self.hub.metric()
    }

    /// Whether a take may find something new (without waiting).
    pub fn has_news(&self) -> bool {
        // The channel cannot close while the feed holds its hub.
        self.pending || self.published.has_changed().unwrap_or(false)
    }

    /// Waits until a take may find something new. Cancel-safe.
    pub async fn changed(&mut self) {
        if self.pending {
            return;
        }
        match self.published.changed().await {
            // Waiting marked the publication seen: it is still to take.
            Ok(()) => self.pending = true,
            // Cannot happen while the feed holds its hub; never spin on it.
            Err(_) => std::future::pending().await,
        }
    }

    /// What changed since the last take (`None`: nothing for this feed); the first take
    /// reports every open window. An error with status 410 (`GONE`) ends the feed: the metric
    /// was deleted or redefined.
    pub fn take(&mut self) -> Result<Option<Changes>, ApiError> {
        self.published.borrow_and_update();
        let taken = self.hub.take(&mut self.cursor, &self.filters);
        // After an error (or falling behind) the windows are taken at once.
        self.pending = taken.is_err();
        let windows = taken?;
        if windows.is_empty() {
            return Ok(None);
        }
        if windows.len() > MAX_CHANGES {
            return Ok(Some(Changes::TooMany(windows.len())));
        }
        Ok(Some(Changes::Windows(windows)))
    }

    /// Whether an error from [`Feed::take`] ends the feed.
    pub fn ends(error: &ApiError) -> bool {
        error.status() == StatusCode::GONE
    }
}
