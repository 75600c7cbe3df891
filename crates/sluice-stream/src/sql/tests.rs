use super::*;
use crate::decimal::Decimal;
use crate::plan::*;

const DEFAULTS: MetricDefaults = MetricDefaults {
    out_of_orderness: 10_000,
    allowed_lateness: 0,
    late: LatePolicy::Topic,
};

const EXAMPLE: &str = "CREATE METRIC page_views AS
SELECT properties.url AS url, COUNT(*) AS views, COUNT(DISTINCT user_id) AS visitors,
       AVG(properties.duration_ms) AS avg_duration,
       APPROX_PERCENTILE(properties.duration_ms, 0.95) AS p95_duration
FROM events WHERE event = 'Page Viewed'
GROUP BY url, TUMBLE(timestamp, INTERVAL '1' MINUTE)";

fn parse(sql: &str) -> MetricPlan {
    parse_metric(sql, &DEFAULTS).unwrap_or_else(|error| panic!("{sql}\n→ {error}"))
}

fn error(sql: &str) -> String {
    match parse_metric(sql, &DEFAULTS) {
        Ok(plan) => panic!("{sql} parsed: {plan:?}"),
        Err(error) => error.to_string(),
    }
}

fn props(path: &str) -> Expr {
    Expr::Field(Field::Properties(
        path.split('.').map(String::from).collect(),
    ))
}

#[test]
fn the_design_example_becomes_a_typed_plan() {
    let plan = parse(EXAMPLE);
    assert_eq!(plan.name, "page_views");
    assert_eq!(
        plan.filter,
        Some(Expr::Compare {
            op: CompareOp::Eq,
            left: Box::new(Expr::Field(Field::Event)),
            right: Box::new(Expr::Literal(Literal::String("Page Viewed".into()))),
        })
    );
    assert_eq!(plan.keys, [props("url")]);
    assert_eq!(plan.key_names, ["url"]);
    let kinds: Vec<AggregateKind> = plan.aggregates.iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        [
            AggregateKind::CountStar,
            AggregateKind::CountDistinct,
            AggregateKind::Avg,
            AggregateKind::ApproxPercentile { quantile: 0.95 }
        ]
    );
    assert_eq!(plan.aggregates[1].arg, Some(Expr::Field(Field::UserId)));
    let names: Vec<&str> = plan.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["url", "views", "visitors", "avg_duration", "p95_duration"]
    );
    assert_eq!(plan.columns[0].source, ColumnSource::Key(0));
    assert_eq!(plan.columns[4].source, ColumnSource::Aggregate(3));
    assert_eq!(plan.window, WindowSpec::Tumble { size: 60_000 });
    assert_eq!(plan.out_of_orderness, 10_000);
    assert_eq!(plan.late, LatePolicy::Topic);
    assert_eq!(
        plan.fields(),
        [
            Field::Event,
            Field::UserId,
            Field::Timestamp,
            Field::Properties(vec!["url".into()]),
            Field::Properties(vec!["duration_ms".into()])
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
}

#[test]
fn every_filter_form_and_window_parses() {
    let plan = parse(
        "create metric orders as select lower(coalesce(context.campaign.source, 'direct')) as source,
           sum(properties.revenue) as revenue, min(properties.revenue), max(properties.revenue),
           count(properties.coupon) as coupons
         from events
         where (type in ('track', 'page') and event <> 'Test') or not (properties.x like 'a%_b')
           and traits.plan is not null and received_at >= -5 and properties.flag = true
           and context.y is null
         group by source, hop(timestamp, interval '1' minute, interval '5' minutes)
         with (out_of_orderness = '5s', allowed_lateness = '1m', late = 'drop');",
    );
    assert_eq!(
        plan.window,
        WindowSpec::Hop {
            slide: 60_000,
            size: 300_000
        }
    );
    assert_eq!(
        (plan.out_of_orderness, plan.allowed_lateness),
        (5_000, 60_000)
    );
    assert_eq!(plan.late, LatePolicy::Drop);
    assert_eq!(plan.key_names, ["source"]);
    let names: Vec<&str> = plan.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "source",
            "revenue",
            "min(properties.revenue)",
            "max(properties.revenue)",
            "coupons"
        ]
    );
    let filter = plan.filter.unwrap().to_string();
    assert!(filter.contains("(received_at >= -5)"), "{filter}");
    assert!(filter.contains("(properties.x LIKE 'a%_b')"), "{filter}");
    assert!(filter.contains("(type IN ('track', 'page'))"), "{filter}");

    let session = parse(
        "CREATE METRIC s AS SELECT user_id, COUNT(*) FROM events GROUP BY user_id, SESSION(timestamp, INTERVAL '30 minutes')",
    );
    assert_eq!(session.window, WindowSpec::Session { gap: 1_800_000 });
    assert_eq!(session.key_names, ["user_id"]);
    let tumble = parse(
        "CREATE METRIC t AS SELECT COUNT(*) AS n FROM events GROUP BY TUMBLE(timestamp, INTERVAL '500' MILLISECOND)",
    );
    assert_eq!(tumble.window, WindowSpec::Tumble { size: 500 });
    assert!(tumble.keys.is_empty());
}

#[test]
fn group_keys_may_be_expressions_or_absent_from_select() {
    let plan = parse(
        "CREATE METRIC m AS SELECT COUNT(*) AS n FROM events GROUP BY lower(properties.url), TUMBLE(timestamp, INTERVAL '1' HOUR)",
    );
    assert_eq!(plan.key_names, ["lower(properties.url)"]);
    let plan = parse(
        "CREATE METRIC m AS SELECT properties.url, COUNT(*) AS n FROM events GROUP BY properties.url, TUMBLE(timestamp, INTERVAL '1' HOUR)",
    );
    assert_eq!(plan.key_names, ["properties.url"]);
    assert_eq!(plan.columns[0].source, ColumnSource::Key(0));
    let plan = parse(
        "CREATE METRIC m AS SELECT SUM(properties.price) AS total FROM events WHERE properties.price > 10.50 GROUP BY TUMBLE(timestamp, INTERVAL '1' DAY)",
    );
    let Some(Expr::Compare { right, .. }) = plan.filter else {
        panic!()
    };
    assert_eq!(
        *right,
        Expr::Literal(Literal::Number(Decimal::parse_str("10.5").unwrap()))
    );
}

/// Each unsupported construct is named, with its position.
#[test]
fn errors_name_the_construct_and_its_position() {
    let cases: &[(&str, &str)] = &[
        (
            "SELECT COUNT(*) FROM events",
            "line 1, column 1: expected CREATE",
        ),
        (
            "CREATE TABLE t AS SELECT 1",
            "line 1, column 8: expected METRIC",
        ),
        (
            "CREATE METRIC Page AS SELECT COUNT(*) FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "line 1, column 15: \"Page\" is not a valid metric name",
        ),
        ("CREATE METRIC m SELECT", "line 1, column 17: expected AS"),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events\nGROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)\nHAVING COUNT(*) > 1",
            "line 3, column 8: HAVING is not supported",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events GROUP BY user_id",
            "line 1, column 57: GROUP BY needs a window",
        ),
        (
            "CREATE METRIC m AS\n  SELECT properties.a, COUNT(*) FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "line 2, column 10: `properties.a` must appear in GROUP BY",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events WHERE properties.a + 1 > 2 GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "line 1, column 54: the operator + is not supported",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events WHERE\n  CASE WHEN true THEN 1 END = 1 GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "line 2, column 3: CASE is not supported",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events WHERE colour = 'red' GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "line 1, column 54: unknown field `colour`",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM order_lines.x GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "line 1, column 41: unknown source `order_lines.x`",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events e JOIN users u ON e.user_id = u.id GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "JOIN is not supported",
        ),
        (
            "CREATE METRIC m AS SELECT SUM(DISTINCT properties.a) FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "line 1, column 27: SUM(DISTINCT …) is not supported",
        ),
        (
            "CREATE METRIC m AS SELECT MEDIAN(properties.a) FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "line 1, column 27: the function MEDIAN is not supported",
        ),
        (
            "CREATE METRIC m AS SELECT APPROX_PERCENTILE(properties.a, 1.5) FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "line 1, column 59: the quantile must be a number from 0 to 1",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events GROUP BY TUMBLE(received_at, INTERVAL '1' MINUTE)",
            "line 1, column 64: windows are over event time",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MONTH)",
            "unsupported interval unit",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events GROUP BY HOP(timestamp, INTERVAL '1' SECOND, INTERVAL '1' HOUR)",
            "HOP puts each event in 3600 windows",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE), SESSION(timestamp, INTERVAL '1' MINUTE)",
            "line 1, column 97: a metric has exactly one window",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE) WITH (late = 'keep')",
            "line 1, column 109: late must be 'topic' or 'drop'",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE) WITH (speed = 'fast')",
            "line 1, column 102: unknown option speed",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE) WITH (allowed_lateness = 'soon')",
            "\"soon\" is not a duration",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE) ORDER BY 1",
            "ORDER BY is not supported",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE) LIMIT 5",
            "LIMIT is not supported",
        ),
        (
            "CREATE METRIC m AS SELECT * FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "line 1, column 27: SELECT * is not supported",
        ),
        (
            "CREATE METRIC m AS SELECT DISTINCT user_id FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "SELECT DISTINCT is not supported",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE) UNION SELECT 1",
            "UNION",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(* FROM events",
            "line 1, column 35: syntax error: Expected: ), found: FROM",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events GROUP BY",
            "line 1, column 56: syntax error",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events WHERE event = 'unterminated",
            "line 1, column 62: Unterminated string literal",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE) garbage",
            "line 1, column 96: unexpected `garbage`",
        ),
        (
            "CREATE METRIC m AS SELECT SUM(COUNT(*)) FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "aggregates cannot be nested",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FILTER (WHERE COUNT(*) > 1) FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "the aggregate COUNT is only allowed at the top of a SELECT item",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events WHERE lower(event) FILTER (WHERE TRUE) GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "line 1, column",
        ),
        (
            "CREATE METRIC m AS SELECT user_id, user_id, COUNT(*) FROM events GROUP BY user_id, TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "two columns are named \"user_id\"",
        ),
        (
            "CREATE METRIC m AS SELECT properties.url FROM events GROUP BY properties.url, TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "at least one aggregate",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events WHERE properties = 1 GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "name a field inside properties",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events WHERE event = \"x\" GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "unknown field `x`",
        ),
        (
            "CREATE METRIC m AS SELECT COUNT(*) FROM events GROUP BY 1, TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "GROUP BY by position",
        ),
        (
            "CREATE METRIC m AS WITH x AS (SELECT 1) SELECT COUNT(*) FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
            "WITH (common table expressions)",
        ),
    ];
    let mut failures = Vec::new();
    for (sql, expected) in cases {
        let message = error(sql);
        if !message.contains(expected) {
            failures.push(format!(
                "{sql}\n  expected: {expected}\n  got:      {message}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn oversized_and_deeply_nested_definitions_are_rejected() {
    let long = format!(
        "CREATE METRIC m AS SELECT COUNT(*) FROM events WHERE {} GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
        "event = 'x' OR ".repeat(5000) + "TRUE"
    );
    assert!(error(&long).contains("bytes; at most"));
    let nested = format!(
        "CREATE METRIC m AS SELECT COUNT(*) FROM events WHERE {}TRUE{} GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
        "(".repeat(200),
        ")".repeat(200)
    );
    assert!(
        error(&nested).contains("nested too deeply"),
        "{}",
        error(&nested)
    );
}

#[test]
fn streams_name_their_columns_and_read_from_events_or_a_stream() {
    let plan = parse(
        "CREATE STREAM orders AS SELECT properties.revenue, upper(properties.currency) AS currency, \
         user_id FROM events WHERE event = 'Order Completed'",
    );
    let columns = plan.records().unwrap();
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["revenue", "currency", "user_id"]);
    assert_eq!(plan.source, crate::plan::Source::Events);
    assert!(plan.aggregates.is_empty() && plan.filter.is_some());
    assert!(plan.fields().contains(&Field::MessageId));

    let metric = parse(
        "CREATE METRIC revenue AS SELECT SUM(properties.revenue) AS total FROM orders \
         GROUP BY TUMBLE(timestamp, INTERVAL '1' HOUR)",
    );
    assert_eq!(metric.source, crate::plan::Source::Stream("orders".into()));
    assert_eq!(metric.source.topic("events"), "orders");
    assert!(metric.records().is_none());
    // A stream's columns by their names: `revenue` is `properties.revenue`; envelope fields
    // stay themselves.
    let bare = parse(
        "CREATE METRIC revenue AS SELECT currency, COUNT(DISTINCT user_id) AS buyers, SUM(revenue) AS total \
         FROM orders WHERE revenue > 0 GROUP BY currency, TUMBLE(timestamp, INTERVAL '1' HOUR)",
    );
    assert_eq!(bare.keys, [props("currency")]);
    assert_eq!(bare.key_names, ["currency"]);
    assert_eq!(bare.aggregates[0].arg, Some(Expr::Field(Field::UserId)));
    assert_eq!(bare.aggregates[1].arg, Some(props("revenue")));
    assert_eq!(
        bare.filter.as_ref().map(ToString::to_string).as_deref(),
        Some("(properties.revenue > 0)")
    );
    // Reading events, a plain unknown name is still an error, and so after a stream's plan.
    assert!(
        error("CREATE METRIC m AS SELECT SUM(revenue) AS t FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' HOUR)")
            .contains("unknown field `revenue`")
    );
    let chained = parse("CREATE STREAM big AS SELECT revenue FROM orders WHERE revenue > 100");
    assert_eq!(chained.records().unwrap()[0].name, "revenue");
    assert_eq!(chained.source, crate::plan::Source::Stream("orders".into()));
}

#[test]
fn stream_definitions_that_cannot_work_are_refused_by_name() {
    for (sql, wanted) in [
        (
            "CREATE STREAM o AS SELECT COUNT(*) AS n FROM events",
            "a stream has no aggregates",
        ),
        (
            "CREATE STREAM o AS SELECT lower(event) FROM events",
            "name the column `lower(event)` with AS",
        ),
        (
            "CREATE STREAM o AS SELECT event, properties.event FROM events",
            "two columns are named \"event\"",
        ),
        (
            "CREATE STREAM o AS SELECT event FROM events GROUP BY event",
            "a stream has no GROUP BY",
        ),
        (
            "CREATE STREAM o AS SELECT event FROM events WHERE type = 'track' WITH (late = 'drop')",
            "a stream takes no WITH",
        ),
        (
            "CREATE STREAM events AS SELECT event FROM events",
            "cannot be named events",
        ),
        (
            "CREATE STREAM o AS SELECT * FROM events",
            "SELECT * is not supported",
        ),
        (
            "CREATE TABLE o AS SELECT event FROM events",
            "expected METRIC, STREAM, SESSIONS or IDENTITY",
        ),
        (
            "CREATE STREAM o AS SELECT event FROM \"Orders\"",
            "unknown source",
        ),
    ] {
        let error = error(sql);
        assert!(error.contains(wanted), "{sql}: {error}");
    }
}

#[test]
fn an_aggregate_filter_keeps_its_own_events() {
    let plan = parse(
        "CREATE METRIC m AS SELECT COUNT(*) AS all_events, \
         COUNT(*) FILTER (WHERE type = 'page') AS pages, \
         SUM(properties.revenue) FILTER (WHERE event = 'Order Completed') AS revenue \
         FROM events GROUP BY TUMBLE(timestamp, INTERVAL '1' MINUTE)",
    );
    assert_eq!(
        plan.aggregates.len(),
        3,
        "a filtered COUNT(*) is its own aggregate"
    );
    assert_eq!(plan.aggregates[0].filter, None);
    assert_eq!(
        plan.aggregates[1]
            .filter
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("(type = 'page')")
    );
    assert_eq!(plan.aggregates[2].kind, AggregateKind::Sum);
    assert!(
        plan.fields().contains(&Field::Event),
        "filters' fields are scanned"
    );
}

#[test]
fn sessions_take_a_gap_a_max_length_a_source_and_options() {
    let plan = parse("CREATE SESSIONS visits GAP '30m'");
    assert_eq!(plan.name, "visits");
    assert_eq!(plan.window, WindowSpec::Session { gap: 1_800_000 });
    assert_eq!(
        plan.output,
        Output::Sessions {
            max_length: 86_400_000
        }
    );
    assert_eq!(plan.source, Source::Events);
    assert_eq!(plan.out_of_orderness, DEFAULTS.out_of_orderness);
    assert_eq!(plan.allowed_lateness, 0);
    assert!(plan.is_stream() && plan.records().is_none());
    assert_eq!(plan.key_names, ["visitor"]);

    let plan = parse(
        "create sessions s GAP INTERVAL '10' MINUTE MAX LENGTH '2h' FROM web \
         WITH (out_of_orderness = '5s', late = 'drop');",
    );
    assert_eq!(plan.window, WindowSpec::Session { gap: 600_000 });
    assert_eq!(
        plan.output,
        Output::Sessions {
            max_length: 7_200_000
        }
    );
    assert_eq!(plan.source, Source::Stream("web".into()));
    assert_eq!(plan.out_of_orderness, 5_000);
    assert_eq!(plan.late, LatePolicy::Drop);

    // WHERE keeps events out of every session, on top of the visitor check; reading a
    // stream, its columns go by their names.
    let plan = parse("CREATE SESSIONS s GAP '30m' WHERE context.device.type <> 'bot'");
    assert_eq!(
        plan.filter.as_ref().map(ToString::to_string).as_deref(),
        Some(
            "((context.device.type <> 'bot') AND ((anonymous_id IS NOT NULL) OR (user_id IS NOT NULL)))"
        )
    );
    let plan = parse("CREATE SESSIONS s GAP '30m' FROM web WHERE device <> 'bot'");
    assert!(
        plan.filter
            .as_ref()
            .is_some_and(|f| f.to_string().contains("properties.device")),
        "{:?}",
        plan.filter
    );

    for (sql, wanted) in [
        ("CREATE SESSIONS s", "expected GAP after the sessions' name"),
        ("CREATE SESSIONS s GAP 'soon'", "GAP: "),
        ("CREATE SESSIONS s GAP '0s'", "GAP must be longer than 0"),
        (
            "CREATE SESSIONS s GAP '30m' MAX '1h'",
            "expected MAX LENGTH",
        ),
        (
            "CREATE SESSIONS s GAP '30m' MAX LENGTH '10m'",
            "MAX LENGTH is shorter than GAP",
        ),
        (
            "CREATE SESSIONS s GAP '30m' FROM s",
            "cannot read themselves",
        ),
        ("CREATE SESSIONS events GAP '30m'", "cannot be named events"),
        (
            "CREATE SESSIONS s GAP '30m' WITH (allowed_lateness = '1m')",
            "sessions take no allowed_lateness",
        ),
        (
            "CREATE SESSIONS s GAP '30m' WITH (colour = 'red')",
            "unknown option colour",
        ),
        (
            "CREATE SESSIONS s GAP '30m' GROUP BY x",
            "unexpected `GROUP`",
        ),
        (
            "CREATE SESSIONS s GAP '30m' WHERE x = 1",
            "unknown field `x`",
        ),
        (
            "CREATE SESSIONS s GAP '30m' WHERE COUNT(*) > 1",
            "only allowed at the top of a SELECT item",
        ),
        (
            "CREATE SESSIONS Bad GAP '30m'",
            "is not a valid metric name",
        ),
    ] {
        let message = error(sql);
        assert!(message.contains(wanted), "{sql}: {message}");
    }
}
