//! `sluice bench push`: what live subscriptions cost the server. Starts sluice in-process with
//! one metric of `--keys` group keys (one open window each: daily windows), keeps
//! `--changes` events/s flowing to random keys, and measures CPU (cores used) and RSS in three
//! phases of `--duration` seconds: no subscriptions; `--clients` WebSocket connections of
//! `--subscriptions` subscriptions each (filtered to `--keys-per-subscription` random keys) that
//! read everything; the same number that never read. `api.ws-slow-timeout` is raised to 5 min
//! so that clients that do not read stay connected through their phase. CPU is the whole
//! process's (the load generator and the reading clients included: they are the same in every
//! phase or cheap), from `/proc/self/stat`; RSS from `/proc/self/status`. The last stdout line
//! is JSON with `cores` and `rss_mb` per phase.

use super::server::BenchServer;
use super::stream::cpu_seconds;
use crate::UserError;
use crate::client::{Connection, basic_auth};
use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use futures::{SinkExt, StreamExt};
use hyper::{Method, StatusCode};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sluice_core::time::{format_millis, now_millis};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The benchmark's metric: one group key, daily windows (open for the whole run).
pub const METRIC: &str = "CREATE METRIC bench_push AS SELECT properties.k AS k, COUNT(*) AS n, \
     SUM(properties.amount) AS amount FROM events WHERE event = 'Bench Push' \
     GROUP BY k, TUMBLE(timestamp, INTERVAL '1' DAY)";

#[derive(Debug, Args)]
pub struct PushBenchArgs {
    /// WebSocket connections.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    clients: u32,
    /// Subscriptions per connection (at most api.ws-max-subscriptions, 16 by default).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=16))]
    subscriptions: u32,
    /// Group keys of the metric, each with an open window.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    keys: u32,
    /// Keys each subscription filters on.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    keys_per_subscription: u32,
    /// Events per second to random keys during the phases.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    changes: u32,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Where the server keeps its data [default: a temporary directory, removed afterwards].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

pub fn run(args: PushBenchArgs) -> anyhow::Result<()> {
    if args.duration == 0 {
        return Err(UserError("--duration must be at least 1".into()).into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench(args))
}

/// One phase's figures.
#[derive(Debug, Clone, Copy)]
struct Phase {
    cores: f64,
    rss_mb: f64,
    messages: u64,
    bytes: u64,
}

async fn bench(args: PushBenchArgs) -> anyhow::Result<()> {
    let server = BenchServer::start(
        "push",
        args.data_dir.clone(),
        &[METRIC],
        &[("api.ws-slow-timeout", toml::Value::String("300s".into()))],
    )
    .await?;
    println!(
        "sluice bench push: {} keys, {} clients x {} subscriptions of {} keys, {} changes/s, {} s per phase",
        args.keys,
        args.clients,
        args.subscriptions,
        args.keys_per_subscription,
        args.changes,
        args.duration
    );
    seed(&server, args.keys).await?;
    println!("seeded: {} open windows", args.keys);
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(changes(
        server.target.clone(),
        server.write_key.clone(),
        args.keys,
        args.changes,
        Arc::clone(&stop),
    ));
    let duration = Duration::from_secs(args.duration);
    let idle = measure("no subscriptions", duration, None).await?;
    let reading = {
        let clients = Clients::open(&server, &args, true).await?;
        let phase = measure("reading clients", duration, Some(&clients)).await?;
        clients.close();
        phase
    };
    let silent = {
        let clients = Clients::open(&server, &args, false).await?;
        let phase = measure("clients not reading", duration, Some(&clients)).await?;
        clients.close();
        phase
    };
    stop.store(true, Ordering::Relaxed);
    load.await??;
    server.stop().await?;
    let json = |phase: Phase| {
        serde_json::json!({"cores": round(phase.cores), "rss_mb": round(phase.rss_mb),
            "messages": phase.messages, "bytes": phase.bytes})
    };
    let summary = serde_json::json!({
        "bench": "push",
        "keys": args.keys,
        "clients": args.clients,
        "subscriptions": args.subscriptions,
        "changes_per_sec": args.changes,
        "no_subscriptions": json(idle),
        "reading": json(reading),
        "not_reading": json(silent),
    });
    println!("{summary}");
    Ok(())
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Resident memory of this process, from `/proc/self/status`, in MB.
fn rss_mb() -> anyhow::Result<f64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .context("no VmRSS in /proc/self/status")?
        .parse()?;
    Ok(kb / 1000.0)
}

/// Waits a second for the phase to settle, then measures it for `duration`.
async fn measure(
    name: &str,
    duration: Duration,
    clients: Option<&Clients>,
) -> anyhow::Result<Phase> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let counted = || clients.map_or((0, 0), Clients::counted);
    let (messages, bytes) = counted();
    let (cpu, start) = (cpu_seconds()?, Instant::now());
    tokio::time::sleep(duration).await;
    let cores = (cpu_seconds()? - cpu) / start.elapsed().as_secs_f64();
    let rss_mb = rss_mb()?;
    let (messages_after, bytes_after) = counted();
    let phase = Phase {
        cores,
        rss_mb,
        messages: messages_after - messages,
        bytes: bytes_after - bytes,
    };
    println!(
        "{name:<20} {cores:.2} cores  RSS {rss_mb:.0} MB  {} messages, {:.1} MB received",
        phase.messages,
        phase.bytes as f64 / 1e6
    );
    Ok(phase)
}

fn event(key: u32, now: i64, rng: &mut SmallRng) -> serde_json::Value {
    serde_json::json!({
        "type": "track", "event": "Bench Push", "anonymousId": format!("anon-{}", rng.random_range(0..1000)),
        "timestamp": format_millis(now),
        "properties": {"k": format!("key-{key}"), "amount": rng.random_range(1..100)},
    })
}

async fn post(
    connection: &mut Connection,
    auth: &str,
    events: Vec<serde_json::Value>,
) -> anyhow::Result<()> {
    let body = serde_json::json!({ "batch": events }).to_string();
    let reply = connection
        .send(
            Method::POST,
            "/v1/batch",
            &[
                ("authorization", auth),
                ("content-type", "application/json"),
            ],
            Bytes::from(body),
        )
        .await?;
    if reply.status != StatusCode::OK {
        bail!(
            "events were refused: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }
    Ok(())
}

/// One event per key, then waits until the last key is visible.
async fn seed(server: &BenchServer, keys: u32) -> anyhow::Result<()> {
    let auth = basic_auth(&server.write_key);
    let mut connection = Connection::open(&server.target).await?;
    let mut rng = SmallRng::seed_from_u64(1);
    let now = now_millis();
    let all: Vec<u32> = (0..keys).collect();
    for chunk in all.chunks(1000) {
        let events = chunk.iter().map(|&key| event(key, now, &mut rng)).collect();
        post(&mut connection, &auth, events).await?;
    }
    let path = format!(
        "/v1/metrics/bench_push?from=now-2d&filter=k:key-{}",
        keys - 1
    );
    let read = format!("Bearer {}", server.read_key);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let reply = connection
            .send(
                Method::GET,
                &path,
                &[("authorization", &read)],
                Bytes::new(),
            )
            .await?;
        let answer: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        if answer["series"].as_array().is_some_and(|s| !s.is_empty()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the seeded keys were not visible within 2 minutes: {answer}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `per_second` events to random keys, in batches of 100, until `stop`.
async fn changes(
    target: crate::client::Target,
    write_key: String,
    keys: u32,
    per_second: u32,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let auth = basic_auth(&write_key);
    let mut connection = Connection::open(&target).await?;
    let mut rng = SmallRng::seed_from_u64(2);
    let batch = per_second.min(100);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(
        f64::from(batch) / f64::from(per_second),
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let now = now_millis();
        let events = (0..batch)
            .map(|_| {
                let key = rng.random_range(0..keys);
                event(key, now, &mut rng)
            })
            .collect();
        post(&mut connection, &auth, events).await?;
    }
    Ok(())
}

/// The subscribed connections of a phase.
struct Clients {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    messages: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

impl Clients {
    /// Opens the connections and subscribes; `read`: whether they read what they are sent.
    async fn open(
        server: &BenchServer,
        args: &PushBenchArgs,
        read: bool,
    ) -> anyhow::Result<Clients> {
        let messages = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let mut rng = SmallRng::seed_from_u64(3);
        let mut tasks = Vec::new();
        for _ in 0..args.clients {
            let mut request =
                format!("ws://{}/v1/live", server.target.addr).into_client_request()?;
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {}", server.read_key).parse()?,
            );
            let (mut socket, _) = tokio_tungstenite::connect_async(request)
                .await
                .context("opening a WebSocket")?;
            for id in 0..args.subscriptions {
                let filters: Vec<String> = (0..args.keys_per_subscription)
                    .map(|_| format!("k:key-{}", rng.random_range(0..args.keys)))
                    .collect();
                let subscribe = serde_json::json!({"type": "subscribe", "id": format!("s{id}"),
                    "metric": "bench_push", "filters": filters});
                socket
                    .send(Message::Text(subscribe.to_string().into()))
                    .await?;
            }
            let (messages, bytes) = (Arc::clone(&messages), Arc::clone(&bytes));
            tasks.push(tokio::spawn(async move {
                if !read {
                    // Holds the socket and never reads it.
                    std::future::pending::<()>().await;
                }
                while let Some(Ok(message)) = socket.next().await {
                    if let Message::Text(text) = message {
                        messages.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
                    }
                }
                drop(socket);
            }));
        }
        Ok(Clients {
            tasks,
            messages,
            bytes,
        })
    }

    fn counted(&self) -> (u64, u64) {
        (
            self.messages.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    fn close(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}
