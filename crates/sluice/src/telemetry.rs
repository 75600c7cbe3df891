//! Logs and metrics. Logs are `tracing` events with key/value fields on stderr, pretty for
//! people or JSON for machines. Metrics go to one process-wide Prometheus recorder, rendered by
//! `GET /metrics`; with `telemetry.tenant-labels = false` it drops the labels that name tenants
//! and keys before anything is recorded.

use crate::config::{LogFormat, TelemetryConfig};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::io::IsTerminal;
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

/// Installs the log subscriber. Later calls (tests starting several servers) are no-ops.
pub fn init_logs(config: &TelemetryConfig) {
    let filter = EnvFilter::builder().parse_lossy(&config.log_filter);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Pretty => builder
            .with_ansi(std::io::stderr().is_terminal())
            .compact()
            .try_init(),
    };
}

/// Latency buckets in seconds: 50 µs to 10 s, dense where sluice's targets are (sub-ms to 150 ms).
const LATENCY_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// The process-wide Prometheus recorder, installed on first use with that call's
/// `tenant-labels` (tests that start several servers in one process share the first's).
pub fn prometheus(config: &TelemetryConfig) -> PrometheusHandle {
    static HANDLE: OnceLock<(PrometheusHandle, bool)> = OnceLock::new();
    let (handle, tenant_labels) = HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            .expect("bucket list is not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let recorder = PrivateLabels {
            inner: recorder,
            keep: config.tenant_labels,
        };
        // Another recorder may already be installed (a test harness); ours still renders.
        let _ = metrics::set_global_recorder(recorder);
        metrics::gauge!("sluice_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        (handle, config.tenant_labels)
    });
    if *tenant_labels != config.tenant_labels {
        tracing::warn!(
            tenant_labels,
            "telemetry.tenant-labels applies from the first start in a process; unchanged"
        );
    }
    handle.clone()
}

/// Labels that name a tenant or a key.
const PRIVATE_LABELS: [&str; 2] = ["tenant", "key"];

/// A recorder that drops [`PRIVATE_LABELS`] unless told to keep them; series that differed
/// only by them are then one series.
#[derive(Debug)]
struct PrivateLabels<R> {
    inner: R,
    keep: bool,
}

impl<R> PrivateLabels<R> {
    /// `key` without the private labels, or `None` when it has none to drop.
    fn strip(&self, key: &Key) -> Option<Key> {
        if self.keep
            || !key
                .labels()
                .any(|label| PRIVATE_LABELS.contains(&label.key()))
        {
            return None;
        }
        let (name, labels) = key.clone().into_parts();
        let labels: Vec<_> = labels
            .into_iter()
            .filter(|label| !PRIVATE_LABELS.contains(&label.key()))
            .collect();
        Some(Key::from_parts(name, labels))
    }
}

impl<R: Recorder> Recorder for PrivateLabels<R> {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        match self.strip(key) {
            Some(key) => self.inner.register_counter(&key, metadata),
            None => self.inner.register_counter(key, metadata),
        }
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        match self.strip(key) {
            Some(key) => self.inner.register_gauge(&key, metadata),
            None => self.inner.register_gauge(key, metadata),
        }
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        match self.strip(key) {
            Some(key) => self.inner.register_histogram(&key, metadata),
            None => self.inner.register_histogram(key, metadata),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_tenant_labels_series_lose_tenant_and_key_and_add_up() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let recorder = PrivateLabels {
            inner: recorder,
            keep: false,
        };
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("accepted_total", "tenant" => "shop").increment(2);
            metrics::counter!("accepted_total", "tenant" => "blog").increment(3);
            metrics::counter!("limited_total", "tenant" => "shop", "key" => "key_1", "limit" => "rps")
                .increment(1);
            metrics::counter!("plain_total", "route" => "/v1/batch").increment(1);
        });
        let text = handle.render();
        assert!(text.contains("accepted_total 5"), "{text}");
        assert!(text.contains("limited_total{limit=\"rps\"} 1"), "{text}");
        assert!(
            text.contains("plain_total{route=\"/v1/batch\"} 1"),
            "{text}"
        );
        assert!(!text.contains("shop") && !text.contains("key_1"), "{text}");
    }
}
