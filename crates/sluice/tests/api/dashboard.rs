//! The dashboard in a real headless Chromium: a wrong key is refused in words; the read key,
//! typed and sent with the keyboard, opens the metric list; the metric's chart shows exactly the
//! points the query API answers, with its top keys ranked; events of a new key appear live,
//! without a reload; the view, added to a board, opens by its URL as a wall screen.
//! `crates/sluice/tests/browser/dashboard.mjs` drives the browser
//! (`playwright-core` and Debian's Chromium, which `scripts/test.sh` installs).

use crate::harness::*;
use crate::support::required;
use serde_json::Value;
use sluice_core::time::now_millis;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_what_the_api_answers_and_updates_live() {
    let chromium = required("SLUICE_TEST_CHROMIUM", Some("/usr/bin/chromium"));
    let node = required("SLUICE_TEST_NODE", Some("/usr/bin/node"));
    let modules = required(
        "SLUICE_TEST_BROWSER_MODULES",
        Some(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/test-browser/node_modules"
        )),
    );
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

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/dashboard.mjs");
    let url = format!("http://{}", h.app().addr);
    let mut driver = tokio::process::Command::new(&node)
        .args([script, &url, SHOP_READ, "views"])
        .env("SLUICE_TEST_CHROMIUM", &chromium)
        .env("SLUICE_TEST_BROWSER_MODULES", &modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut to_driver = driver.stdin.take().unwrap();
    let mut from_driver = BufReader::new(driver.stdout.take().unwrap()).lines();
    let mut stderr = driver.stderr.take().unwrap();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(Duration::from_secs(60), from_driver.next_line())
            .await
            .expect("the browser answered within 60 s")
            .unwrap();
        match line {
            Some(line) => serde_json::from_str(&line).unwrap(),
            None => {
                let mut text = String::new();
                tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text)
                    .await
                    .unwrap();
                panic!("the browser driver stopped: {text}");
            }
        }
    };

    let refused = next().await;
    assert_eq!(refused["phase"], "refused");
    assert!(
        refused["problem"]
            .as_str()
            .unwrap()
            .contains("not accepted"),
        "{refused}"
    );
    assert_eq!(refused["signInShown"], true);

    let loaded = next().await;
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
    to_driver.write_all(b"sent\n").await.unwrap();
    let live = next().await;
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
    let board = next().await;
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
    let status = tokio::time::timeout(Duration::from_secs(30), driver.wait())
        .await
        .unwrap()
        .unwrap();
    if !status.success() {
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text)
            .await
            .unwrap();
        panic!("the browser driver failed: {text}");
    }
    h.stop().await;
}
