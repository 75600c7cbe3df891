//! `sluice replay --metric NAME [--from-time T]`: recomputes a metric from the log — after a
//! bug fix, say — and replaces its results atomically once the recomputation has caught up.
//!
//! With no server running, the command starts sluice's pipelines on the data directory
//! itself, replays, and stops. With a server running (it holds the data directory), it asks
//! the server through the admin API (`POST /v1/admin/metrics/NAME/replay`) and follows the
//! progress until the new results are current.

use crate::app::App;
use crate::client::{Connection, Target};
use crate::config::ConfigArgs;
use crate::{UserError, data_dir, log_tools};
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use hyper::{Method, StatusCode};
use sluice_core::time::{Millis, parse_rfc3339_millis};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The metric to recompute.
    #[arg(long)]
    metric: String,
    /// Recompute windows from this time on (RFC 3339 or epoch ms); earlier results stay.
    /// Default: everything the log retains.
    #[arg(long, value_name = "T")]
    from_time: Option<String>,
    /// Admin key for a running server (default: $SLUICE_ADMIN_KEY, else the config's first).
    #[arg(long, env = "SLUICE_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// Give up waiting after this many seconds (the replay itself continues in a server).
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
    #[command(flatten)]
    config: ConfigArgs,
}

/// Parses a time given on the command line: RFC 3339 or epoch milliseconds.
pub fn parse_time(text: &str) -> Result<Millis, UserError> {
    if let Ok(millis) = text.parse::<Millis>() {
        return Ok(millis);
    }
    parse_rfc3339_millis(text).map_err(|reason| {
        UserError(format!(
            "--from-time: {reason} (or give epoch milliseconds)"
        ))
    })
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let mut config = args
        .config
        .load(&[])
        .map_err(|error| UserError(error.to_string().trim_end().to_owned()))?;
    let from_time = args.from_time.as_deref().map(parse_time).transpose()?;
    let runtime = log_tools::runtime()?;
    let free = data_dir::lock_if_free(&config.data_dir)?;
    let timeout = Duration::from_secs(args.timeout);
    match free {
        Some(lock) => {
            drop(lock);
            // No server: run the pipelines here, on a private port, for the replay's duration.
            config.server.listen = "127.0.0.1:0".into();
            runtime.block_on(async {
                let app = App::start(&config).await?;
                let result = replay_here(&app, &args.metric, from_time, timeout).await;
                app.stop(Duration::from_secs(30)).await?;
                result
            })
        }
        None => {
            let key = args
                .admin_key
                .clone()
                .or_else(|| config.admin_keys.first().cloned())
                .ok_or_else(|| UserError("a server is running: pass --admin-key KEY (one of its admin-keys) so it can replay".into()))?;
            let url = format!(
                "http://{}",
                config.server.listen.replace("0.0.0.0", "127.0.0.1")
            );
            runtime.block_on(replay_remote(&url, &key, &args.metric, from_time, timeout))
        }
    }
}

async fn replay_here(
    app: &App,
    metric: &str,
    from_time: Option<Millis>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let Some((_, generation)) = app.pipelines.plan(metric) else {
        let known: Vec<String> = app
            .pipelines
            .plans()
            .iter()
            .map(|(plan, _)| plan.name.clone())
            .collect();
        return Err(UserError(format!(
            "no metric named {metric:?}; the metrics are: {}",
            known.join(", ")
        ))
        .into());
    };
    app.pipelines
        .replay(metric, from_time)
        .await
        .map_err(|error| UserError(error.to_string()))?;
    let start = Instant::now();
    let mut last_report = Instant::now();
    while app
        .pipelines
        .plan(metric)
        .is_some_and(|(_, current)| current == generation)
    {
        if start.elapsed() > timeout {
            bail!(
                "the replay of {metric} did not finish within {}s",
                timeout.as_secs()
            );
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            last_report = Instant::now();
            if let Some(status) = app.pipelines.status(Some(metric)).await?.pop()
                && let Some(replay) = status.replay
            {
                eprintln!("replaying {metric}: {:.0}%", replay.progress * 100.0);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "replayed {metric}: generation {} is current",
        generation + 1
    );
    Ok(())
}

async fn replay_remote(
    url: &str,
    key: &str,
    metric: &str,
    from_time: Option<Millis>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let target = Target::parse(url)?;
    let auth = format!("Bearer {key}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let mut connection = Connection::open(&target).await?;
    let path = format!("/v1/admin/metrics/{metric}");
    let reply = connection
        .send(Method::GET, &path, &headers, Bytes::new())
        .await?;
    if reply.status != StatusCode::OK {
        return Err(UserError(format!(
            "sluice answered {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        ))
        .into());
    }
    let before: serde_json::Value =
        serde_json::from_slice(&reply.body).context("reading the metric's status")?;
    let generation = before["generation"].as_u64().unwrap_or(0);
    let body = serde_json::json!({ "from_time": from_time }).to_string();
    let reply = connection
        .send(
            Method::POST,
            &format!("{path}/replay"),
            &headers,
            Bytes::from(body),
        )
        .await?;
    if reply.status != StatusCode::ACCEPTED {
        return Err(UserError(format!(
            "sluice answered {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        ))
        .into());
    }
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let reply = connection
            .send(Method::GET, &path, &headers, Bytes::new())
            .await?;
        let status: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        if status["generation"].as_u64().unwrap_or(0) > generation {
            println!(
                "replayed {metric}: generation {} is current",
                generation + 1
            );
            return Ok(());
        }
        if let Some(progress) = status["replay"]["progress"].as_f64() {
            eprintln!("replaying {metric}: {:.0}%", progress * 100.0);
        }
        if start.elapsed() > timeout {
            bail!(
                "the replay of {metric} did not finish within {}s; it continues in the server",
                timeout.as_secs()
            );
        }
    }
}
