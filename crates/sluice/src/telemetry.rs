//! Logs and metrics. Logs are `tracing` events with key/value fields on stderr, pretty for
//! people or JSON for machines. Metrics go to one process-wide Prometheus recorder, rendered by
//! `GET /metrics`; with `telemetry.tenant-labels = false` it drops the labels that name tenants
//! and keys before anything is recorded.

use crate::config::{LogFormat, TelemetryConfig};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tracing_subscriber::EnvFilter;

/// Installs the log subscriber. Later calls (tests starting several servers) are no-ops.
pub fn init_logs(config: &TelemetryConfig) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = EnvFilter::builder().parse_lossy(&config.log_filter);
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let layer = match config.log_format {
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .boxed(),
        LogFormat::Pretty => layer
            .with_ansi(std::io::stderr().is_terminal())
            .compact()
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter).with_filter(Repeats::default()))
        .try_init();
}

/// How long a client library's message is not logged again once it was.
const REPEAT_WINDOW: Duration = Duration::from_secs(30);

/// Messages remembered at most (forgotten all at once past it).
const REPEATS_KEPT: usize = 1024;

/// Lets each message of the client libraries (librdkafka, through `log`) through once per
/// [`REPEAT_WINDOW`]: while its brokers are away, librdkafka reports "all broker connections
/// are down" every 100 ms per client, which would bury sluice's own lines.
#[derive(Debug, Default)]
struct Repeats {
    seen: std::sync::Mutex<HashMap<(String, String), Instant>>,
}

impl Repeats {
    /// Whether a message of `target` is logged at `now`.
    fn admit(&self, target: &str, message: &str, now: Instant) -> bool {
        if !target.starts_with("rdkafka") && !target.starts_with("librdkafka") {
            return true;
        }
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (target.to_owned(), message.to_owned());
        if let Some(last) = seen.get(&key)
            && now.duration_since(*last) < REPEAT_WINDOW
        {
            return false;
        }
        if seen.len() >= REPEATS_KEPT {
            seen.clear();
        }
        seen.insert(key, now);
        true
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::layer::Filter<S> for Repeats {
    fn enabled(
        &self,
        _: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        true
    }

    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        // Events from `log` carry their target as a field (`log.target`).
        let mut fields = MessageFields::default();
        event.record(&mut fields);
        let target = fields
            .target
            .as_deref()
            .unwrap_or_else(|| event.metadata().target());
        self.admit(target, &fields.message, Instant::now())
    }
}

/// The message and `log.target` of an event.
#[derive(Default)]
struct MessageFields {
    message: String,
    target: Option<String>,
}

impl tracing::field::Visit for MessageFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "log.target" => self.target = Some(value.to_owned()),
            "message" => self.message = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "log.target" => self.target = Some(format!("{value:?}")),
            "message" => self.message = format!("{value:?}"),
            _ => {}
        }
    }
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
    fn a_client_librarys_repeated_message_is_logged_once_per_window() {
        let repeats = Repeats::default();
        let start = Instant::now();
        let down = "Global error: AllBrokersDown (Local: All broker connections are down)";
        assert!(repeats.admit("rdkafka::client", down, start));
        for tenth in 1..300 {
            let at = start + Duration::from_millis(tenth * 100);
            assert!(!repeats.admit("rdkafka::client", down, at), "{tenth}");
        }
        assert!(repeats.admit("rdkafka::client", "another message", start));
        assert!(repeats.admit("rdkafka::client", down, start + REPEAT_WINDOW));
        // sluice's own lines are never held back.
        for _ in 0..3 {
            assert!(repeats.admit("sluice_ingest::collector", "append failed", start));
        }
    }

    #[test]
    fn the_filter_reads_the_target_and_message_of_events() {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        #[derive(Clone, Default)]
        struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_filter(Repeats::default());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..5 {
                tracing::error!(target: "rdkafka::client", "librdkafka: all brokers down");
                tracing::warn!(target: "sluice_ingest::collector", "append failed");
            }
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("all brokers down").count(), 1, "{text}");
        assert_eq!(text.matches("append failed").count(), 5, "{text}");
    }

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
