//! Wiring: every stage of sluice started in one process on one data directory, and stopped in
//! order. `sluice serve` is [`App::start`] + wait for a signal + [`App::stop`]; tests start the
//! same app in-process on `127.0.0.1:0`.

use crate::config::Config;
use crate::server::{self, PrometheusEndpoint, Readiness};
use crate::{UserError, data_dir, first_start, telemetry};
use anyhow::Context;
use sluice_api::keys::Access;
use sluice_api::registry::SchemaService;
use sluice_core::error::{Classify, ErrorClass};
use sluice_ingest::Collector;
use sluice_log::{Log, LogBackend, LogError, TopicSpec};
use sluice_pipelines::{MetricSpec, PipelineSettings, Pipelines};
use sluice_schema::SharedValidators;
use sluice_store::{StoreBackend, StoreError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running sluice.
#[derive(Debug)]
pub struct App {
    /// The address the HTTP server listens on.
    pub addr: SocketAddr,
    /// The address of `/metrics`' own listener (`telemetry.metrics-listen`), if it has one.
    pub metrics_addr: Option<SocketAddr>,
    /// The log every stage shares.
    pub log: Arc<LogBackend>,
    /// The collector.
    pub collector: Arc<Collector<LogBackend>>,
    /// Every metric's exactly-once pipeline.
    pub pipelines: Pipelines<LogBackend>,
    /// The raw event archive, when enabled: the events', then each archived derived stream's.
    archives: Vec<sluice_archive::Archive>,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
    /// The HTTP servers: the main one, and the metrics listener's if it has one.
    servers: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    /// Saves key usage; on shutdown it saves once more before ending.
    usage_saver: JoinHandle<()>,
    _lock: data_dir::DataDirLock,
}

/// Starts reading a `[[sources]]` topic (config validation has checked the log is Kafka).
fn start_source(
    log: &Arc<LogBackend>,
    source: &sluice_ingest::sources::SourceConfig,
    collector: &Arc<Collector<LogBackend>>,
    schemas: &Arc<SchemaService>,
    shutdown: &CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    match &**log {
        #[cfg(feature = "kafka")]
        LogBackend::Kafka(kafka) => {
            let reader = kafka
                .read_source(&source.topic, &source.group())
                .map_err(user_or_other)?;
            tracing::info!(source = %source.name, topic = %source.topic, "reading a source topic");
            Ok(tokio::spawn(crate::sources::run(
                source.clone(),
                reader,
                Arc::clone(collector),
                Arc::clone(schemas),
                shutdown.clone(),
            )))
        }
        _ => Err(UserError(format!(
            "source {:?}: sources read Kafka topics; set log.url = \"kafka://…\"",
            source.name
        ))
        .into()),
    }
}

/// The consumer group the nodes of a cluster share the events topic's partitions through.
pub const PIPELINES_GROUP: &str = "sluice-pipelines";

impl App {
    /// Starts every stage: locks the data dir, opens (and recovers) the log, creates the
    /// topics, builds the collector and serves HTTP.
    pub async fn start(config: &Config) -> anyhow::Result<App> {
        let lock = data_dir::lock(&config.data_dir)?;
        let tenants = first_start::resolve(&config.tenants, &config.data_dir)?;
        let key_ids = first_start::key_id_secret(&config.data_dir)?;
        let prometheus = telemetry::prometheus(&config.telemetry);
        let readiness = Arc::new(Readiness::default());

        let log = LogBackend::open(&config.log, &config.data_dir)
            .await
            .map_err(user_or_other)?;
        let log = Arc::new(log);
        for topic in [
            &config.ingest.events_topic,
            &config.ingest.dead_letter_topic,
        ] {
            let spec = TopicSpec {
                name: topic.clone(),
                partitions: config.log.partitions,
                retention_age: None,
                retention_bytes: None,
            };
            match log.create_topic(spec).await {
                Err(LogError::TopicMismatch {
                    topic, existing, ..
                }) => {
                    tracing::warn!(
                        topic,
                        existing,
                        configured = config.log.partitions,
                        "topic keeps its partition count; log.partitions applies to new topics"
                    );
                }
                other => other.map_err(user_or_other)?,
            }
        }
        let store = StoreBackend::open(&config.store, &config.data_dir)
            .await
            .map_err(|error| match error {
                // A database that cannot be reached at start is the operator's to fix.
                error @ (StoreError::Corrupt { .. }
                | StoreError::NewerSchema { .. }
                | StoreError::Postgres { .. }
                | StoreError::Invalid(_)) => anyhow::Error::from(UserError(error.to_string())),
                other => other.into(),
            })?;
        store.set_max_size(config.store.max_size()).await?;
        // Erased users: their events are dropped from the first request on, and identities
        // skip them from the first record on.
        let erased = Arc::new(sluice_core::erasure::ErasedUsers::default());
        erased.replace(
            store
                .erasures()
                .await
                .context("reading the erased users from the store")?
                .into_iter()
                .map(|record| (record.tenant, record.id)),
        );
        let settings = PipelineSettings {
            stream: config.stream.clone(),
            checkpoint_interval: config.store.checkpoint_interval(),
            retry_max_backoff: config.store.retry_max_backoff(),
            erased: Arc::clone(&erased),
            // Replays from before the log's start read the archive.
            history: if config.archive.enabled {
                let location = config.archive.location(&config.data_dir);
                let target = sluice_archive::target::Target::open(&location)
                    .map_err(|error| UserError(format!("opening the archive: {error}")))?;
                Some(Arc::new(sluice_archive::history::ArchiveHistory::new(
                    target,
                    &config.stream.source_topic,
                )))
            } else {
                None
            },
        };
        let configured: Vec<MetricSpec> = first_start::metrics(
            &config.metrics,
            config.default_metrics,
            &store.metrics().await?,
        );
        let access = Access::open(
            store.clone(),
            tenants.clone(),
            config.admin_keys.clone(),
            key_ids,
            config.quotas.clone(),
        )
        .await
        .context("loading tenants and keys from the store")?;
        // On Kafka, the nodes sharing the brokers and the store form one cluster: the
        // consumer group on the events topic gives each node its partitions.
        let membership = log
            .join_group(&config.stream.source_topic, PIPELINES_GROUP)
            .map_err(user_or_other)?;
        let pipelines = match membership {
            None => Pipelines::start(Arc::clone(&log), store, settings, &configured).await,
            Some(membership) => {
                Pipelines::start_in_group(
                    Arc::clone(&log),
                    store,
                    settings,
                    &configured,
                    membership,
                )
                .await
            }
        }
        .map_err(|error| match error.class() {
            // The config's definitions are the operator's to fix (a metric reading no stream).
            ErrorClass::User => {
                anyhow::Error::from(UserError(format!("starting the metric pipelines: {error}")))
            }
            _ => anyhow::Error::from(error).context("starting the metric pipelines"),
        })?;

        let archives = if config.archive.enabled {
            start_archives(config, &log, &pipelines, &erased).await?
        } else {
            Vec::new()
        };

        let validators = Arc::new(SharedValidators::default());
        let schemas = SchemaService::open(
            Arc::clone(&access),
            pipelines.store().clone(),
            config.schemas.clone(),
            Arc::clone(&validators),
        )
        .await
        .context("loading the schema registry from the store")?;
        if let Some(dir) = config.schemas.dir() {
            let registered = sluice_api::registry::files::register_all(&schemas, &dir)
                .await
                .map_err(|problems| {
                    UserError(format!(
                        "the schema files of schemas.dir ({}) cannot all be registered:\n  {}",
                        dir.display(),
                        problems.join("\n  ")
                    ))
                })?;
            tracing::info!(dir = %dir.display(), files = registered, "schema files registered");
        }
        let enrichment = config.enrichment.clone();
        let enricher =
            tokio::task::spawn_blocking(move || sluice_ingest::enrich::Enricher::new(&enrichment))
                .await?
                .map_err(UserError)?;
        if let Some(database) = enricher.geo_database() {
            tracing::info!(
                database = database.current().description(),
                "geo database opened"
            );
        }
        let enricher = Arc::new(enricher);
        let collector = Arc::new(
            Collector::new(
                Arc::clone(&log),
                access.directory(),
                config.limits.clone(),
                config.ingest.clone(),
                Some(sluice_ingest::dedup::snapshot::path(&config.data_dir)),
            )
            .await
            .context("starting the collector")?
            .with_validators(validators)
            .with_enricher(Arc::clone(&enricher))
            .with_erased_users(Arc::clone(&erased)),
        );

        let addr = config.server.listen_addr().map_err(UserError)?;
        let listener = bind(addr, "choose another address with --listen ADDR:PORT").await?;
        let addr = listener.local_addr()?;
        let metrics_listener = match config.telemetry.metrics_addr().map_err(UserError)? {
            Some(addr) => Some(bind(addr, "choose another with telemetry.metrics-listen").await?),
            None => None,
        };
        let metrics_addr = match &metrics_listener {
            Some(listener) => Some(listener.local_addr()?),
            None => None,
        };
        let shutdown = CancellationToken::new();
        let ingest = sluice_ingest::router(Arc::clone(&collector));
        let collector_routes: Vec<String> =
            ingest.get_openapi().paths.paths.keys().cloned().collect();
        let (api_routes, alerting) = sluice_api::router(
            pipelines.clone(),
            Arc::clone(&access),
            &config.api,
            (&config.alerting, &config.alert_channels),
            shutdown.clone(),
        )
        .map_err(|error| anyhow::anyhow!(error))?;
        alerting
            .apply_config(&config.alerts)
            .await
            .map_err(|error| UserError(format!("the config's alert rules: {error}")))?;
        let stages = ingest.merge(api_routes);
        let stages = stages.merge(sluice_api::admin::dead_letters::router(Arc::new(
            sluice_api::admin::dead_letters::DeadLettersState {
                access: Arc::clone(&access),
                log: Arc::downgrade(&log),
                topic: config.ingest.dead_letter_topic.clone(),
            },
        )));
        let stages = stages.merge(sluice_api::admin::erasures::router(Arc::new(
            sluice_api::admin::erasures::ErasuresState {
                access: Arc::clone(&access),
                store: pipelines.store().clone(),
                erased: Arc::clone(&erased),
                retention: config.log.default_retention_age(),
                topics: vec![
                    config.ingest.events_topic.clone(),
                    config.ingest.dead_letter_topic.clone(),
                    config.stream.late_topic.clone(),
                ],
                pipelines: pipelines.clone(),
                max_store_rows: config.api.max_store_rows,
                archive: archives
                    .first()
                    .map(|archive| archive.location().to_owned()),
            },
        )));
        // The query API's routes answer browsers without the collector's CORS.
        let other_routes: Vec<String> = stages
            .get_openapi()
            .paths
            .paths
            .keys()
            .filter(|route| !collector_routes.contains(route))
            .cloned()
            .collect();
        // The schema registry speaks Confluent's protocol, and the dashboard serves files:
        // both outside the OpenAPI document.
        let stages = stages
            .merge(utoipa_axum::router::OpenApiRouter::from(
                sluice_api::registry::routes::router(Arc::clone(&schemas)),
            ))
            .merge(utoipa_axum::router::OpenApiRouter::from(
                sluice_api::dashboard::router(),
            ));
        let metrics = PrometheusEndpoint::new(prometheus.clone(), &config.telemetry, &access);
        let (main_metrics, own_metrics) = match metrics_listener {
            Some(listener) => (None, Some((listener, metrics))),
            None => (Some(metrics), None),
        };
        let app = server::app(stages, &config.server, Arc::clone(&readiness), main_metrics).layer(
            sluice_ingest::cors_layer(&config.ingest.cors_allowed_origins, other_routes),
        );
        let mut servers = vec![tokio::spawn(server::serve(
            listener,
            server::connection_limits(&config.server, "main"),
            app,
            shutdown.clone(),
        ))];
        if let Some((listener, metrics)) = own_metrics {
            servers.push(tokio::spawn(server::serve(
                listener,
                server::connection_limits(&config.server, "metrics"),
                server::metrics_app(metrics, &config.server),
                shutdown.clone(),
            )));
        }
        let usage_saver = tokio::spawn(Arc::clone(&access).run_usage_saver(shutdown.clone()));
        let mut background = alerting.start(shutdown.clone());
        background.extend([
            spawn_metrics_upkeep(prometheus, shutdown.clone()),
            {
                let (log, every) = (Arc::clone(&log), config.log.retention_check_interval.get());
                let stop = shutdown.clone().cancelled_owned();
                tokio::spawn(async move { sluice_log::run_retention(&*log, every, stop).await })
            },
            {
                let collector = Arc::clone(&collector);
                let stop = shutdown.clone().cancelled_owned();
                tokio::spawn(async move { collector.run_dedup_upkeep(stop).await })
            },
            tokio::spawn(enricher.run_geo_reload(shutdown.clone().cancelled_owned())),
        ]);
        if pipelines.in_group() {
            // Schemas other nodes register apply here within schemas.refresh-interval.
            background.push(tokio::spawn(
                Arc::clone(&schemas)
                    .follow_store(config.schemas.refresh_interval.get(), shutdown.clone()),
            ));
            // Users erased through other nodes.
            background.push(tokio::spawn(sluice_api::admin::erasures::follow_store(
                pipelines.store().clone(),
                Arc::clone(&erased),
                sluice_pipelines::DEFINITIONS_POLL,
                shutdown.clone(),
            )));
            // Other nodes of the cluster change tenants and keys too, and append events whose
            // retries may reach this node.
            background.push(tokio::spawn(
                Arc::clone(&access)
                    .follow_store(sluice_pipelines::DEFINITIONS_POLL, shutdown.clone()),
            ));
            let collector = Arc::clone(&collector);
            let stop = shutdown.clone().cancelled_owned();
            background.push(tokio::spawn(async move {
                collector.follow_peer_appends(stop).await
            }));
        }
        for source in &config.sources {
            background.push(start_source(&log, source, &collector, &schemas, &shutdown)?);
        }
        readiness.set_ready();
        tracing::info!(%addr, ?metrics_addr, data_dir = %config.data_dir.display(), tenants = tenants.len(), "sluice is serving");
        Ok(App {
            addr,
            metrics_addr,
            log,
            collector,
            pipelines,
            archives,
            readiness,
            shutdown,
            servers,
            background,
            usage_saver,
            _lock: lock,
        })
    }

    /// Stops in order: not ready, no new connections, in-flight requests finish (for at most
    /// `grace`), background tasks end, the log flushes and closes.
    pub async fn stop(self, grace: Duration) -> anyhow::Result<()> {
        self.readiness.set_stopping();
        self.shutdown.cancel();
        match tokio::time::timeout(grace, futures::future::try_join_all(self.servers)).await {
            Ok(joined) => {
                joined.context("server task")?;
            }
            Err(_) => tracing::warn!(
                ?grace,
                "in-flight requests did not finish in time; stopping anyway"
            ),
        }
        for task in self.background {
            task.abort();
        }
        // Requests have stopped: the last dedup snapshot lets a restart read no log back.
        match tokio::time::timeout(Duration::from_secs(10), self.collector.save_snapshot()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not write the last dedup snapshot; the next start reads the log back instead")
            }
            Err(_) => tracing::warn!(
                "the last dedup snapshot did not finish in time; the next start reads the log back instead"
            ),
        }
        if tokio::time::timeout(Duration::from_secs(5), self.usage_saver)
            .await
            .is_err()
        {
            tracing::warn!("saving key usage did not finish in time");
        }
        // Each pipeline commits a last checkpoint, so a restart redoes nothing. A pipeline
        // that cannot (its store or brokers are away) is left: the next start resumes from the
        // checkpoint before, and exactly once holds either way.
        if tokio::time::timeout(PIPELINES_STOP_TIMEOUT, self.pipelines.stop())
            .await
            .is_err()
        {
            tracing::warn!(timeout = ?PIPELINES_STOP_TIMEOUT, "the pipelines did not commit a last checkpoint in time; the next start resumes from the one before");
        }
        drop(self.pipelines);
        // An archiver stops after its batch in flight is committed; one whose store is away is
        // left (the next start deletes that batch's files and archives it again).
        let stopped = futures::future::join_all(self.archives.into_iter().map(|a| a.stop()));
        if tokio::time::timeout(PIPELINES_STOP_TIMEOUT, stopped)
            .await
            .is_err()
        {
            tracing::warn!(timeout = ?PIPELINES_STOP_TIMEOUT, "the archive did not commit its batch in flight in time; the next start archives it again");
        }
        drop(self.collector);
        match Arc::try_unwrap(self.log) {
            Ok(log) => log.close().await.context("closing the log")?,
            Err(_) => tracing::warn!("the log is still in use; it closes when its last user ends"),
        }
        Ok(())
    }
}

/// How long stopping waits for the pipelines' last checkpoints.
const PIPELINES_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long stopping may take after the in-flight requests' grace, in all: past it the process
/// exits without waiting for the rest (a client library's teardown that blocks while brokers
/// are away must not keep a stopped server alive).
pub const STOP_BUDGET: Duration = Duration::from_secs(15);

/// Binds `addr`; a failure is the user's to fix, as `hint` says.
/// Starts the archive of the events, then of each derived stream `archive.streams` names, on
/// the partitions this node's pipelines compute (all of them without a cluster).
async fn start_archives(
    config: &Config,
    log: &Arc<LogBackend>,
    pipelines: &Pipelines<LogBackend>,
    erased: &Arc<sluice_core::erasure::ErasedUsers>,
) -> anyhow::Result<Vec<sluice_archive::Archive>> {
    let store = pipelines.store();
    let defaults = config.stream.metric_defaults();
    let mut archived = vec![sluice_archive::Archived::events(
        &config.stream.source_topic,
    )];
    for name in &config.archive.streams {
        let defined = sluice_pipelines::streams::is_stored_stream(store, name, &defaults)
            .await
            .context("reading the derived streams' definitions")?;
        if !defined {
            return Err(UserError(format!(
                "archive.streams names {name:?}, which is no derived stream: define it (CREATE STREAM, SESSIONS or IDENTITY, in the config or through the API before this start), or take it out of archive.streams"
            ))
            .into());
        }
        let committed = Arc::new(sluice_pipelines::streams::StoreRanges {
            store: store.clone(),
            stream: name.clone(),
        });
        archived.push(sluice_archive::Archived::stream(name, committed));
    }
    let mut archives = Vec::with_capacity(archived.len());
    for archived in archived {
        let what = match archived.committed {
            Some(_) => format!(" of the stream {}", archived.topic),
            None => String::new(),
        };
        // In a cluster, each node archives the partitions its pipelines own.
        let partitions = match pipelines.owned_partitions() {
            Some(owned) => sluice_archive::Partitions::Owned(owned),
            None => sluice_archive::Partitions::All,
        };
        let archive = sluice_archive::Archive::start(
            Arc::clone(log),
            store.clone(),
            archived,
            config.archive.location(&config.data_dir),
            &config.archive,
            Arc::clone(erased),
            partitions,
        )
        .await
        .map_err(|error| UserError(format!("starting the archive{what}: {error}")))?;
        archives.push(archive);
    }
    Ok(archives)
}

async fn bind(addr: SocketAddr, hint: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| UserError(format!("cannot listen on {addr}: {error}; {hint}")).into())
}

fn user_or_other(error: LogError) -> anyhow::Error {
    match error.class() {
        ErrorClass::User => UserError(error.to_string()).into(),
        _ => error.into(),
    }
}

fn spawn_metrics_upkeep(
    handle: metrics_exporter_prometheus::PrometheusHandle,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        while shutdown.run_until_cancelled(tick.tick()).await.is_some() {
            handle.run_upkeep();
        }
    })
}
