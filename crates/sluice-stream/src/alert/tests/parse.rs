//! The grammar, its options, and the errors of `parse_alert` and `check`.

use super::*;
use crate::plan::CompareOp;

fn parse_error(sql: &str) -> String {
    match parse_alert(sql) {
        Ok(rule) => panic!("{sql} parsed: {rule:?}"),
        Err(error) => error.to_string(),
    }
}

fn check_error(sql: &str, plan: &MetricPlan) -> String {
    let rule = rule(sql);
    match check(&rule, plan) {
        Ok(()) => panic!("{sql} passed the check"),
        Err(error) => error.to_string(),
    }
}

fn printed(condition: &str) -> String {
    let sql = format!("CREATE ALERT a ON api WHEN {condition}");
    rule(&sql).condition.to_string()
}

#[test]
fn every_condition_kind_parses_and_prints_canonically() {
    for (written, expected) in [
        ("errors > 100", "errors > 100"),
        ("errors / requests >= 5%", "errors / requests >= 5%"),
        (
            "latency between 100 and 200.5",
            "latency BETWEEN 100 AND 200.5",
        ),
        ("latency NOT BETWEEN 1 AND 2", "latency NOT BETWEEN 1 AND 2"),
        (
            "not (errors > 1 or requests < 2) and latency <> 3",
            "NOT (errors > 1 OR requests < 2) AND latency <> 3",
        ),
        (
            "errors > 1 or requests < 2 and latency != 3",
            "errors > 1 OR requests < 2 AND latency <> 3",
        ),
        (
            "change(errors, previous(errors)) > 50",
            "change(errors, previous(errors)) > 50",
        ),
        (
            "change(errors, offset(errors, '1d')) >= 25",
            "change(errors, offset(errors, '1d')) >= 25",
        ),
        ("sum(errors, '60m') > 1000", "sum(errors, '1h') > 1000"),
        (
            "avg(latency,'1h') < min(latency, '2h') * 2",
            "avg(latency, '1h') < min(latency, '2h') * 2",
        ),
        (
            "latency > baseline(latency, '7d') * 1.5",
            "latency > baseline(latency, '7d') * 1.5",
        ),
        (
            "max(latency, '90m') - -3 >= (errors + 1) * 2",
            "max(latency, '90m') - -3 >= (errors + 1) * 2",
        ),
        ("errors - (requests - 1) > 0", "errors - (requests - 1) > 0"),
        ("-(errors) < 0", "-errors < 0"),
        (
            "anomaly(latency) AND requests > 100",
            "anomaly(latency) AND requests > 100",
        ),
        ("(errors > 1)", "errors > 1"),
        ("((errors + 1)) * 2 > 3", "(errors + 1) * 2 > 3"),
        ("\"min(properties.x)\" > 1", "\"min(properties.x)\" > 1"),
    ] {
        assert_eq!(printed(written), expected, "{written}");
        // The printed form parses back to the same condition.
        assert_eq!(printed(expected), expected, "{expected}");
    }
    let absent = rule("CREATE ALERT quiet ON api WHEN absent FOR '10m'");
    assert!(matches!(absent.condition, Condition::Absent { .. }));
    assert_eq!(absent.hold_ms(), 10 * MINUTE);
}

#[test]
fn a_comparison_keeps_its_parts() {
    let rule = rule("CREATE ALERT a ON api WHEN errors / requests >= 5%");
    let Condition::Compare { op, left, right } = rule.condition else {
        panic!("{:?}", rule.condition);
    };
    assert_eq!(op, CompareOp::GtEq);
    assert!(matches!(
        left,
        Operand::Arith {
            op: ArithOp::Div,
            ..
        }
    ));
    assert!(matches!(
        right,
        Operand::Number {
            written: 5.0,
            percent: true,
            at: Position {
                line: 1,
                column: 49
            }
        }
    ));
}

#[test]
fn the_clauses_and_options_are_read() {
    let sql = "CREATE ALERT slow_checkout ON api
        WHERE route = '/checkout' AND region IN ('eu', 'us') AND shard <> 3 AND flag NOT IN (TRUE)
        BY KEY LIMIT 50
        WHEN latency > 500 FOR '5m'
        WITH (on = 'live', resolve_after = 3, severity = 'critical');";
    let rule = rule(sql);
    assert_eq!(rule.name, "slow_checkout");
    assert_eq!(rule.sql, sql);
    assert_eq!(rule.metric.name, "api");
    let filters: Vec<String> = rule
        .filter
        .iter()
        .map(|f| {
            let values: Vec<String> = f.values.iter().map(ToString::to_string).collect();
            format!("{} {} {}", f.key, f.negated, values.join(","))
        })
        .collect();
    assert_eq!(
        filters,
        [
            "route false '/checkout'",
            "region false 'eu','us'",
            "shard true 3",
            "flag true TRUE"
        ]
    );
    assert_eq!(rule.by_key.map(|b| b.limit), Some(50));
    assert_eq!(rule.hold_ms(), 5 * MINUTE);
    assert_eq!(rule.options.on, Evaluate::Live);
    assert_eq!(rule.options.resolve_after, 3);
    assert_eq!(rule.options.severity, Severity::Critical);

    let plain = self::rule("create alert a on api by key when errors > 1");
    assert_eq!(plain.by_key.map(|b| b.limit), Some(DEFAULT_KEY_LIMIT));
    assert_eq!(plain.options, AlertOptions::default());
    assert_eq!(plain.hold, None);
    assert!(plain.filter.is_empty());

    let anomaly = self::rule(
        "CREATE ALERT a ON api WHEN anomaly(latency) WITH (sensitivity = 4.5, history = 200, \
         seasonality = '7d', seasons = 3, min_deviation = 2)",
    );
    let options = anomaly.options.anomaly;
    assert_eq!(options.sensitivity, 4.5);
    assert_eq!(options.history, 200);
    assert_eq!(options.seasonality, Some(7 * 86_400_000));
    assert_eq!(options.seasons, 3);
    assert_eq!(options.min_deviation, 2.0);
    let none =
        self::rule("CREATE ALERT a ON api WHEN anomaly(latency) WITH (seasonality = 'none')");
    assert_eq!(none.options.anomaly, AnomalyOptions::default());
}

#[test]
fn syntax_errors_say_where_and_what_to_write() {
    for (sql, expected) in [
        (
            "CREATE ALERT a ON api WHEN median(latency, '1h') > 5",
            "line 1, column 28: unknown function median; the functions are previous, offset, \
             sum, avg, min, max, baseline, change and anomaly",
        ),
        (
            "CREATE ALERT a ON api WHEN offset(errors) > 5",
            "line 1, column 28: offset takes 2 arguments: offset(value, '1d'); found 1",
        ),
        (
            "CREATE ALERT a ON api WHEN previous(errors, '1d') > 5",
            "line 1, column 28: previous takes 1 argument: previous(value); found 2",
        ),
        (
            "CREATE ALERT a ON api WHEN sum(errors, '0s') > 5",
            "line 1, column 40: the duration '0s' is out of range: durations are longer than 0 \
             and at most 90d",
        ),
        (
            "CREATE ALERT a ON api WHEN errors > 1 FOR '1000d'",
            "line 1, column 43: the duration '1000d' is out of range: durations are longer than \
             0 and at most 90d",
        ),
        (
            "CREATE ALERT a ON api WHEN errors > offset(errors, 'soon')",
            "line 1, column 52: \"soon\" is not a duration: write a number with a unit, like \
             250ms, 10s, 5m, 1h or 7d",
        ),
        (
            "CREATE ALERT a ON api WHEN errors > 1 WITH (resolve_after = 2, colour = 'red')",
            "line 1, column 64: unknown option colour; the options are on, resolve_after, \
             severity, sensitivity, history, seasonality, seasons, min_deviation",
        ),
        (
            "CREATE ALERT a ON api WHEN errors > 1 WITH (severity = 'info', severity = 'critical')",
            "line 1, column 64: option severity is set twice",
        ),
        (
            "CREATE ALERT a ON api WHEN errors > 1 WITH (sensitivity = 2)",
            "line 1, column 45: sensitivity tunes anomaly(…), and this rule's condition has no \
             anomaly(…)",
        ),
        (
            "CREATE ALERT a ON api WHEN errors > 1 AND absent FOR '10m'",
            "line 1, column 43: absent cannot be combined with other conditions: write it alone, \
             WHEN absent FOR '10m', in a rule of its own",
        ),
        (
            "CREATE ALERT a ON api WHEN absent",
            "line 1, column 28: absent needs FOR 'duration': how long without a window counts \
             as absent, like WHEN absent FOR '10m'",
        ),
        (
            "CREATE ALERT a ON api errors > 1",
            "line 1, column 23: expected WHEN and the rule's condition (like WHEN errors > 100), \
             found `errors`",
        ),
        (
            "CREATE ALERT a ON api WHEN errors > 1 FOR '5m' LIMIT 3",
            "line 1, column 48: unexpected `LIMIT` after the rule; a rule ends after its WHEN \
             condition, FOR 'duration' or WITH (…) options",
        ),
        (
            "CREATE ALERT a ON api WHEN anomaly(latency) > 1",
            "line 1, column 45: anomaly(…) is a condition (true or false), not a number: it is \
             not compared; tune it in WITH (sensitivity = …)",
        ),
        (
            "CREATE ALERT a ON api WHEN errors FOR '1m'",
            "line 1, column 35: expected a comparison (<, <=, >, >=, =, <>) or BETWEEN after \
             errors, found `FOR`: a condition is true or false, like errors > 100",
        ),
        (
            "CREATE ALERT a ON api WHEN errors >",
            "line 1, column 36: expected a number, a value name or a function like previous(v), \
             found the end of the rule",
        ),
        (
            "CREATE ALERT a ON api WHEN change(errors, previous(errors)) > 50%",
            "line 1, column 63: change(…) is already in percent: write 50, not 50% (which would \
             mean 0.5 percent)",
        ),
        (
            "CREATE ALERT a ON api BY KEY LIMIT 0 WHEN errors > 1",
            "line 1, column 36: LIMIT is the most keys the rule tracks: a whole number from 1 to \
             100000, not `0`",
        ),
        (
            "CREATE ALERT Bad ON api WHEN errors > 1",
            "line 1, column 14: \"Bad\" is not a valid alert name: use 1 to 64 lowercase \
             letters, digits and '_', starting with a letter",
        ),
        (
            "CREATE ALERT a ON api\nWHEN errors > 1\n  AND sum(latency, 5) > 1",
            "line 3, column 20: the second argument of sum is a duration string: sum(value, \
             '1h') (or avg, min, max)",
        ),
    ] {
        assert_eq!(parse_error(sql), expected, "{sql}");
    }
}

#[test]
fn check_names_unknown_values_and_keys_with_the_valid_ones() {
    let api = metric(API);
    let total = metric(TOTAL);
    let sessions = metric(
        "CREATE METRIC sessions AS SELECT COUNT(*) AS events FROM events
         GROUP BY SESSION(timestamp, INTERVAL '30' MINUTE)",
    );
    for (sql, plan, expected) in [
        (
            "CREATE ALERT a ON api WHEN errorz > 1",
            &api,
            "line 1, column 28: unknown value errorz in metric api; its values are requests, \
             errors, latency (name an aggregate with AS to use it here)",
        ),
        (
            "CREATE ALERT a ON api WHERE country = 'fr' WHEN errors > 1",
            &api,
            "line 1, column 29: unknown group key country in metric api; its keys are route, \
             region",
        ),
        (
            "CREATE ALERT a ON api WHEN route > 1",
            &api,
            "line 1, column 28: route is a group key of metric api, not a value: filter keys in \
             WHERE or use BY KEY; its values are requests, errors, latency",
        ),
        (
            "CREATE ALERT a ON sessions WHEN change(events, offset(events, '1d')) > 10",
            &sessions,
            "line 1, column 48: offset(events, '1d') reads earlier windows, which needs windows \
             of a fixed size; metric sessions uses SESSION windows: alert on a TUMBLE or HOP \
             metric",
        ),
        (
            "CREATE ALERT a ON sessions WHEN sum(events, '1h') > 5",
            &sessions,
            "line 1, column 33: sum(events, '1h') reads earlier windows, which needs windows of \
             a fixed size; metric sessions uses SESSION windows: alert on a TUMBLE or HOP metric",
        ),
        (
            "CREATE ALERT a ON api WHEN errors > offset(errors, '90s')",
            &api,
            "line 1, column 52: offset(errors, '90s'): the offset must be a whole number of \
             metric api's 1m windows",
        ),
        (
            "CREATE ALERT a ON api WHEN absent FOR '30s'",
            &api,
            "line 1, column 39: absent FOR '30s' is shorter than metric api's 1m windows: a \
             series shows up at most once per window; use FOR '1m' or longer",
        ),
        (
            "CREATE ALERT a ON total BY KEY WHEN errors > 1",
            &total,
            "line 1, column 25: BY KEY evaluates each group key separately, and metric total has \
             no GROUP BY keys; remove BY KEY",
        ),
        (
            "CREATE ALERT a ON api WHEN errors > offset(errors, '30d')",
            &api,
            "line 1, column 37: this reaches 43200 windows back over metric api's 1m windows; \
             rules keep at most 20160 windows of history: use a shorter duration or a metric \
             with longer windows",
        ),
        (
            "CREATE ALERT a ON api BY KEY LIMIT 100000 WHEN errors > offset(errors, '1d')",
            &api,
            "line 1, column 23: this rule keeps 1440 windows × 1 values of history for each of \
             up to 100000 keys (144000000 numbers); at most 33554432 are allowed: lower BY KEY \
             LIMIT or read less history",
        ),
        (
            "CREATE ALERT a ON api WHEN errors > 1",
            &total,
            "line 1, column 19: the rule reads metric api, but was checked against metric total",
        ),
    ] {
        assert_eq!(check_error(sql, plan), expected, "{sql}");
    }
    // What session windows can take.
    for sql in [
        "CREATE ALERT a ON sessions WHEN events > 100",
        "CREATE ALERT a ON sessions WHEN absent FOR '30m'",
    ] {
        check(&rule(sql), &sessions).unwrap_or_else(|error| panic!("{sql}: {error}"));
    }
}
