//! `sluice serve`: every stage in one process on one data directory.

use crate::UserError;
use crate::app::{App, STOP_BUDGET};
use crate::config::ConfigArgs;
use crate::server::ShutdownSignals;
use crate::telemetry;
use anyhow::Context;
use clap::Args;

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
    let served = runtime.block_on(async {
        let signals = ShutdownSignals::install().context("installing signal handlers")?;
        let app = App::start(&config).await?;
        if let Some(addr) = app.metrics_addr {
            println!("metrics on http://{addr}/metrics");
        }
        // Last: tools and tests read the start-up output up to this line.
        println!("sluice listening on http://{}", app.addr);
        signals.wait().await;
        tracing::info!("shutting down: no new connections; finishing in-flight requests");
        let grace = config.server.shutdown_timeout.get();
        // The last resort, on a thread of its own: a client library blocking every worker
        // thread (librdkafka's teardown while the brokers are away) would also stop the
        // runtime's timers, and with them the bound below.
        let budget = grace + STOP_BUDGET;
        std::thread::spawn(move || {
            std::thread::sleep(budget + std::time::Duration::from_secs(2));
            tracing::warn!(?budget, "stopping did not finish in time; exiting without waiting for the rest (acknowledged events are durable; the pipelines resume from their last checkpoints)");
            std::process::exit(0);
        });
        match tokio::time::timeout(budget, tokio::spawn(app.stop(grace))).await {
            Ok(stopped) => stopped.context("stopping")??,
            Err(_) => tracing::warn!(?budget, "stopping did not finish in time; exiting without waiting for the rest"),
        }
        tracing::info!("stopped");
        Ok(())
    });
    // Everything durable is done once the app stopped. What may still block are requests
    // whose answers no one awaits (a Kafka read or metadata request runs out its 10 s timeout
    // while the brokers are away): the process does not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    served
}
