//! `GET /v1/live`: WebSocket subscriptions receive what changes after they subscribe, only
//! from their own tenant; keys are checked; slow and silent clients are closed.

use crate::harness::*;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sluice_core::time::now_millis;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn connect(h: &Harness, key: &str) -> Socket {
    let mut request = format!("ws://{}/v1/live", h.target.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// The next JSON text message (pings are answered by the client library while reading).
pub(crate) async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(30), socket.next())
            .await
            .expect("a message within 30 s")
            .expect("the connection is open")
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

async fn subscribe(socket: &mut Socket, id: &str, filters: &[&str]) -> Value {
    let message = json!({"type": "subscribe", "id": id, "metric": "views", "filters": filters});
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
    next_json(socket).await
}

/// Reads updates of subscription `id` until one has a window of `url` satisfying `check`.
async fn update_for(
    socket: &mut Socket,
    id: &str,
    url: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    loop {
        let message = next_json(socket).await;
        assert_ne!(message["type"], "error", "{message}");
        if message["type"] != "update" || message["id"] != id {
            continue;
        }
        let windows = message["windows"].as_array().unwrap();
        if let Some(window) = windows.iter().find(|w| w["key"]["url"] == url && check(w)) {
            return window.clone();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_receives_updates_for_events_sent_after_it() {
    let h = Harness::start(&[]).await;
    let mut shop = connect(&h, SHOP_READ).await;
    let subscribed = subscribe(&mut shop, "s1", &["url:/live"]).await;
    assert_eq!(
        subscribed,
        json!({"type": "subscribed", "id": "s1", "metric": "views", "keys": ["url"], "values": ["n", "users", "amount"]})
    );
    let mut blog = connect(&h, BLOG_READ).await;
    subscribe(&mut blog, "b1", &[]).await;

    let now = now_millis();
    h.send_ok(SHOP_WRITE, vec![view("a1", "u1", "/live", now, "2")])
        .await;
    let window = update_for(&mut shop, "s1", "/live", |w| w["values"]["n"] == 1).await;
    assert_eq!(window["final"], false);
    assert_eq!(window["values"], json!({"n": 1, "users": 1, "amount": 2}));
    assert_eq!(window["start"].as_i64().unwrap() % MINUTE, 0);
    assert!(window["start"].as_i64().unwrap() <= now && now < window["end"].as_i64().unwrap());

    // Later events update the same window; other URLs are filtered out.
    h.send_ok(
        SHOP_WRITE,
        vec![
            view("a2", "u2", "/live", now, "3"),
            view("a2", "u2", "/other", now, "1"),
        ],
    )
    .await;
    let window = update_for(&mut shop, "s1", "/live", |w| w["values"]["n"] == 2).await;
    assert_eq!(window["values"], json!({"n": 2, "users": 2, "amount": 5}));

    // Blog's subscription sees blog's events only: its /live counts 1, not 3.
    h.send_ok(BLOG_WRITE, vec![view("b1", "v1", "/live", now, "7")])
        .await;
    let window = update_for(&mut blog, "b1", "/live", |_| true).await;
    assert_eq!(window["values"], json!({"n": 1, "users": 1, "amount": 7}));

    // Ping, bad messages, and subscriptions that cannot be made.
    shop.send(Message::Text(json!({"type": "ping"}).to_string().into()))
        .await
        .unwrap();
    loop {
        let message = next_json(&mut shop).await;
        if message["type"] == "pong" {
            break;
        }
    }
    let refused = subscribe(&mut shop, "s2", &["country:fr"]).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "unknown_key");
    let refused = subscribe(&mut shop, "s1", &[]).await;
    assert_eq!(refused["code"], "duplicate_id", "{refused}");
    shop.send(Message::Text("{\"type\":\"subscribe\"".into()))
        .await
        .unwrap();
    loop {
        let message = next_json(&mut shop).await;
        if message["type"] == "error" {
            assert_eq!(message["code"], "invalid_message");
            break;
        }
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_push_checks_keys() {
    let h = Harness::start(&[]).await;
    let url = format!("ws://{}/v1/live", h.target.addr);
    let error = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("401"), "{error}");
    let error = tokio_tungstenite::connect_async(format!("{url}?key={SHOP_WRITE}"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("403"), "{error}");
    // Browsers pass the key in the URL.
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("{url}?key={SHOP_READ}"))
        .await
        .unwrap();
    let subscribed = subscribe(&mut socket, "s", &[]).await;
    assert_eq!(subscribed["type"], "subscribed");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_are_closed_not_buffered_for() {
    let h = Harness::start(&[
        ("api.ws-send-queue", toml::Value::Integer(4)),
        ("api.ws-slow-timeout", toml::Value::String("200ms".into())),
        ("api.ws-heartbeat", toml::Value::String("60s".into())),
    ])
    .await;
    // Subscribes, then never reads again: its updates pile up.
    let mut silent = connect(&h, SHOP_READ).await;
    subscribe(&mut silent, "s", &[]).await;
    let now = now_millis();
    let closed = eventually("the silent client is closed", || async {
        // Thousands of windows changing every round make each update large.
        for chunk in 0..4 {
            let events: Vec<Value> = (0..1000)
                .map(|i| {
                    view(
                        &format!("a{i}"),
                        "u",
                        &format!("/page/{chunk}/{i}"),
                        now,
                        "1",
                    )
                })
                .collect();
            h.send_ok(SHOP_WRITE, events).await;
        }
        let text = h.metrics().await;
        let closed = text
            .lines()
            .find(|line| line.starts_with("sluice_ws_closed_total{") && line.contains("too_slow"));
        match closed {
            Some(line) => Ok(line.to_owned()),
            None => Err(text
                .lines()
                .filter(|l| l.starts_with("sluice_ws"))
                .collect::<Vec<_>>()
                .join("\n")),
        }
    })
    .await;
    assert!(closed.ends_with(" 1"), "{closed}");
    drop(silent);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_answer_no_pings_are_closed() {
    let h = Harness::start(&[("api.ws-heartbeat", toml::Value::String("1s".into()))]).await;
    let mut silent = connect(&h, SHOP_READ).await;
    subscribe(&mut silent, "s", &[]).await;
    let closed = eventually("the silent client is closed", || async {
        let text = h.metrics().await;
        text.lines()
            .find(|line| line.starts_with("sluice_ws_closed_total{") && line.contains("no_pong"))
            .map(str::to_owned)
            .ok_or_else(|| "no close yet".to_owned())
    })
    .await;
    assert!(closed.ends_with(" 1"), "{closed}");
    // The close frame says why (when it gets through: reading makes the client answer the
    // old pings, which may hit the closed socket first).
    loop {
        match silent.next().await {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 4000);
                assert!(frame.reason.contains("ping"), "{}", frame.reason);
                break;
            }
            None | Some(Ok(Message::Close(None))) | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
    h.stop().await;
}
