//! PostgreSQL's own: each metric's BI view (`metric_<name>`), read with plain SQL as psql,
//! Metabase or Grafana read it, checked against what the store's query path gives for the same
//! rows, decoded as the query API decodes them. Like the contract, these run against the
//! database `SLUICE_TEST_POSTGRES` names and fail without it.

use sluice_core::time::Millis;
use sluice_store::testing::{metric, postgres_url};
use sluice_store::{
    Commit, MetricCommit, MetricRecord, PostgresStore, RowQuery, StoreBackend, StoreError,
    StoredRow,
};
use sluice_stream::agg::{Input, OutputValue, PartialState};
use sluice_stream::decimal::Decimal;
use sluice_stream::eval::distinct_hash;
use sluice_stream::keys::{GroupKey, KeyValue, encode_text, encode_value};
use sluice_stream::plan::AggregateKind;
use sluice_stream::render;
use sluice_stream::value::Value;
use std::borrow::Cow;
use std::sync::Arc;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Keys of every type but numbers, and every kind of aggregate value.
const Q1: &str = "CREATE METRIC q1 AS SELECT properties.url AS url, properties.price > 10 AS big, \
    COUNT(*) AS views, COUNT(DISTINCT user_id) AS visitors, SUM(properties.price) AS revenue, \
    AVG(properties.price) AS avg_price, APPROX_PERCENTILE(properties.ms, 0.95) AS p95 \
    FROM events GROUP BY url, big, TUMBLE(timestamp, INTERVAL '1' MINUTE)";

/// 2024-01-01T00:00:00Z and the next two minutes: the windows' bounds.
const T0: Millis = 1_704_067_200_000;
const T1: Millis = T0 + 60_000;
const T2: Millis = T1 + 60_000;

/// A window bound as psql shows it in UTC.
fn shown(instant: Millis) -> &'static str {
    match instant {
        T0 => "2024-01-01 00:00:00+00",
        T1 => "2024-01-01 00:01:00+00",
        T2 => "2024-01-01 00:02:00+00",
        other => panic!("no window bound at {other}"),
    }
}

/// An event as q1 reads it: user, price, duration in ms.
type Event = (&'static str, &'static str, i64);

/// q1's encoded group key.
fn key(tenant: &str, url: &str, big: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_text(tenant.as_bytes(), &mut bytes);
    encode_value(&Value::Str(Cow::Borrowed(url.as_bytes())), &mut bytes);
    encode_value(&Value::Bool(big), &mut bytes);
    bytes
}

/// q1's encoded state of `events`, as the engine computes it.
fn state(events: &[Event]) -> Vec<u8> {
    let plan = sluice_stream::sql::parse_metric(Q1, &defaults()).unwrap();
    let kinds: Vec<AggregateKind> = plan.aggregates.iter().map(|a| a.kind).collect();
    let mut state = PartialState::new(&kinds);
    for &(user, price, ms) in events {
        let price = Decimal::parse_str(price).unwrap();
        for (aggregate, agg_state) in kinds.iter().zip(&mut state.states) {
            agg_state.update(match aggregate {
                AggregateKind::CountStar => Input::Present,
                AggregateKind::CountDistinct => {
                    Input::Hash(distinct_hash(&Value::Str(Cow::Borrowed(user.as_bytes()))).unwrap())
                }
                AggregateKind::Sum | AggregateKind::Avg => Input::Number(price),
                AggregateKind::ApproxPercentile { .. } => Input::Number(Decimal::from_i64(ms)),
                other => panic!("q1 has no {other:?}"),
            });
        }
    }
    state.encode()
}

fn defaults() -> sluice_stream::sql::MetricDefaults {
    sluice_stream::sql::MetricDefaults {
        out_of_orderness: 0,
        allowed_lateness: 0,
        late: sluice_stream::plan::LatePolicy::Drop,
    }
}

/// A one-minute window of q1 starting at `start`, from `partition`.
fn window(
    partition: u32,
    (tenant, url, big): (&str, &str, bool),
    start: Millis,
    events: &[Event],
) -> StoredRow {
    StoredRow {
        partition: Some(partition),
        tenant: tenant.into(),
        key: key(tenant, url, big),
        window_start: start,
        window_end: start + 60_000,
        version: 1,
        state: state(events),
    }
}

/// A checkpoint of q1's generation `generation` closing `closed` and leaving `open` open.
fn commit(generation: u32, offset: u64, closed: &[StoredRow], open: &[StoredRow]) -> Arc<Commit> {
    Arc::new(Commit {
        offset,
        event_time: Some(T2),
        log_epoch: 0,
        metrics: vec![MetricCommit {
            metric: "q1".into(),
            generation,
            watermark: Some(T1),
            retracted: vec![],
            closed: closed.iter().map(StoredRow::as_changed).collect(),
            changed: open.iter().map(StoredRow::as_changed).collect(),
        }],
        output: Vec::new(),
        note: None,
    })
}

/// A store and a plain SQL client (in UTC) on one fresh schema.
async fn store_and_client(name: &str) -> (StoreBackend, Client, String) {
    let url = postgres_url(name).await;
    let store = PostgresStore::connect(&url)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    (StoreBackend::from(store), sql_client(&url).await, url)
}

async fn sql_client(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute("SET TIME ZONE 'UTC'").await.unwrap();
    client
}

async fn create_q1(store: &StoreBackend, sql: &str) {
    store
        .create_metric(MetricRecord {
            sql: sql.into(),
            ..metric("q1")
        })
        .await
        .unwrap();
}

/// `sql`'s rows as psql shows them: text, NULL as `None`.
async fn text_rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Everything `SELECT * FROM metric_q1` gives, in view order.
async fn view(client: &Client) -> Vec<Vec<Option<String>>> {
    text_rows(
        client,
        "SELECT * FROM metric_q1 ORDER BY tenant, window_start, url, big",
    )
    .await
}

/// Asserts that the view shows exactly the final rows of `generation` the store's query path
/// gives, with the values the query API computes from them (`render`, the API's own text):
/// numbers as written, booleans as `t`/`f`, NULL where the API says `null` or `"overflow"`,
/// percentiles equal as floats. Returns the view's rows.
async fn assert_view_is_the_query_path(
    store: &StoreBackend,
    client: &Client,
    generation: u32,
) -> Vec<Vec<Option<String>>> {
    let plan = sluice_stream::sql::parse_metric(Q1, &defaults()).unwrap();
    let kinds: Vec<AggregateKind> = plan.aggregates.iter().map(|a| a.kind).collect();
    let mut expected: Vec<(Vec<Option<String>>, Vec<OutputValue>)> = Vec::new();
    for tenant in ["a", "b", "c"] {
        let rows = store
            .query_rows(RowQuery {
                metric: "q1".into(),
                generation,
                tenant: tenant.into(),
                from: Millis::MIN,
                to: Millis::MAX,
            })
            .await
            .unwrap();
        for row in rows.iter().filter(|row| row.partition.is_none()) {
            let key = GroupKey::from_bytes(&row.key).unwrap();
            let mut columns = vec![
                Some(key.tenant().to_owned()),
                Some(shown(row.window_start).to_owned()),
                Some(shown(row.window_end).to_owned()),
            ];
            columns.extend(key.values().iter().map(|value| match value {
                KeyValue::Null => None,
                KeyValue::Bool(value) => Some(if *value { "t" } else { "f" }.to_owned()),
                KeyValue::Number(number) => Some(number.to_string()),
                KeyValue::Text(text) => Some(text.clone()),
            }));
            let values = PartialState::decode(&row.state, Some(&kinds))
                .unwrap()
                .finalize(&kinds);
            expected.push((columns, values));
        }
    }
    // The view's order: tenant, window start, url, big (false first).
    expected.sort_by(|(a, _), (b, _)| a.cmp(b));
    let shown_rows = view(client).await;
    assert_eq!(shown_rows.len(), expected.len(), "{shown_rows:?}");
    for (row, (columns, values)) in shown_rows.iter().zip(&expected) {
        assert_eq!(row[..columns.len()], columns[..], "{row:?}");
        for (cell, value) in row[columns.len()..].iter().zip(values) {
            match value {
                OutputValue::Float(number) => {
                    let cell: f64 = cell.as_deref().unwrap().parse().unwrap();
                    assert_eq!(cell, *number, "{row:?}");
                }
                OutputValue::Null | OutputValue::Overflow => assert_eq!(*cell, None, "{row:?}"),
                other => {
                    let mut text = String::new();
                    render::value(other, &mut text);
                    assert_eq!(cell.as_deref(), Some(text.as_str()), "{row:?}");
                }
            }
        }
    }
    shown_rows
}

/// The column of `name` in a row of q1's view.
fn column(row: &[Option<String>], name: &str) -> Option<String> {
    let names = [
        "tenant",
        "window_start",
        "window_end",
        "url",
        "big",
        "views",
        "visitors",
        "revenue",
        "avg_price",
        "p95",
    ];
    row[names.iter().position(|n| *n == name).unwrap()].clone()
}

async fn view_exists(client: &Client) -> bool {
    text_rows(client, "SELECT to_regclass('metric_q1') IS NOT NULL").await[0][0].as_deref()
        == Some("t")
}

#[tokio::test]
async fn views_show_final_windows_with_the_values_of_the_query_path() {
    let (store, client, _) = store_and_client("views_values").await;
    create_q1(&store, Q1).await;
    let columns: Vec<(String, Type)> = client
        .prepare("SELECT * FROM metric_q1")
        .await
        .unwrap()
        .columns()
        .iter()
        .map(|c| (c.name().to_owned(), c.type_().clone()))
        .collect();
    let typed = |name: &str, ty: Type| (name.to_owned(), ty);
    assert_eq!(
        columns,
        [
            typed("tenant", Type::TEXT),
            typed("window_start", Type::TIMESTAMPTZ),
            typed("window_end", Type::TIMESTAMPTZ),
            typed("url", Type::TEXT),
            typed("big", Type::BOOL),
            typed("views", Type::INT8),
            typed("visitors", Type::INT8),
            typed("revenue", Type::NUMERIC),
            typed("avg_price", Type::NUMERIC),
            typed("p95", Type::FLOAT8),
        ]
    );
    assert!(view(&client).await.is_empty());

    let zero = store.claim("q1@0", 0, 0, 0).await.unwrap().epoch;
    let one = store.claim("q1@0", 1, 0, 0).await.unwrap().epoch;
    let home = ("a", "/home", true);
    // A sum beyond the exact decimal range: "overflow" to the API, NULL in the view.
    let huge = "100000000000000000000000000000000000000";
    let closed = [
        window(0, home, T0, &[("u1", "12.50", 100), ("u2", "30", 250)]),
        window(0, ("a", "/cart", false), T0, &[("u1", "5", 80)]),
        window(0, ("b", "/home", true), T0, &[("u9", "49.90", 10)]),
        window(0, ("c", "/", true), T0, &[("u1", huge, 1), ("u2", huge, 2)]),
    ];
    let open = [window(0, home, T1, &[("u3", "1", 1)])];
    store
        .commit("q1@0", 0, zero, commit(0, 10, &closed, &open))
        .await
        .unwrap();
    let rows = assert_view_is_the_query_path(&store, &client, 0).await;
    assert_eq!(rows.len(), 4, "open windows are not in the view: {rows:?}");
    let a_home = &rows[1];
    assert_eq!(column(a_home, "url").as_deref(), Some("/home"));
    assert_eq!(column(a_home, "big").as_deref(), Some("t"));
    assert_eq!(column(a_home, "window_start").as_deref(), Some(shown(T0)));
    assert_eq!(column(a_home, "views").as_deref(), Some("2"));
    assert_eq!(column(a_home, "visitors").as_deref(), Some("2"));
    assert_eq!(column(a_home, "revenue").as_deref(), Some("42.50"));
    assert_eq!(
        column(a_home, "avg_price").as_deref(),
        Some("21.250000"),
        "as the API writes it"
    );
    let p95: f64 = column(a_home, "p95").unwrap().parse().unwrap();
    // DDSketch's rank of q = 0.95 among two values is the first, within its 1 %.
    assert!((p95 - 100.0).abs() <= 1.0, "{p95}");
    let c_root = &rows[3];
    assert_eq!(column(c_root, "views").as_deref(), Some("2"));
    assert_eq!(column(c_root, "revenue"), None, "an overflowed sum");
    assert_eq!(column(c_root, "avg_price"), None, "an overflowed average");

    // Partition 1 closes a:/home too: the final row, and the view, hold both parts.
    store
        .commit(
            "q1@0",
            1,
            one,
            commit(0, 20, &[window(1, home, T0, &[("u1", "7.50", 400)])], &[]),
        )
        .await
        .unwrap();
    let rows = assert_view_is_the_query_path(&store, &client, 0).await;
    assert_eq!(rows.len(), 4);
    let a_home = &rows[1];
    assert_eq!(column(a_home, "views").as_deref(), Some("3"));
    assert_eq!(column(a_home, "visitors").as_deref(), Some("2"), "u1 twice");
    assert_eq!(column(a_home, "revenue").as_deref(), Some("50.00"));
    let undecoded = text_rows(&client, "SELECT count(*) FROM finals WHERE vals IS NULL").await;
    assert_eq!(undecoded[0][0].as_deref(), Some("0"));
}

#[tokio::test]
async fn a_generation_switch_flips_the_view_in_its_transaction() {
    let (store, client, _) = store_and_client("views_generations").await;
    create_q1(&store, Q1).await;
    let home = ("a", "/home", true);
    let epoch = store.claim("q1@0", 0, 0, 0).await.unwrap().epoch;
    let old = [
        window(0, home, T0, &[("u1", "1", 1)]),
        window(0, home, T1, &[("u1", "1", 1)]),
    ];
    store
        .commit("q1@0", 0, epoch, commit(0, 10, &old, &[]))
        .await
        .unwrap();
    // A replay computes generation 1 beside it: the view still shows generation 0.
    let epoch = store.claim("q1@1", 0, 0, 0).await.unwrap().epoch;
    let replayed = [
        window(0, home, T0, &[("u1", "2", 1), ("u2", "2", 2)]),
        window(
            0,
            home,
            T1,
            &[("u1", "3", 1), ("u2", "3", 2), ("u3", "3", 3)],
        ),
    ];
    store
        .commit("q1@1", 0, epoch, commit(1, 10, &replayed, &[]))
        .await
        .unwrap();
    let rows = assert_view_is_the_query_path(&store, &client, 0).await;
    let views: Vec<_> = rows.iter().map(|row| column(row, "views")).collect();
    assert_eq!(views, [Some("1".into()), Some("1".into())]);

    // The switch keeps generation 0's windows before T1: copied with their values.
    store.switch_generation("q1", 1, Some(T1)).await.unwrap();
    let rows = assert_view_is_the_query_path(&store, &client, 1).await;
    let views: Vec<_> = rows.iter().map(|row| column(row, "views")).collect();
    assert_eq!(views, [Some("1".into()), Some("3".into())]);
    let undecoded = text_rows(&client, "SELECT count(*) FROM finals WHERE vals IS NULL").await;
    assert_eq!(undecoded[0][0].as_deref(), Some("0"));
}

#[tokio::test]
async fn a_deleted_metric_takes_its_view_and_a_new_definition_gets_its_own() {
    let (store, client, _) = store_and_client("views_lifecycle").await;
    create_q1(&store, Q1).await;
    assert!(view_exists(&client).await);
    assert!(store.delete_metric("q1").await.unwrap());
    assert!(!view_exists(&client).await);

    // The same name with another definition (as a changed [[metrics]] entry is recreated).
    let other = "CREATE METRIC q1 AS SELECT event, COUNT(*) AS n FROM events \
                 GROUP BY event, TUMBLE(timestamp, INTERVAL '1' MINUTE)";
    create_q1(&store, other).await;
    let columns: Vec<String> = client
        .prepare("SELECT * FROM metric_q1")
        .await
        .unwrap()
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    assert_eq!(
        columns,
        ["tenant", "window_start", "window_end", "event", "n"]
    );
    assert!(store.delete_metric("q1").await.unwrap());
}

#[tokio::test]
async fn views_of_the_user_s_that_read_a_metric_s_view_are_never_dropped() {
    let (store, client, _) = store_and_client("views_dependents").await;
    create_q1(&store, Q1).await;
    client
        .batch_execute("CREATE VIEW dashboard AS SELECT tenant, url, views FROM metric_q1")
        .await
        .unwrap();
    // Deleting the metric keeps its view, empty, for the dashboard.
    assert!(store.delete_metric("q1").await.unwrap());
    assert!(store.metrics().await.unwrap().is_empty());
    assert!(view_exists(&client).await);
    assert!(
        text_rows(&client, "SELECT * FROM dashboard")
            .await
            .is_empty()
    );

    // Made again with the same columns, the view is replaced in place: the dashboard reads on.
    create_q1(&store, Q1).await;
    let epoch = store.claim("q1@0", 0, 0, 0).await.unwrap().epoch;
    let closed = [window(0, ("a", "/home", true), T0, &[("u1", "1", 1)])];
    store
        .commit("q1@0", 0, epoch, commit(0, 10, &closed, &[]))
        .await
        .unwrap();
    assert_eq!(
        text_rows(&client, "SELECT * FROM dashboard").await,
        [[
            Some("a".to_owned()),
            Some("/home".to_owned()),
            Some("1".to_owned())
        ]]
    );

    // Other columns cannot replace it while the dashboard reads it: refused, naming it.
    assert!(store.delete_metric("q1").await.unwrap());
    let other = "CREATE METRIC q1 AS SELECT event, COUNT(*) AS n FROM events \
                 GROUP BY event, TUMBLE(timestamp, INTERVAL '1' MINUTE)";
    let error = store
        .create_metric(MetricRecord {
            sql: other.into(),
            ..metric("q1")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Invalid(ref text) if text.contains("dashboard")),
        "{error}"
    );
    assert!(store.metrics().await.unwrap().is_empty(), "not created");

    // Once the user dropped theirs, deleting (even a metric that is gone) drops the view.
    client.batch_execute("DROP VIEW dashboard").await.unwrap();
    assert!(!store.delete_metric("q1").await.unwrap());
    assert!(!view_exists(&client).await);
    create_q1(&store, other).await;
    assert!(view_exists(&client).await);
}

#[tokio::test]
async fn final_rows_of_an_older_store_are_decoded_at_start() {
    let (store, client, url) = store_and_client("views_upgrade").await;
    create_q1(&store, Q1).await;
    let epoch = store.claim("q1@0", 0, 0, 0).await.unwrap().epoch;
    let closed = [
        window(0, ("a", "/home", true), T0, &[("u1", "12.50", 100)]),
        window(0, ("b", "/cart", false), T1, &[("u2", "3", 7)]),
    ];
    store
        .commit("q1@0", 0, epoch, commit(0, 10, &closed, &[]))
        .await
        .unwrap();
    let before = assert_view_is_the_query_path(&store, &client, 0).await;
    // The schema as sluice left it before views: no view, no decoded values (nor replays, the
    // schema registry, boards, alerts, erasures, stream ranges or positions' notes).
    client
        .batch_execute(
            "DROP VIEW metric_q1; DROP INDEX finals_undecoded; DROP TABLE replays; \
             DROP TABLE schema_ids, schema_versions, schema_settings, boards, alert_progress, alert_rules, alert_outbox, alert_silences, erasures, stream_ranges; \
             ALTER TABLE positions DROP COLUMN note; ALTER TABLE finals DROP COLUMN keys, DROP COLUMN vals; UPDATE sluice_schema SET version = 1",
        )
        .await
        .unwrap();
    drop(store);

    let store = StoreBackend::from(PostgresStore::connect(&url).await.unwrap());
    let after = assert_view_is_the_query_path(&store, &client, 0).await;
    assert_eq!(after, before);
    let undecoded = text_rows(&client, "SELECT count(*) FROM finals WHERE vals IS NULL").await;
    assert_eq!(undecoded[0][0].as_deref(), Some("0"));
}
