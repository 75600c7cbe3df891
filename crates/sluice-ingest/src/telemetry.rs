//! The collector's Prometheus metrics. Handles are created once and cached: the hot path only
//! increments atomics.

use metrics::{Counter, Gauge};
use parking_lot::RwLock;
use sluice_core::access::LimitKind;
use std::collections::HashMap;
use std::sync::Arc;

/// Per-tenant counters.
#[derive(Debug, Clone)]
pub struct TenantCounters {
    /// `sluice_ingest_events_accepted_total{tenant}`.
    pub accepted: Counter,
    /// `sluice_ingest_events_deduplicated_total{tenant}`.
    pub duplicates: Counter,
    /// `sluice_ingest_events_suppressed_total{tenant}`: events of erased users, dropped.
    pub suppressed: Counter,
}

/// Every collector metric.
#[derive(Debug)]
pub struct IngestTelemetry {
    tenants: RwLock<HashMap<Arc<str>, TenantCounters>>,
    /// `sluice_ingest_bytes_total`: request body bytes after decompression.
    pub bytes: Counter,
    /// `sluice_ingest_requests_refused_total{reason="unauthorized"}`.
    pub unauthorized: Counter,
    /// `…{reason="overloaded"}`: refused for lack of in-flight budget.
    pub overloaded: Counter,
    /// `…{reason="busy"}`: refused because the same ids were being appended.
    pub busy: Counter,
}

impl IngestTelemetry {
    /// Registers the metrics.
    pub fn new() -> Self {
        let refused = |reason: &'static str| metrics::counter!("sluice_ingest_requests_refused_total", "reason" => reason);
        Self {
            tenants: RwLock::new(HashMap::new()),
            bytes: metrics::counter!("sluice_ingest_bytes_total"),
            unauthorized: refused("unauthorized"),
            overloaded: refused("overloaded"),
            busy: refused("busy"),
        }
    }

    /// Counts a request refused by a key's limit: `sluice_ingest_requests_refused_total`
    /// with the limit as reason, and `sluice_rate_limited_total{tenant,key,limit}`.
    pub fn limited(&self, tenant: &str, key: &str, kind: LimitKind) {
        metrics::counter!("sluice_ingest_requests_refused_total", "reason" => kind.as_str())
            .increment(1);
        metrics::counter!("sluice_rate_limited_total", "tenant" => tenant.to_owned(), "key" => key.to_owned(), "limit" => kind.as_str())
            .increment(1);
    }

    /// The counters of `tenant`, registered on first use.
    pub fn tenant(&self, tenant: &Arc<str>) -> TenantCounters {
        if let Some(counters) = self.tenants.read().get(tenant) {
            return counters.clone();
        }
        let label = tenant.to_string();
        let counters = TenantCounters {
            accepted: metrics::counter!("sluice_ingest_events_accepted_total", "tenant" => label.clone()),
            duplicates: metrics::counter!("sluice_ingest_events_deduplicated_total", "tenant" => label.clone()),
            suppressed: metrics::counter!("sluice_ingest_events_suppressed_total", "tenant" => label),
        };
        self.tenants
            .write()
            .entry(Arc::clone(tenant))
            .or_insert(counters)
            .clone()
    }

    /// Counts `count` rejected events for `reason` (`sluice_ingest_events_rejected_total{reason}`).
    pub fn rejected(&self, reason: &'static str, count: u64) {
        metrics::counter!("sluice_ingest_events_rejected_total", "reason" => reason)
            .increment(count);
    }

    /// Counts an event that broke its tenant's schema
    /// (`sluice_schema_violations_total{tenant, event, mode}`: `warn` kept it, `enforce`
    /// rejected it; `event` is `(unknown)` for events no schema describes).
    pub fn schema_violation(&self, tenant: &str, event: String, mode: &'static str) {
        metrics::counter!("sluice_schema_violations_total", "tenant" => tenant.to_owned(), "event" => event, "mode" => mode)
            .increment(1);
    }
}

impl Default for IngestTelemetry {
    fn default() -> Self {
        Self::new()
    }
}

/// The dedup set's metrics (the start-up read counts its unreadable records itself, and the set
/// its early rotations).
#[derive(Debug)]
pub struct DedupTelemetry {
    /// `sluice_ingest_dedup_covered_seconds`: how far back every acknowledged id is remembered
    /// (the window when nothing is missing).
    pub covered_seconds: Gauge,
    /// `sluice_ingest_dedup_window_seconds`: `ingest.dedup-window`.
    pub window_seconds: Gauge,
    /// `sluice_ingest_dedup_remembered_ids`: ids remembered or being appended.
    pub remembered: Gauge,
    /// `sluice_ingest_dedup_capacity_ids`: `ingest.dedup-capacity` (rounded to the shards).
    pub capacity: Gauge,
    /// `sluice_ingest_dedup_snapshots_total{result="ok"}`.
    pub snapshots_ok: Counter,
    /// `…{result="failed"}`.
    pub snapshots_failed: Counter,
    /// `sluice_ingest_dedup_snapshot_bytes`: size of the last snapshot.
    pub snapshot_bytes: Gauge,
    /// `sluice_ingest_dedup_snapshot_seconds`: how long the last snapshot took.
    pub snapshot_seconds: Gauge,
}

impl DedupTelemetry {
    /// Registers the metrics.
    pub fn new() -> Self {
        let snapshots = |result: &'static str| metrics::counter!("sluice_ingest_dedup_snapshots_total", "result" => result);
        Self {
            covered_seconds: metrics::gauge!("sluice_ingest_dedup_covered_seconds"),
            window_seconds: metrics::gauge!("sluice_ingest_dedup_window_seconds"),
            remembered: metrics::gauge!("sluice_ingest_dedup_remembered_ids"),
            capacity: metrics::gauge!("sluice_ingest_dedup_capacity_ids"),
            snapshots_ok: snapshots("ok"),
            snapshots_failed: snapshots("failed"),
            snapshot_bytes: metrics::gauge!("sluice_ingest_dedup_snapshot_bytes"),
            snapshot_seconds: metrics::gauge!("sluice_ingest_dedup_snapshot_seconds"),
        }
    }
}

impl Default for DedupTelemetry {
    fn default() -> Self {
        Self::new()
    }
}
