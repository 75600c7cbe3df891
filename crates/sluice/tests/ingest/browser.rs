//! Compatibility with the browser SDK no one here wrote: Segment's `@segment/analytics-next`
//! (npm, unchanged) in a real headless Chromium, on a page of another origin, in standard and
//! in batching mode, sends every message type; sluice is restarted while the second round is
//! sent (the SDK retries); every event must be stored exactly once, field for field.
//!
//! `crates/sluice/tests/browser/segment_browser.mjs` drives the browser (through
//! `playwright-core`) and serves the page; this test owns sluice (the real binary) and reads the
//! log back. `scripts/test.sh` installs Chromium (Debian's `chromium`) and the pinned npm
//! packages (`crates/sluice/tests/browser/package-lock.json`, into `target/test-browser`) and
//! exports `SLUICE_TEST_CHROMIUM`, `SLUICE_TEST_NODE` and `SLUICE_TEST_BROWSER_MODULES`.

use super::api::{open_log, topic_values};
use super::compat::assert_stored_as_sent;
use super::support::{Server, browser_driver, free_port};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout};

const STANDARD_KEY: &str = "wk_browser_standard_0123456789";
const BATCHING_KEY: &str = "wk_browser_batching_0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_browser_sdk_in_chromium_delivers_every_event_once_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let page_port = free_port();
    let config = dir.path().join("sluice.toml");
    // Only the page's origin may send from a browser: the SDK must pass a real CORS check.
    std::fs::write(
        &config,
        format!(
            "[ingest]\ncors-allowed-origins = [\"http://127.0.0.1:{page_port}\"]\n\n\
             [[tenants]]\nname = \"web\"\nwrite-keys = [\"{STANDARD_KEY}\", \"{BATCHING_KEY}\"]\n"
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut server = Some(Server::start_on(&data, &listen, &["--config", &config]));
    let collector = format!("http://{listen}");

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/browser/segment_browser.mjs"
    );
    let mut driver = browser_driver(
        script,
        &[
            &collector,
            &page_port.to_string(),
            STANDARD_KEY,
            BATCHING_KEY,
        ],
    )
    .spawn()
    .unwrap();
    let mut to_driver = driver.stdin.take().unwrap();
    let mut from_driver = BufReader::new(driver.stdout.take().unwrap()).lines();
    let stderr = driver.stderr.take().unwrap();
    let driver_log = tokio::spawn(async move {
        let mut text = String::new();
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let within = Duration::from_secs(240);
    let conversation = async {
        expect(&mut from_driver, "stop").await?;
        // A clean stop (SIGTERM), as a deploy does; the second round is sent meanwhile.
        server.take().unwrap().stop_cleanly();
        say(&mut to_driver, "stopped").await;
        expect(&mut from_driver, "start").await?;
        server = Some(Server::start_on(&data, &listen, &["--config", &config]));
        say(&mut to_driver, "started").await;
        let mut sent = Vec::new();
        while let Some(line) = from_driver.next_line().await.unwrap() {
            sent.push(serde_json::from_str::<Value>(&line).unwrap());
        }
        Ok::<_, String>(sent)
    };
    let outcome = tokio::time::timeout(within, conversation).await;
    let status = driver.wait().await.unwrap();
    let log = driver_log.await.unwrap();
    let sent = match outcome {
        Ok(Ok(sent)) => sent,
        Ok(Err(error)) => panic!("{error}\ndriver's stderr:\n{log}"),
        Err(_) => panic!("the browser run took more than {within:?}\ndriver's stderr:\n{log}"),
    };
    assert!(status.success(), "the browser run failed:\n{log}");
    server.take().unwrap().stop_cleanly();

    // 2 modes × 2 rounds × 6 types, and one beacon.
    assert_eq!(sent.len(), 25, "{log}");
    let stored = read_back(&config, &data, "events").await;
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for event in &stored {
        *copies
            .entry(event["message_id"].as_str().unwrap())
            .or_default() += 1;
    }
    let mut agents = 0;
    for sent in &sent {
        let message = &sent["message"];
        let id = message["messageId"].as_str().unwrap();
        assert_eq!(copies.get(id), Some(&1), "{sent}: stored once");
        let event = stored.iter().find(|e| e["message_id"] == id).unwrap();
        agents += usize::from(assert_same_fields(message, event, &sent.to_string()));
    }
    assert!(
        agents > 0,
        "analytics.js sent its user agent, which was enriched"
    );
    assert_eq!(stored.len(), sent.len(), "nothing else was stored");
    for round in [1, 2] {
        for mode in ["standard", "batching"] {
            let mut types: Vec<&str> = sent
                .iter()
                .filter(|s| s["round"] == round && s["mode"] == mode)
                .filter(|s| s["message"]["event"] != "Beacon Sent")
                .map(|s| s["message"]["type"].as_str().unwrap())
                .collect();
            types.sort_unstable();
            assert_eq!(
                types,
                ["alias", "group", "identify", "page", "screen", "track"],
                "{mode}, round {round}"
            );
        }
    }
    let dead = read_back(&config, &data, "events.dlq").await;
    assert!(dead.is_empty(), "nothing in events.dlq: {dead:?}");
}

/// The stored event has every field the SDK sent, under sluice's names, and what enrichment
/// adds; whether the message had a user agent to enrich.
fn assert_same_fields(message: &Value, event: &Value, what: &str) -> bool {
    assert_eq!(event["tenant"], "web", "{what}");
    let objects = ["properties", "traits", "context", "integrations"];
    let added = assert_stored_as_sent(message, event, &objects, what);
    // Enrichment, from what Chromium and analytics.js sent: the request's address, the
    // browser, its system and device class, and the page's referrer class.
    // (A beacon the page posts itself has no context but the address.)
    assert_eq!(added["ip"], "127.0.0.1", "{what}");
    let agent = message["context"].get("userAgent").is_some();
    if agent {
        let browser = added["browser"]["name"].as_str().unwrap_or_default();
        assert!(browser.contains("Chrome"), "{what}: {added}");
        assert_eq!(added["os"]["name"], "Linux", "{what}");
        // Headless Chromium says so in its user agent: automation, counted as a bot.
        assert_eq!(added["browser"]["name"], "HeadlessChrome", "{what}");
        assert_eq!(added["device"]["type"], "bot", "{what}");
    }
    if message["context"].get("page").is_some() {
        assert!(added["referrer"]["type"].is_string(), "{what}: {added}");
    }
    // A retry carries its count in _metadata: the stored copy is the first that arrived.
    let without_retry = |metadata: Option<&Value>| {
        metadata.cloned().map(|mut value| {
            value
                .as_object_mut()
                .map(|object| object.remove("retryCount"));
            value
        })
    };
    assert_eq!(
        without_retry(event.get("_metadata")),
        without_retry(message.get("_metadata")),
        "{what}: _metadata"
    );
    if let Some(timestamp) = message["timestamp"].as_str() {
        let original = sluice_core::time::parse_rfc3339_millis(timestamp).unwrap();
        assert_eq!(
            event["original_timestamp"].as_i64(),
            Some(original),
            "{what}"
        );
    }
    agent
}

async fn expect(lines: &mut Lines<BufReader<ChildStdout>>, expected: &str) -> Result<(), String> {
    match lines.next_line().await {
        Ok(Some(line)) if line.trim() == expected => Ok(()),
        other => Err(format!(
            "expected {expected:?} from the driver, got {other:?}"
        )),
    }
}

async fn say(stdin: &mut ChildStdin, line: &str) {
    stdin
        .write_all(format!("{line}\n").as_bytes())
        .await
        .unwrap();
    stdin.flush().await.unwrap();
}

/// Every record of `topic` in the log of the stopped server, parsed.
async fn read_back(config: &str, data: &Path, topic: &str) -> Vec<Value> {
    let log = open_log(Path::new(config), data).await;
    let values = topic_values(&log, topic).await;
    log.close().await.unwrap();
    values
}
