//! The `[api]` section (queries, caches, live push) and the `[quotas]` section (default limits
//! of every key). Defaults live in the binary's `default.toml`.

use serde::Deserialize;
use sluice_core::access::KeyLimits;
use sluice_core::config::{ConfigProblem, HumanDuration, Validate, join};
use std::time::Duration;

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ApiConfig {
    /// Most points (windows of all series) one query may return.
    pub max_points: usize,
    /// Most series (group keys) one query may return.
    pub max_series: usize,
    /// Final windows newer than this are kept in memory with their roll-ups.
    pub cache_horizon: HumanDuration,
    /// Most windows held by all caches together.
    pub cache_max_windows: usize,
    /// Most rows one query may read from the store (ranges older than the cache horizon).
    pub max_store_rows: usize,
    /// Rows an export reads from the store per page: its memory is about a page plus one
    /// window start's rows of every partition.
    pub export_page_rows: usize,
    /// How old the live state a query sees may be.
    pub live_max_age: HumanDuration,
    /// How often subscriptions are sent what changed.
    pub push_interval: HumanDuration,
    /// Ping interval of WebSocket connections.
    pub ws_heartbeat: HumanDuration,
    /// Messages queued for one WebSocket client.
    pub ws_send_queue: usize,
    /// How long a client may leave its queue full before it is closed.
    pub ws_slow_timeout: HumanDuration,
    /// Most concurrent WebSocket connections.
    pub ws_max_connections: usize,
    /// Most subscriptions per WebSocket connection.
    pub ws_max_subscriptions: usize,
    /// Most tenants the admin API may create.
    pub max_tenants: usize,
    /// Most keys the admin API may create.
    pub max_keys: usize,
}

impl ApiConfig {
    /// The cache horizon in milliseconds.
    pub fn cache_horizon_ms(&self) -> i64 {
        i64::try_from(self.cache_horizon.get().as_millis()).unwrap_or(i64::MAX)
    }
}

/// `[quotas]`: limits of every key unless its tenant sets its own.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct QuotaConfig {
    /// Requests per second per key; 0: no limit.
    pub requests_per_second: u32,
    /// Events per UTC day per write key; 0: no limit.
    pub events_per_day: u64,
    /// How often keys' daily counts are added to the store and the other nodes' read.
    pub usage_save_interval: HumanDuration,
}

impl QuotaConfig {
    /// A tenant's limits: its own where set, else these defaults.
    pub fn limits(
        &self,
        requests_per_second: Option<u32>,
        events_per_day: Option<u64>,
    ) -> KeyLimits {
        KeyLimits {
            requests_per_second: requests_per_second.unwrap_or(self.requests_per_second),
            events_per_day: events_per_day.unwrap_or(self.events_per_day),
        }
    }
}

fn between(
    problems: &mut Vec<ConfigProblem>,
    path: &str,
    key: &str,
    value: Duration,
    min: Duration,
    max: Duration,
    human: &str,
) {
    if value < min || value > max {
        problems.push(ConfigProblem::new(
            join(path, key),
            format!("is {value:?} but must be {human}"),
        ));
    }
}

impl Validate for ApiConfig {
    fn validate(&self, path: &str, problems: &mut Vec<ConfigProblem>) {
        for (key, value, min) in [
            ("max-points", self.max_points, 100),
            ("max-series", self.max_series, 1),
            ("cache-max-windows", self.cache_max_windows, 1000),
            ("max-store-rows", self.max_store_rows, 1000),
            ("export-page-rows", self.export_page_rows, 1),
            ("ws-send-queue", self.ws_send_queue, 4),
            ("ws-max-connections", self.ws_max_connections, 1),
            ("ws-max-subscriptions", self.ws_max_subscriptions, 1),
            ("max-tenants", self.max_tenants, 1),
            ("max-keys", self.max_keys, 1),
        ] {
            if value < min {
                problems.push(ConfigProblem::new(
                    join(path, key),
                    format!("is {value} but must be at least {min}"),
                ));
            }
        }
        if self.export_page_rows > 1_000_000 {
            problems.push(ConfigProblem::new(
                join(path, "export-page-rows"),
                format!(
                    "is {} but must be at most 1000000 (an export holds a page in memory)",
                    self.export_page_rows
                ),
            ));
        }
        let ms = Duration::from_millis;
        let secs = Duration::from_secs;
        between(
            problems,
            path,
            "cache-horizon",
            self.cache_horizon.get(),
            secs(3600),
            secs(366 * 86_400),
            "between 1h and 366d",
        );
        between(
            problems,
            path,
            "live-max-age",
            self.live_max_age.get(),
            ms(1),
            ms(1000),
            "between 1ms and 1s",
        );
        between(
            problems,
            path,
            "push-interval",
            self.push_interval.get(),
            ms(10),
            ms(100),
            "between 10ms and 100ms (updates are promised within 100 ms)",
        );
        between(
            problems,
            path,
            "ws-heartbeat",
            self.ws_heartbeat.get(),
            secs(1),
            secs(300),
            "between 1s and 5m",
        );
        between(
            problems,
            path,
            "ws-slow-timeout",
            self.ws_slow_timeout.get(),
            ms(100),
            secs(300),
            "between 100ms and 5m",
        );
    }
}

impl Validate for QuotaConfig {
    fn validate(&self, path: &str, problems: &mut Vec<ConfigProblem>) {
        between(
            problems,
            path,
            "usage-save-interval",
            self.usage_save_interval.get(),
            Duration::from_millis(100),
            Duration::from_secs(3600),
            "between 100ms and 1h",
        );
    }
}
