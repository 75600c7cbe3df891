//! The raw event archive through the whole server: events of two tenants and several hours
//! are archived as Parquet, and DuckDB (from PyPI, as a user runs it) reads them with Hive
//! partitioning: every event once, field by field equal to the log's, in its tenant's, date's
//! and hour's directory, across a restart and across `kill -9`s, in a directory and in an
//! S3 bucket (moto's server, which `scripts/s3.sh` starts). A missing bucket or a wrong secret
//! stops `sluice serve` with exit code 2 and what to check.

use crate::harness::*;
use crate::support;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use sluice_core::time::{Millis, format_millis};
use sluice_log::{Log, ReadOptions};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

fn archive_overrides() -> Vec<(&'static str, toml::Value)> {
    vec![
        ("archive.enabled", toml::Value::Boolean(true)),
        ("archive.roll-age", toml::Value::String("1s".into())),
    ]
}

/// An archive to read: a directory, or `s3://bucket/prefix` with the environment that reaches
/// it.
struct ArchiveAt {
    root: std::ffi::OsString,
    env: Vec<(String, String)>,
}

impl From<&Path> for ArchiveAt {
    fn from(root: &Path) -> Self {
        ArchiveAt {
            root: root.into(),
            env: Vec::new(),
        }
    }
}

impl ArchiveAt {
    /// A fresh prefix named after `test` in the test bucket of the S3 server `scripts/s3.sh`
    /// started (the one checking signatures when `checking`), with `AWS_*` variables for it.
    fn s3(checking: bool, bucket: &str, test: &str) -> ArchiveAt {
        let variable = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: the archive's S3 tests need the S3 server scripts/s3.sh starts: run eval \"$(scripts/s3.sh)\" first (scripts/test.sh does)")
            })
        };
        let endpoint = variable(if checking {
            "SLUICE_TEST_S3_AUTH_ENDPOINT"
        } else {
            "SLUICE_TEST_S3_ENDPOINT"
        });
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let env = [
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_REGION", "us-east-1".to_owned()),
            (
                "AWS_ACCESS_KEY_ID",
                variable("SLUICE_TEST_S3_ACCESS_KEY_ID"),
            ),
            (
                "AWS_SECRET_ACCESS_KEY",
                variable("SLUICE_TEST_S3_SECRET_ACCESS_KEY"),
            ),
        ];
        ArchiveAt {
            root: format!("s3://{bucket}/it/{test}-{nanos}").into(),
            env: env
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
        }
    }

    /// The test bucket's name.
    fn test_bucket() -> String {
        std::env::var("SLUICE_TEST_S3_BUCKET").unwrap_or_else(|_| "sluice-test".to_owned())
    }

    fn url(&self) -> String {
        self.root.to_string_lossy().into_owned()
    }
}

/// What `tests/compat/duckdb_archive.py` prints about the archive (with `args`).
fn run_duckdb(archive: &ArchiveAt, args: &[&str]) -> Vec<u8> {
    support::duckdb_archive(&archive.root, args, &archive.env)
}

/// What DuckDB finds in the archive: rows per (tenant, date, hour), and every row in log order.
fn duckdb(archive: &ArchiveAt) -> (Vec<Value>, Vec<Value>) {
    let found: Value = serde_json::from_slice(&run_duckdb(archive, &[])).unwrap();
    (
        found["groups"].as_array().unwrap().clone(),
        found["rows"].as_array().unwrap().clone(),
    )
}

/// Every event in the log: (partition, offset, event).
async fn log_events(log: &impl Log) -> Vec<(u32, u64, Value)> {
    let topic = &log.describe(Some("events")).await.unwrap()[0];
    let mut events = Vec::new();
    for partition in &topic.partitions {
        let read = log
            .read(
                "events",
                partition.partition,
                0,
                ReadOptions {
                    max_bytes: 64 << 20,
                    max_wait: Duration::ZERO,
                },
            )
            .await
            .unwrap();
        for stored in read.records {
            let event = serde_json::from_slice(&stored.record.value).unwrap();
            events.push((partition.partition, stored.offset, event));
        }
    }
    events
}

/// The archive's JSON columns and the event fields they hold.
const JSON_COLUMNS: [(&str, &str); 8] = [
    ("properties", "properties"),
    ("traits", "traits"),
    ("context", "context"),
    ("integrations", "integrations"),
    ("channel", "channel"),
    ("version", "version"),
    ("metadata", "_metadata"),
    ("schema_violations", "schema_violations"),
];

/// The row DuckDB should show for an event of the log.
fn expected_row(partition: u32, offset: u64, event: &Value) -> Value {
    let mut row = json!({"log_partition": partition, "log_offset": offset});
    for field in [
        "tenant",
        "message_id",
        "type",
        "event",
        "name",
        "category",
        "user_id",
        "anonymous_id",
        "group_id",
        "previous_id",
        "timestamp",
        "received_at",
        "sent_at",
        "original_timestamp",
    ] {
        row[field] = event.get(field).cloned().unwrap_or(Value::Null);
    }
    for (column, field) in JSON_COLUMNS {
        row[column] = event.get(field).cloned().unwrap_or(Value::Null);
    }
    row
}

/// A row as DuckDB printed it, its JSON columns parsed.
fn parsed(row: &Value) -> Value {
    let mut row = row.clone();
    for (column, _) in JSON_COLUMNS {
        if let Some(text) = row[column].as_str() {
            row[column] = serde_json::from_str(text).unwrap();
        }
    }
    row
}

/// (tenant, date, hour) of an event, from its event time in UTC.
fn partition_of(event: &Value) -> (String, String, i64) {
    let time = format_millis(event["timestamp"].as_i64().unwrap());
    (
        event["tenant"].as_str().unwrap().to_owned(),
        time[..10].to_owned(),
        time[11..13].parse().unwrap(),
    )
}

/// Checks the archive holds exactly the log's events, each once, field by field, in its
/// directory.
fn assert_archive_equals_log(archive: &ArchiveAt, log: &[(u32, u64, Value)]) {
    let (groups, rows) = duckdb(archive);
    assert_eq!(rows.len(), log.len(), "one row per event of the log");
    for (row, (partition, offset, event)) in rows.iter().zip(log) {
        assert_eq!(
            parsed(row),
            expected_row(*partition, *offset, event),
            "row of offset {offset} in partition {partition}"
        );
    }
    let mut expected: BTreeMap<(String, String, i64), u64> = BTreeMap::new();
    for (_, _, event) in log {
        *expected.entry(partition_of(event)).or_default() += 1;
    }
    let found: BTreeMap<(String, String, i64), u64> = groups
        .iter()
        .map(|group| {
            (
                (
                    group[0].as_str().unwrap().to_owned(),
                    group[1].as_str().unwrap().to_owned(),
                    group[2].as_i64().unwrap(),
                ),
                group[3].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(found, expected, "rows per tenant, date and hour");
}

/// Waits until the archive's committed positions add up to `events`.
async fn archived(h: &Harness, events: u64) {
    eventually(&format!("{events} events archived"), || async {
        let positions = h.app().pipelines.store().positions("archive").await;
        let committed: u64 = positions
            .as_ref()
            .map_err(ToString::to_string)?
            .iter()
            .map(|(_, position)| position.offset)
            .sum();
        (committed == events)
            .then_some(())
            .ok_or(format!("{committed} committed"))
    })
    .await;
}

fn varied(tenant: &str, time: Millis, i: usize) -> Vec<Value> {
    vec![
        view(
            &format!("{tenant}-a{i}"),
            &format!("u{i}"),
            "/pricing",
            time,
            "12.5",
        ),
        json!({"type": "identify", "userId": format!("u{i}"), "anonymousId": format!("{tenant}-a{i}"),
               "timestamp": format_millis(time + 1_000), "traits": {"name": "Ann \"A\"", "plan": "pro"},
               "context": {"library": {"name": "analytics.js"}}}),
        json!({"type": "page", "anonymousId": format!("{tenant}-b{i}"), "name": "Home", "category": "Docs",
               "timestamp": format_millis(time + 2_000), "sentAt": format_millis(time + 2_500),
               "properties": {"url": "https://example.com/é", "nested": {"list": [1, 2.5, null]}},
               "integrations": {"All": false}, "channel": "browser"}),
        json!({"type": "alias", "userId": format!("u{i}"), "previousId": format!("{tenant}-old{i}"),
               "timestamp": format_millis(time + 3_000)}),
        json!({"type": "group", "userId": format!("u{i}"), "groupId": "acme",
               "timestamp": format_millis(time + 4_000), "traits": {"employees": 120}}),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_reads_every_event_once_field_by_field_in_its_hive_partition() {
    let mut h = Harness::start(&archive_overrides()).await;
    let (early, late) = (hours_ago(5) + 59 * MINUTE, hours_ago(2) + 7 * MINUTE);
    let mut sent = 0;
    for (i, time) in [early, late].into_iter().enumerate() {
        let shop = varied("shop", time, i);
        let blog = varied("blog", time + MINUTE, i);
        sent += shop.len() + blog.len();
        h.send_ok(SHOP_WRITE, shop).await;
        h.send_ok(BLOG_WRITE, blog).await;
    }
    archived(&h, sent as u64).await;

    // A restart archives on from where it committed: nothing twice.
    h.restart().await;
    let more = varied("shop", late + 30 * MINUTE, 7);
    sent += more.len();
    h.send_ok(SHOP_WRITE, more).await;
    archived(&h, sent as u64).await;

    let log = log_events(&*h.app().log).await;
    assert_eq!(log.len(), sent);
    let root = h.config.data_dir.join("archive");
    assert_archive_equals_log(&root.as_path().into(), &log);
    // The hours straddled: the early events (59th minute, then up to 4 s later) are in two.
    let hours: std::collections::BTreeSet<_> = log
        .iter()
        .map(|(_, _, event)| partition_of(event))
        .collect();
    assert!(hours.len() >= 6, "{hours:?}");
    h.stop().await;
}

/// Every event in the log of a server's data directory, read by `sluice tail` (the server may
/// be running): (partition, offset, event).
fn tail_events(data_dir: &Path) -> Vec<(u32, u64, Value)> {
    let output = std::process::Command::new(support::BIN)
        .args([
            "tail",
            "events",
            "--from-beginning",
            "--no-follow",
            "--data-dir",
        ])
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let mut events: Vec<(u32, u64, Value)> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            (
                record["partition"].as_u64().unwrap() as u32,
                record["offset"].as_u64().unwrap(),
                record["value"].clone(),
            )
        })
        .collect();
    events.sort_by_key(|(partition, offset, _)| (*partition, *offset));
    events
}

/// Posts one batch; an error when the server cannot be reached.
fn post(addr: std::net::SocketAddr, auth: &str, body: &[u8]) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let head = format!(
        "POST /v1/batch HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(())
}

/// Rows DuckDB counts in the archive.
fn archived_rows(archive: &ArchiveAt) -> usize {
    String::from_utf8_lossy(&run_duckdb(archive, &["count"]))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkills_mid_batch_the_archive_equals_the_log() {
    sigkills_mid_batch(None).await;
}

/// The same with the archive in an S3 bucket: a kill may fall between a batch's uploads and
/// its commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_after_sigkills_mid_batch_the_archive_equals_the_log() {
    let bucket = ArchiveAt::test_bucket();
    sigkills_mid_batch(Some(ArchiveAt::s3(false, &bucket, "sigkill"))).await;
}

/// Serves with the archive in `s3` (else in the data directory) while events flow, kills the
/// server four times, and checks the archive equals the log.
async fn sigkills_mid_batch(s3: Option<ArchiveAt>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config_path = dir.path().join("sluice.toml");
    let url = s3.as_ref().map(ArchiveAt::url).unwrap_or_default();
    // Batches of at most 1 MiB or 1 s, written often, so kills land between a batch's files
    // and its commit.
    std::fs::write(
        &config_path,
        format!(
            "[log]\npartitions = 4\nack = \"write\"\n\n[archive]\nenabled = true\nurl = \"{url}\"\nroll-bytes = \"1MiB\"\nroll-age = \"1s\"\n\n\
             [[tenants]]\nname = \"shop\"\nwrite-keys = [\"{SHOP_WRITE}\"]\n\n\
             [[tenants]]\nname = \"blog\"\nwrite-keys = [\"{BLOG_WRITE}\"]\n"
        ),
    )
    .unwrap();
    let config = config_path.display().to_string();
    let listen = format!("127.0.0.1:{}", support::free_port());
    let addr: std::net::SocketAddr = listen.parse().unwrap();

    // Senders post batches until told to stop; a batch may fail while the server is down.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders: Vec<_> = [SHOP_WRITE, BLOG_WRITE]
        .into_iter()
        .enumerate()
        .map(|(sender, key)| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let auth = sluice::client::basic_auth(key);
                let mut batch_number = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let time = hours_ago(3) + batch_number * 20_000;
                    let batch: Vec<Value> = (0..50)
                        .map(|i| {
                            let mut event = view(
                                &format!("a{sender}-{i}"),
                                &format!("u{i}"),
                                &format!("/p{}", i % 7),
                                time + i,
                                "1.25",
                            );
                            event["context"] = json!({"page": {"path": format!("/p{i}")}, "padding": "x".repeat(200)});
                            event
                        })
                        .collect();
                    let body = serde_json::to_vec(&json!({"batch": batch})).unwrap();
                    // An error: the server is down between a kill and the next start.
                    let _ = post(addr, &auth, &body);
                    std::thread::sleep(Duration::from_millis(15));
                    batch_number += 1;
                }
            })
        })
        .collect();

    let env = s3.as_ref().map(|s3| s3.env.clone()).unwrap_or_default();
    // The servers' logs, to count what recovery did.
    let mut logs = String::new();
    for _ in 0..4 {
        let server = support::Server::start_with_env(&data, &listen, &["--config", &config], &env);
        let alive = 700 + rand::random_range(0..1500);
        tokio::time::sleep(Duration::from_millis(alive)).await;
        let output = server.signal("KILL");
        assert_eq!(output.status.code(), None, "killed by SIGKILL");
        logs.push_str(&String::from_utf8_lossy(&output.stderr));
    }
    let server = support::Server::start_with_env(&data, &listen, &["--config", &config], &env);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for sender in senders {
        sender.join().unwrap();
    }

    let log = tail_events(&data);
    assert!(log.len() > 2_000, "enough events flowed: {}", log.len());
    let archive = s3.unwrap_or_else(|| data.join("archive").as_path().into());
    eventually(&format!("{} events archived", log.len()), || async {
        let rows = archived_rows(&archive);
        (rows == log.len())
            .then_some(())
            .ok_or(format!("{rows} rows"))
    })
    .await;
    assert_archive_equals_log(&archive, &log);
    logs.push_str(&server.stop_cleanly());
    // How often a kill fell between a batch's files and its commit, or inside a compaction, and
    // how often compaction merged an hour's files (it varies from run to run).
    eprintln!(
        "{} events; uncommitted batches cleaned up after a kill: {}; compactions finished after a kill: {}; compactions: {}",
        log.len(),
        logs.matches("never committed").count(),
        logs.matches("finished a compaction a crash interrupted")
            .count(),
        logs.matches("compacted the archive's small files").count(),
    );
}

/// `sluice serve` with an archive in a bucket that does not exist, or with a wrong secret, on a
/// server that checks signatures: exit code 2 and a message saying what to check.
#[test]
fn a_missing_bucket_or_wrong_secret_stops_the_start_with_exit_code_2() {
    let bucket = ArchiveAt::test_bucket();
    let right = ArchiveAt::s3(true, &bucket, "start");
    let mut wrong_secret = ArchiveAt::s3(true, &bucket, "start");
    for (name, value) in &mut wrong_secret.env {
        if name == "AWS_SECRET_ACCESS_KEY" {
            *value = "not-the-secret".to_owned();
        }
    }
    let missing_bucket = ArchiveAt::s3(true, "no-such-bucket", "start");
    for (archive, says) in [
        (&missing_bucket, "NoSuchBucket"),
        (&wrong_secret, "SignatureDoesNotMatch"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let output = std::process::Command::new(support::BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("SLUICE__ARCHIVE__ENABLED", "true")
            .env("SLUICE__ARCHIVE__URL", archive.url())
            .envs(archive.env.iter().map(|(name, value)| (name, value)))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        for part in [
            "starting the archive: cannot put, read and delete objects in the archive at s3://",
            says,
            "AWS_ACCESS_KEY_ID",
        ] {
            assert!(stderr.contains(part), "{part:?} in {stderr}");
        }
    }
    // The right key passes the same check (the server is up and checks keys).
    let dir = tempfile::tempdir().unwrap();
    let server = support::Server::start_with_env(
        dir.path(),
        "127.0.0.1:0",
        &[],
        &[
            right.env.clone(),
            vec![
                ("SLUICE__ARCHIVE__ENABLED".to_owned(), "true".to_owned()),
                ("SLUICE__ARCHIVE__URL".to_owned(), right.url()),
            ],
        ]
        .concat(),
    );
    let stderr = server.stop_cleanly();
    assert!(!stderr.contains("cannot put"), "{stderr}");
}

/// `archive.streams` naming no derived stream stops the start with exit code 2 and what to do.
#[test]
fn an_archived_stream_that_is_not_defined_stops_the_start_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        "[archive]\nenabled = true\nstreams = [\"visits\"]\n",
    )
    .unwrap();
    let output = std::process::Command::new(support::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("archive.streams names \"visits\", which is no derived stream: define it"),
        "{stderr}"
    );
}

/// Runs `sluice archive forget` on the server's data directory (beside it), checks that it
/// succeeded, and returns what it printed.
fn forget_cli(data_dir: &Path, tenant: &str, user: &str) -> String {
    let output = std::process::Command::new(support::BIN)
        .args(["archive", "forget", "--tenant", tenant, "--user", user])
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Erasure and the archive: the erasure's answer says what the archive keeps; `sluice archive
/// forget` (run beside the server) removes the user's archived events of that tenant and says
/// what it rewrote; DuckDB then reads exactly the log's other events, field by field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_removes_an_erased_users_archived_events_of_the_tenant() {
    let h = Harness::start(&archive_overrides()).await;
    let time = hours_ago(3);
    let shop: Vec<Value> = (0..20)
        .map(|i| {
            let user = if i % 4 == 0 {
                "u1".to_owned()
            } else {
                format!("v{i}")
            };
            view(&format!("a{i}"), &user, "/p", time + i * 1_000, "1")
        })
        .collect();
    h.send_ok(SHOP_WRITE, shop).await;
    h.send_ok(BLOG_WRITE, vec![view("b1", "u1", "/p", time, "1")])
        .await;
    archived(&h, 21).await;

    let (status, erased) = h
        .call(
            hyper::Method::DELETE,
            "/v1/users/u1?tenant=shop",
            ADMIN,
            &Value::Null,
        )
        .await;
    assert_eq!(status, hyper::StatusCode::OK, "{erased}");
    let note = erased["remaining"]["archive"].as_str().unwrap_or_default();
    assert!(
        note.contains("sluice archive forget --tenant shop --user u1"),
        "{erased}"
    );

    let stdout = forget_cli(&h.config.data_dir, "shop", "u1");
    // The events are in the partitions' files of their hour; each that held some of u1's is
    // rewritten.
    let rewrote = stdout.matches("rewrote events/tenant=shop/date=").count();
    assert!(
        stdout.contains("u1 of tenant shop: 5 rows removed from ")
            && rewrote >= 1
            && stdout.contains(&format!("5 rows removed from {rewrote} of "))
            && !stdout.contains("skipped"),
        "{stdout}"
    );

    let theirs = |event: &Value| {
        event["tenant"] == "shop" && (event["user_id"] == "u1" || event["anonymous_id"] == "u1")
    };
    let log = log_events(&*h.app().log).await;
    assert_eq!(log.iter().filter(|(_, _, event)| theirs(event)).count(), 5);
    let rest: Vec<_> = log
        .into_iter()
        .filter(|(_, _, event)| !theirs(event))
        .collect();
    let root = h.config.data_dir.join("archive");
    assert_archive_equals_log(&root.as_path().into(), &rest);
    h.stop().await;
}

/// Retention per tenant: with shop's archive kept 1 hour, the sweep at the start deletes shop's
/// archived hours that ended over an hour ago (the current hour's events, skew-corrected to
/// now, stay); blog's (kept forever) stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_archived_hours_older_than_its_retention_are_deleted() {
    let mut overrides = archive_overrides();
    let mut retention = toml::Table::new();
    retention.insert("shop".into(), toml::Value::String("1h".into()));
    overrides.push(("archive.tenant-retention", toml::Value::Table(retention)));
    let mut h = Harness::start(&overrides).await;
    let time = hours_ago(3);
    h.send_ok(SHOP_WRITE, varied("shop", time, 0)).await;
    h.send_ok(BLOG_WRITE, varied("blog", time, 0)).await;
    archived(&h, 10).await;
    let root = h.config.data_dir.join("archive");
    let archive: ArchiveAt = root.as_path().into();
    // The sweep at the first start ran before anything was archived.
    assert_eq!(archived_rows(&archive), 10);

    h.restart().await;
    // An hour ended over an hour ago when it began before the last full hour.
    let expired = |event: &Value| {
        event["tenant"] == "shop" && event["timestamp"].as_i64().unwrap() < hours_ago(1)
    };
    let kept: Vec<_> = log_events(&*h.app().log)
        .await
        .into_iter()
        .filter(|(_, _, event)| !expired(event))
        .collect();
    assert!(kept.len() < 10 && kept.len() >= 5, "{} kept", kept.len());
    eventually("shop's expired hours deleted", || async {
        let rows = archived_rows(&archive);
        (rows == kept.len())
            .then_some(())
            .ok_or(format!("{rows} rows"))
    })
    .await;
    assert_archive_equals_log(&archive, &kept);
    h.stop().await;
}

/// Promoted columns: shop's `properties.amount` as DECIMAL(12,2) and everyone's
/// `properties.url` as text, read by DuckDB with their types; a value not of the type is NULL
/// (the JSON column keeps it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoted_columns_are_typed_for_duckdb() {
    let mut overrides = archive_overrides();
    let columns: toml::Value = toml::from_str::<toml::Table>(
        r#"columns = [
            { tenant = "shop", path = "properties.amount", type = "decimal(12,2)" },
            { path = "properties.url", name = "page_url", type = "string" },
        ]"#,
    )
    .unwrap()["columns"]
        .clone();
    overrides.push(("archive.columns", columns));
    let h = Harness::start(&overrides).await;
    let time = hours_ago(2);
    h.send_ok(
        SHOP_WRITE,
        vec![
            view("a1", "u1", "/cart", time, "12.345"),
            view("a2", "u2", "/cart", time + 1, "\"7\""),
            view("a3", "u3", "/cart", time + 2, "\"n/a\""),
        ],
    )
    .await;
    h.send_ok(BLOG_WRITE, vec![view("b1", "u1", "/post", time, "3")])
        .await;
    archived(&h, 4).await;
    let root = h.config.data_dir.join("archive");
    let output = run_duckdb(&root.as_path().into(), &["columns", "amount", "page_url"]);
    let mut rows: Vec<Value> = serde_json::from_slice(&output).unwrap();
    rows.sort_by_key(|row| row.to_string());
    assert_eq!(
        rows,
        [
            json!(["blog", ["DECIMAL(12,2)", null], ["VARCHAR", "/post"]]),
            json!(["shop", ["DECIMAL(12,2)", "12.35"], ["VARCHAR", "/cart"]]),
            json!(["shop", ["DECIMAL(12,2)", "7.00"], ["VARCHAR", "/cart"]]),
            json!(["shop", ["DECIMAL(12,2)", null], ["VARCHAR", "/cart"]]),
        ]
    );
    // The base columns are as before.
    let log = log_events(&*h.app().log).await;
    assert_archive_equals_log(&root.as_path().into(), &log);
    h.stop().await;
}

/// Replay from the archive: the log keeps two seconds of records (4 KiB segments), the archive
/// everything. Once retention has removed the first wave of events from the log, a replay
/// from a time before every event reads them from the archive, then the second wave from the
/// log, and its results equal those the pipeline computed from the log as the events arrived
/// (a replay of the same events from the log alone): every window, count, distinct count and
/// sum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_from_before_the_logs_retention_reads_the_archive_then_the_log() {
    let mut overrides = archive_overrides();
    for (key, value) in [
        ("log.segment-bytes", "4KiB"),
        ("log.max-batch-bytes", "4KiB"),
        ("log.max-record-bytes", "4KiB"),
        ("log.index-interval-bytes", "512B"),
        ("log.segment-age", "1s"),
        ("log.retention-age", "2s"),
        ("log.retention-check-interval", "1s"),
        // The two tenants' events of a minute arrive a request apart: none is late.
        ("stream.default-out-of-orderness", "10m"),
    ] {
        overrides.push((key, toml::Value::String(value.into())));
    }
    let h = Harness::start(&overrides).await;
    let start = hours_ago(3);
    let wave = |first: usize, count: usize| -> Vec<Value> {
        (first..first + count)
            .map(|i| {
                let url = ["/a", "/b", "/c"][i % 3];
                let time = start + (i % 1000) as Millis * MINUTE / 4;
                view(
                    &format!("anon-{}", i % 23),
                    &format!("u{}", i % 7),
                    url,
                    time,
                    &format!("{}.25", i % 5),
                )
            })
            .collect()
    };
    let mut sent = 0;
    for first in (0..200).step_by(10) {
        h.send_ok(SHOP_WRITE, wave(first, 10)).await;
        h.send_ok(BLOG_WRITE, wave(first + 1000, 10)).await;
        sent += 20;
    }
    archived(&h, sent).await;
    // Old enough to be removed once a later append has sealed their segments.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for first in (200..300).step_by(10) {
        h.send_ok(SHOP_WRITE, wave(first, 10)).await;
        h.send_ok(BLOG_WRITE, wave(first + 1000, 10)).await;
        sent += 20;
    }
    archived(&h, sent).await;
    let removed = eventually("retention removed the first wave from the log", || async {
        let topic = &h.app().log.describe(Some("events")).await.unwrap()[0];
        let removed: u64 = topic.partitions.iter().map(|p| p.start_offset).sum();
        (removed >= 300 && topic.partitions.iter().all(|p| p.start_offset > 0))
            .then_some(removed)
            .ok_or(format!("{removed} records removed"))
    })
    .await;

    let live = views_settled(&h, 0).await;
    let counted: u64 = live
        .iter()
        .flat_map(|series| series.as_array().unwrap())
        .flat_map(|series| series["points"].as_array().unwrap())
        .map(|point| point[3].as_u64().unwrap_or_else(|| panic!("{point}")))
        .sum();
    assert_eq!(counted, sent, "every view counted live: {live:?}");

    let (status, answer) = h
        .call(
            Method::POST,
            "/v1/admin/metrics/views/replay",
            ADMIN,
            &json!({"from_time": start - HOUR}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    views_settled(&h, 1).await;
    // Windows show as final once the query layer has read the new generation's watermarks.
    eventually(
        &format!("the replay's results (it read {removed} events from the archive, the rest from the log) equal to the live ones"),
        || async {
            let replayed = views_settled(&h, 1).await;
            (replayed == live)
                .then_some(())
                .ok_or(format!("{replayed:?}"))
        },
    )
    .await;
    h.stop().await;
}

/// The views metric's series of both tenants once its generation `generation` is current,
/// caught up and without lost offsets.
async fn views_settled(h: &Harness, generation: u64) -> Vec<Value> {
    eventually("views caught up", || async {
        let (_, status) = h
            .call(Method::GET, "/v1/admin/metrics/views", ADMIN, &Value::Null)
            .await;
        (status["generation"] == generation
            && status["lag"] == 0
            && status["replay"].is_null()
            && status["lost_offsets"] == 0)
            .then_some(())
            .ok_or(status.to_string())
    })
    .await;
    let mut results = Vec::new();
    for key in [SHOP_READ, BLOG_READ] {
        let (status, answer) = h.get("/v1/metrics/views?from=now-5h&to=now", key).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        results.push(answer["series"].clone());
    }
    results
}

/// A derived stream in `archive.streams`: the sessions of `CREATE SESSIONS visits` are
/// archived under `streams/visits/`, where DuckDB reads each closed session once, as its
/// record is in the stream (type `session`, no `received_at`, the summary in `properties`),
/// beside the events' archive, which stays the log's events. `sluice archive forget` takes a
/// visitor out of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_derived_streams_records_are_archived_beside_the_events() {
    let mut overrides = archive_overrides();
    let metrics: toml::Value = toml::from_str::<toml::Table>(
        r#"metrics = [{ sql = "CREATE SESSIONS visits GAP '10s'" }]"#,
    )
    .unwrap()["metrics"]
        .clone();
    overrides.extend([
        ("metrics", metrics),
        ("stream.idle-timeout", toml::Value::String("500ms".into())),
        (
            "archive.streams",
            toml::Value::Array(vec![toml::Value::String("visits".into())]),
        ),
    ]);
    let h = Harness::start(&overrides).await;
    let t = sluice_core::time::now_millis() - 60_000;
    let page = |anon: &str, time: Millis, url: &str| {
        json!({"type": "page", "anonymousId": anon, "timestamp": format_millis(time),
               "properties": {"url": url}})
    };
    // Shop: a1 one session of two pages, a2 a bounce, a3 two sessions (11 s apart); blog: b1
    // (sent after shop's: not before shop's newest event, so not late for its session).
    h.send_ok(
        SHOP_WRITE,
        vec![
            page("a1", t, "/landing"),
            page("a2", t, "/only"),
            page("a3", t, "/old"),
            page("a1", t + 5_000, "/pricing"),
            page("a3", t + 11_000, "/new"),
        ],
    )
    .await;
    h.send_ok(BLOG_WRITE, vec![page("b1", t + 11_000, "/post")])
        .await;
    archived(&h, 6).await;

    let stream = h.config.data_dir.join("archive/streams/visits");
    let rows = eventually("the five sessions archived", || async {
        if !stream.join("events").exists() {
            return Err("no files yet".to_owned());
        }
        let (_, rows) = duckdb(&stream.as_path().into());
        (rows.len() >= 5)
            .then_some(rows.clone())
            .ok_or(format!("{rows:?}"))
    })
    .await;
    assert_eq!(rows.len(), 5, "{rows:?}");
    let mut summaries: Vec<(String, String, i64, String, String)> = rows
        .iter()
        .map(|row| {
            assert_eq!(row["type"], "session", "{row}");
            assert_eq!(row["received_at"], Value::Null, "{row}");
            let properties: Value =
                serde_json::from_str(row["properties"].as_str().unwrap()).unwrap();
            assert_eq!(properties["session_id"], row["message_id"], "{row}");
            (
                row["tenant"].as_str().unwrap().to_owned(),
                row["anonymous_id"].as_str().unwrap().to_owned(),
                properties["pages"].as_i64().unwrap(),
                properties["entry_page"].as_str().unwrap().to_owned(),
                properties["exit_page"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    summaries.sort();
    let session = |tenant: &str, anon: &str, pages, entry: &str, exit: &str| {
        (tenant.into(), anon.into(), pages, entry.into(), exit.into())
    };
    assert_eq!(
        summaries,
        [
            session("blog", "b1", 1, "/post", "/post"),
            session("shop", "a1", 2, "/landing", "/pricing"),
            session("shop", "a2", 1, "/only", "/only"),
            session("shop", "a3", 1, "/new", "/new"),
            session("shop", "a3", 1, "/old", "/old"),
        ]
    );
    // Its own position, and the events' archive holds the events only.
    let positions = h.app().pipelines.store().positions("archive/visits").await;
    assert_eq!(positions.unwrap().len(), 2, "one per partition");
    let log = log_events(&*h.app().log).await;
    let root = h.config.data_dir.join("archive");
    assert_archive_equals_log(&root.as_path().into(), &log);

    // Forget takes a visitor out of both: their two events and their two sessions.
    let stdout = forget_cli(&h.config.data_dir, "shop", "a3");
    assert!(
        stdout.contains("rewrote events/tenant=shop/")
            && stdout.contains("streams/visits/events/tenant=shop/")
            && stdout.contains("a3 of tenant shop: 4 rows removed from "),
        "{stdout}"
    );
    let (_, rows) = duckdb(&stream.as_path().into());
    let visitors: Vec<&str> = rows
        .iter()
        .map(|row| row["anonymous_id"].as_str().unwrap())
        .collect();
    assert_eq!(visitors.len(), 3, "{visitors:?}");
    assert!(!visitors.contains(&"a3"), "{visitors:?}");
    let rest: Vec<_> = log
        .into_iter()
        .filter(|(_, _, event)| event["anonymous_id"] != "a3")
        .collect();
    assert_archive_equals_log(&root.as_path().into(), &rest);
    h.stop().await;
}
