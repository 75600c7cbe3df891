//! Dependencies that are away: a broker or database unreachable at start is a clear exit 2
//! within 10 s; PostgreSQL cut off mid-load (through a proxy the test controls, so the shared
//! server stays up for the other tests) pauses processing, final-window queries answer 503, and
//! when it is back the node catches up by itself with exact results.

use super::crash::{ADMIN_KEY, Load, READ_KEY, assert_exact_after, config_text};
use super::support::{BIN, Server, free_port, http_request, output_within, settled};
use sluice::client::Target;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A TCP proxy to a server that can be cut (every connection dropped, new ones closed at
/// once) and healed.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    links: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(to: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let links = Arc::new(std::sync::Mutex::new(Vec::new()));
        let accepting = tokio::spawn({
            let (up, links) = (Arc::clone(&up), Arc::clone(&links));
            async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees its connection closed
                    }
                    let to = to.clone();
                    let link = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(&to).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    links.lock().unwrap().push(link.abort_handle());
                }
            }
        });
        Proxy {
            addr,
            up,
            links,
            accepting,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn heal(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accepting.abort();
    }
}

/// `url` (`postgres://user:password@host:port/db?…`) with `host:port` replaced by `addr`.
fn through(url: &str, addr: SocketAddr) -> (String, String) {
    let at = url.find('@').expect("a PostgreSQL URL with user@host") + 1;
    let end = at
        + url[at..]
            .find('/')
            .expect("a PostgreSQL URL with a database");
    let server = url[at..end].to_owned();
    (format!("{}{addr}{}", &url[..at], &url[end..]), server)
}

/// A start against dependencies that do not answer ends with exit 2 within 10 s, naming the
/// address to check (and never the database password).
#[test]
fn unreachable_brokers_or_database_at_start_exit_2_within_10_s() {
    let closed = free_port();
    let cases = [
        (
            format!("[log]\nurl = \"kafka://127.0.0.1:{closed}\"\n"),
            format!("127.0.0.1:{closed}"),
        ),
        (
            format!(
                "[store]\nurl = \"postgres://sluice:hunter2secret@127.0.0.1:{closed}/sluice\"\n"
            ),
            format!("127.0.0.1:{closed}"),
        ),
    ];
    for (config, named) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, &config).unwrap();
        let started = Instant::now();
        let output = output_within(
            Command::new(BIN).args([
                "serve",
                "--config",
                &path.display().to_string(),
                "--data-dir",
                &dir.path().join("data").display().to_string(),
                "--listen",
                &format!("127.0.0.1:{}", free_port()),
            ]),
            Duration::from_secs(30),
        );
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{config}: {stderr}");
        assert!(
            took < Duration::from_secs(10),
            "{config}: exited after {took:?}"
        );
        assert!(stderr.contains(&named), "{config}: names {named}: {stderr}");
        assert!(!stderr.contains("hunter2secret"), "{config}: {stderr}");
        eprintln!("{}: exit 2 after {took:?}", config.trim());
    }
}

/// PostgreSQL cut off while events arrive: the collector (file log) keeps accepting, queries of
/// final windows answer 503 with the reason, the pipelines retry; once the database is back the
/// node catches up by itself and the results equal the oracle's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_outage_pauses_processing_and_heals_by_itself() {
    let url = sluice_store::testing::postgres_url("outage").await;
    let (_, server) = through(&url, "127.0.0.1:1".parse().unwrap());
    let proxy = Proxy::start(server).await;
    let (store_url, _) = through(&url, proxy.addr);
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("sluice.toml");
    std::fs::write(&config_path, config_text(&store_url, "")).unwrap();
    let data = dir.path().join("data");
    let node = Server::start_on(
        &data,
        &format!("127.0.0.1:{}", free_port()),
        &["--config", &config_path.display().to_string()],
    );
    let target = Target::parse(&format!("http://{}", node.addr)).unwrap();
    let load = Load::start(2, std::slice::from_ref(&target));
    tokio::time::sleep(Duration::from_secs(2)).await;

    proxy.cut();
    let cut_at = load.accepted();
    let read = format!("Bearer {READ_KEY}");
    let query = format!(
        "/v1/metrics/revenue?from={}",
        sluice_core::time::now_millis() - 3_600_000
    );
    let addr = node.addr;
    let answer = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) =
                http_request(addr, "GET", &query, &[("authorization", &read)], b"");
            if status != 200 || Instant::now() > deadline {
                return (status, body);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    assert_eq!(answer.0, 503, "final windows cannot be read: {}", answer.1);
    let reason: serde_json::Value = serde_json::from_str(&answer.1).unwrap();
    assert!(
        reason["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "a 503 says why: {}",
        answer.1
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = load.accepted();
    assert!(
        during > cut_at,
        "the collector keeps accepting on its own log ({cut_at} → {during})"
    );

    proxy.heal();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let accepted = load.stop().await;
    let admin = format!("Bearer {ADMIN_KEY}");
    let healed = Instant::now();
    settled(node.addr, &admin, None);
    eprintln!(
        "caught up {:?} after the database came back",
        healed.elapsed()
    );
    node.stop_cleanly();
    drop(proxy);
    // Read back through the real server (the proxy is gone).
    let direct = dir.path().join("direct.toml");
    std::fs::write(&direct, config_text(&url, "")).unwrap();
    assert_exact_after(Path::new(&direct), &data, accepted, 1).await;
}
