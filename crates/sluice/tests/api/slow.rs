//! Clients that stop reading, against the real `sluice serve` binary: a raw TCP client with a
//! small receive buffer upgrades, subscribes and never reads again while the metric keeps
//! changing; the server must close it as too slow (4008), for `/v1/live` and GraphQL alike,
//! and release its connection slot.

use crate::harness::{ADMIN, SHOP_READ, SHOP_WRITE, VIEWS, view};
use crate::support::Server;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use sluice::client::{Connection, Target, basic_auth};
use sluice_core::time::now_millis;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn config() -> String {
    format!(
        r#"admin-keys = ["{ADMIN}"]

[[tenants]]
name = "shop"
write-keys = ["{SHOP_WRITE}"]
read-keys = ["{SHOP_READ}"]

[[metrics]]
sql = "{VIEWS}"

[log]
partitions = 2
ack = "write"

[stream]
default-out-of-orderness = "0s"

[store]
checkpoint-interval = "50ms"

[api]
ws-send-queue = 4
ws-slow-timeout = "500ms"
ws-heartbeat = "60s"
ws-max-connections = 1
"#
    )
}

/// Upgrades a raw TCP connection (receive buffer of a few KiB) to a WebSocket on `path`
/// (retrying while the only connection slot is still being released).
async fn raw_upgrade(addr: SocketAddr, path: &str, protocol: Option<&str>) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        let protocol = protocol
            .map(|protocol| format!("Sec-WebSocket-Protocol: {protocol}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{protocol}\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            assert_eq!(
                stream.read(&mut byte).await.unwrap(),
                1,
                "the answer's head"
            );
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        if head.starts_with("HTTP/1.1 101") {
            return stream;
        }
        assert!(
            head.starts_with("HTTP/1.1 503") && Instant::now() < deadline,
            "{head}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A masked client text frame.
fn text_frame(text: &str) -> Vec<u8> {
    let payload = text.as_bytes();
    let mut frame = vec![0x81];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=65535 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    let mask = [0x12, 0x34, 0x56, 0x78];
    frame.extend_from_slice(&mask);
    frame.extend(
        payload
            .iter()
            .enumerate()
            .map(|(index, byte)| byte ^ mask[index % 4]),
    );
    frame
}

/// The WebSocket lines of `/metrics`.
async fn ws_metrics(target: &Target) -> String {
    let mut connection = Connection::open(target).await.unwrap();
    let auth = format!("Bearer {ADMIN}");
    let reply = connection
        .send(
            Method::GET,
            "/metrics",
            &[("authorization", &auth)],
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    String::from_utf8_lossy(&reply.body)
        .lines()
        .filter(|line| line.starts_with("sluice_ws") || line.starts_with("sluice_push"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of a Prometheus line that starts with `prefix`, 0 without one.
async fn metric(target: &Target, prefix: &str) -> f64 {
    ws_metrics(target)
        .await
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Sends rounds of 1,000 page views, one for each of 1,000 URLs (so each update carries 1,000
/// changed windows), until the server has closed `closed + 1` clients as too slow.
async fn until_closed_too_slow(target: &Target, closed: f64, round: &mut usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let auth = basic_auth(SHOP_WRITE);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let mut connection = Connection::open(target).await.unwrap();
    let label = "sluice_ws_closed_total{reason=\"too_slow\"} ";
    while metric(target, label).await < closed + 1.0 {
        assert!(
            Instant::now() < deadline,
            "the client that does not read was not closed as too slow after {round} rounds:\n{}",
            ws_metrics(target).await
        );
        *round += 1;
        let now = now_millis();
        let events: Vec<Value> = (0..1000)
            .map(|i| view(&format!("a{i}"), "u", &format!("/slow/{i}"), now, "1"))
            .collect();
        let reply = connection
            .send(
                Method::POST,
                "/v1/batch",
                &headers,
                Bytes::from(json!({ "batch": events }).to_string()),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::OK);
    }
}

/// With `api.ws-max-connections = 1`, a new connection is accepted once the closed one has
/// released its slot; then that one is gone too.
async fn slot_is_released(addr: SocketAddr, target: &Target) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("ws://{addr}/v1/live?key={SHOP_READ}");
    loop {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((socket, _)) => {
                drop(socket);
                break;
            }
            Err(error) => assert!(
                Instant::now() < deadline,
                "the slow client's connection slot was not released: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while metric(target, "sluice_ws_connections ").await > 0.0 {
        assert!(Instant::now() < deadline, "a dropped connection stays open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_are_closed_as_too_slow_on_both_surfaces() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("sluice.toml");
    std::fs::write(&config_path, config()).unwrap();
    let server = Server::start(&["--config", config_path.to_str().unwrap()]);
    let target = Target::parse(&format!("http://{}", server.addr)).unwrap();
    let mut round = 0;

    // Live push.
    let mut live = raw_upgrade(server.addr, &format!("/v1/live?key={SHOP_READ}"), None).await;
    let subscribe = json!({"type": "subscribe", "id": "s", "metric": "views"});
    live.write_all(&text_frame(&subscribe.to_string()))
        .await
        .unwrap();
    until_closed_too_slow(&target, 0.0, &mut round).await;
    slot_is_released(server.addr, &target).await;

    // GraphQL.
    let mut graphql = raw_upgrade(
        server.addr,
        &format!("/v1/graphql?key={SHOP_READ}"),
        Some("graphql-transport-ws"),
    )
    .await;
    let subscribe = json!({"id": "1", "type": "subscribe", "payload": {
        "query": r#"subscription { windowUpdates(metric: "views") { windows { key start end final values } } }"#
    }});
    for message in [json!({"type": "connection_init"}), subscribe] {
        graphql
            .write_all(&text_frame(&message.to_string()))
            .await
            .unwrap();
    }
    until_closed_too_slow(&target, 1.0, &mut round).await;
    slot_is_released(server.addr, &target).await;
    drop((live, graphql));
    let output = server.interrupt();
    assert_eq!(output.status.code(), Some(0));
}
