//! The dashboard in a real headless Chromium: a wrong key is refused in words; the read key,
//! typed and sent with the keyboard, opens the metric list; the metric's chart shows exactly the
//! points the query API answers, with its top keys ranked; events of a new key appear live,
//! without a reload; the view, added to a board, opens by its URL as a wall screen.
//! `crates/sluice/tests/browser/dashboard.mjs` drives the browser
//! (`playwright-core` and Debian's Chromium, which `scripts/test.sh` installs).

use crate::harness::*;
use crate::support::browser;
use serde_json::Value;
use sluice_core::time::now_millis;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_what_the_api_answers_and_updates_live() {
    let h = Harness::start(&[]).await;
    let now = now_millis();
    let minute = now - now.rem_euclid(MINUTE);
    // Three URLs over the last minutes, /home the most viewed, oldest first (the metric allows
    // no lateness).
    let mut events = Vec::new();
    for back in (1..=5).rev() {
        let time = minute - back * MINUTE + 1_000;
        for (url, views) in [("/home", 3), ("/cart", 2), ("/about", 1)] {
            for n in 0..views {
                events.push(view(
                    &format!("a{back}{n}"),
                    &format!("u{n}"),
                    url,
                    time,
                    "1",
                ));
            }
        }
    }
    h.send_ok(SHOP_WRITE, events).await;
    let api = eventually("the views in the query API", || async {
        let (_, answer) = h
            .get(
                "/v1/metrics/views?from=now-1h&to=now&resolution=raw&top=10&by=n",
                SHOP_READ,
            )
            .await;
        let total: usize = answer["series"]
            .as_array()
            .map(|s| {
                s.iter()
                    .map(|s| s["points"].as_array().unwrap().len())
                    .sum()
            })
            .unwrap_or(0);
        if total == 15 {
            Ok(answer)
        } else {
            Err(answer.to_string())
        }
    })
    .await;

    let mut driver = Driver::start(&h, SHOP_READ, "views", None);
    let refused = driver.next().await;
    assert_eq!(refused["phase"], "refused");
    assert!(
        refused["problem"]
            .as_str()
            .unwrap()
            .contains("not accepted"),
        "{refused}"
    );
    assert_eq!(refused["signInShown"], true);

    let loaded = driver.next().await;
    assert_eq!(loaded["phase"], "loaded", "{loaded}");
    assert_eq!(loaded["canvas"], true);
    assert_eq!(loaded["series"], api["series"].as_array().unwrap().len());
    assert_eq!(
        loaded["points"], 15,
        "every point the API answers is drawn: {loaded}"
    );
    let ranked: Vec<(String, String)> = loaded["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row[0].as_str().unwrap().to_owned(),
                row[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        ranked,
        [
            ("url=/home".to_owned(), "15".to_owned()),
            ("url=/cart".to_owned(), "10".to_owned()),
            ("url=/about".to_owned(), "5".to_owned()),
        ]
    );

    // A new page, viewed now: the open window reaches the chart over /v1/live.
    h.send_ok(
        SHOP_WRITE,
        vec![view("live-1", "u9", "/new", now_millis(), "1")],
    )
    .await;
    driver.say("sent").await;
    let live = driver.next().await;
    assert_eq!(live["phase"], "live", "{live}");
    assert_eq!(live["series"], 4, "{live}");
    assert_eq!(live["points"], 16, "{live}");
    assert!(
        live["rows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|row| row[0] == "url=/new"),
        "the top table re-ranked with the new key: {live}"
    );
    assert!(
        live["legend"].as_str().unwrap().contains("open windows"),
        "{live}"
    );
    let board = driver.next().await;
    assert_eq!(board["phase"], "board", "{board}");
    assert_eq!(
        (
            board["panels"].clone(),
            board["points"].clone(),
            board["title"].clone()
        ),
        (
            serde_json::json!(1),
            serde_json::json!(16),
            serde_json::json!("wall")
        ),
        "{board}"
    );
    assert_eq!(
        board["headerHidden"], true,
        "a wall screen shows the board alone"
    );
    let (_, saved) = h.get("/v1/boards/wall", SHOP_READ).await;
    assert_eq!(saved["panels"][0]["metric"], "views", "{saved}");
    assert_eq!(saved["panels"][0]["value"], "n", "{saved}");
    driver.finish().await;
    h.stop().await;
}

/// An admin key opens pipeline health (the metric running, its partitions' offsets, ingest
/// rates, the latest dead letter with its reason), makes a read key through the form (which
/// works at once) and revokes it (which stops it at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_key_opens_pipeline_health_and_manages_keys() {
    let h = Harness::start(&[]).await;
    h.send_ok(
        SHOP_WRITE,
        vec![view("a1", "u1", "/home", now_millis(), "1")],
    )
    .await;
    // One refused event, to be listed with its reason.
    let (_, reply) = h
        .send(
            SHOP_WRITE,
            vec![serde_json::json!({"type": "track", "event": "Nameless"})],
        )
        .await;
    assert_eq!(reply["rejected"][0]["reason"], "missing_field");
    let mut driver = Driver::start(&h, ADMIN, "views", Some("admin"));
    let health = driver.next().await;
    assert_eq!(health["phase"], "health", "{health}");
    assert_eq!(health["state"], "running", "{health}");
    assert!(
        health["partitions"].as_str().unwrap().contains("p0: "),
        "{health}"
    );
    assert!(
        health["rates"].as_str().unwrap().contains("accepted"),
        "{health}"
    );
    let letters = health["letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{health}");
    assert!(
        letters[0].as_str().unwrap().contains("missing_field"),
        "{health}"
    );
    let secret = health["secret"].as_str().unwrap().to_owned();
    let (status, _) = h.get("/v1/metrics", &secret).await;
    assert_eq!(
        status,
        hyper::StatusCode::OK,
        "the key made in the page reads at once"
    );
    driver.say("revoke").await;
    let revoked = driver.next().await;
    assert_eq!(revoked["phase"], "revoked", "{revoked}");
    let (status, _) = h.get("/v1/metrics", &secret).await;
    assert_eq!(
        status,
        hyper::StatusCode::UNAUTHORIZED,
        "revoked in the page, refused at once"
    );
    driver.finish().await;
    h.stop().await;
}

/// `dashboard.mjs` in Chromium, and its conversation.
struct Driver {
    child: tokio::process::Child,
    to: tokio::process::ChildStdin,
    from: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stderr: tokio::process::ChildStderr,
}

impl Driver {
    fn start(h: &Harness, key: &str, metric: &str, mode: Option<&str>) -> Driver {
        let (chromium, node, modules) = browser();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/dashboard.mjs");
        let url = format!("http://{}", h.app().addr);
        let mut args = vec![script, url.as_str(), key, metric];
        args.extend(mode);
        let mut child = tokio::process::Command::new(&node)
            .args(&args)
            .env("SLUICE_TEST_CHROMIUM", &chromium)
            .env("SLUICE_TEST_BROWSER_MODULES", &modules)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Driver {
            to: child.stdin.take().unwrap(),
            from: BufReader::new(child.stdout.take().unwrap()).lines(),
            stderr: child.stderr.take().unwrap(),
            child,
        }
    }

    async fn failure(&mut self) -> String {
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut self.stderr, &mut text)
            .await
            .unwrap();
        text
    }

    /// The driver's next line.
    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(60), self.from.next_line())
            .await
            .expect("the browser answered within 60 s")
            .unwrap();
        match line {
            Some(line) => serde_json::from_str(&line).unwrap(),
            None => panic!("the browser driver stopped: {}", self.failure().await),
        }
    }

    async fn say(&mut self, word: &str) {
        self.to
            .write_all(format!("{word}\n").as_bytes())
            .await
            .unwrap();
    }

    /// Waits for the driver to end, and fails with what it said if it failed.
    async fn finish(mut self) {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap()
            .unwrap();
        if !status.success() {
            panic!("the browser driver failed: {}", self.failure().await);
        }
    }
}
