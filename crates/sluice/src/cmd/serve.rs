//! `sluice serve`: every stage in one process on one data directory.

use crate::config::{Config, ConfigArgs};
use crate::server::{self, LimitedListener, Readiness, ShutdownSignals};
use crate::{UserError, data_dir, telemetry, tenants};
use anyhow::Context;
use axum::Router;
use clap::Args;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Address and port to listen on (overrides `server.listen`), e.g. 0.0.0.0:8080.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut overrides = Vec::new();
    if let Some(listen) = &args.listen {
        overrides.push(("server.listen", toml::Value::String(listen.clone())));
    }
    let config = args
        .config
        .load(&overrides)
        .map_err(|error| UserError(error.to_string().trim_end().to_owned()))?;
    telemetry::init_logs(&config.telemetry);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let signals = ShutdownSignals::install().context("installing signal handlers")?;
    let _lock = data_dir::lock(&config.data_dir)?;
    let tenants = tenants::resolve(&config.tenants, &config.data_dir)?;
    let prometheus = telemetry::prometheus();
    telemetry::spawn_upkeep(prometheus.clone());
    let readiness = Arc::new(Readiness::default());

    let addr = config.server.listen_addr().map_err(UserError)?;
    let listener = TcpListener::bind(addr).await.map_err(|error| {
        UserError(format!(
            "cannot listen on {addr}: {error}; choose another address with --listen ADDR:PORT"
        ))
    })?;
    let local = listener.local_addr()?;
    let listener = LimitedListener::new(listener, config.server.max_connections);

    let stages = Router::new();
    let app = server::app(stages, &config.server, Arc::clone(&readiness), prometheus);

    let shutdown = CancellationToken::new();
    let server = tokio::spawn(server::serve(listener, app, shutdown.clone()));
    readiness.set_ready();
    tracing::info!(%local, data_dir = %config.data_dir.display(), tenants = tenants.len(), "sluice is serving");
    println!("sluice listening on http://{local}");

    signals.wait().await;
    tracing::info!("shutting down: no new connections; finishing in-flight requests");
    readiness.set_stopping();
    shutdown.cancel();
    let grace = config.server.shutdown_timeout.get();
    match tokio::time::timeout(grace, server).await {
        Ok(joined) => joined.context("server task")?.context("serving HTTP")?,
        Err(_) => tracing::warn!(
            ?grace,
            "in-flight requests did not finish in time; exiting anyway"
        ),
    }
    tracing::info!("stopped");
    Ok(())
}
