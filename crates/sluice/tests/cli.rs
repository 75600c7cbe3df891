//! Black-box tests of the `sluice` binary: real processes, real sockets, real signals.

mod support;

use std::process::Command;
use support::{Server, http_get};

#[test]
fn serve_answers_health_readiness_and_metrics_then_exits_0_on_ctrl_c() {
    let server = Server::start(&[]);
    let (status, body) = http_get(server.addr, "/healthz");
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"status":"ok"}"#);
    let (status, body) = http_get(server.addr, "/readyz");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ready"}"#));
    let (status, _) = http_get(server.addr, "/no-such-route");
    assert_eq!(status, 404);

    let (status, metrics) = http_get(server.addr, "/metrics");
    assert_eq!(status, 200);
    for expected in [
        r#"sluice_http_requests_total{method="GET",route="/healthz",status="200"} 1"#,
        r#"sluice_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"# TYPE sluice_http_request_duration_seconds histogram"#,
        r#"sluice_http_request_duration_seconds_count{method="GET",route="/readyz"} 1"#,
        r#"sluice_build_info{version=""#,
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in:\n{metrics}"
        );
    }

    let output = server.interrupt();
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("shutting down"), "{stderr}");
}

#[test]
fn sigterm_also_shuts_down_cleanly() {
    let server = Server::start(&[]);
    assert_eq!(http_get(server.addr, "/healthz").0, 200);
    let output = server.signal("TERM");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn first_start_creates_and_prints_the_default_tenant_and_keeps_its_keys() {
    let data = tempfile::tempdir().unwrap();
    let first = Server::start_in(data.path(), &[]);
    let stdout = first.interrupt_stdout();
    assert!(stdout.contains("created tenant \"default\""), "{stdout}");
    let key = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("write key: "))
        .unwrap()
        .to_owned();
    let second = Server::start_in(data.path(), &[]);
    let stdout = second.interrupt_stdout();
    assert!(stdout.contains("using tenant \"default\""), "{stdout}");
    assert!(
        stdout.contains(&key),
        "the same key after a restart:\n{stdout}"
    );
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused_with_exit_2() {
    let data = tempfile::tempdir().unwrap();
    let _first = Server::start_in(data.path(), &[]);
    let output = Command::new(support::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is in use by another sluice process"),
        "{stderr}"
    );
}

#[test]
fn check_config_reports_every_mistake_with_its_path_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        r#"
[server]
lissten = "0.0.0.0:8080"

[limits]
max-event-bytes = "lots"

[telemetry]
log-format = "xml"
"#,
    )
    .unwrap();
    let output = Command::new(support::BIN)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("3 problems in the configuration"),
        "{stderr}"
    );
    assert!(
        stderr.contains("server.lissten: unknown key; the keys in [server] are:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("limits.max-event-bytes: \"lots\" is not a size"),
        "{stderr}"
    );
    assert!(
        stderr.contains("telemetry.log-format: unknown variant `xml`, expected `pretty` or `json`"),
        "{stderr}"
    );
}

#[test]
fn check_config_accepts_the_example_and_env_overrides_are_checked_too() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/sluice.example.toml"
    );
    let output = Command::new(support::BIN)
        .args(["check-config", example])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains(": OK (listen 0.0.0.0:8080"));

    let output = Command::new(support::BIN)
        .args(["check-config", example])
        .env("SLUICE__SERVER__MAX_CONNECTIONS", "plenty")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("SLUICE__SERVER__MAX_CONNECTIONS: expected an integer"),
        "{stderr}"
    );
}

#[test]
fn user_errors_exit_2_with_what_to_fix() {
    let output = Command::new(support::BIN)
        .args(["check-config", "/no/such/file.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("cannot read config file /no/such/file.toml")
    );

    let output = Command::new(support::BIN)
        .args(["serve", "--listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("server.listen: \"not-an-address\" is not an ADDRESS:PORT"),
        "{stderr}"
    );

    let output = Command::new(support::BIN)
        .arg("no-such-command")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));

    let output = Command::new(support::BIN).arg("version").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("sluice {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn oversize_request_bodies_get_413_naming_the_setting() {
    let server = Server::start(&[]);
    // The server answers from Content-Length alone, before the body is sent.
    let (status, text) = support::http_declared_only(server.addr, "/healthz", 2 * 1024 * 1024);
    assert_eq!(status, 413);
    assert!(text.contains("server.max-request-bytes"), "{text}");
}
