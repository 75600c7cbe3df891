//! `sluice bench e2e`: freshness. Starts sluice in-process with the DESIGN.md page-views metric
//! and a probe metric, ingests synthetic events over HTTP at `--rate` events/s, and meanwhile
//! sends probe events one at a time. For each probe it measures, from the moment its 200
//! answer arrived (the event is durable), the time until a query of the REST API shows it and
//! the time until it arrives on a WebSocket subscription opened before. The last stdout line
//! is JSON with `query_p50_ms`, `query_p99_ms`, `ws_p50_ms`, `ws_p99_ms`. With `--nodes` it
//! measures running nodes instead (a cluster): load over all, probes to the first, the query
//! and the WebSocket on the last.

use super::percentile_ms;
use super::server::BenchServer;
use crate::UserError;
use crate::client::{Connection, Target, basic_auth};
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use sluice_core::synthetic::{EXAMPLE_METRIC, Synthetic, Template};
use sluice_core::time::now_millis;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Probes: one key per probe, counted per minute.
pub const PROBE_METRIC: &str = "CREATE METRIC e2e_probe AS SELECT properties.probe AS probe, \
     COUNT(*) AS n FROM events WHERE event = 'Probe' GROUP BY probe, TUMBLE(timestamp, INTERVAL '1' MINUTE)";

#[derive(Debug, Args)]
pub struct E2eBenchArgs {
    /// Background events per second, sent in batches over HTTP.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Probe events per second (each its own request).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    probes: u32,
    /// Events per background request.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=5000))]
    batch: u32,
    /// Background keep-alive connections.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    connections: u32,
    /// Where the server keeps its data [default: a temporary directory, removed afterwards].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Measure running nodes instead of an in-process server: their base URLs, comma-separated
    /// (a cluster's nodes). The load is spread over them, probes go to the first, and the
    /// query and WebSocket watch the last, so a probe computed on another node is seen through
    /// the store. The nodes need the tenant of `--write-key` and `--read-key`; the probe metric
    /// is defined with `--admin-key` if missing.
    #[arg(long, value_delimiter = ',', value_name = "URL,URL")]
    nodes: Vec<String>,
    /// Write key of the nodes' tenant (with `--nodes`).
    #[arg(long, env = "SLUICE_WRITE_KEY", hide_env_values = true)]
    write_key: Option<String>,
    /// Read key of the same tenant (with `--nodes`).
    #[arg(long, env = "SLUICE_READ_KEY", hide_env_values = true)]
    read_key: Option<String>,
    /// Admin key, to define the probe metric (with `--nodes`).
    #[arg(long, env = "SLUICE_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
}

/// Where the load, the probes and the watchers go.
struct Nodes {
    /// Every node; background connections take them in turn.
    all: Vec<Target>,
    /// Probes are sent here.
    probe: Target,
    /// Queries and the WebSocket watch here.
    watch: Target,
    write_key: String,
    read_key: String,
}

impl Nodes {
    fn of(server: &BenchServer) -> Nodes {
        Nodes {
            all: vec![server.target.clone()],
            probe: server.target.clone(),
            watch: server.target.clone(),
            write_key: server.write_key.clone(),
            read_key: server.read_key.clone(),
        }
    }

    /// The nodes of `--nodes`, with the probe metric defined.
    async fn running(args: &E2eBenchArgs) -> anyhow::Result<Nodes> {
        let missing = |flag: &str| UserError(format!("--nodes needs {flag}"));
        let write_key = args
            .write_key
            .clone()
            .ok_or_else(|| missing("--write-key"))?;
        let read_key = args.read_key.clone().ok_or_else(|| missing("--read-key"))?;
        let all = args
            .nodes
            .iter()
            .map(|url| Target::parse(url))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (probe, watch) = (all[0].clone(), all[all.len() - 1].clone());
        if let Some(admin) = &args.admin_key {
            let mut connection = Connection::open(&probe).await?;
            let auth = format!("Bearer {admin}");
            let body = serde_json::json!({ "sql": PROBE_METRIC }).to_string();
            let reply = connection
                .send(
                    Method::POST,
                    "/v1/admin/metrics",
                    &[
                        ("authorization", &auth),
                        ("content-type", "application/json"),
                    ],
                    Bytes::from(body),
                )
                .await?;
            if reply.status != StatusCode::CREATED && reply.status != StatusCode::CONFLICT {
                bail!(
                    "defining the probe metric failed: {} {}",
                    reply.status,
                    String::from_utf8_lossy(&reply.body)
                );
            }
            // Every node follows definitions within half a second.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok(Nodes {
            all,
            probe,
            watch,
            write_key,
            read_key,
        })
    }
}

/// When a probe was acknowledged and when it was seen.
#[derive(Debug, Default, Clone, Copy)]
struct Probe {
    acked: Option<Instant>,
    pushed: Option<Instant>,
    queried: Option<Instant>,
}

type Probes = Arc<Mutex<HashMap<String, Probe>>>;

/// The probe map (a panicking holder cannot leave it half-updated: every update is one field).
fn lock(probes: &Probes) -> std::sync::MutexGuard<'_, HashMap<String, Probe>> {
    probes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn run(args: E2eBenchArgs) -> anyhow::Result<()> {
    if args.duration == 0 || args.rate == 0 {
        return Err(UserError("--duration and --rate must be at least 1".into()).into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(args))
}

async fn bench(args: E2eBenchArgs) -> anyhow::Result<()> {
    let server = if args.nodes.is_empty() {
        Some(
            BenchServer::start(
                "e2e",
                args.data_dir.clone(),
                &[EXAMPLE_METRIC, PROBE_METRIC],
                &[("log.partitions", toml::Value::Integer(4))],
            )
            .await?,
        )
    } else {
        None
    };
    let nodes = match &server {
        Some(server) => Nodes::of(server),
        None => Nodes::running(&args).await?,
    };
    let nodes = &nodes;
    println!(
        "sluice bench e2e: {} events/s in batches of {} over {} connections to {} node(s), {} probes/s, {} s",
        args.rate,
        args.batch,
        args.connections,
        nodes.all.len(),
        args.probes,
        args.duration
    );
    let probes: Probes = Arc::default();
    let subscription = subscribe(nodes, Arc::clone(&probes)).await?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.duration);
    let events = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let load = background(
        nodes,
        &args,
        deadline,
        Arc::clone(&events),
        Arc::clone(&errors),
    );
    let probing = probe(nodes, args.probes, deadline, Arc::clone(&probes));
    let (load, probing) = tokio::join!(load, probing);
    load?;
    probing?;
    let elapsed = start.elapsed().as_secs_f64();
    // Give the last probes a moment to be seen.
    let settle = Instant::now() + Duration::from_secs(5);
    while Instant::now() < settle
        && lock(&probes)
            .values()
            .any(|p| p.acked.is_some() && (p.pushed.is_none() || p.queried.is_none()))
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    subscription.abort();

    let mut query = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut push = query.clone();
    let (mut unseen_query, mut unseen_push, mut acked) = (0u64, 0u64, 0u64);
    for probe in lock(&probes).values() {
        let Some(acked_at) = probe.acked else {
            continue;
        };
        acked += 1;
        let after =
            |seen: Instant| seen.saturating_duration_since(acked_at).as_micros().max(1) as u64;
        match probe.queried {
            Some(seen) => {
                let _ = query.record(after(seen).min(60_000_000));
            }
            None => unseen_query += 1,
        }
        match probe.pushed {
            Some(seen) => {
                let _ = push.record(after(seen).min(60_000_000));
            }
            None => unseen_push += 1,
        }
    }
    let events = events.load(Ordering::Relaxed);
    let errors = errors.load(Ordering::Relaxed);
    println!(
        "background        {events} events in {elapsed:.1} s = {:.0} events/s ({errors} errors)",
        events as f64 / elapsed
    );
    println!(
        "visible in query  p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({} probes, {unseen_query} never seen)",
        percentile_ms(&query, 0.5),
        percentile_ms(&query, 0.99),
        query.max() as f64 / 1000.0,
        query.len()
    );
    println!(
        "pushed on socket  p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({} probes, {unseen_push} never seen)",
        percentile_ms(&push, 0.5),
        percentile_ms(&push, 0.99),
        push.max() as f64 / 1000.0,
        push.len()
    );
    if let Some(server) = server {
        server.stop().await?;
    }
    let summary = serde_json::json!({
        "bench": "e2e",
        "rate": args.rate,
        "events_per_sec": (events as f64 / elapsed).round(),
        "probes": acked,
        "query_p50_ms": percentile_ms(&query, 0.5),
        "query_p99_ms": percentile_ms(&query, 0.99),
        "ws_p50_ms": percentile_ms(&push, 0.5),
        "ws_p99_ms": percentile_ms(&push, 0.99),
        "unseen_query": unseen_query,
        "unseen_ws": unseen_push,
        "errors": errors,
    });
    println!("{summary}");
    Ok(())
}

/// A WebSocket subscription to every probe; records when each first arrives.
async fn subscribe(nodes: &Nodes, probes: Probes) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut request = format!("ws://{}/v1/live", nodes.watch.addr).into_client_request()?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", nodes.read_key).parse()?,
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .context("opening the WebSocket")?;
    let subscribe = serde_json::json!({"type": "subscribe", "id": "probes", "metric": "e2e_probe"});
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await?;
    Ok(tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let arrived = Instant::now();
            let Ok(message) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            let Some(windows) = message["windows"].as_array() else {
                continue;
            };
            let mut probes = lock(&probes);
            for window in windows {
                if let Some(id) = window["key"]["probe"].as_str() {
                    let probe = probes.entry(id.to_owned()).or_default();
                    probe.pushed.get_or_insert(arrived);
                }
            }
        }
    }))
}

/// Background load at a fixed total rate.
async fn background(
    nodes: &Nodes,
    args: &E2eBenchArgs,
    deadline: Instant,
    events: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let now = now_millis();
    let mut generator = Synthetic::new(now as u64, now);
    generator.spacing_micros = 0;
    let templates: Arc<Vec<Template>> = Arc::new(
        (0..32)
            .map(|_| generator.segment_batch(args.batch as usize, now))
            .collect(),
    );
    let interval = Duration::from_secs_f64(
        f64::from(args.connections) * f64::from(args.batch) / args.rate as f64,
    );
    let auth = Arc::new(basic_auth(&nodes.write_key));
    let next_id = Arc::new(AtomicU64::new((now as u64) << 20));
    let connections = args.connections;
    let mut tasks = Vec::new();
    for worker in 0..connections as usize {
        let (target, templates, auth, events, errors, next_id) = (
            nodes.all[worker % nodes.all.len()].clone(),
            Arc::clone(&templates),
            Arc::clone(&auth),
            Arc::clone(&events),
            Arc::clone(&errors),
            Arc::clone(&next_id),
        );
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(&target).await?;
            let headers = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ];
            let mut scheduled =
                Instant::now() + interval.mul_f64(worker as f64 / f64::from(connections));
            let mut round = worker;
            while Instant::now() < deadline {
                tokio::time::sleep_until(scheduled.into()).await;
                scheduled += interval;
                let template = &templates[round % templates.len()];
                round += 1;
                let first = next_id.fetch_add(template.len() as u64, Ordering::Relaxed);
                // Event times stay current: the collector corrects them by the batch's sentAt
                // (receivedAt − (sentAt − timestamp)), and the template keeps both as made.
                let body = template.fill(first);
                match connection
                    .send(Method::POST, "/v1/batch", &headers, Bytes::from(body))
                    .await
                {
                    Ok(reply) if reply.status == StatusCode::OK => {
                        events.fetch_add(template.len() as u64, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Sends probes one at a time at `per_second`, each followed by a poller of the query API.
async fn probe(
    nodes: &Nodes,
    per_second: u32,
    deadline: Instant,
    probes: Probes,
) -> anyhow::Result<()> {
    let auth = basic_auth(&nodes.write_key);
    let mut connection = Connection::open(&nodes.probe).await?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(per_second)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pollers = Vec::new();
    let mut n = 0u64;
    // Probe ids of this run only: running nodes keep the windows of earlier runs' probes.
    let run = now_millis();
    while Instant::now() < deadline {
        tick.tick().await;
        n += 1;
        let id = format!("p{run}-{n}");
        let body = serde_json::json!({
            "type": "track", "event": "Probe", "anonymousId": format!("probe-{n}"),
            "timestamp": sluice_core::time::format_millis(now_millis()),
            "properties": {"probe": id},
        });
        let reply = connection
            .send(
                Method::POST,
                "/v1/track",
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                Bytes::from(body.to_string()),
            )
            .await?;
        let acked = Instant::now();
        if reply.status != StatusCode::OK {
            bail!(
                "a probe was refused: {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
        }
        lock(&probes).entry(id.clone()).or_default().acked = Some(acked);
        pollers.push(tokio::spawn(poll_query(
            nodes.watch.clone(),
            nodes.read_key.clone(),
            id,
            Arc::clone(&probes),
        )));
    }
    for poller in pollers {
        poller.await??;
    }
    Ok(())
}

/// Reads the probe's series until it shows the probe (for at most 10 s).
async fn poll_query(
    target: Target,
    read_key: String,
    id: String,
    probes: Probes,
) -> anyhow::Result<()> {
    let mut connection = Connection::open(&target).await?;
    let auth = format!("Bearer {read_key}");
    let path = format!("/v1/metrics/e2e_probe?from=now-5m&filter=probe:{id}");
    let give_up = Instant::now() + Duration::from_secs(10);
    while Instant::now() < give_up {
        let reply = connection
            .send(
                Method::GET,
                &path,
                &[("authorization", &auth)],
                Bytes::new(),
            )
            .await?;
        let seen = Instant::now();
        if reply.status == StatusCode::OK {
            let answer: serde_json::Value = serde_json::from_slice(&reply.body)?;
            if answer["series"].as_array().is_some_and(|s| !s.is_empty()) {
                lock(&probes).entry(id).or_default().queried = Some(seen);
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}
