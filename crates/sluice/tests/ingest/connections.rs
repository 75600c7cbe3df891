//! Slow and idle clients against the real binary at a small `server.max-connections`: clients
//! that never finish a request head are closed by `server.header-read-timeout`, idle keep-alive
//! connections are reclaimed for new clients, and connections busy with a request or upgraded
//! to a WebSocket are left alone. Progress is read from `/metrics` on a listener of its own
//! (the main one is full); every wait polls, with generous bounds.

use super::support::{Server, http_get, http_request};
use futures::{SinkExt, StreamExt};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const WRITE: &str = "wk_connections_0123456789";
const READ: &str = "rk_connections_0123456789";

/// A server with `[server]` settings `server` and `/metrics` on a listener of its own.
fn start(server: &str) -> (Server, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\n{server}\n\n[telemetry]\nmetrics-listen = \"127.0.0.1:0\"\nmetrics-auth = \"none\"\n\n\
             [[tenants]]\nname = \"shop\"\nwrite-keys = [\"{WRITE}\"]\nread-keys = [\"{READ}\"]\n"
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let server = Server::start_in(&dir.path().join("data"), &["--config", &config]);
    let metrics = server
        .startup_output()
        .lines()
        .find_map(|line| {
            line.strip_prefix("metrics on http://")?
                .strip_suffix("/metrics")
        })
        .expect("the metrics address")
        .parse()
        .unwrap();
    (server, metrics, dir)
}

/// The value of the metric line that starts with `series` (name and labels), if there is one.
fn metric(metrics: SocketAddr, series: &str) -> Option<f64> {
    let (status, text) = http_get(metrics, "/metrics");
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Polls `check` until it returns `Some`; fails after 60 s saying `what`.
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn open_connections(metrics: SocketAddr) -> f64 {
    metric(metrics, r#"sluice_http_connections{listener="main"}"#).unwrap_or(0.0)
}

fn closed(metrics: SocketAddr, reason: &str) -> f64 {
    metric(
        metrics,
        &format!(r#"sluice_http_connections_closed_total{{listener="main",reason="{reason}"}}"#),
    )
    .unwrap_or(0.0)
}

/// Whether the server has closed `stream` (reads end or fail at once, or within 30 s).
fn is_closed_by_server(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => !matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

/// Sends one keep-alive GET on `stream` and reads its whole answer; returns the status.
fn keep_alive_get(stream: &mut TcpStream, path: &str) -> u16 {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: sluice\r\n\r\n").as_bytes())
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "the answer ended early");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .expect("a Content-Length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn clients_that_never_finish_a_request_head_are_closed_and_new_clients_get_in() {
    let (server, metrics, _dir) =
        start("max-connections = 20\nheader-read-timeout = \"1s\"\nkeep-alive-timeout = \"5m\"");
    // Every slot: half send part of a head and then nothing, half keep dribbling header bytes.
    let mut silent = Vec::new();
    let mut dribbling = Vec::new();
    for n in 0..20 {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .write_all(b"POST /v1/batch HTTP/1.1\r\nHost: sluice\r\n")
            .unwrap();
        if n % 2 == 0 {
            silent.push(stream);
        } else {
            dribbling.push(stream);
        }
    }
    eventually("20 open connections", || {
        (open_connections(metrics) == 20.0).then_some(())
    });
    let dribbler = std::thread::spawn(move || {
        // One header byte per connection every 100 ms, until the server has closed them all.
        let mut open = dribbling;
        while !open.is_empty() {
            open.retain_mut(|stream| stream.write_all(b"X").is_ok());
            std::thread::sleep(Duration::from_millis(100));
        }
    });

    // A new client is served: the slow ones are closed within the header-read timeout.
    let (status, body) = http_get(server.addr, "/healthz");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    for stream in &mut silent {
        assert!(is_closed_by_server(stream), "a silent client is still open");
    }
    dribbler.join().unwrap();
    assert!(closed(metrics, "header_timeout") >= 20.0);
    assert_eq!(closed(metrics, "reclaimed"), 0.0);
    assert_eq!(server.signal("TERM").status.code(), Some(0));
}

#[test]
fn idle_keep_alive_connections_are_reclaimed_oldest_first_for_new_clients() {
    let (server, metrics, _dir) =
        start("max-connections = 20\nheader-read-timeout = \"10s\"\nkeep-alive-timeout = \"5m\"");
    // Every slot: one request each, then idle (far from the keep-alive timeout).
    let mut idle: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = TcpStream::connect(server.addr).unwrap();
            assert_eq!(keep_alive_get(&mut stream, "/healthz"), 200);
            stream
        })
        .collect();
    assert_eq!(open_connections(metrics), 20.0);

    // A new client is served at once: the connection idle the longest makes room.
    let (status, _) = http_get(server.addr, "/readyz");
    assert_eq!(status, 200);
    assert!(
        is_closed_by_server(&mut idle[0]),
        "the oldest idle one is closed"
    );
    assert_eq!(closed(metrics, "reclaimed"), 1.0);
    // The others still work.
    for stream in &mut idle[1..] {
        assert_eq!(keep_alive_get(stream, "/healthz"), 200);
    }
    assert_eq!(closed(metrics, "keep_alive_timeout"), 0.0);
    assert_eq!(server.signal("TERM").status.code(), Some(0));
}

#[test]
fn keep_alive_connections_idle_too_long_are_closed() {
    let (server, metrics, _dir) = start(
        "max-connections = 20\nheader-read-timeout = \"10s\"\nkeep-alive-timeout = \"500ms\"",
    );
    let mut stream = TcpStream::connect(server.addr).unwrap();
    assert_eq!(keep_alive_get(&mut stream, "/healthz"), 200);
    assert!(is_closed_by_server(&mut stream));
    assert_eq!(closed(metrics, "keep_alive_timeout"), 1.0);
    assert_eq!(closed(metrics, "header_timeout"), 0.0);
    assert_eq!(server.signal("TERM").status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_and_upgraded_connections_are_never_reclaimed() {
    let (server, metrics, _dir) =
        start("max-connections = 3\nheader-read-timeout = \"10s\"\nkeep-alive-timeout = \"5m\"");
    let addr = server.addr;
    let Clients {
        mut socket,
        mut busy,
        rest,
        mut idle,
    } = busy_idle_and_upgraded(addr).await;
    assert_eq!(open_connections(metrics), 3.0);

    // A new client: only the idle connection may make room for it.
    let (status, _) =
        tokio::task::spawn_blocking(move || http_request(addr, "GET", "/healthz", &[], b""))
            .await
            .unwrap();
    assert_eq!(status, 200);
    assert!(is_closed_by_server(&mut idle));
    assert_eq!(closed(metrics, "reclaimed"), 1.0);

    // The request in the middle of its body completes, and the WebSocket still answers.
    busy.write_all(rest).unwrap();
    let mut answer = String::new();
    busy.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buffer = [0u8; 4096];
    while !answer.contains("\"accepted\"") {
        let read = busy.read(&mut buffer).unwrap();
        assert!(read > 0, "the busy connection was closed: {answer}");
        answer.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    socket
        .send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    let pong = loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("an answer within 30 s")
            .expect("the WebSocket is open")
            .unwrap();
        if let Message::Text(text) = message {
            break text.to_string();
        }
    };
    assert!(pong.contains("pong"), "{pong}");
    assert_eq!(closed(metrics, "reclaimed"), 1.0);
    drop(socket);
    assert_eq!(server.signal("TERM").status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_finish_closes_websockets_with_1001_and_exits_0() {
    let (server, metrics, _dir) =
        start("max-connections = 20\nheader-read-timeout = \"10s\"\nkeep-alive-timeout = \"5m\"");
    let addr = server.addr;
    let Clients {
        mut socket,
        mut busy,
        rest,
        mut idle,
    } = busy_idle_and_upgraded(addr).await;
    eventually("3 open connections", || {
        (open_connections(metrics) == 3.0).then_some(())
    });

    server.send_signal("TERM");
    // The WebSocket is told the server is going away: shutdown has begun.
    let code = loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("a close within 30 s")
            .expect("a close frame before the end")
            .unwrap();
        if let Message::Close(frame) = message {
            break frame.map(|frame| u16::from(frame.code));
        }
    };
    assert_eq!(code, Some(1001));
    assert!(
        is_closed_by_server(&mut idle),
        "idle connections close at once"
    );
    // The request in flight still gets its answer.
    busy.write_all(rest).unwrap();
    busy.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answer = String::new();
    busy.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"accepted\":1"), "{answer}");
    let output = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A WebSocket, a request whose body is half sent, and an idle keep-alive connection.
struct Clients {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    busy: TcpStream,
    /// What `busy` has not sent of its body yet.
    rest: &'static [u8],
    idle: TcpStream,
}

/// Opens [`Clients`] against `addr`.
async fn busy_idle_and_upgraded(addr: SocketAddr) -> Clients {
    let mut request = format!("ws://{addr}/v1/live")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {READ}").parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let body: &'static [u8] = br#"{"batch":[{"type":"track","userId":"u1","event":"Signed Up"}]}"#;
    let (half, rest) = body.split_at(body.len() / 2);
    let mut busy = TcpStream::connect(addr).unwrap();
    let auth = sluice::client::basic_auth(WRITE);
    busy.write_all(
        format!(
            "POST /v1/batch HTTP/1.1\r\nHost: sluice\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    busy.write_all(half).unwrap();
    let mut idle = TcpStream::connect(addr).unwrap();
    assert_eq!(keep_alive_get(&mut idle, "/healthz"), 200);
    Clients {
        socket,
        busy,
        rest,
        idle,
    }
}
