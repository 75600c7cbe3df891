//! The configuration tree: one struct per section, each owned by the crate that uses it, and
//! every default in the embedded `default.toml`. [`load`] layers a file, `SLUICE__…`
//! environment variables and command-line flags on top and reports every problem at once.

use clap::Args;
use serde::Deserialize;
use sluice_api::config::{ApiConfig, QuotaConfig};
use sluice_core::Limits;
use sluice_core::config::{ByteSize, ConfigProblem, ConfigProblems, HumanDuration, Validate, join};
use sluice_core::tenant::TenantConfig;
use sluice_ingest::IngestConfig;
use sluice_log::LogConfig;
use sluice_store::{MetricConfig, StoreConfig};
use sluice_stream::config::StreamConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Every default, embedded in the binary (also the schema: keys not in it are unknown).
pub const DEFAULTS: &str = include_str!("default.toml");

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// Where sluice keeps everything it stores.
    pub data_dir: PathBuf,
    /// Tenants and their keys.
    pub tenants: Vec<TenantConfig>,
    /// Keys that may administer metrics.
    pub admin_keys: Vec<String>,
    /// Metrics defined at start-up.
    pub metrics: Vec<MetricConfig>,
    /// Whether, with no `metrics` listed, the default set is defined.
    pub default_metrics: bool,
    /// Existing Kafka topics read into the pipeline.
    pub sources: Vec<sluice_ingest::sources::SourceConfig>,
    /// Alert rules defined at start.
    pub alerts: Vec<sluice_api::alerts::AlertRuleConfig>,
    /// Where alert notifications go.
    pub alert_channels: Vec<sluice_api::alerts::ChannelConfig>,
    /// Alert evaluation and delivery.
    pub alerting: sluice_api::alerts::AlertingConfig,
    /// The HTTP server.
    pub server: ServerConfig,
    /// Logs.
    pub telemetry: TelemetryConfig,
    /// Bounds on events and batches.
    pub limits: Limits,
    /// The durable log.
    pub log: LogConfig,
    /// The collector.
    pub ingest: IngestConfig,
    /// What the collector adds to events.
    pub enrichment: sluice_ingest::enrich::EnrichConfig,
    /// The stream engine.
    pub stream: StreamConfig,
    /// The result store.
    pub store: StoreConfig,
    /// Queries, caches and live push.
    pub api: ApiConfig,
    /// Default limits of every key.
    pub quotas: QuotaConfig,
    /// The schema registry and validation at the collector.
    pub schemas: sluice_schema::SchemasConfig,
    /// The raw event archive (Parquet).
    pub archive: sluice_archive::ArchiveConfig,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServerConfig {
    /// `ADDR:PORT` to listen on.
    pub listen: String,
    /// Largest request body on any endpoint, before decompression.
    pub max_request_bytes: ByteSize,
    /// Longest a request may take.
    pub request_timeout: HumanDuration,
    /// How long in-flight work may take to finish at shutdown.
    pub shutdown_timeout: HumanDuration,
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Longest a request head may take to arrive.
    pub header_read_timeout: HumanDuration,
    /// Longest an open connection may wait for its next request.
    pub keep_alive_timeout: HumanDuration,
}

impl Config {
    /// The URL tools use to reach this configuration's server on this machine.
    pub fn local_url(&self) -> String {
        let listen = self
            .server
            .listen
            .replace("0.0.0.0", "127.0.0.1")
            .replace("[::]", "[::1]");
        format!("http://{listen}")
    }
}

impl ServerConfig {
    /// The listen address (validated by [`Validate`], so this only fails on unvalidated input).
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.listen.parse().map_err(|_| {
            format!(
                "{:?} is not an ADDRESS:PORT like 127.0.0.1:8080 or [::]:8080",
                self.listen
            )
        })
    }
}

/// `[telemetry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Log line format.
    pub log_format: LogFormat,
    /// tracing filter directives.
    pub log_filter: String,
    /// `ADDR:PORT` of a listener of its own for `/metrics`; empty: the main listener.
    pub metrics_listen: String,
    /// Who may read `/metrics`.
    pub metrics_auth: MetricsAuth,
    /// Whether metrics are labelled with tenant names and key ids.
    pub tenant_labels: bool,
}

impl TelemetryConfig {
    /// The address of `/metrics`' own listener, if it has one (validated by [`Validate`]).
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, String> {
        if self.metrics_listen.is_empty() {
            return Ok(None);
        }
        self.metrics_listen.parse().map(Some).map_err(|_| {
            format!(
                "{:?} is not an ADDRESS:PORT like 127.0.0.1:9464 (or empty for the main listener)",
                self.metrics_listen
            )
        })
    }
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricsAuth {
    /// Requests need an admin key (`Authorization: Bearer KEY`).
    AdminKey,
    /// Anyone who reaches the listener.
    None,
}

impl MetricsAuth {
    /// Whether a request needs a key.
    pub fn needs_key(self) -> bool {
        self == MetricsAuth::AdminKey
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable, colored on a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

impl Validate for Config {
    fn validate(&self, path: &str, problems: &mut Vec<ConfigProblem>) {
        if self.data_dir.as_os_str().is_empty() {
            problems.push(ConfigProblem::new(
                join(path, "data-dir"),
                "must not be empty",
            ));
        }
        self.tenants.validate(&join(path, "tenants"), problems);
        for (index, key) in self.admin_keys.iter().enumerate() {
            if key.len() < sluice_core::tenant::MIN_KEY_LEN || key.chars().any(char::is_whitespace)
            {
                problems.push(ConfigProblem::new(
                    format!("{}[{index}]", join(path, "admin-keys")),
                    format!(
                        "keys must be at least {} characters without spaces",
                        sluice_core::tenant::MIN_KEY_LEN
                    ),
                ));
            }
        }
        let tenant_keys: std::collections::HashSet<&str> = self
            .tenants
            .iter()
            .flat_map(|tenant| tenant.write_keys.iter().chain(&tenant.read_keys))
            .map(String::as_str)
            .collect();
        for (index, key) in self.admin_keys.iter().enumerate() {
            if tenant_keys.contains(key.as_str()) {
                problems.push(ConfigProblem::new(
                    format!("{}[{index}]", join(path, "admin-keys")),
                    "is also a tenant's key: give admins their own keys",
                ));
            }
        }
        let defaults = self.stream.metric_defaults();
        let mut names = std::collections::HashMap::new();
        let mut plans = Vec::new();
        for (index, metric) in self.metrics.iter().enumerate() {
            let here = format!("{}[{index}].sql", join(path, "metrics"));
            match sluice_stream::sql::parse_metric(&metric.sql, &defaults) {
                Ok(plan) => {
                    if let Some(first) = names.insert(plan.name.clone(), index) {
                        problems.push(ConfigProblem::new(
                            here.clone(),
                            format!(
                                "metric {:?} is already defined at metrics[{first}]",
                                plan.name
                            ),
                        ));
                    }
                    plans.push((here, plan));
                }
                Err(error) => problems.push(ConfigProblem::new(here, error.to_string())),
            }
        }
        // A definition may read a stream made through the API, which the config does not
        // know; one that reads a configured metric is wrong for sure.
        for (here, plan) in &plans {
            let sluice_stream::plan::Source::Stream(stream) = &plan.source else {
                continue;
            };
            let read = plans.iter().find(|(_, other)| &other.name == stream);
            if read.is_some_and(|(_, other)| !other.is_stream()) {
                problems.push(ConfigProblem::new(
                    here.clone(),
                    format!(
                        "{:?} reads FROM {stream}, which is a metric: read FROM events, or FROM a stream (CREATE STREAM {stream}_… AS SELECT … FROM events)",
                        plan.name
                    ),
                ));
            }
        }
        let mut source_names = std::collections::HashMap::new();
        for (index, source) in self.sources.iter().enumerate() {
            let here = format!("{}[{index}]", join(path, "sources"));
            source.validate(&here, problems);
            if let Some(first) = source_names.insert(source.name.as_str(), index) {
                problems.push(ConfigProblem::new(
                    join(&here, "name"),
                    format!(
                        "source {:?} is already defined at sources[{first}]",
                        source.name
                    ),
                ));
            }
            if !self.log.url.starts_with("kafka://") && index == 0 {
                problems.push(ConfigProblem::new(
                    join(path, "sources"),
                    "sources read Kafka topics: they need log.url = \"kafka://…\" (the brokers that hold them)",
                ));
            }
        }
        self.store.validate(&join(path, "store"), problems);
        self.server.validate(&join(path, "server"), problems);
        self.telemetry.validate(&join(path, "telemetry"), problems);
        if let (Ok(main), Ok(Some(metrics))) =
            (self.server.listen_addr(), self.telemetry.metrics_addr())
            && main == metrics
            && main.port() != 0
        {
            problems.push(ConfigProblem::new(
                join(path, "telemetry.metrics-listen"),
                format!("is server.listen's address ({main}): give /metrics another port, or leave it empty to serve it on the main listener"),
            ));
        }
        self.limits.validate(&join(path, "limits"), problems);
        self.log.validate(&join(path, "log"), problems);
        self.ingest.validate(&join(path, "ingest"), problems);
        self.enrichment
            .validate(&join(path, "enrichment"), problems);
        self.schemas.validate(&join(path, "schemas"), problems);
        self.archive.validate(&join(path, "archive"), problems);
        self.stream.validate(&join(path, "stream"), problems);
        self.api.validate(&join(path, "api"), problems);
        self.quotas.validate(&join(path, "quotas"), problems);
        self.alerting.validate(&join(path, "alerting"), problems);
        sluice_api::alerts::config::validate_channels(
            &self.alert_channels,
            &join(path, "alert-channels"),
            problems,
        );
        let channels: std::collections::HashSet<&str> = self
            .alert_channels
            .iter()
            .map(|channel| channel.name.as_str())
            .collect();
        for (index, rule) in self.alerts.iter().enumerate() {
            let here = format!("{}[{index}]", join(path, "alerts"));
            if let Err(error) = sluice_stream::alert::parse_alert(&rule.sql) {
                problems.push(ConfigProblem::new(join(&here, "sql"), error.to_string()));
            }
            if let Err(message) = sluice_core::tenant::check_tenant_name(&rule.tenant) {
                problems.push(ConfigProblem::new(join(&here, "tenant"), message));
            }
            for channel in &rule.channels {
                if !channels.contains(channel.as_str()) {
                    problems.push(ConfigProblem::new(
                        join(&here, "channels"),
                        format!("{channel:?} is not one of [[alert-channels]]: add it there or fix the name"),
                    ));
                }
            }
        }
    }
}

impl Validate for ServerConfig {
    fn validate(&self, path: &str, problems: &mut Vec<ConfigProblem>) {
        if let Err(message) = self.listen_addr() {
            problems.push(ConfigProblem::new(join(path, "listen"), message));
        }
        if self.max_request_bytes.bytes() < 1024 {
            problems.push(ConfigProblem::new(
                join(path, "max-request-bytes"),
                "must be at least 1KiB",
            ));
        }
        if self.request_timeout.get().is_zero() {
            problems.push(ConfigProblem::new(
                join(path, "request-timeout"),
                "must be longer than 0s",
            ));
        }
        if self.max_connections == 0 {
            problems.push(ConfigProblem::new(
                join(path, "max-connections"),
                "must be at least 1",
            ));
        }
        for (key, timeout) in [
            ("header-read-timeout", self.header_read_timeout),
            ("keep-alive-timeout", self.keep_alive_timeout),
        ] {
            if timeout.get() < std::time::Duration::from_millis(100) {
                problems.push(ConfigProblem::new(
                    join(path, key),
                    "must be at least 100ms: clients need time to send a request",
                ));
            }
        }
    }
}

impl Validate for TelemetryConfig {
    fn validate(&self, path: &str, problems: &mut Vec<ConfigProblem>) {
        if let Err(error) = tracing_subscriber::EnvFilter::builder().parse(&self.log_filter) {
            problems.push(ConfigProblem::new(
                join(path, "log-filter"),
                format!("{:?} is not a log filter ({error}); write a level like \"info\" or \"info,sluice_log=debug\"", self.log_filter),
            ));
        }
        if let Err(message) = self.metrics_addr() {
            problems.push(ConfigProblem::new(join(path, "metrics-listen"), message));
        }
    }
}

/// The flags every command that reads the configuration accepts.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// Config file (TOML); keys it omits keep their defaults.
    #[arg(long, short = 'c', value_name = "FILE", env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides `data-dir`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The configuration has problems.
    #[error("{0}")]
    Problems(#[from] ConfigProblems),
}

/// Loads the configuration: defaults ← `file` ← environment ← `overrides` (dotted paths).
pub fn load(file: Option<&Path>, overrides: &[(&str, toml::Value)]) -> Result<Config, LoadError> {
    let text = match file {
        Some(path) => Some(
            std::fs::read_to_string(path).map_err(|source| LoadError::Read {
                path: path.to_owned(),
                source,
            })?,
        ),
        None => None,
    };
    let name = file
        .map(|path| path.display().to_string())
        .unwrap_or_default();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let loaded = sluice_core::config::load::<Config>(
        DEFAULTS,
        text.as_deref().map(|text| (name.as_str(), text)),
        &env,
        overrides,
    )?;
    Ok(loaded.config)
}

impl ConfigArgs {
    /// Loads the configuration with these flags and any further `overrides`.
    pub fn load(&self, overrides: &[(&str, toml::Value)]) -> Result<Config, LoadError> {
        let mut all: Vec<(&str, toml::Value)> = overrides.to_vec();
        if let Some(dir) = &self.data_dir {
            all.push(("data-dir", toml::Value::String(dir.display().to_string())));
        }
        load(self.config.as_deref(), &all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_defaults_are_a_valid_configuration() {
        let config = load(None, &[]).expect("defaults load");
        assert_eq!(config.server.listen, "127.0.0.1:8080");
        assert_eq!(config.limits.max_event_bytes, ByteSize(32 * 1024));
        assert_eq!(config.limits.max_batch_bytes, ByteSize(500 * 1024));
        assert!(config.tenants.is_empty());
        assert_eq!(config.log.ack, sluice_log::AckMode::Fsync);
        assert_eq!(config.log.partitions, 8);
        assert_eq!(config.stream.source_topic, "events");
        assert_eq!(config.stream.metric_defaults().out_of_orderness, 10_000);
    }

    #[test]
    fn librdkafka_settings_of_any_name_pass_through_the_kafka_client_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(
            &path,
            "[log]\nurl = \"kafka://broker:9092\"\n[log.kafka]\nsession-timeout = \"6s\"\n\
             [log.kafka.client]\n\"security.protocol\" = \"SASL_SSL\"\n\"linger.ms\" = 5\n\
             \"enable.ssl.certificate.verification\" = false\n",
        )
        .unwrap();
        let config = load(Some(&path), &[]).expect("the client table loads");
        let client: Vec<(String, String)> = config
            .log
            .kafka
            .client
            .iter()
            .map(|(key, value)| (key.clone(), value.to_string()))
            .collect();
        assert_eq!(
            client,
            [
                ("enable.ssl.certificate.verification".into(), "false".into()),
                ("linger.ms".into(), "5".into()),
                ("security.protocol".into(), "SASL_SSL".into()),
            ]
        );
        assert_eq!(
            config.log.kafka.session_timeout.get(),
            std::time::Duration::from_secs(6)
        );
        // The table's values are still checked by their type.
        std::fs::write(&path, "[log.kafka.client]\n\"linger.ms\" = [1]\n").unwrap();
        let error = load(Some(&path), &[]).unwrap_err().to_string();
        assert!(error.contains("log.kafka.client"), "{error}");
    }

    #[test]
    fn sources_need_a_kafka_log_and_names_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        let source = "[[sources]]\nname = \"web\"\ntopic = \"web-events\"\ntenant = \"shop\"\n";
        std::fs::write(&path, format!("{source}{source}")).unwrap();
        let error = load(Some(&path), &[]).unwrap_err().to_string();
        assert!(
            error.contains("sources: sources read Kafka topics"),
            "{error}"
        );
        assert!(
            error.contains("sources[1].name: source \"web\" is already defined at sources[0]"),
            "{error}"
        );
        std::fs::write(&path, format!("[log]\nurl = \"kafka://b:9092\"\n{source}")).unwrap();
        let config = load(Some(&path), &[]).expect("a source on Kafka loads");
        assert_eq!(config.sources[0].group(), "sluice-source-web");
    }

    #[test]
    fn log_problems_are_reported_with_their_keys() {
        let overrides = [
            ("log.url", toml::Value::String("kafka://broker".into())),
            ("log.partitions", toml::Value::Integer(0)),
        ];
        let error = load(None, &overrides).unwrap_err().to_string();
        assert!(
            error.contains("log.url: \"kafka://broker\": write kafka://host:port"),
            "{error}"
        );
        assert!(error.contains("log.partitions: is 0"), "{error}");
    }

    #[test]
    fn the_pipeline_retry_backoff_is_bounded() {
        assert_eq!(
            load(None, &[]).unwrap().store.retry_max_backoff(),
            std::time::Duration::from_secs(60)
        );
        for bad in ["10ms", "2h"] {
            let overrides = [("store.retry-max-backoff", toml::Value::String(bad.into()))];
            let error = load(None, &overrides).unwrap_err().to_string();
            assert!(
                error.contains("store.retry-max-backoff: must be between 100ms and 1h"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn the_example_config_is_valid() {
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/sluice.example.toml");
        let config = load(Some(&example), &[]).expect("example loads");
        assert_eq!(config.tenants.len(), 1);
    }
}
