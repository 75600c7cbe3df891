//! The terms and the state machine, window by window.

use super::*;
use AlertState::{Firing, Ok as Fine, Pending, Resolved};

#[test]
fn a_threshold_fires_once_and_resolves_once() {
    let total = metric(TOTAL);
    let mut alert = evaluator(
        "CREATE ALERT errors_high ON total WHEN errors > 100",
        &total,
    );
    let out = feed_errors(
        &mut alert,
        &[
            (0, 50.0),
            (1, 150.0),
            (2, 200.0),
            (3, 101.0),
            (4, 80.0),
            (5, 90.0),
        ],
    );
    assert_eq!(
        summary(&out),
        [(Fine, Firing, 1, 1), (Firing, Resolved, 4, 2)]
    );
    assert_eq!(&*out[0].rule, "errors_high");
    assert_eq!(&*out[0].key, "{}");
    assert_eq!(out[0].value, Some(150.0));
    assert_eq!(out[0].description, "errors > 100 (errors = 150)");
    assert_eq!(out[1].description, "errors > 100 (errors = 80)");
    // A new breach is a new notification, numbered on.
    let out = feed_errors(&mut alert, &[(6, 300.0), (7, 300.0)]);
    assert_eq!(summary(&out), [(Resolved, Firing, 6, 3)]);
    assert_eq!(alert.states().collect::<Vec<_>>(), [("{}", Firing)]);
}

#[test]
fn for_holds_the_alert_pending_then_fires() {
    let total = metric(TOTAL);
    let mut alert = evaluator(
        "CREATE ALERT errors_high ON total WHEN errors > 100 FOR '3m'",
        &total,
    );
    assert!(feed_errors(&mut alert, &[(10, 150.0), (11, 150.0)]).is_empty());
    assert_eq!(alert.states().next(), Some(("{}", Pending)));
    // Windows 10, 11, 12 cover three minutes of event time.
    let out = feed_errors(&mut alert, &[(12, 150.0), (13, 150.0)]);
    assert_eq!(summary(&out), [(Pending, Firing, 12, 1)]);
    assert_eq!(out[0].at_ms, 13 * MINUTE);
}

#[test]
fn a_pending_alert_that_turns_false_emits_nothing() {
    let total = metric(TOTAL);
    let mut alert = evaluator(
        "CREATE ALERT errors_high ON total WHEN errors > 100 FOR '3m'",
        &total,
    );
    let out = feed_errors(&mut alert, &[(0, 150.0), (1, 150.0), (2, 50.0)]);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(alert.states().next(), Some(("{}", Fine)));
    // A missing window breaks the run too: 3, 4, (no 5), 6, 7 never holds for 3 minutes.
    let out = feed_errors(
        &mut alert,
        &[(3, 150.0), (4, 150.0), (6, 150.0), (7, 150.0)],
    );
    assert!(out.is_empty(), "{out:?}");
    let out = feed_errors(&mut alert, &[(8, 150.0)]);
    assert_eq!(summary(&out), [(Pending, Firing, 8, 1)]);
}

#[test]
fn resolve_after_needs_that_many_false_evaluations_in_a_row() {
    let total = metric(TOTAL);
    let mut alert = evaluator(
        "CREATE ALERT errors_high ON total WHEN errors > 100 WITH (resolve_after = 3)",
        &total,
    );
    let out = feed_errors(
        &mut alert,
        &[
            (0, 150.0),
            (1, 50.0),
            (2, 50.0),
            (3, 150.0),
            (4, 50.0),
            (5, 50.0),
            (6, 50.0),
            (7, 50.0),
        ],
    );
    assert_eq!(
        summary(&out),
        [(Fine, Firing, 0, 1), (Firing, Resolved, 6, 2)]
    );
}

#[test]
fn percent_literals_and_arithmetic_compute_in_f64() {
    let total = metric(TOTAL);
    let mut alert = evaluator(
        "CREATE ALERT error_rate ON total WHEN errors / requests >= 5% AND NOT latency > 900",
        &total,
    );
    let mut out = Vec::new();
    for (index, requests, errors, latency) in [
        (0, 100.0, 4.0, 100.0),
        (1, 100.0, 5.0, 100.0),
        (2, 0.0, 5.0, 100.0),
        (3, 100.0, 9.0, 1000.0),
    ] {
        alert.window(
            &[],
            minute(index),
            &[Some(requests), Some(errors), Some(latency)],
            true,
            &mut out,
        );
    }
    // 5/100 fires; 5/0 is NULL (not true) and resolves; latency > 900 keeps window 3 false.
    assert_eq!(
        summary(&out),
        [(Fine, Firing, 1, 1), (Firing, Resolved, 2, 2)]
    );
    assert_eq!(out[0].value, Some(0.05));
    // A comparison is about its side with values in it.
    let mut reversed = evaluator(
        "CREATE ALERT errors_high ON total WHEN 100 < errors",
        &total,
    );
    let out = feed_errors(&mut reversed, &[(0, 150.0)]);
    assert_eq!(out[0].value, Some(150.0));
    assert_eq!(out[0].description, "100 < errors (errors = 150)");
}

#[test]
fn change_against_the_previous_window() {
    let total = metric(TOTAL);
    let mut alert = evaluator(
        "CREATE ALERT surge ON total WHEN change(errors, previous(errors)) > 50",
        &total,
    );
    // 0: no previous (NULL); 1: +40%; 2: +42.9%; 3: +100% fires; 5: previous (4) missing;
    // 6 after 5 = 0: change against 0 is NULL, resolves.
    let out = feed_errors(
        &mut alert,
        &[
            (0, 100.0),
            (1, 140.0),
            (2, 200.0),
            (3, 400.0),
            (5, 0.0),
            (6, 10.0),
        ],
    );
    assert_eq!(
        summary(&out),
        [(Fine, Firing, 3, 1), (Firing, Resolved, 5, 2)]
    );
    assert_eq!(out[0].value, Some(100.0));
    assert_eq!(
        out[0].description,
        "change(errors, previous(errors)) > 50 (change(errors, previous(errors)) = 100)"
    );
}

#[test]
fn change_against_the_same_window_a_day_before() {
    let total = metric(TOTAL);
    let mut alert = evaluator(
        "CREATE ALERT surge ON total WHEN change(errors, offset(errors, '1d')) >= 50",
        &total,
    );
    let day = 1440;
    let out = feed_errors(
        &mut alert,
        &[
            (10, 100.0),
            (11, 100.0),
            (day + 10, 149.0),
            (day + 11, 150.0),
            (day + 12, 1000.0),
            (2 * day + 11, 1000.0),
        ],
    );
    // 1440 + 11 is 50% up on 11; 1440 + 12 has no counterpart (NULL) and resolves it;
    // 2880 + 11 reads 1440 + 11.
    assert_eq!(
        summary(&out),
        [
            (Fine, Firing, day + 11, 1),
            (Firing, Resolved, day + 12, 2),
            (Resolved, Firing, 2 * day + 11, 3),
        ]
    );
}

#[test]
fn a_rolling_sum_over_an_hour() {
    let total = metric(TOTAL);
    let mut alert = evaluator(
        "CREATE ALERT burst ON total WHEN sum(errors, '1h') > 1000",
        &total,
    );
    let windows: Vec<(i64, f64)> = (0..60)
        .map(|m| (m, 20.0))
        .chain((60..80).map(|m| (m, 0.0)))
        .collect();
    let out = feed_errors(&mut alert, &windows);
    // 51 windows of 20 are 1020 (minute 50); from minute 69 the hour holds 50 of them.
    assert_eq!(
        summary(&out),
        [(Fine, Firing, 50, 1), (Firing, Resolved, 69, 2)]
    );
    assert_eq!(out[0].value, Some(1020.0));
}

#[test]
fn baseline_is_the_median_of_the_windows_before() {
    let total = metric(TOTAL);
    let mut alert = evaluator(
        "CREATE ALERT slow ON total WHEN latency > baseline(latency, '10m') * 2",
        &total,
    );
    let mut out = Vec::new();
    // 2: a baseline of 2 windows is NULL, so 1000 does not fire; 9: median(1, 2, 1000, 3,
    // …, 8) = 5, and 100 > 10.
    for (index, latency) in [1.0, 2.0, 1000.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 100.0]
        .into_iter()
        .enumerate()
    {
        alert.window(
            &[],
            minute(index as i64),
            &[None, None, Some(latency)],
            true,
            &mut out,
        );
    }
    assert_eq!(summary(&out), [(Fine, Firing, 9, 1)]);
    assert_eq!(
        out[0].description,
        "latency > baseline(latency, '10m') * 2 (latency = 100)"
    );
}

#[test]
fn absent_fires_after_for_without_a_window_and_resolves_on_the_next() {
    let total = metric(TOTAL);
    let mut alert = evaluator("CREATE ALERT silent ON total WHEN absent FOR '10m'", &total);
    let mut out = feed_errors(
        &mut alert,
        &[(0, 1.0), (1, 1.0), (2, 1.0), (3, 1.0), (4, 1.0)],
    );
    for watermark in [5, 10, 14] {
        alert.watermark(watermark * MINUTE, &mut out);
    }
    assert!(out.is_empty(), "{out:?}");
    alert.watermark(15 * MINUTE, &mut out);
    alert.watermark(20 * MINUTE, &mut out);
    let fired = summary(&out);
    assert_eq!(fired, [(Fine, Firing, 14, 1)]);
    assert_eq!(out[0].at_ms, 15 * MINUTE);
    assert_eq!(out[0].value, None);
    assert_eq!(
        out[0].description,
        "absent: no window since 1970-01-01T00:05:00.000Z (FOR 10m)"
    );
    out.clear();
    alert.window(&[], minute(20), &[None, Some(1.0), None], true, &mut out);
    assert_eq!(summary(&out), [(Firing, Resolved, 20, 2)]);
}

#[test]
fn absent_is_per_key_and_measured_after_the_allowed_lateness() {
    let mut api = metric(API);
    api.allowed_lateness = 2 * MINUTE;
    let mut alert = evaluator(
        "CREATE ALERT silent ON api BY KEY WHEN absent FOR '10m'",
        &api,
    );
    let mut out = Vec::new();
    for index in 0..30 {
        alert.window(
            &key("/a", "eu"),
            minute(index),
            &[Some(1.0)],
            true,
            &mut out,
        );
        if index < 5 {
            alert.window(
                &key("/b", "eu"),
                minute(index),
                &[Some(1.0)],
                true,
                &mut out,
            );
        }
        // Final windows arrive 2 minutes after their end.
        alert.watermark((index + 3) * MINUTE, &mut out);
    }
    // /b's last window ends at 5m: absent at 15m, which the watermark reaches at 17m.
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(&*out[0].key, r#"{"route":"/b","region":"eu"}"#);
    assert_eq!(out[0].at_ms, 15 * MINUTE);
}

#[test]
fn a_series_that_never_had_a_window_is_absent_from_the_first_watermark() {
    let total = metric(TOTAL);
    let mut alert = evaluator("CREATE ALERT silent ON total WHEN absent FOR '10m'", &total);
    let mut out = Vec::new();
    alert.watermark(100 * MINUTE, &mut out);
    alert.watermark(109 * MINUTE, &mut out);
    assert!(out.is_empty());
    alert.watermark(111 * MINUTE, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].at_ms, 110 * MINUTE);
}

#[test]
fn by_key_tracks_each_key_up_to_the_limit() {
    let api = metric(API);
    let mut alert = evaluator(
        "CREATE ALERT errors_high ON api WHERE region IN ('eu', 'us') BY KEY LIMIT 2
         WHEN errors > 100",
        &api,
    );
    let mut out = Vec::new();
    let values = [Some(1.0), Some(500.0), None];
    alert.window(&key("/a", "eu"), minute(0), &values, true, &mut out);
    alert.window(&key("/b", "us"), minute(0), &values, true, &mut out);
    // Filtered out by WHERE: neither tracked nor dropped.
    alert.window(&key("/c", "ap"), minute(0), &values, true, &mut out);
    // The third matching key is over the limit.
    alert.window(&key("/c", "eu"), minute(0), &values, true, &mut out);
    alert.window(&key("/a", "eu"), minute(1), &values, true, &mut out);
    let keys: Vec<&str> = out.iter().map(|t| &*t.key).collect();
    assert_eq!(
        keys,
        [
            r#"{"route":"/a","region":"eu"}"#,
            r#"{"route":"/b","region":"us"}"#
        ]
    );
    assert_eq!(
        alert.stats(),
        AlertStats {
            keys: 2,
            dropped_windows: 1
        }
    );
    assert!(alert.key_matches(&key("/z", "us")));
    assert!(!alert.key_matches(&key("/z", "ap")));
    let not_eu = evaluator(
        "CREATE ALERT a ON api WHERE region <> 'eu' AND route NOT IN ('/x') WHEN errors > 1",
        &api,
    );
    assert!(not_eu.key_matches(&key("/a", "us")));
    assert!(!not_eu.key_matches(&key("/x", "us")));
    assert!(!not_eu.key_matches(&key("/a", "eu")));
    assert!(!not_eu.key_matches(&[KeyValue::Text("/a".into()), KeyValue::Null]));
}

#[test]
fn live_rules_read_open_windows_and_final_rules_ignore_them() {
    let total = metric(TOTAL);
    let mut live = evaluator(
        "CREATE ALERT errors_high ON total WHEN errors > 100 WITH (on = 'live')",
        &total,
    );
    let mut settled = evaluator(
        "CREATE ALERT errors_high ON total WHEN errors > 100",
        &total,
    );
    let (mut live_out, mut settled_out) = (Vec::new(), Vec::new());
    for alert in [&mut live, &mut settled] {
        alert.watermark(5 * MINUTE + 30_000, &mut Vec::new());
    }
    let open = [None, Some(150.0), None];
    live.window(&[], minute(5), &open, false, &mut live_out);
    settled.window(&[], minute(5), &open, false, &mut settled_out);
    assert_eq!(summary(&live_out).len(), 1);
    // A live window is evaluated at the watermark within it.
    assert_eq!(live_out[0].at_ms, 5 * MINUTE + 30_000);
    assert!(settled_out.is_empty());
    let last = [None, Some(90.0), None];
    live.window(&[], minute(5), &last, true, &mut live_out);
    settled.window(&[], minute(5), &last, true, &mut settled_out);
    assert_eq!(
        summary(&live_out),
        [(Fine, Firing, 4, 1), (Firing, Resolved, 5, 2)]
    );
    assert!(settled_out.is_empty());
}

#[test]
fn windows_older_than_the_newest_evaluated_only_fill_history() {
    let total = metric(TOTAL);
    let mut alert = evaluator(
        "CREATE ALERT burst ON total WHEN sum(errors, '3m') > 100",
        &total,
    );
    let out = feed_errors(&mut alert, &[(1, 10.0), (3, 10.0), (2, 500.0)]);
    assert!(out.is_empty(), "a late window is not evaluated: {out:?}");
    // The next window's range (2, 3, 4) reads it.
    let out = feed_errors(&mut alert, &[(4, 10.0)]);
    assert_eq!(summary(&out), [(Fine, Firing, 4, 1)]);
    assert_eq!(out[0].value, Some(520.0));
}

#[test]
fn a_flat_baseline_fires_on_a_change_of_one_unless_min_deviation_allows_it() {
    let total = metric(TOTAL);
    let windows: Vec<(i64, f64)> = (0..130)
        .map(|m| (m, if m == 125 { 101.0 } else { 100.0 }))
        .collect();
    let mut strict = evaluator("CREATE ALERT odd ON total WHEN anomaly(errors)", &total);
    let out = feed_errors(&mut strict, &windows);
    assert_eq!(
        summary(&out),
        [(Fine, Firing, 125, 1), (Firing, Resolved, 126, 2)]
    );
    let mut tolerant = evaluator(
        "CREATE ALERT odd ON total WHEN anomaly(errors) WITH (min_deviation = 2)",
        &total,
    );
    assert!(feed_errors(&mut tolerant, &windows).is_empty());
}

#[test]
fn anomaly_waits_for_half_its_baseline() {
    let total = metric(TOTAL);
    let mut alert = evaluator(
        "CREATE ALERT odd ON total WHEN anomaly(errors) WITH (history = 20)",
        &total,
    );
    // 9 windows of history are not enough for a baseline of 20; 10 are.
    let mut windows: Vec<(i64, f64)> = (0..9).map(|m| (m, 100.0 + (m % 3) as f64)).collect();
    windows.push((9, 1000.0));
    assert!(feed_errors(&mut alert, &windows).is_empty());
    let out = feed_errors(&mut alert, &[(10, 1000.0)]);
    assert_eq!(summary(&out), [(Fine, Firing, 10, 1)]);
    // Median 101, MAD 1: 101 ± 3 × 1.4826.
    assert_eq!(
        out[0].description,
        "anomaly(errors) (errors = 1000, expected 96.5522 to 105.4478: median 101 of 10 \
         baseline windows)"
    );
}

#[test]
fn a_missing_window_reads_as_null_not_as_the_one_it_replaced_in_the_ring() {
    let total = metric(TOTAL);
    let mut alert = evaluator(
        "CREATE ALERT surge ON total WHEN errors > previous(errors) * 2",
        &total,
    );
    // History keeps 2 windows: 4 shares its place with 2; with 4 missing, previous(5) is
    // NULL, not 2's 10.
    let out = feed_errors(&mut alert, &[(2, 10.0), (3, 10.0), (5, 25.0)]);
    assert!(out.is_empty(), "{out:?}");
    let out = feed_errors(&mut alert, &[(6, 51.0)]);
    assert_eq!(summary(&out), [(Fine, Firing, 6, 1)]);
}

#[test]
fn null_makes_a_comparison_unknown_and_sql_logic_decides_the_rest() {
    let total = metric(TOTAL);
    // In window 0, previous(errors) is NULL.
    for (condition, fires) in [
        ("errors > 100 OR previous(errors) > 100", true),
        ("previous(errors) > 100 OR errors > 100", true),
        ("errors > 100 AND previous(errors) < 100", false),
        ("NOT previous(errors) > 100", false),
        ("NOT (errors > 100 AND previous(errors) > 100)", false),
        ("NOT (errors < 100 AND previous(errors) > 100)", true),
        ("previous(errors) NOT BETWEEN 1 AND 2", false),
        ("errors + previous(errors) > 0", false),
        ("change(errors, previous(errors)) > 0", false),
    ] {
        let sql = format!("CREATE ALERT a ON total WHEN {condition}");
        let mut alert = evaluator(&sql, &total);
        let out = feed_errors(&mut alert, &[(0, 150.0)]);
        assert_eq!(!out.is_empty(), fires, "{condition}: {out:?}");
    }
}

#[test]
fn sparse_counts_use_the_mean_deviation_when_the_mad_is_zero() {
    let total = metric(TOTAL);
    let mut alert = evaluator(
        "CREATE ALERT odd ON total WHEN anomaly(errors) WITH (history = 30)",
        &total,
    );
    // Mostly 0, a 1 every third window: the MAD is 0, the mean deviation 1/3, so the band is
    // 0 ± 3 × 1.2533 / 3 and holds the 1s; the 5 is outside it.
    let windows: Vec<(i64, f64)> = (0..120)
        .map(|m| match m {
            100 => (m, 5.0),
            m if m % 3 == 0 => (m, 1.0),
            m => (m, 0.0),
        })
        .collect();
    let out = feed_errors(&mut alert, &windows);
    assert_eq!(
        summary(&out),
        [(Fine, Firing, 100, 1), (Firing, Resolved, 101, 2)]
    );
}

#[test]
fn keys_given_by_id_evaluate_as_keys_given_by_value() {
    let plan = metric(API);
    let sql = "CREATE ALERT slow ON api WHERE region <> 'test' BY KEY LIMIT 2 WHEN errors > 5";
    let mut by_value = evaluator(sql, &plan);
    let mut by_id = evaluator(sql, &plan);
    // Ids as a caller numbers its keys: eu/a 0, us/b 1, test 2 (filtered), ap/c 3 (over LIMIT).
    let keys = [
        key("/a", "eu"),
        key("/b", "us"),
        key("/t", "test"),
        key("/c", "ap"),
    ];
    let (mut out_value, mut out_id) = (Vec::new(), Vec::new());
    for index in 0..6 {
        for (id, key) in keys.iter().enumerate() {
            let errors = Some(if (index + id as i64) % 3 == 0 {
                9.0
            } else {
                1.0
            });
            let values = [Some(1.0), errors, None];
            by_value.window(key, minute(index), &values, true, &mut out_value);
            by_id.window_by_id(id as u32, key, minute(index), &values, true, &mut out_id);
        }
        if index == 2 {
            // A restore forgets the ids; they are found again by value.
            let snapshot = by_id.snapshot();
            by_id = evaluator(sql, &plan);
            by_id.restore(snapshot).unwrap();
        }
    }
    assert!(!out_value.is_empty());
    assert_eq!(out_id, out_value);
    assert_eq!(by_id.stats(), by_value.stats());
    assert_eq!(by_id.stats().keys, 2, "/t is filtered, /c over the limit");
    assert_eq!(by_id.stats().dropped_windows, 6, "every window of /c");
    let states: Vec<_> = by_id.states().map(|(k, s)| (k.to_owned(), s)).collect();
    let expected: Vec<_> = by_value.states().map(|(k, s)| (k.to_owned(), s)).collect();
    assert_eq!(states, expected);
}
