//! `GET /v1/metrics` and `GET /v1/metrics/{name}`: time series, final and open windows,
//! roll-ups, top-N, filters, and the errors that say what to fix.

use crate::harness::*;
use hyper::StatusCode;
use serde_json::{Value, json};

/// Shop's page views over two hours, every partition's watermark then at `h1 + 2m30s`:
/// the windows before are final, `/c`'s at `h1 + 2m` is open.
async fn two_hours(h: &Harness) -> (i64, i64) {
    // Two hours in one 2-hour bucket.
    let h0 = hours_ago(3) - hours_ago(3).rem_euclid(2 * HOUR);
    let h1 = h0 + HOUR;
    h.send_ok(
        SHOP_WRITE,
        vec![
            view("a1", "u1", "/a", h0 + 1_000, "1.5"),
            view("a2", "u2", "/a", h0 + 2_000, "2.5"),
            view("a1", "u1", "/b", h0 + 3_000, "10"),
            view("a3", "u1", "/a", h0 + MINUTE + 5_000, "1"),
            view("a4", "u3", "/a", h0 + 59 * MINUTE, "0.25"),
            view("a1", "u1", "/a", h1 + 1_000, "3"),
        ],
    )
    .await;
    h.send_ok(SHOP_WRITE, everywhere("/c", h1 + 2 * MINUTE + 30_000, 16))
        .await;
    (h0, h1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_merges_partitions_and_marks_final_and_open_windows() {
    let h = Harness::start(&[]).await;
    let (h0, h1) = two_hours(&h).await;
    let path = format!("/v1/metrics/views?from={h0}&to={}", h1 + HOUR);
    let answer = eventually("every window, /a final and /c counted", || async {
        let (status, answer) = h.get(&path, SHOP_READ).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let a = points(&answer, "/a");
        let c = points(&answer, "/c");
        let done =
            a.len() == 4 && a.iter().all(|p| p[2] == true) && c.first().is_some_and(|p| p[3] == 16);
        if done {
            Ok(answer)
        } else {
            Err(answer.to_string())
        }
    })
    .await;
    assert_eq!(answer["metric"], "views");
    assert_eq!(answer["tenant"], "shop");
    assert_eq!(
        answer["columns"],
        json!(["start", "end", "final", "n", "users", "amount"])
    );
    assert_eq!(answer["keys"], json!(["url"]));
    assert_eq!(urls(&answer), ["/a", "/b", "/c"]);
    assert_eq!(
        points(&answer, "/a"),
        [
            json!([h0, h0 + MINUTE, true, 2, 2, 4.0]),
            json!([h0 + MINUTE, h0 + 2 * MINUTE, true, 1, 1, 1]),
            json!([h0 + 59 * MINUTE, h1, true, 1, 1, 0.25]),
            json!([h1, h1 + MINUTE, true, 1, 1, 3]),
        ]
    );
    assert_eq!(
        points(&answer, "/b"),
        [json!([h0, h0 + MINUTE, true, 1, 1, 10])]
    );
    let c = points(&answer, "/c");
    assert_eq!(
        c,
        [json!([h1 + 2 * MINUTE, h1 + 3 * MINUTE, false, 16, 1, 0])]
    );

    // The watermark moves on: /c's window becomes final, with nothing lost.
    h.send_ok(SHOP_WRITE, everywhere("/d", h1 + 10 * MINUTE, 16))
        .await;
    let path = format!("/v1/metrics/views?from={h0}&to={}&filter=url:/c", h1 + HOUR);
    eventually("/c final", || async {
        let (_, answer) = h.get(&path, SHOP_READ).await;
        let done =
            points(&answer, "/c") == [json!([h1 + 2 * MINUTE, h1 + 3 * MINUTE, true, 16, 1, 0])];
        if done {
            Ok(())
        } else {
            Err(answer.to_string())
        }
    })
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roll_ups_top_n_and_filters() {
    let h = Harness::start(&[]).await;
    let (h0, h1) = two_hours(&h).await;
    let range = format!("from={h0}&to={}", h1 + HOUR);
    eventually("the data is in", || async {
        let (_, answer) = h
            .get(&format!("/v1/metrics/views?{range}"), SHOP_READ)
            .await;
        let final_a = points(&answer, "/a")
            .iter()
            .filter(|p| p[2] == true)
            .count();
        let done = final_a == 4 && points(&answer, "/c").first().is_some_and(|p| p[3] == 16);
        if done {
            Ok(())
        } else {
            Err(answer.to_string())
        }
    })
    .await;

    // Hours: minutes merge; distinct users merge as sets, not sums.
    let (status, answer) = h
        .get(
            &format!("/v1/metrics/views?{range}&resolution=1h"),
            SHOP_READ,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["resolution_ms"], HOUR);
    assert_eq!(
        points(&answer, "/a"),
        [
            json!([h0, h1, true, 4, 3, 5.25]),
            json!([h1, h1 + HOUR, false, 1, 1, 3]),
        ]
    );
    assert_eq!(
        points(&answer, "/c"),
        [json!([h1, h1 + HOUR, false, 16, 1, 0])]
    );
    // Two-hour buckets merge the minutes of both hours.
    let (_, answer) = h
        .get(
            &format!("/v1/metrics/views?{range}&resolution=2h"),
            SHOP_READ,
        )
        .await;
    let a = points(&answer, "/a");
    assert_eq!(a.len(), 1, "{answer}");
    assert_eq!((a[0][3].clone(), a[0][4].clone()), (json!(5), json!(3)));

    // Top-N by an aggregate over the whole range.
    let (_, answer) = h
        .get(&format!("/v1/metrics/views?{range}&top=1"), SHOP_READ)
        .await;
    assert_eq!(urls(&answer), ["/c"], "16 views beat 5");
    let (_, answer) = h
        .get(
            &format!("/v1/metrics/views?{range}&top=2&by=users"),
            SHOP_READ,
        )
        .await;
    assert_eq!(urls(&answer), ["/a", "/b"], "3 users, then ties by key");
    let (_, answer) = h
        .get(
            &format!("/v1/metrics/views?{range}&top=1&by=amount&resolution=1d"),
            SHOP_READ,
        )
        .await;
    assert_eq!(urls(&answer), ["/b"]);
    assert_eq!(points(&answer, "/b").len(), 1);

    // Filters: values of one key are alternatives.
    let (_, answer) = h
        .get(
            &format!("/v1/metrics/views?{range}&filter=url:/b&filter=url:/c"),
            SHOP_READ,
        )
        .await;
    assert_eq!(urls(&answer), ["/b", "/c"]);
    let (_, answer) = h
        .get(
            &format!("/v1/metrics/views?{range}&filter=url:/nowhere"),
            SHOP_READ,
        )
        .await;
    assert_eq!(answer["series"], json!([]));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_listed_and_bad_queries_say_what_to_fix() {
    let h = Harness::start(&[]).await;
    let (status, list) = h.get("/v1/metrics", SHOP_READ).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(
        list["metrics"],
        json!([{
            "name": "views",
            "keys": ["url"],
            "values": [
                {"name": "n", "aggregate": "count"},
                {"name": "users", "aggregate": "count_distinct"},
                {"name": "amount", "aggregate": "sum"}
            ],
            "window": {"kind": "tumble", "size_ms": 60000},
            "allowed_lateness_ms": 0,
            "rollups": ["1h", "1d"]
        }])
    );
    let cases: [(&str, StatusCode, &str, &str); 8] = [
        (
            "/v1/metrics/nope",
            StatusCode::NOT_FOUND,
            "not_found",
            "GET /v1/metrics lists them",
        ),
        (
            "/v1/metrics/views?from=yesterday",
            StatusCode::BAD_REQUEST,
            "invalid_time",
            "RFC 3339",
        ),
        (
            "/v1/metrics/views?from=now&to=now-1h",
            StatusCode::BAD_REQUEST,
            "invalid_range",
            "before",
        ),
        (
            "/v1/metrics/views?resolution=90s",
            StatusCode::BAD_REQUEST,
            "invalid_resolution",
            "multiple",
        ),
        (
            "/v1/metrics/views?filter=country:fr",
            StatusCode::BAD_REQUEST,
            "unknown_key",
            "url",
        ),
        (
            "/v1/metrics/views?by=revenue&top=3",
            StatusCode::BAD_REQUEST,
            "unknown_aggregate",
            "n, users, amount",
        ),
        (
            "/v1/metrics/views?tenant=blog",
            StatusCode::BAD_REQUEST,
            "unknown_parameter",
            "filter=KEY:VALUE",
        ),
        ("/v1/metrics/views?from=0&to=now", StatusCode::OK, "", ""),
    ];
    for (path, status, code, hint) in cases {
        let (got, answer) = h.get(path, SHOP_READ).await;
        assert_eq!(got, status, "{path}: {answer}");
        if !code.is_empty() {
            assert_eq!(answer["error"]["code"], code, "{path}: {answer}");
            let message = answer["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(hint), "{path}: {message}");
        }
    }
    // Too many points for one answer.
    let h2 = Harness::start(&[("api.max-points", toml::Value::Integer(100))]).await;
    let start = hours_ago(2);
    let events: Vec<Value> = (0..120)
        .map(|minute| view("a1", "u1", "/a", start + minute * MINUTE, "1"))
        .collect();
    h2.send_ok(SHOP_WRITE, events).await;
    let path = format!("/v1/metrics/views?from={start}&to={}", start + 2 * HOUR);
    let answer = eventually("too many points", || async {
        let (status, answer) = h2.get(&path, SHOP_READ).await;
        if status == StatusCode::BAD_REQUEST {
            Ok(answer)
        } else {
            Err(answer.to_string())
        }
    })
    .await;
    assert_eq!(answer["error"]["code"], "too_many_points");
    let (status, _) = h2.get(&format!("{path}&resolution=1h"), SHOP_READ).await;
    assert_eq!(status, StatusCode::OK);
    h2.stop().await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_out_of_range_are_counted_and_an_overflowed_sum_says_so() {
    let h = Harness::start(&[]).await;
    let start = hours_ago(2);
    // 9.99e300 is beyond the exact decimals: SUM skips it and counts it. 1e38 + 1e38 is beyond
    // them too: that window's SUM is "overflow", open or final, not NULL.
    h.send_ok(
        SHOP_WRITE,
        vec![
            view("a1", "u1", "/huge", start + 1_000, "9.99e300"),
            view("a1", "u1", "/huge", start + 2_000, "2"),
            view("a2", "u2", "/overflow", start + 3_000, "1e38"),
            view("a2", "u2", "/overflow", start + 4_000, "1e38"),
        ],
    )
    .await;
    let path = format!("/v1/metrics/views?from={start}&to={}", start + HOUR);
    let counted = |answer: &Value| {
        points(answer, "/huge").first().is_some_and(|p| p[3] == 2)
            && points(answer, "/overflow")
                .first()
                .is_some_and(|p| p[3] == 2)
    };
    let open = eventually("both windows counted", || async {
        let (status, answer) = h.get(&path, SHOP_READ).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        if counted(&answer) {
            Ok(answer)
        } else {
            Err(answer.to_string())
        }
    })
    .await;
    assert_eq!(points(&open, "/huge")[0][5], json!(2), "{open}");
    assert_eq!(
        points(&open, "/overflow")[0][5],
        json!("overflow"),
        "{open}"
    );

    let skipped = eventually("the skipped number counted", || async {
        let text = h.metrics().await;
        let total: f64 = text
            .lines()
            .filter(|line| {
                line.starts_with("sluice_stream_values_out_of_range_total{")
                    && line.contains("metric=\"views\"")
                    && line.contains("aggregate=\"amount\"")
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if total >= 1.0 {
            Ok(total)
        } else {
            Err(format!("{total} in:\n{text}"))
        }
    })
    .await;
    assert_eq!(skipped, 1.0);

    // Final windows are read back from the store's partials: still "overflow".
    h.send_ok(SHOP_WRITE, everywhere("/closer", start + 10 * MINUTE, 16))
        .await;
    let finals = eventually("both windows final", || async {
        let (_, answer) = h.get(&path, SHOP_READ).await;
        let done = ["/huge", "/overflow"]
            .iter()
            .all(|url| points(&answer, url).first().is_some_and(|p| p[2] == true));
        if done {
            Ok(answer)
        } else {
            Err(answer.to_string())
        }
    })
    .await;
    assert_eq!(
        points(&finals, "/overflow"),
        [json!([start, start + MINUTE, true, 2, 1, "overflow"])]
    );
    assert_eq!(
        points(&finals, "/huge"),
        [json!([start, start + MINUTE, true, 2, 1, 2])]
    );
    h.stop().await;
}

/// The export's rows of `body` (NDJSON) as (url, start, end, final, [n, users, amount]).
fn exported(body: &str) -> Vec<(String, i64, i64, bool, Vec<Value>)> {
    body.lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            let values = row["values"].as_object().unwrap();
            (
                row["key"]["url"].as_str().unwrap().to_owned(),
                row["start"].as_i64().unwrap(),
                row["end"].as_i64().unwrap(),
                row["final"].as_bool().unwrap(),
                ["n", "users", "amount"].map(|n| values[n].clone()).to_vec(),
            )
        })
        .collect()
}

/// The same rows from a series answer, in the export's order (start, then key).
fn from_series(answer: &Value) -> Vec<(String, i64, i64, bool, Vec<Value>)> {
    let mut rows: Vec<_> = urls(answer)
        .into_iter()
        .flat_map(|url| {
            points(answer, &url).into_iter().map(move |point| {
                let point = point.as_array().unwrap().clone();
                (
                    url.clone(),
                    point[0].as_i64().unwrap(),
                    point[1].as_i64().unwrap(),
                    point[2].as_bool().unwrap(),
                    point[3..].to_vec(),
                )
            })
        })
        .collect();
    // Final windows first, then open ones; by start, then key, within each.
    rows.sort_by(|a, b| (!a.3, a.1, &a.0).cmp(&(!b.3, b.1, &b.0)));
    rows
}

async fn raw_get(h: &Harness, path: &str, key: &str) -> (StatusCode, String, String) {
    let auth = format!("Bearer {key}");
    let (status, _, reply) = h
        .request(
            hyper::Method::GET,
            path,
            &[("authorization", &auth)],
            bytes::Bytes::new(),
        )
        .await;
    let content_type = reply
        .headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        status,
        content_type,
        String::from_utf8(reply.body.to_vec()).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_streams_the_values_of_the_json_api_as_ndjson_and_csv() {
    // Pages of one row and of three split windows of one start across pages.
    for page_rows in [8192, 1, 3] {
        export_matches_the_json_api(page_rows).await;
    }
}

async fn export_matches_the_json_api(page_rows: i64) {
    let h = Harness::start(&[("api.export-page-rows", toml::Value::Integer(page_rows))]).await;
    let (h0, h1) = two_hours(&h).await;
    // /c's window and one with rows in both partitions (for the merge across pages) become
    // final; /f's stays open.
    h.send_ok(SHOP_WRITE, everywhere("/e", h1 + 5 * MINUTE, 16))
        .await;
    h.send_ok(SHOP_WRITE, everywhere("/f", h1 + 10 * MINUTE, 16))
        .await;
    let range = format!("from={h0}&to={}", h1 + HOUR);
    let answer = eventually("/a, /c and /e final, /f counted", || async {
        let (_, answer) = h
            .get(&format!("/v1/metrics/views?{range}"), SHOP_READ)
            .await;
        let a = points(&answer, "/a");
        let final_16 = |url| {
            points(&answer, url)
                .first()
                .is_some_and(|p| p[2] == true && p[3] == 16)
        };
        let f = points(&answer, "/f");
        if a.len() == 4
            && a.iter().all(|p| p[2] == true)
            && final_16("/c")
            && final_16("/e")
            && f.first().is_some_and(|p| p[3] == 16)
        {
            Ok(answer)
        } else {
            Err(answer.to_string())
        }
    })
    .await;

    let (status, content_type, body) =
        raw_get(&h, &format!("/v1/metrics/views/export?{range}"), SHOP_READ).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(content_type, "application/x-ndjson");
    let rows = exported(&body);
    assert_eq!(rows, from_series(&answer), "pages of {page_rows}: {body}");
    assert_eq!(rows.len(), 8, "/a 4, /b, /c, /e final; /f open: {body}");
    assert_eq!(
        rows.last().unwrap(),
        &(
            "/f".to_owned(),
            h1 + 10 * MINUTE,
            h1 + 11 * MINUTE,
            false,
            vec![json!(16), json!(1), json!(0)]
        )
    );

    let (status, content_type, csv) = raw_get(
        &h,
        &format!("/v1/metrics/views/export?{range}&format=csv&filter=url:/a&filter=url:/b"),
        SHOP_READ,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{csv}");
    assert_eq!(content_type, "text/csv; charset=utf-8");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "url,start,end,final,n,users,amount");
    assert_eq!(lines[1], format!("/a,{h0},{},true,2,2,4.0", h0 + MINUTE));
    assert_eq!(lines[2], format!("/b,{h0},{},true,1,1,10", h0 + MINUTE));
    assert_eq!(lines.len(), 1 + 5, "{csv}");

    // Another tenant's key sees its own (empty) results; bad parameters say what to write.
    let (status, _, body) =
        raw_get(&h, &format!("/v1/metrics/views/export?{range}"), BLOG_READ).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    let (status, _, body) = raw_get(&h, "/v1/metrics/views/export?format=xml", SHOP_READ).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("format=csv or format=ndjson"), "{body}");
    let (status, _, _) = raw_get(&h, "/v1/metrics/views/export", SHOP_WRITE).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = raw_get(&h, "/v1/metrics/nope/export", SHOP_READ).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    h.stop().await;
}
