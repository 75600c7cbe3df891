//! Black-box tests of the `sluice` binary: real processes, real sockets, real signals.

mod support;

use std::process::Command;
use support::{Server, http_get};

#[test]
fn serve_answers_health_readiness_and_metrics_then_exits_0_on_ctrl_c() {
    const ADMIN: &str = "ak_metrics_cli_0123456789";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, format!("admin-keys = [\"{ADMIN}\"]\n")).unwrap();
    let config = config.display().to_string();
    let server = Server::start_in(&dir.path().join("data"), &["--config", &config]);
    let (status, body) = http_get(server.addr, "/healthz");
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"status":"ok"}"#);
    let (status, body) = http_get(server.addr, "/readyz");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ready"}"#));
    let (status, _) = http_get(server.addr, "/no-such-route");
    assert_eq!(status, 404);

    // A scrape names tenants and keys: by default it needs an admin key.
    let (status, body) = http_get(server.addr, "/metrics");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("telemetry.metrics-listen"), "{body}");
    let bearer = format!("Bearer {ADMIN}");
    let (status, metrics) = support::http_request(
        server.addr,
        "GET",
        "/metrics",
        &[("authorization", &bearer)],
        b"",
    );
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

/// `telemetry.metrics-listen` moves `/metrics` to a listener of its own (here without a key)
/// and off the main one; `tenant-labels = false` keeps tenant names and key ids out of it.
#[test]
fn metrics_can_move_to_their_own_listener_without_tenant_labels() {
    const WRITE: &str = "wk_metrics_listen_0123456789";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[telemetry]\nmetrics-listen = \"127.0.0.1:0\"\nmetrics-auth = \"none\"\ntenant-labels = false\n\n\
             [[tenants]]\nname = \"secret-shop\"\nwrite-keys = [\"{WRITE}\"]\n"
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let server = Server::start_in(&dir.path().join("data"), &["--config", &config]);
    let metrics_addr: std::net::SocketAddr = server
        .startup_output()
        .lines()
        .find_map(|line| {
            line.strip_prefix("metrics on http://")?
                .strip_suffix("/metrics")
        })
        .unwrap_or_else(|| panic!("no metrics address in:\n{}", server.startup_output()))
        .parse()
        .unwrap();
    assert_ne!(metrics_addr, server.addr);
    let auth = sluice::client::basic_auth(WRITE);
    let (status, body) = support::http_request(
        server.addr,
        "POST",
        "/v1/track",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        br#"{"userId":"u1","event":"Signed Up"}"#,
    );
    assert_eq!(status, 200, "{body}");

    assert_eq!(
        http_get(server.addr, "/metrics").0,
        404,
        "not on the main listener"
    );
    let (status, metrics) = http_get(metrics_addr, "/metrics");
    assert_eq!(status, 200, "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("sluice_ingest_events_accepted_total ")),
        "{metrics}"
    );
    assert!(!metrics.contains("secret-shop"), "{metrics}");
    assert!(!metrics.contains("tenant="), "{metrics}");
    let (status, _) = http_get(metrics_addr, "/healthz");
    assert_eq!(status, 404, "the metrics listener serves /metrics alone");
    assert_eq!(server.signal("TERM").status.code(), Some(0));
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

/// `sluice query` against a running server: tables, JSON, filters, top-N, roll-ups, the read
/// key from the environment, and errors with their exit codes.
#[test]
fn query_reads_a_metric_as_a_table_or_json_and_refusals_exit_2() {
    const WRITE: &str = "wk_query_cli_0123456789";
    const READ: &str = "rk_query_cli_0123456789";
    const ADMIN: &str = "ak_query_cli_0123456789";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"admin-keys = ["{ADMIN}"]
[[tenants]]
name = "shop"
write-keys = ["{WRITE}"]
read-keys = ["{READ}"]
[[metrics]]
sql = "CREATE METRIC spend AS SELECT properties.plan AS plan, COUNT(*) AS n, SUM(properties.amount) AS total FROM events WHERE event = 'Paid' GROUP BY plan, TUMBLE(timestamp, INTERVAL '1' MINUTE)"
"#
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let server = Server::start_in(&dir.path().join("data"), &["--config", &config]);
    let url = format!("http://{}", server.addr);

    // Two minutes: in each, 20 "pro" and 40 "free" payments.
    let lines: Vec<String> = (0..120)
        .map(|i| {
            format!(
                r#"{{"type":"track","anonymousId":"a{i}","event":"Paid","properties":{{"plan":"{}","amount":1}},"timestamp":"2024-05-01T10:0{}:{:02}.000Z"}}"#,
                if i % 3 == 0 { "pro" } else { "free" },
                i / 60,
                i % 60
            )
        })
        .collect();
    let events = dir.path().join("events.ndjson");
    std::fs::write(&events, lines.join("\n")).unwrap();
    let output = Command::new(support::BIN)
        .args(["send", "--quiet", "--url", &url, "--write-key", WRITE])
        .arg(&events)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    support::settled(server.addr, &format!("Bearer {ADMIN}"), Some("spend"));

    let query = |args: &[&str], env_key: Option<&str>| {
        let mut command = Command::new(support::BIN);
        command.arg("query").args(args).args(["--url", &url]);
        command.env_remove("SLUICE_READ_KEY");
        match env_key {
            Some(key) => command.env("SLUICE_READ_KEY", key),
            None => command.args(["--read-key", READ]),
        };
        let output = command.output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let range = [
        "--from",
        "2024-05-01T10:00:00Z",
        "--to",
        "2024-05-01T11:00:00Z",
    ];

    // A table: header, rule, then one row per group key and window.
    let (code, stdout, stderr) = query(&[&["spend"][..], &range].concat(), None);
    assert_eq!(code, Some(0), "{stderr}");
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["plan", "start", "end", "state", "n", "total"]);
    assert!(lines.next().unwrap().starts_with("----"));
    let mut rows: Vec<Vec<String>> = lines
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect();
    rows.sort();
    let row = |plan: &str, minute: u32, n: &str| {
        vec![
            plan.to_owned(),
            format!("2024-05-01T10:0{minute}:00.000Z"),
            format!("2024-05-01T10:0{}:00.000Z", minute + 1),
        ]
        .into_iter()
        .chain([n.to_owned()])
        .collect::<Vec<_>>()
    };
    let without_state: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            assert!(r[3] == "final" || r[3] == "open", "{r:?}");
            vec![r[0].clone(), r[1].clone(), r[2].clone(), r[4].clone()]
        })
        .collect();
    assert_eq!(
        without_state,
        [
            row("free", 0, "40"),
            row("free", 1, "40"),
            row("pro", 0, "20"),
            row("pro", 1, "20")
        ],
        "{stdout}"
    );

    // JSON, rolled up to hours, the key from the environment: one point per plan.
    let (code, stdout, stderr) = query(
        &[
            &["spend"][..],
            &range,
            &["--resolution", "1h", "--format", "json"],
        ]
        .concat(),
        Some(READ),
    );
    assert_eq!(code, Some(0), "{stderr}");
    let answer: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let mut totals: Vec<(String, i64)> = answer["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let points = s["points"].as_array().unwrap();
            assert_eq!(points.len(), 1, "{s}");
            (
                s["key"]["plan"].as_str().unwrap().to_owned(),
                points[0][3].as_i64().unwrap(),
            )
        })
        .collect();
    totals.sort();
    assert_eq!(totals, [("free".to_owned(), 80), ("pro".to_owned(), 40)]);

    // Filters and top-N reach the server.
    let (code, stdout, _) = query(
        &[
            &["spend"][..],
            &range,
            &["--filter", "plan:pro", "--format", "json"],
        ]
        .concat(),
        None,
    );
    assert_eq!(code, Some(0));
    let answer: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(answer["series"].as_array().unwrap().len(), 1);
    assert_eq!(answer["series"][0]["key"]["plan"], "pro");
    let (code, stdout, _) = query(
        &[
            &["spend"][..],
            &range,
            &["--top", "1", "--by", "n", "--format", "json"],
        ]
        .concat(),
        None,
    );
    assert_eq!(code, Some(0));
    let answer: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(answer["series"].as_array().unwrap().len(), 1);
    assert_eq!(answer["series"][0]["key"]["plan"], "free");

    // Without a metric: the list.
    let (code, stdout, _) = query(&[], None);
    assert_eq!(code, Some(0));
    assert!(stdout.lines().any(|l| l.starts_with("spend ")), "{stdout}");

    // Refusals are the user's to fix: exit 2 with the server's reason.
    let (code, _, stderr) = query(&["spend", "--from", "yesterday"], None);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("400") && stderr.contains("from"),
        "{stderr}"
    );
    let (code, _, stderr) = query(&["spend"], Some("rk_not_a_key_of_anyone_000"));
    assert_eq!(code, Some(2));
    assert!(stderr.contains("401"), "{stderr}");
    let (code, _, stderr) = query(&["no_such_metric"], None);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("404"), "{stderr}");
    let (code, _, _) = query(&["spend", "--format", "xml"], None);
    assert_eq!(code, Some(2));
    // No server there: not the user's input at fault, exit 1.
    let output = Command::new(support::BIN)
        .args(["query", "spend", "--read-key", READ, "--url"])
        .arg(format!("http://127.0.0.1:{}", support::free_port()))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is sluice running?"));
}

/// A real server's log damaged on disk: `sluice log verify` names the damage and exits 2,
/// `sluice log repair` keeps every intact batch and says what was lost, then `verify` is clean
/// and `tail` reads every surviving record; `repair` refuses while a server runs.
#[test]
fn log_verify_finds_damage_and_log_repair_salvages_the_rest() {
    const WRITE: &str = "wk_log_repair_0123456789";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[tenants]]
name = "shop"
write-keys = ["{WRITE}"]
[log]
partitions = 1
"#
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let server = Server::start_in(&data, &["--config", &config]);
    let sent = 600;
    let lines: Vec<String> = (0..sent)
        .map(|i| {
            format!(
                r#"{{"type":"track","messageId":"m{i}","anonymousId":"a{i}","event":"Viewed","properties":{{"n":{i}}}}}"#
            )
        })
        .collect();
    let events = dir.path().join("events.ndjson");
    std::fs::write(&events, lines.join("\n")).unwrap();
    let url = format!("http://{}", server.addr);
    let output = Command::new(support::BIN)
        .args(["send", "--quiet", "--batch", "20", "--url", &url])
        .args(["--write-key", WRITE])
        .arg(&events)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(server.interrupt().status.code(), Some(0));

    // 16 bytes flipped inside a batch in the middle of the active segment; its index gone, as
    // after a crash.
    let partition = data.join("log/topics/events/0");
    let segment = partition.join("00000000000000000000.log");
    std::fs::remove_file(partition.join("00000000000000000000.idx")).unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let mut batches = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = sluice_log::file::format::peek_header(&bytes[at..])
            .unwrap()
            .unwrap();
        batches.push((at, header.base_offset, header.next_offset()));
        at += header.frame_len;
    }
    assert!(batches.len() >= 10, "{} batches", batches.len());
    let (damaged_at, lost_from, lost_to) = batches[batches.len() / 2];
    for byte in &mut bytes[damaged_at + 60..damaged_at + 76] {
        *byte ^= 0xa5;
    }
    std::fs::write(&segment, &bytes).unwrap();

    let log = |args: &[&str]| {
        let output = Command::new(support::BIN)
            .arg("log")
            .args(args)
            .args(["--config", &config, "--data-dir"])
            .arg(&data)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let lost = format!(
        "offsets {lost_from}..{lost_to} lost ({} records)",
        lost_to - lost_from
    );
    let (code, stdout, stderr) = log(&["verify"]);
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    for expected in [
        "events/0: DAMAGED",
        "00000000000000000000.log",
        &format!("damaged bytes {damaged_at}.."),
        "fails its checksum",
        &lost,
        &format!("intact batches after it hold offsets {lost_to}..{sent}"),
    ] {
        assert!(stdout.contains(expected), "{expected:?} in {stdout}");
    }
    assert!(stderr.contains("sluice log repair"), "{stderr}");
    let (code, stdout, _) = log(&["verify", "--topic", "events.dlq"]);
    assert_eq!(code, Some(0), "{stdout}");

    let (code, stdout, stderr) = log(&["repair"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    for expected in [
        "events/0: repaired",
        &lost,
        "damaged bytes kept in",
        "repaired 1 of ",
        &format!(" partitions: {} records lost", lost_to - lost_from),
    ] {
        assert!(stdout.contains(expected), "{expected:?} in {stdout}");
    }
    let quarantined = data.join(format!(
        "log/quarantine/events/0/00000000000000000000-{damaged_at}.bin"
    ));
    assert!(quarantined.exists(), "{stdout}");

    let (code, stdout, stderr) = log(&["verify"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "lost earlier (recorded gaps): {lost_from}..{lost_to}"
        )),
        "{stdout}"
    );

    // Every surviving record reads, in order, with its offset.
    let output = Command::new(support::BIN)
        .args(["tail", "events", "--from-beginning", "--no-follow"])
        .args(["--config", &config, "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let offsets: Vec<u64> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            line["offset"].as_u64().unwrap()
        })
        .collect();
    let expected: Vec<u64> = (0..lost_from).chain(lost_to..sent).collect();
    assert_eq!(offsets, expected);

    // The server starts on the rest; repair waits for it to stop.
    let server = Server::start_in(&data, &["--config", &config]);
    assert_eq!(http_get(server.addr, "/readyz").0, 200);
    let (code, _, stderr) = log(&["repair"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("stop it, then run `sluice log repair` again"),
        "{stderr}"
    );
    assert_eq!(server.interrupt().status.code(), Some(0));
}

/// The frames of a segment file: (position, first offset, offset after).
fn segment_batches(path: &std::path::Path) -> Vec<(usize, u64, u64)> {
    let bytes = std::fs::read(path).unwrap();
    let mut batches = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = sluice_log::file::format::peek_header(&bytes[at..])
            .unwrap()
            .unwrap();
        batches.push((at, header.base_offset, header.next_offset()));
        at += header.frame_len;
    }
    batches
}

/// Offsets `sluice tail` prints for one partition of `events`, or its exit code and stderr.
fn tail_offsets(config: &str, data: &std::path::Path, partition: u32) -> Result<Vec<u64>, String> {
    let output = Command::new(support::BIN)
        .args([
            "tail",
            "events",
            "--from-beginning",
            "--no-follow",
            "--partition",
        ])
        .arg(partition.to_string())
        .args(["--config", config, "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    if !output.status.success() {
        return Err(format!(
            "exit {:?}: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            line["offset"].as_u64().unwrap()
        })
        .collect())
}

/// Damage found at start costs only what it destroyed: a damaged sealed segment inside the
/// dedup window no longer stops the server (only reads of it fail, with the remedy), and
/// damage in the middle of an active segment loses only the damaged batch, which goes to the
/// quarantine.
#[test]
fn damage_found_at_start_stops_only_what_reads_it() {
    const WRITE: &str = "wk_log_damage_0123456789";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[tenants]]
name = "shop"
write-keys = ["{WRITE}"]
[telemetry]
metrics-auth = "none"
# The segments below are sized for these events as sent.
[enrichment]
request-ip = false
[log]
partitions = 2
segment-bytes = "16KiB"
max-batch-bytes = "16KiB"
max-record-bytes = "8KiB"
"#
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let send = |server: &Server, first: usize, count: usize| {
        let lines: Vec<String> = (first..first + count)
            .map(|i| {
                format!(
                    r#"{{"type":"track","messageId":"d{i}","anonymousId":"a{i}","event":"Viewed","properties":{{"n":{i}}}}}"#
                )
            })
            .collect();
        let events = dir.path().join(format!("events-{first}.ndjson"));
        std::fs::write(&events, lines.join("\n")).unwrap();
        let output = Command::new(support::BIN)
            .args([
                "send",
                "--quiet",
                "--batch",
                "20",
                "--write-key",
                WRITE,
                "--url",
            ])
            .arg(format!("http://{}", server.addr))
            .arg(&events)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
    };
    let server = Server::start_in(&data, &["--config", &config]);
    send(&server, 0, 600);
    assert_eq!(server.interrupt().status.code(), Some(0));
    let full: Vec<Vec<u64>> = (0..2)
        .map(|p| tail_offsets(&config, &data, p).unwrap())
        .collect();

    // Partition 0: a batch of its first (sealed) segment damaged, its index gone.
    let p0 = data.join("log/topics/events/0");
    let sealed = p0.join("00000000000000000000.log");
    let batches = segment_batches(&sealed);
    assert!(batches.len() >= 2 && p0.join("00000000000000000000.idx").exists());
    let (damaged_at, damaged_from, _) = batches[1];
    let mut bytes = std::fs::read(&sealed).unwrap();
    bytes[damaged_at + 70] ^= 0x10;
    std::fs::write(&sealed, &bytes).unwrap();
    std::fs::remove_file(p0.join("00000000000000000000.idx")).unwrap();
    // Partition 1: 16 bytes in the middle of its active segment, as after a crash.
    let p1 = data.join("log/topics/events/1");
    let mut segments: Vec<_> = std::fs::read_dir(&p1)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let active = segments.pop().unwrap();
    let batches = segment_batches(&active);
    assert!(batches.len() >= 3, "{batches:?}");
    let (lost_at, lost_from, lost_to) = batches[1];
    let mut bytes = std::fs::read(&active).unwrap();
    for byte in &mut bytes[lost_at + 50..lost_at + 66] {
        *byte ^= 0xff;
    }
    std::fs::write(&active, &bytes).unwrap();
    std::fs::remove_file(active.with_extension("idx")).unwrap();

    let next_base = segment_batches(
        &p0.join(
            std::fs::read_dir(&p0)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.ends_with(".log") && n != "00000000000000000000.log")
                .min()
                .unwrap(),
        ),
    )[0]
    .1;

    // The server starts (its dedup warm-up reads the damaged window) and takes events.
    let server = Server::start_in(&data, &["--config", &config]);
    assert_eq!(http_get(server.addr, "/readyz").0, 200);
    let (_, metrics) = http_get(server.addr, "/metrics");
    for expected in [
        format!(
            r#"sluice_log_damaged_offsets{{topic="events",partition="0"}} {}"#,
            next_base - damaged_from
        ),
        r#"sluice_log_damaged_offsets{topic="events",partition="1"} 0"#.to_owned(),
        format!(
            r#"sluice_log_records_lost_total{{topic="events",partition="1"}} {}"#,
            lost_to - lost_from
        ),
    ] {
        assert!(metrics.contains(&expected), "{expected} in {metrics}");
    }
    send(&server, 600, 40);
    assert_eq!(server.interrupt().status.code(), Some(0));

    // Partition 1 lost exactly the damaged batch, kept in the quarantine.
    let kept = tail_offsets(&config, &data, 1).unwrap();
    assert!(!kept.iter().any(|o| (lost_from..lost_to).contains(o)));
    let before: Vec<u64> = full[1]
        .iter()
        .copied()
        .filter(|o| !(lost_from..lost_to).contains(o))
        .collect();
    assert_eq!(kept[..before.len()], before[..]);
    let name = active.file_stem().unwrap().to_str().unwrap();
    assert!(
        data.join(format!("log/quarantine/events/1/{name}-{lost_at}.bin"))
            .exists()
    );
    // Partition 0 reads up to the damage, then says what is wrong and what to do.
    let error = tail_offsets(&config, &data, 0).unwrap_err();
    assert!(error.starts_with("exit Some(1)"), "{error}");
    for expected in [
        "00000000000000000000.log",
        &format!("offset {damaged_from} lies in offsets {damaged_from}.."),
        "sluice log repair",
    ] {
        assert!(error.contains(expected), "{expected:?} in {error}");
    }
}

/// `sluice schemas check` passes good files and lists every problem of bad ones (exit 2);
/// `sluice schemas push` registers a directory with a running server, and a server started
/// with `schemas.dir` registers it itself, refusing to start (exit 2) when a file is bad.
#[test]
fn schema_files_are_checked_pushed_and_loaded_at_start() {
    const ADMIN: &str = "ak_schemas_cli_0123456789";
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good/shop");
    std::fs::create_dir_all(&good).unwrap();
    std::fs::write(
        good.join("Order Completed-value.json"),
        r#"{"type": "object", "properties": {"revenue": {"type": "number"}}, "required": ["revenue"]}"#,
    )
    .unwrap();
    std::fs::write(
        good.join("orders-value.avsc"),
        r#"{"type": "record", "name": "Order", "fields": [{"name": "revenue", "type": "double"}]}"#,
    )
    .unwrap();
    let bad = dir.path().join("bad/shop");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("a-value.json"), r#"{"type": "objekt"}"#).unwrap();
    std::fs::write(bad.join("b-value.avsc"), r#"{"type": "record"}"#).unwrap();
    std::fs::write(bad.join("notes.txt"), "not a schema").unwrap();

    let check = |path: &std::path::Path| {
        Command::new(support::BIN)
            .args(["schemas", "check", &path.display().to_string()])
            .env("SLUICE__DATA_DIR", dir.path().join("data"))
            .output()
            .unwrap()
    };
    let output = check(&dir.path().join("good"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        2,
        "{stdout}"
    );
    let output = check(&dir.path().join("bad"));
    assert_eq!(output.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("notes.txt"), "{stdout}");
    let output = check(&bad.join("a-value.json"));
    assert_eq!(output.status.code(), Some(2));
    let output = check(&bad.join("b-value.avsc"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Avro"), "{stdout}");

    // Loaded at start: the good directory registers; the bad one stops the start.
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "admin-keys = [\"{ADMIN}\"]\n[[tenants]]\nname = \"shop\"\nwrite-keys = [\"wk_shop_cli_schemas_0123\"]\n[schemas]\ndir = \"{}\"\n",
            dir.path().join("good").display()
        ),
    )
    .unwrap();
    let server = Server::start_in(
        &dir.path().join("data"),
        &["--config", &config.display().to_string()],
    );
    let bearer = format!("Bearer {ADMIN}");
    let (status, body) = support::http_request(
        server.addr,
        "GET",
        "/schemas/tenants/shop/subjects",
        &[("authorization", &bearer)],
        b"",
    );
    assert_eq!(
        (status, body.as_str()),
        (200, r#"["Order Completed-value","orders-value"]"#)
    );
    // Pushing a compatible change (an optional field with a default) adds a version; the
    // unchanged file is already there.
    let push = dir.path().join("push/shop");
    std::fs::create_dir_all(&push).unwrap();
    std::fs::write(
        push.join("orders-value.avsc"),
        r#"{"type": "record", "name": "Order", "fields": [{"name": "revenue", "type": "double"}, {"name": "coupon", "type": ["null", "string"], "default": null}]}"#,
    )
    .unwrap();
    std::fs::write(push.join("broken-value.json"), r#"{"type": "objekt"}"#).unwrap();
    let output = Command::new(support::BIN)
        .args([
            "schemas",
            "push",
            &dir.path().join("push").display().to_string(),
            "--url",
            &format!("http://{}", server.addr),
            "--key",
            ADMIN,
        ])
        .env("SLUICE__DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("registered") && stdout.contains("version 2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("refused") && stdout.contains("broken-value.json"),
        "{stdout}"
    );
    server.stop_cleanly();

    std::fs::write(
        &config,
        format!(
            "admin-keys = [\"{ADMIN}\"]\n[[tenants]]\nname = \"shop\"\nwrite-keys = [\"wk_shop_cli_schemas_0123\"]\n[schemas]\ndir = \"{}\"\n",
            dir.path().join("bad").display()
        ),
    )
    .unwrap();
    let output = Command::new(support::BIN)
        .args(["serve", "--config", &config.display().to_string()])
        .env("SLUICE__DATA_DIR", dir.path().join("data2"))
        .env("SLUICE__SERVER__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("a-value.json") && stderr.contains("b-value.avsc"),
        "{stderr}"
    );
}

#[test]
fn check_config_names_each_bad_alert_setting_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.toml");
    std::fs::write(
        &path,
        r#"
[[alert-channels]]
name = "Bad Name"
kind = "webhook"
url = "ftp://x"
[[alerts]]
tenant = "shop"
sql = "CREATE ALERT x ON m WHEN"
channels = ["pager"]
[alerting]
timeout = "0s"
"#,
    )
    .unwrap();
    let stderr = check_config_refuses(&path);
    for said in [
        "5 problems",
        "alerting.timeout: is 0ns but must be between 100ms and 5m",
        "alert-channels[0].name: \"Bad Name\" is not a valid name",
        "alert-channels[0].url: \"ftp://x\" must be an http:// or https:// URL",
        "alerts[0].sql: line 1, column 25: expected a number",
        "alerts[0].channels: \"pager\" is not one of [[alert-channels]]",
    ] {
        assert!(stderr.contains(said), "{said:?} in {stderr}");
    }
}

#[test]
fn bad_enrichment_settings_are_named_and_a_bad_geo_database_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("enrich.toml");
    std::fs::write(
        &path,
        r#"
[enrichment]
geoip-database = "/nonexistent/GeoLite2-City.mmdb"
client-ip-header = "x forwarded"
[enrichment.tenants."Not A Tenant"]
ip = "drop"
"#,
    )
    .unwrap();
    let stderr = check_config_refuses(&path);
    for said in [
        "3 problems",
        "enrichment.geoip-database: /nonexistent/GeoLite2-City.mmdb is not a file",
        "enrichment.client-ip-header: \"x forwarded\" is not an HTTP header name",
        "enrichment.tenants.Not A Tenant:",
    ] {
        assert!(stderr.contains(said), "{said:?} in {stderr}");
    }
    std::fs::write(&path, "[enrichment]\nip = \"hash\"\n").unwrap();
    let stderr = check_config_refuses(&path);
    assert!(
        stderr.contains("enrichment.ip") && stderr.contains("keep"),
        "{stderr}"
    );

    // A file that is there but is no database: the server does not start.
    let database = dir.path().join("city.mmdb");
    std::fs::write(&database, "not a database").unwrap();
    std::fs::write(
        &path,
        format!(
            "[enrichment]\ngeoip-database = {:?}\n",
            database.display().to_string()
        ),
    )
    .unwrap();
    let output = Command::new(support::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("enrichment.geoip-database:")
            && stderr.contains("is not a readable MaxMind-format database"),
        "{stderr}"
    );
}

#[test]
fn stream_definitions_in_the_config_are_checked_and_one_reading_no_stream_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streams.toml");
    let metric = |from: &str| {
        format!(
            "[[metrics]]\nsql = \"CREATE METRIC n AS SELECT COUNT(*) AS n FROM {from} GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)\"\n"
        )
    };
    std::fs::write(
        &path,
        format!(
            "[[metrics]]\nsql = \"CREATE STREAM orders AS SELECT COUNT(*) AS n FROM events\"\n\
             [[metrics]]\nsql = \"CREATE METRIC m AS SELECT COUNT(*) AS n FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)\"\n{}",
            metric("m")
        ),
    )
    .unwrap();
    let stderr = check_config_refuses(&path);
    for said in [
        "2 problems",
        "metrics[0].sql: line 1, column 32: a stream has no aggregates",
        "metrics[2].sql: \"n\" reads FROM m, which is a metric",
    ] {
        assert!(stderr.contains(said), "{said:?} in {stderr}");
    }

    // A stream the config does not define may be one made through the API: the check lets
    // it pass, and the start names it.
    std::fs::write(&path, metric("ordres")).unwrap();
    let output = Command::new(support::BIN)
        .args(["check-config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let output = Command::new(support::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("\"n\" reads FROM ordres, which is not a derived stream: create it first with CREATE STREAM ordres"),
        "{stderr}"
    );
}

/// `sluice check-config FILE` of a config with problems: exits 2; its stderr.
fn check_config_refuses(path: &std::path::Path) -> String {
    let output = Command::new(support::BIN)
        .args(["check-config"])
        .arg(path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    String::from_utf8_lossy(&output.stderr).into_owned()
}
