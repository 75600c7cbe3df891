//! Running the real `sluice` binary in tests.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// A `sluice serve` child process on a free port and its own data dir.
pub struct Server {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    child: Option<Child>,
    stdout_head: String,
    /// Reads stderr while the server runs; its log once it exits.
    log: Option<std::thread::JoinHandle<Vec<u8>>>,
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts a server on a fresh temporary data dir.
    pub fn start(extra: &[&str]) -> Server {
        let temp = tempfile::tempdir().unwrap();
        let mut server = Server::start_in(temp.path(), extra);
        server._temp = Some(temp);
        server
    }

    /// Starts a server on `data_dir`; returns once it prints its address.
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_on(data_dir, "127.0.0.1:0", extra)
    }

    /// Starts a server on `data_dir` listening on `listen`. Without metrics in its config, it
    /// defines none (`default-metrics = false`): tests see only their own.
    pub fn start_on(data_dir: &Path, listen: &str, extra: &[&str]) -> Server {
        Server::spawn(data_dir, listen, extra, false, &[])
    }

    /// [`Server::start_on`] with `env` added to the server's environment.
    pub fn start_with_env(
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Server {
        Server::spawn(data_dir, listen, extra, false, env)
    }

    /// Starts a server on `data_dir` that defines the default metrics when its config lists
    /// none, as `sluice serve` does.
    pub fn start_with_default_metrics(data_dir: &Path, extra: &[&str]) -> Server {
        Server::spawn(data_dir, "127.0.0.1:0", extra, true, &[])
    }

    fn spawn(
        data_dir: &Path,
        listen: &str,
        extra: &[&str],
        default_metrics: bool,
        env: &[(String, String)],
    ) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("SLUICE__DEFAULT_METRICS", default_metrics.to_string())
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sluice");
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut head = String::new();
        let addr = loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                let mut stderr = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr)
                    .unwrap();
                panic!("sluice exited before listening:\n{head}\n{stderr}");
            }
            head.push_str(&line);
            if let Some(addr) = line.trim().strip_prefix("sluice listening on http://") {
                break addr.parse().unwrap();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = reader.read_to_string(&mut rest);
            let _ = tx.send(rest);
        });
        std::mem::forget(rx);
        // And stderr (its log), kept for `wait`: a full pipe would block every thread that
        // logs, so a chatty server (a client library repeating that its brokers are down)
        // would hang on its own log.
        let log = drain(Box::new(child.stderr.take().unwrap()));
        Server {
            addr,
            data_dir: data_dir.to_owned(),
            child: Some(child),
            stdout_head: head,
            log: Some(log),
            _temp: None,
        }
    }

    /// The stdout lines printed before the server started listening.
    pub fn startup_output(&self) -> &str {
        &self.stdout_head
    }

    /// Sends a signal (`INT`, `TERM`, `KILL`) and waits for the process to exit.
    pub fn signal(self, signal: &str) -> Output {
        self.send_signal(signal);
        self.wait()
    }

    /// Sends a signal (`INT`, `TERM`, `KILL`) without waiting.
    pub fn send_signal(&self, signal: &str) {
        let child = self.child.as_ref().unwrap();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (at most 30 s) for the process to exit; its stdout after the start-up lines is
    /// not kept, its stderr is.
    pub fn wait(mut self) -> Output {
        let mut child = self.child.take().unwrap();
        let Some(status) = exit_within(&mut child, Duration::from_secs(30)) else {
            panic!(
                "sluice did not exit in 30 s; its log:\n{}",
                String::from_utf8_lossy(&self.take_log())
            );
        };
        Output {
            status,
            stdout: Vec::new(),
            stderr: self.take_log(),
        }
    }

    /// Everything the (exited) server wrote to stderr.
    fn take_log(&mut self) -> Vec<u8> {
        self.log
            .take()
            .map(|log| log.join().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Ctrl-C.
    pub fn interrupt(self) -> Output {
        self.signal("INT")
    }

    /// Ctrl-C, and the process must exit 0; returns its stderr (its log).
    #[allow(dead_code)]
    pub fn stop_cleanly(self) -> String {
        let output = self.interrupt();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        stderr
    }

    /// Ctrl-C, returning what was printed on stdout before listening.
    pub fn interrupt_stdout(self) -> String {
        let head = self.stdout_head.clone();
        let output = self.interrupt();
        assert_eq!(output.status.code(), Some(0));
        head
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A plain HTTP/1.1 GET; returns status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, &[], b"")
}

/// A plain HTTP/1.1 request with `Connection: close`; returns status and body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

/// Sends only the head of a POST that declares `declared` body bytes, and reads the answer.
pub fn http_declared_only(addr: SocketAddr, path: &str, declared: usize) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head =
        format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {declared}\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `metric` (or every metric) has committed everything in the log, is running and
/// is not replaying, asking the admin API with `admin` (`Bearer …`); returns its last status
/// (or the whole list).
pub fn settled(addr: SocketAddr, admin: &str, metric: Option<&str>) -> serde_json::Value {
    let path = metric.map_or_else(
        || "/v1/admin/metrics".to_owned(),
        |name| format!("/v1/admin/metrics/{name}"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (status, body) = http_request(addr, "GET", &path, &[("authorization", admin)], b"");
        assert_eq!(status, 200, "{body}");
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        let metrics = match &value["metrics"] {
            serde_json::Value::Array(list) => list.clone(),
            _ => vec![value.clone()],
        };
        if metrics
            .iter()
            .all(|m| m["lag"] == 0 && m["state"] == "running" && m["replay"].is_null())
        {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics did not settle: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Like [`settled`], once every metric's partitions end past `events` records in all: all of
/// that many acknowledged events are in the offsets the status compares with. (A broker may
/// report a partition's end a moment after it acknowledged the records before it.) Metrics
/// reading a derived stream compare with its committed records, not the events: they count
/// once the stream, which reads the events, has settled.
pub fn settled_past(addr: SocketAddr, admin: &str, events: u64) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let value = settled(addr, admin, None);
        let ends = value["metrics"].as_array().is_some_and(|metrics| {
            metrics
                .iter()
                .filter(|metric| metric["source"] == "events")
                .all(|metric| {
                    let partitions = metric["partitions"]
                        .as_array()
                        .map_or(&[][..], Vec::as_slice);
                    let total: u64 = partitions
                        .iter()
                        .filter_map(|p| p["end_offset"].as_u64())
                        .sum();
                    total >= events
                })
        });
        if ends {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the log's ends never reached {events} events: {value}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a command that is expected to exit on its own (a start that must fail, a tool) and
/// returns its output; a process still running after `within` is killed and the test fails,
/// instead of hanging the suite.
pub fn output_within(command: &mut Command, within: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let Some(status) = exit_within(&mut child, within) else {
        let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
        panic!("{command:?} was still running after {within:?}; it should have exited: {stderr}");
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Reads `pipe` to its end on a thread of its own (a child never blocks on a full pipe); the
/// bytes when joined.
fn drain(mut pipe: Box<dyn Read + Send>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// The child's exit status once it exits within `within`; else it is killed and `None`.
fn exit_within(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What `tests/compat/duckdb_archive.py` prints about the archive at `root` (a directory, or
/// `s3://bucket/prefix` reached with `env`), given `args`.
pub fn duckdb_archive(root: &std::ffi::OsStr, args: &[&str], env: &[(String, String)]) -> Vec<u8> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/compat/duckdb_archive.py"
    );
    let output = std::process::Command::new(python())
        .arg(script)
        .arg(root)
        .args(args)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "DuckDB could not read the archive (scripts/test.sh installs duckdb into the test virtualenv, or set SLUICE_TEST_PYTHON to a python that has it):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// How many rows DuckDB counts in the archive directory `root` (none before its first file).
pub fn duckdb_count(root: &std::path::Path) -> usize {
    if !root.join("events").exists() {
        return 0;
    }
    String::from_utf8_lossy(&duckdb_archive(root.as_os_str(), &["count"], &[]))
        .trim()
        .parse()
        .unwrap()
}

/// `SLUICE_TEST_PYTHON`, else the virtualenv `scripts/test.sh` creates, else `python3`.
pub fn python() -> String {
    if let Ok(python) = std::env::var("SLUICE_TEST_PYTHON") {
        return python;
    }
    let venv = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/test-python/bin/python"
    );
    if std::path::Path::new(venv).exists() {
        venv.to_owned()
    } else {
        "python3".to_owned()
    }
}

/// A path from the environment `scripts/test.sh` exports (else where it installs it), which
/// must exist: the test fails, never skips, without it.
pub fn required(variable: &str, default: Option<&str>) -> std::path::PathBuf {
    let path = std::env::var(variable)
        .ok()
        .or_else(|| default.map(str::to_owned))
        .unwrap_or_else(|| {
            panic!("{variable} is not set: run scripts/test.sh, which installs what the browser test needs and exports it")
        });
    let path = std::path::PathBuf::from(path);
    assert!(
        path.exists(),
        "{variable} names {} which does not exist: run scripts/test.sh (it installs Chromium, node and the pinned npm packages)",
        path.display()
    );
    path
}

/// What the browser tests run: Debian's Chromium, node, and the pinned npm packages
/// (`scripts/test.sh` installs them and exports their paths).
pub fn browser() -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    (
        required("SLUICE_TEST_CHROMIUM", Some("/usr/bin/chromium")),
        required("SLUICE_TEST_NODE", Some("/usr/bin/node")),
        required(
            "SLUICE_TEST_BROWSER_MODULES",
            Some(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../target/test-browser/node_modules"
            )),
        ),
    )
}

/// `node SCRIPT ARGS…` in the browser tests' environment ([`browser`]), its standard streams
/// piped: a browser driver the test converses with, killed when dropped.
pub fn browser_driver(script: &str, args: &[&str]) -> tokio::process::Command {
    let (chromium, node, modules) = browser();
    let mut command = tokio::process::Command::new(node);
    command
        .arg(script)
        .args(args)
        .env("SLUICE_TEST_CHROMIUM", chromium)
        .env("SLUICE_TEST_BROWSER_MODULES", modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}
