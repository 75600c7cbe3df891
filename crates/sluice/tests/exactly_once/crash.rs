//! SIGKILL, again and again, while events flow: the results are exactly the oracle's.

use super::results::{assert_exact, events, expected, stored};
use super::support::{Server, free_port};
use hyper::{Method, StatusCode};
use rand::Rng;
use serde_json::{Value, json};
use sluice::client::{Connection, Target, basic_auth};
use sluice_core::time::{format_millis, now_millis};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

pub(crate) const WRITE_KEY: &str = "wk_crash_shop_0123456789";
pub(crate) const READ_KEY: &str = "rk_crash_shop_0123456789";
pub(crate) const ADMIN_KEY: &str = "ak_crash_admin_0123456789";
const KILLS: usize = 12;

/// Count, exact sum, min, max and average over tumbling windows, and counts over hopping
/// windows. Out-of-orderness far above the senders' disorder: no event is late, so the oracle
/// over the whole log is the truth whatever the batch boundaries and restarts were.
pub(crate) const METRICS: [&str; 2] = [
    "CREATE METRIC revenue AS SELECT properties.page AS page, COUNT(*) AS orders, SUM(properties.price) AS total, \
     MIN(properties.price) AS low, MAX(properties.price) AS high, AVG(properties.price) AS mean \
     FROM events WHERE event = 'Order Completed' GROUP BY page, TUMBLE(timestamp, INTERVAL '2' SECOND) \
     WITH (out_of_orderness = '60s')",
    "CREATE METRIC activity AS SELECT event AS name, COUNT(*) AS n, COUNT(user_id) AS identified \
     FROM events GROUP BY name, HOP(timestamp, INTERVAL '1' SECOND, INTERVAL '3' SECOND) \
     WITH (out_of_orderness = '60s')",
];

/// A derived stream of the orders, and `revenue` computed again from it: its results must be
/// `revenue`'s exactly, whatever the kills did to the stream's writers and readers.
pub(crate) const ROUTED: [&str; 2] = [
    "CREATE STREAM orders AS SELECT properties.page AS page, properties.price AS price      FROM events WHERE event = 'Order Completed'",
    "CREATE METRIC routed_revenue AS SELECT properties.page AS page, COUNT(*) AS orders, SUM(properties.price) AS total,      MIN(properties.price) AS low, MAX(properties.price) AS high, AVG(properties.price) AS mean      FROM orders GROUP BY page, TUMBLE(timestamp, INTERVAL '2' SECOND)      WITH (out_of_orderness = '60s')",
];

/// The servers' config (with [`METRICS`]); `store_url` empty for SQLite in the data dir; `log` more settings of
/// `[log]`. In-flight requests get 5 s at a clean stop (not the default 30 s): with the dedup
/// snapshot's and key usage's own bounds after it, a node stopping while its brokers are away
/// then exits within the 30 s a test waits.
pub(crate) fn config_text(store_url: &str, log: &str) -> String {
    let mut text = format!(
        "admin-keys = [\"{ADMIN_KEY}\"]\n\n[log]\npartitions = 4\n{log}\n\n[store]\nurl = \"{store_url}\"\ncheckpoint-interval = \"150ms\"\n\n\
         [server]\nshutdown-timeout = \"5s\"\n\n\
         [[tenants]]\nname = \"shop\"\nwrite-keys = [\"{WRITE_KEY}\"]\nread-keys = [\"{READ_KEY}\"]\n"
    );
    for sql in METRICS {
        text.push_str(&format!("\n[[metrics]]\nsql = \"{sql}\"\n"));
    }
    text
}

/// Sessions of the senders' visitors (never idle: they end at their 2 s maximum, so they
/// close while the kills go on), and their events counted from the session records: every
/// event is in exactly one committed session record, one open session (a stored row), or the
/// late topic, whatever the kills did.
pub(crate) const SESSIONS: [&str; 2] = [
    "CREATE SESSIONS visits GAP '1s' MAX LENGTH '2s' WITH (out_of_orderness = '5s')",
    "CREATE METRIC session_events AS SELECT COUNT(*) AS sessions, SUM(events) AS events \
     FROM visits GROUP BY TUMBLE(timestamp, INTERVAL '2' SECOND) WITH (out_of_orderness = '60s')",
];

/// An identity of the senders' visitors, and `activity` computed again from its records: its
/// results must be `activity`'s exactly (every event once in the identity's topic, whatever
/// the kills did), and its profiles must count every event once.
pub(crate) const IDENTITY: [&str; 2] = [
    "CREATE IDENTITY people",
    "CREATE METRIC people_activity AS SELECT event AS name, COUNT(*) AS n, COUNT(user_id) AS identified \
     FROM people GROUP BY name, HOP(timestamp, INTERVAL '1' SECOND, INTERVAL '3' SECOND) \
     WITH (out_of_orderness = '60s')",
];

/// `text` (a config) with the [`SESSIONS`] and the [`IDENTITY`] too.
pub(crate) fn with_sessions(mut text: String) -> String {
    for sql in SESSIONS.iter().chain(&IDENTITY) {
        text.push_str(&format!("\n[[metrics]]\nsql = \"{sql}\"\n"));
    }
    text
}

/// [`config_text`] with the [`ROUTED`] stream and metric too.
pub(crate) fn routed_config_text(store_url: &str, log: &str) -> String {
    let mut text = config_text(store_url, log);
    for sql in ROUTED {
        text.push_str(&format!("\n[[metrics]]\nsql = \"{sql}\"\n"));
    }
    text
}

/// Load over HTTP: `count` [`sender`]s over `targets`, counting accepted events, until stopped.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    senders: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub(crate) fn start(count: usize, targets: &[Target]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let senders = (0..count)
            .map(|id| {
                tokio::spawn(sender(
                    id,
                    targets.to_vec(),
                    Arc::clone(&stop),
                    Arc::clone(&sent),
                ))
            })
            .collect();
        Load {
            stop,
            sent,
            senders,
        }
    }

    /// Events accepted so far.
    pub(crate) fn accepted(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops the senders (a batch being retried is given up) and returns the events accepted.
    pub(crate) async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for sender in self.senders {
            sender.await.unwrap();
        }
        self.sent.load(Ordering::Relaxed)
    }
}

/// Sends batches of 40 events until told to stop, retrying each batch until it is accepted
/// (across the server's deaths: the retries may duplicate events in the log, which is fine:
/// the log is the truth the oracle reads). Starts with the `id`-th of `targets` and moves to
/// the next whenever one fails.
async fn sender(id: usize, targets: Vec<Target>, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    let mut at = id % targets.len();
    let auth = basic_auth(WRITE_KEY);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let mut connection: Option<Connection> = None;
    let mut batch_number = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let body = {
            let mut rng = rand::rng();
            let messages: Vec<Value> = (0..40)
                .map(|n| {
                    let user = rng.random_range(0..30u32);
                    let time = now_millis() - rng.random_range(0..1500);
                    let order = rng.random_bool(0.6);
                    json!({
                        "type": "track",
                        "messageId": format!("crash-{id}-{batch_number}-{n}"),
                        "anonymousId": format!("anon-{user}"),
                        "userId": (user % 3 == 0).then(|| format!("user-{user}")),
                        "event": if order { "Order Completed" } else { "Page Viewed" },
                        "timestamp": format_millis(time),
                        "properties": {"page": format!("p{}", user % 4), "price": format!("{}.{:02}", rng.random_range(1..200), rng.random_range(0..100)).parse::<f64>().unwrap()},
                    })
                })
                .collect();
            json!({ "batch": messages }).to_string()
        };
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if connection.as_ref().is_none_or(|c| !c.is_open()) {
                connection = Connection::open(&targets[at]).await.ok();
            }
            let Some(open) = connection.as_mut() else {
                at = (at + 1) % targets.len();
                tokio::time::sleep(Duration::from_millis(30)).await;
                continue;
            };
            match open
                .send(Method::POST, "/v1/batch", &headers, body.clone().into())
                .await
            {
                Ok(reply) if reply.status == StatusCode::OK => break,
                Ok(reply) if reply.status == StatusCode::TOO_MANY_REQUESTS => {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                Ok(reply) if reply.status.is_client_error() => {
                    panic!("{}: {}", reply.status, String::from_utf8_lossy(&reply.body))
                }
                _ => {
                    connection = None;
                    at = (at + 1) % targets.len();
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            }
        }
        sent.fetch_add(40, Ordering::Relaxed);
        batch_number += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_equal_the_oracle_after_repeated_sigkills() {
    sigkills_with_the_store_at("").await;
}

/// The same with the PostgreSQL store: its checkpoints, fencing and final-row merges under
/// lock hold across kills as SQLite's do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_equal_the_oracle_after_repeated_sigkills_on_postgresql() {
    let url = sluice_store::testing::postgres_url("sigkills").await;
    sigkills_with_the_store_at(&url).await;
}

async fn sigkills_with_the_store_at(store_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config_path = dir.path().join("sluice.toml");
    std::fs::write(
        &config_path,
        with_sessions(routed_config_text(store_url, "")),
    )
    .unwrap();
    let config_arg = config_path.display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let target = Target::parse(&format!("http://{listen}")).unwrap();

    let load = Load::start(2, &[target]);
    for _ in 0..KILLS {
        let server = Server::start_on(&data, &listen, &["--config", &config_arg]);
        let alive = rand::rng().random_range(300..1500);
        tokio::time::sleep(Duration::from_millis(alive)).await;
        let output = server.signal("KILL");
        assert_eq!(output.status.code(), None, "killed by SIGKILL");
    }
    let server = Server::start_on(&data, &listen, &["--config", &config_arg]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let accepted = load.stop().await;
    super::support::settled(server.addr, &format!("Bearer {ADMIN_KEY}"), None);
    server.stop_cleanly();
    assert!(accepted > 500, "enough events flowed: {accepted}");
    assert_exact_after(&config_path, &data, accepted, 10).await;
}

/// A replay cut short by SIGKILL right after it was accepted is resumed by the next start
/// (it is recorded in the store), becomes current, and the results are the oracle's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_cut_short_by_sigkill_is_resumed_by_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config_path = dir.path().join("sluice.toml");
    std::fs::write(&config_path, config_text("", "")).unwrap();
    let config_arg = config_path.display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let target = Target::parse(&format!("http://{listen}")).unwrap();
    let server = Server::start_on(&data, &listen, &["--config", &config_arg]);
    let load = Load::start(2, &[target]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let admin = format!("Bearer {ADMIN_KEY}");
    let (status, body) = super::support::http_request(
        server.addr,
        "POST",
        "/v1/admin/metrics/revenue/replay",
        &[
            ("authorization", &admin),
            ("content-type", "application/json"),
        ],
        b"{}",
    );
    assert_eq!(status, 202, "{body}");
    let output = server.signal("KILL");
    assert_eq!(output.status.code(), None, "killed by SIGKILL");

    let server = Server::start_on(&data, &listen, &["--config", &config_arg]);
    let generation = || {
        let (_, body) = super::support::http_request(
            server.addr,
            "GET",
            "/v1/admin/metrics/revenue",
            &[("authorization", &admin)],
            b"",
        );
        serde_json::from_str::<Value>(&body).unwrap()["generation"].clone()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while generation() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the interrupted replay did not finish after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let accepted = load.stop().await;
    super::support::settled(server.addr, &admin, None);
    let log = server.stop_cleanly();
    assert!(
        log.contains("replay recorded in the store"),
        "the restart resumed the recorded replay: {log}"
    );
    assert_exact_after(&config_path, &data, accepted, 1).await;
}

/// After the servers of `config_path` stopped (`data` one's data dir): every one of the
/// `accepted` events is in the topic, and both [`METRICS`] equal the oracle's over it, with at
/// least `min_windows` windows each; so does the metric computed from the [`ROUTED`] stream,
/// when the config has it.
pub(crate) async fn assert_exact_after(
    config_path: &Path,
    data: &Path,
    accepted: u64,
    min_windows: usize,
) {
    let config = sluice::config::load(
        Some(config_path),
        &[("data-dir", toml::Value::String(data.display().to_string()))],
    )
    .unwrap();
    let records = events(&config).await;
    let total: usize = records.iter().map(Vec::len).sum();
    assert!(
        total as u64 >= accepted,
        "every accepted event is in the log: {total} in the log, {accepted} accepted"
    );
    let defaults = config.stream.metric_defaults();
    for sql in METRICS {
        let plan = sluice_stream::sql::parse_metric(sql, &defaults).unwrap();
        let expected = expected(&plan, &records);
        assert!(
            expected.len() >= min_windows,
            "{}: only {} windows",
            plan.name,
            expected.len()
        );
        let stored = stored(&config, &plan, "shop").await;
        assert_exact(&plan, &stored, &expected);
        if plan.name == "activity"
            && config
                .metrics
                .iter()
                .any(|metric| metric.sql == IDENTITY[1])
        {
            let resolved = sluice_stream::sql::parse_metric(IDENTITY[1], &defaults).unwrap();
            let stored = super::results::stored(&config, &resolved, "shop").await;
            assert_exact(&plan, &stored, &expected);
            assert_profiles_count_each_event_once(&config, total as u64).await;
        }
        if plan.name == "revenue" && config.metrics.iter().any(|metric| metric.sql == ROUTED[1]) {
            let routed = sluice_stream::sql::parse_metric(ROUTED[1], &defaults).unwrap();
            let stored = super::results::stored(&config, &routed, "shop").await;
            assert_exact(&plan, &stored, &expected);
        }
    }
    if config
        .metrics
        .iter()
        .any(|metric| metric.sql == SESSIONS[0])
    {
        assert_sessions_hold_each_event_once(&config, total as u64).await;
    }
}

/// The identity's stored profiles (each partition's, as of its last checkpoint: the servers
/// stopped cleanly after everything was processed) count `total` events: every event once.
async fn assert_profiles_count_each_event_once(config: &sluice::config::Config, total: u64) {
    let defaults = config.stream.metric_defaults();
    let plan = sluice_stream::sql::parse_metric(IDENTITY[0], &defaults).unwrap();
    let rows = super::results::stored(config, &plan, "shop").await;
    let counted: u64 = rows
        .values()
        .map(|values| match &values[2] {
            sluice_stream::agg::OutputValue::Count(count) => *count,
            other => panic!("not a count: {other:?}"),
        })
        .sum();
    assert_eq!(
        counted,
        total,
        "events in the profiles of {} rows",
        rows.len()
    );
}

/// Every event (all are the shop's, all have a visitor) is in one committed session record
/// (counted by `session_events`), one open session (a stored row of `visits`), or the late
/// topic (once per id: a late record may be appended again after a crash, with its id).
async fn assert_sessions_hold_each_event_once(config: &sluice::config::Config, total: u64) {
    let defaults = config.stream.metric_defaults();
    use sluice_stream::agg::OutputValue;
    let number = |values: &Vec<OutputValue>, index: usize| match &values[index] {
        OutputValue::Count(count) => *count,
        OutputValue::Decimal(value) => value.to_f64() as u64,
        OutputValue::Null => 0,
        other => panic!("not a count or sum: {other:?}"),
    };
    let counted = sluice_stream::sql::parse_metric(SESSIONS[1], &defaults).unwrap();
    let rows = super::results::stored(config, &counted, "shop").await;
    let (closed_sessions, in_closed): (u64, u64) = rows
        .values()
        .map(|values| (number(values, 0), number(values, 1)))
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
    let sessions = sluice_stream::sql::parse_metric(SESSIONS[0], &defaults).unwrap();
    let open = super::results::stored(config, &sessions, "shop").await;
    let in_open: u64 = open.values().map(|values| number(values, 0)).sum();
    let late: std::collections::BTreeSet<String> =
        super::results::topic(config, &config.stream.late_topic)
            .await
            .into_iter()
            .flatten()
            .filter_map(|record| {
                let value: Value = serde_json::from_slice(&record.record.value).ok()?;
                (value["metric"] == "visits")
                    .then(|| format!("{}/{}", value["partition"], value["offset"]))
            })
            .collect();
    assert!(closed_sessions > 10, "sessions closed: {closed_sessions}");
    assert_eq!(
        in_closed + in_open + late.len() as u64,
        total,
        "events in {closed_sessions} committed sessions ({in_closed}), in {} open ones ({in_open}), late ({})",
        open.len(),
        late.len()
    );
}
