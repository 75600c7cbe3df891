//! BI views of metric results (PostgreSQL only): for each metric a view, `metric_<name>`, with
//! one row per final (tenant, group key, window) of its current generation and a plain SQL
//! column per group key and aggregate value, so psql, Metabase or Grafana read results without
//! sluice.
//!
//! Group keys and states are the engine's binary encodings, which SQL cannot read, so sluice
//! decodes every final row it writes (insert or merge) into two JSONB arrays beside them:
//! `finals.keys`, the group key's values, and `finals.vals`, the aggregates' values, both in
//! plan order and rendered by `sluice_stream::render` exactly as the query API shows them
//! (`49.90`, `"overflow"`, `null`). The view picks each element out with its SQL type:
//!
//! | what | column type |
//! |---|---|
//! | `tenant` | `TEXT` |
//! | `window_start`, `window_end` | `TIMESTAMPTZ` |
//! | a key that is a condition (`=`, `LIKE`, `IS NULL`, `AND`, …) | `BOOLEAN` |
//! | a key that is `timestamp` or `received_at` | `BIGINT` (epoch ms) |
//! | a key that is a number constant | `NUMERIC` |
//! | any other key (fields, `lower`, `coalesce`, text) | `TEXT` (a number or boolean as the API writes it) |
//! | `COUNT(*)`, `COUNT(x)`, `COUNT(DISTINCT x)` (the estimate, rounded) | `BIGINT` |
//! | `SUM`, `MIN`, `MAX`, `AVG` (exact decimals) | `NUMERIC` (an overflowed sum is NULL) |
//! | `APPROX_PERCENTILE` | `DOUBLE PRECISION` |
//!
//! A JSON value of another kind than the column's (`"overflow"` for a sum) reads as NULL rather
//! than failing the reader's query. Column names are the API's (key names, then aggregate
//! names), cut to PostgreSQL's 63 bytes and given a suffix (`_2`) where two would be one.
//!
//! The view reads the current generation from `metrics` in the same statement (one snapshot),
//! so a replay's switch flips it in the switch's own transaction, and its rows from `finals`
//! only, so open windows never show; a reader's filter on `tenant` seeks the primary key.
//!
//! A view is made in the transaction that creates its metric, made again at every start (a
//! newer sluice may lay it out differently; in place when its columns stay, so views users
//! built on it keep working) and dropped in the transaction that deletes the metric — unless
//! views of the user's read it: sluice never drops what it did not make, so it then stays,
//! empty. Those statements hold the migrations' advisory lock, so nodes starting together never
//! race on one view. At start, final rows written before the columns existed are decoded too.

use super::Client;
use super::schema::MIGRATION_LOCK;
use parking_lot::Mutex;
use sluice_core::time::Millis;
use sluice_stream::agg::PartialState;
use sluice_stream::keys::GroupKey;
use sluice_stream::plan::{AggregateKind, Expr, Field, LatePolicy, Literal, MetricPlan};
use sluice_stream::render;
use sluice_stream::sql::{MetricDefaults, parse_metric};
use std::collections::HashMap;
use std::sync::Arc;
use tokio_postgres::{GenericClient, Transaction};

/// PostgreSQL's longest identifier in bytes (it cuts longer ones silently).
const MAX_IDENTIFIER: usize = 63;

/// Final rows decoded per statement when filling rows written before `keys` and `vals`.
const FILL_BATCH: i64 = 1_000;

/// A metric's plan from its SQL, for the shape of its results (keys and aggregates, which no
/// default changes); `None` when the SQL is not a metric's (the store's own tests store
/// placeholders), which then has no view and rows without `keys` and `vals`.
fn plan_of(sql: &str) -> Option<MetricPlan> {
    let defaults = MetricDefaults {
        out_of_orderness: 0,
        allowed_lateness: 0,
        late: LatePolicy::Drop,
    };
    parse_metric(sql, &defaults).ok()
}

/// Parsed plans by metric name, with the SQL each came from: a commit reads its metric's SQL
/// (one primary-key read, in its transaction) and parses it again only when it changed, as it
/// does when another node deletes and creates the metric anew. At most one entry per metric.
#[derive(Debug, Default)]
pub(super) struct Plans(Mutex<HashMap<String, (String, Option<Arc<MetricPlan>>)>>);

impl Plans {
    /// The plan of `metric` defined by `sql`.
    pub(super) fn of(&self, metric: &str, sql: &str) -> Option<Arc<MetricPlan>> {
        let mut plans = self.0.lock();
        if let Some((known, plan)) = plans.get(metric)
            && known == sql
        {
            return plan.clone();
        }
        let plan = plan_of(sql).map(Arc::new);
        plans.insert(metric.to_owned(), (sql.to_owned(), plan.clone()));
        plan
    }

    /// Forgets a deleted metric.
    pub(super) fn forget(&self, metric: &str) {
        self.0.lock().remove(metric);
    }

    /// The plan of `metric` as `client` sees it now; `None` without such a metric.
    pub(super) async fn current(
        &self,
        client: &impl GenericClient,
        metric: &str,
    ) -> Result<Option<Arc<MetricPlan>>, tokio_postgres::Error> {
        let row = client
            .query_opt("SELECT sql FROM metrics WHERE name = $1", &[&metric])
            .await?;
        Ok(row.and_then(|row| self.of(metric, row.get(0))))
    }
}

/// A final row's `keys` and `vals`: its group key's values and its aggregates' values as JSON
/// arrays, as the query API renders them; or why the row does not decode under `plan`.
pub(super) fn decoded(
    plan: &MetricPlan,
    key: &[u8],
    state: &[u8],
) -> Result<(String, String), String> {
    let key = GroupKey::from_bytes(key).map_err(|error| error.to_string())?;
    if key.values().len() != plan.keys.len() {
        return Err(format!(
            "a group key of {} values in metric {:?}, which has {} keys",
            key.values().len(),
            plan.name,
            plan.keys.len()
        ));
    }
    let kinds: Vec<AggregateKind> = plan.aggregates.iter().map(|a| a.kind).collect();
    let state = PartialState::decode(state, Some(&kinds)).map_err(|error| error.to_string())?;
    Ok((
        render::key_array(&key),
        render::value_array(&state.finalize(&kinds)),
    ))
}

/// The name of `metric`'s view: `metric_<name>`; a name of more than 56 characters is cut and
/// ends with 8 hex digits of its FNV-1a hash, so two metrics never share a view.
pub fn view_name(metric: &str) -> String {
    let full = format!("metric_{metric}");
    if full.len() <= MAX_IDENTIFIER {
        return full;
    }
    let hash = metric.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    format!("{}_{hash:08x}", cut(&full, MAX_IDENTIFIER - 9))
}

/// The SQL type of a view column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SqlType {
    Text,
    Boolean,
    Bigint,
    Numeric,
    Double,
}

impl SqlType {
    /// Element `index` of the JSONB array column `array` of `finals` as this type: NULL where
    /// the element is JSON of another kind.
    fn element(self, array: &str, index: usize) -> String {
        let (json, cast) = match self {
            SqlType::Text => return format!("f.{array} ->> {index}"),
            SqlType::Boolean => ("boolean", "BOOLEAN"),
            // Through NUMERIC, which takes any JSON number, never failing on a fraction.
            SqlType::Bigint => ("number", "NUMERIC::BIGINT"),
            SqlType::Numeric => ("number", "NUMERIC"),
            SqlType::Double => ("number", "DOUBLE PRECISION"),
        };
        format!(
            "CASE jsonb_typeof(f.{array} -> {index}) WHEN '{json}' THEN (f.{array} ->> {index})::{cast} END"
        )
    }
}

/// The type of a group key's values: booleans for conditions, epoch milliseconds for the
/// event's instants, exact numbers for number constants, and text for the rest — a property
/// may hold any JSON value, and text shows each as the API does (`true`, `12.5`).
fn key_type(key: &Expr) -> SqlType {
    match key {
        Expr::Compare { .. }
        | Expr::InList { .. }
        | Expr::Like { .. }
        | Expr::IsNull { .. }
        | Expr::And(..)
        | Expr::Or(..)
        | Expr::Not(_)
        | Expr::Literal(Literal::Bool(_)) => SqlType::Boolean,
        Expr::Field(Field::Timestamp | Field::ReceivedAt) => SqlType::Bigint,
        Expr::Literal(Literal::Number(_)) => SqlType::Numeric,
        Expr::Coalesce(args) => {
            let mut types = args
                .iter()
                .filter(|arg| !matches!(arg, Expr::Literal(Literal::Null)))
                .map(key_type);
            let first = types.next().unwrap_or(SqlType::Text);
            if types.all(|other| other == first) {
                first
            } else {
                SqlType::Text
            }
        }
        Expr::Field(_) | Expr::Literal(_) | Expr::Lower(_) | Expr::Upper(_) => SqlType::Text,
    }
}

/// The type of an aggregate's values, as the API shows them: counts and distinct estimates
/// are integers, sums, extremes and averages exact decimals, percentiles floats.
fn value_type(kind: &AggregateKind) -> SqlType {
    match kind {
        AggregateKind::CountStar | AggregateKind::Count | AggregateKind::CountDistinct => {
            SqlType::Bigint
        }
        AggregateKind::Sum | AggregateKind::Min | AggregateKind::Max | AggregateKind::Avg => {
            SqlType::Numeric
        }
        AggregateKind::ApproxPercentile { .. } => SqlType::Double,
        // Sessions' summaries, never a view's column (sessions get no view).
        AggregateKind::First | AggregateKind::Last => SqlType::Text,
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `name` as a quoted identifier.
fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a string constant, whatever `standard_conforming_strings` says.
fn literal(text: &str) -> String {
    format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// The view's column names: `tenant`, `window_start`, `window_end`, the group keys' names and
/// the aggregates' names, each cut to 63 bytes and made unique with a suffix.
fn column_names(plan: &MetricPlan) -> Vec<String> {
    let wanted = ["tenant", "window_start", "window_end"]
        .into_iter()
        .chain(plan.key_names.iter().map(String::as_str))
        .chain(render::aggregate_names(plan));
    let mut names: Vec<String> = Vec::new();
    for name in wanted {
        let name = if name.is_empty() { "column" } else { name };
        let mut candidate = cut(name, MAX_IDENTIFIER).to_owned();
        let mut number = 1;
        while names.contains(&candidate) {
            number += 1;
            let suffix = format!("_{number}");
            candidate = format!("{}{suffix}", cut(name, MAX_IDENTIFIER - suffix.len()));
        }
        names.push(candidate);
    }
    names
}

/// The statement making the view of `metric` (`CREATE OR REPLACE` with `replace`).
fn create_view(metric: &str, plan: &MetricPlan, replace: bool) -> String {
    let instant =
        |column: &str| format!("TIMESTAMPTZ 'epoch' + f.{column} * INTERVAL '1 millisecond'");
    let columns = [
        "f.tenant".to_owned(),
        instant("window_start"),
        instant("window_end"),
    ]
    .into_iter()
    .chain(
        plan.keys
            .iter()
            .enumerate()
            .map(|(index, key)| key_type(key).element("keys", index)),
    )
    .chain(
        plan.aggregates
            .iter()
            .enumerate()
            .map(|(index, aggregate)| value_type(&aggregate.kind).element("vals", index)),
    );
    let select: Vec<String> = columns
        .zip(column_names(plan))
        .map(|(column, name)| format!("{column} AS {}", identifier(&name)))
        .collect();
    format!(
        "CREATE {}VIEW {} AS SELECT\n  {}\nFROM finals f\nWHERE f.metric = {metric} \
         AND f.generation = (SELECT m.generation FROM metrics m WHERE m.name = {metric})",
        if replace { "OR REPLACE " } else { "" },
        identifier(&view_name(metric)),
        select.join(",\n  "),
        metric = literal(metric),
    )
}

/// Waits for the lock every statement on views holds.
async fn lock(tx: &Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    Ok(())
}

/// Makes the view of `metric`, or replaces it, in `tx`; a metric without a plan gets none.
/// When its columns changed and objects of the user's read it, PostgreSQL refuses
/// ([`is_read_by_others`]).
pub(super) async fn replace_view(
    tx: &Transaction<'_>,
    metric: &str,
    plan: Option<&MetricPlan>,
) -> Result<(), tokio_postgres::Error> {
    lock(tx).await?;
    let name = identifier(&view_name(metric));
    // A derived stream has no windows to show.
    let Some(plan) = plan.filter(|plan| !plan.is_stream()) else {
        return tx
            .batch_execute(&format!("DROP VIEW IF EXISTS {name}"))
            .await;
    };
    let comment = format!(
        "COMMENT ON VIEW {name} IS {}",
        literal(&format!(
            "sluice: final windows of metric {metric} (current generation), one row per tenant, group key and window"
        ))
    );
    // In place when the columns stay (PostgreSQL refuses a replacement that changes them).
    tx.batch_execute("SAVEPOINT view").await?;
    match tx.batch_execute(&create_view(metric, plan, true)).await {
        Ok(()) => tx.batch_execute("RELEASE SAVEPOINT view").await?,
        Err(_) => {
            tx.batch_execute(&format!(
                "ROLLBACK TO SAVEPOINT view; DROP VIEW IF EXISTS {name}; {}",
                create_view(metric, plan, false)
            ))
            .await?
        }
    }
    tx.batch_execute(&comment).await
}

/// Drops the view of `metric`, in `tx`, unless objects of the user's (their own views) read
/// it: sluice never drops what it did not make, and a metric's deletion does not wait on a
/// dashboard. The view then stays, empty (it reads the generation of a metric that is gone),
/// until the metric is made again or deleted once more after the user dropped theirs.
/// Returns whether it is gone.
pub(super) async fn drop_view(
    tx: &Transaction<'_>,
    metric: &str,
) -> Result<bool, tokio_postgres::Error> {
    lock(tx).await?;
    tx.batch_execute("SAVEPOINT view").await?;
    let dropped = tx
        .batch_execute(&format!(
            "DROP VIEW IF EXISTS {}",
            identifier(&view_name(metric))
        ))
        .await;
    match dropped {
        Ok(()) => {
            tx.batch_execute("RELEASE SAVEPOINT view").await?;
            Ok(true)
        }
        Err(error) if is_read_by_others(&error) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT view").await?;
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// Whether `error` is PostgreSQL refusing to drop a view other objects read.
pub(super) fn is_read_by_others(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&tokio_postgres::error::SqlState::DEPENDENT_OBJECTS_STILL_EXIST)
}

/// Makes every metric's view again (at start), in one transaction holding the lock, so a
/// metric deleted meanwhile by another node is not given a view back.
pub(super) async fn replace_all(
    client: &mut Client,
    plans: &Plans,
) -> Result<Vec<(String, Arc<MetricPlan>)>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    lock(&tx).await?;
    let metrics = tx
        .query("SELECT name, sql FROM metrics ORDER BY name", &[])
        .await?;
    let mut planned = Vec::new();
    for row in &metrics {
        let name: String = row.get(0);
        let plan = plans.of(&name, row.get(1));
        replace_view(&tx, &name, plan.as_deref()).await?;
        if let Some(plan) = plan {
            planned.push((name, plan));
        }
    }
    tx.commit().await?;
    Ok(planned)
}

/// Decodes `metric`'s final rows that have no `vals` (written before the column existed),
/// a batch per statement in key order. No lock is needed: the update only writes rows that
/// still have none, and a commit merging into a row meanwhile writes both itself. Returns
/// how many rows were filled and how many do not decode under the plan (left as they are).
pub(super) async fn fill(
    client: &Client,
    metric: &str,
    plan: &MetricPlan,
) -> Result<(u64, u64), tokio_postgres::Error> {
    let (mut filled, mut undecoded) = (0, 0);
    let mut after: (i64, String, Millis, Vec<u8>, Millis) =
        (-1, String::new(), Millis::MIN, Vec::new(), Millis::MIN);
    loop {
        let rows = client
            .query(
                "SELECT generation, tenant, window_start, group_key, window_end, state FROM finals \
                 WHERE metric = $1 AND vals IS NULL \
                 AND (generation, tenant, window_start, group_key, window_end) > ($2, $3, $4, $5, $6) \
                 ORDER BY generation, tenant, window_start, group_key, window_end LIMIT $7",
                &[&metric, &after.0, &after.1, &after.2, &after.3, &after.4, &FILL_BATCH],
            )
            .await?;
        let Some(last) = rows.last() else {
            return Ok((filled, undecoded));
        };
        after = (
            last.get(0),
            last.get(1),
            last.get(2),
            last.get(3),
            last.get(4),
        );
        let (mut generations, mut tenants, mut starts, mut keys, mut ends) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut key_json, mut value_json) = (Vec::new(), Vec::new());
        for row in &rows {
            let Ok((key, values)) = decoded(plan, row.get(3), row.get(5)) else {
                undecoded += 1;
                continue;
            };
            generations.push(row.get::<_, i64>(0));
            tenants.push(row.get::<_, &str>(1));
            starts.push(row.get::<_, i64>(2));
            keys.push(row.get::<_, &[u8]>(3));
            ends.push(row.get::<_, i64>(4));
            key_json.push(key);
            value_json.push(values);
        }
        filled += client
            .execute(
                "UPDATE finals f SET keys = r.keys::JSONB, vals = r.vals::JSONB \
                 FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::BIGINT[], $5::BYTEA[], $6::BIGINT[], $7::TEXT[], $8::TEXT[]) \
                 AS r(generation, tenant, window_start, group_key, window_end, keys, vals) \
                 WHERE f.metric = $1 AND f.generation = r.generation AND f.tenant = r.tenant \
                 AND f.window_start = r.window_start AND f.group_key = r.group_key \
                 AND f.window_end = r.window_end AND f.vals IS NULL",
                &[&metric, &generations, &tenants, &starts, &keys, &ends, &key_json, &value_json],
            )
            .await?;
        if (rows.len() as i64) < FILL_BATCH {
            return Ok((filled, undecoded));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_stream::agg::{AggState, Input};
    use sluice_stream::decimal::Decimal;
    use sluice_stream::keys::{encode_text, encode_value};
    use sluice_stream::value::Value;
    use std::borrow::Cow;

    const Q1: &str = "CREATE METRIC q1 AS SELECT properties.url AS url, properties.price > 10 AS big, \
        COUNT(*) AS views, COUNT(DISTINCT user_id) AS visitors, SUM(properties.price) AS revenue, \
        APPROX_PERCENTILE(properties.ms, 0.95) AS p95 \
        FROM events GROUP BY url, big, TUMBLE(timestamp, INTERVAL '1' MINUTE)";

    #[test]
    fn views_are_named_after_their_metric_within_postgresql_s_63_bytes() {
        assert_eq!(view_name("page_views"), "metric_page_views");
        let long = "a".repeat(64);
        let mut other = long.clone();
        other.replace_range(63.., "b");
        assert_eq!(view_name(&long).len(), 63);
        assert!(view_name(&long).starts_with("metric_aaaa"));
        assert_ne!(view_name(&long), view_name(&other), "cut names keep apart");
        assert_eq!(
            view_name(&"a".repeat(56)).len(),
            63,
            "56 characters fit whole"
        );
        assert_eq!(
            view_name(&"a".repeat(56)),
            format!("metric_{}", "a".repeat(56))
        );
    }

    #[test]
    fn columns_are_typed_by_the_plan_and_named_uniquely() {
        let plan = plan_of(Q1).unwrap();
        let sql = create_view("q1", &plan, false);
        let expected = [
            "CREATE VIEW \"metric_q1\" AS SELECT",
            "  f.tenant AS \"tenant\",",
            "  TIMESTAMPTZ 'epoch' + f.window_start * INTERVAL '1 millisecond' AS \"window_start\",",
            "  TIMESTAMPTZ 'epoch' + f.window_end * INTERVAL '1 millisecond' AS \"window_end\",",
            "  f.keys ->> 0 AS \"url\",",
            "  CASE jsonb_typeof(f.keys -> 1) WHEN 'boolean' THEN (f.keys ->> 1)::BOOLEAN END AS \"big\",",
            "  CASE jsonb_typeof(f.vals -> 0) WHEN 'number' THEN (f.vals ->> 0)::NUMERIC::BIGINT END AS \"views\",",
            "  CASE jsonb_typeof(f.vals -> 1) WHEN 'number' THEN (f.vals ->> 1)::NUMERIC::BIGINT END AS \"visitors\",",
            "  CASE jsonb_typeof(f.vals -> 2) WHEN 'number' THEN (f.vals ->> 2)::NUMERIC END AS \"revenue\",",
            "  CASE jsonb_typeof(f.vals -> 3) WHEN 'number' THEN (f.vals ->> 3)::DOUBLE PRECISION END AS \"p95\"",
            "FROM finals f",
            "WHERE f.metric = E'q1' AND f.generation = (SELECT m.generation FROM metrics m WHERE m.name = E'q1')",
        ];
        assert_eq!(sql, expected.join("\n"));

        let odd = plan_of(
            "CREATE METRIC odd AS SELECT properties.tenant AS tenant, timestamp AS \"a\"\"b\", \
             lower(event) AS e, coalesce(properties.x, 1) AS c, COUNT(*) AS \"window_end\" \
             FROM events GROUP BY tenant, \"a\"\"b\", e, c, SESSION(timestamp, INTERVAL '5' MINUTE)",
        )
        .unwrap();
        assert_eq!(
            column_names(&odd),
            [
                "tenant",
                "window_start",
                "window_end",
                "tenant_2",
                "a\"b",
                "e",
                "c",
                "window_end_2"
            ]
        );
        let types: Vec<SqlType> = odd.keys.iter().map(key_type).collect();
        assert_eq!(
            types,
            [SqlType::Text, SqlType::Bigint, SqlType::Text, SqlType::Text]
        );
        assert!(create_view("odd", &odd, true).contains("AS \"a\"\"b\""));
        let long = format!("{}é", "x".repeat(62));
        let mut plan = plan_of(Q1).unwrap();
        plan.key_names = vec![long.clone(), long];
        let names = column_names(&plan);
        assert_eq!(names[3], "x".repeat(62), "cut at a character boundary");
        assert_eq!(names[4], format!("{}_2", "x".repeat(61)));
    }

    #[test]
    fn literals_and_identifiers_are_quoted() {
        assert_eq!(literal(r"it's a \ path"), r"E'it''s a \\ path'");
        assert_eq!(identifier("a\"b"), "\"a\"\"b\"");
        assert!(plan_of("CREATE METRIC views AS …").is_none());
    }

    #[test]
    fn final_rows_decode_into_the_api_s_values() {
        let plan = plan_of(Q1).unwrap();
        let mut key = Vec::new();
        encode_text(b"shop", &mut key);
        encode_value(&Value::Str(Cow::Borrowed(b"/home")), &mut key);
        encode_value(&Value::Bool(true), &mut key);
        let kinds: Vec<AggregateKind> = plan.aggregates.iter().map(|a| a.kind).collect();
        let mut state = PartialState::new(&kinds);
        for price in ["12.50", "30"] {
            let number = Decimal::parse_str(price).unwrap();
            state.states[0].update(Input::Present);
            state.states[1].update(Input::Hash(7));
            state.states[2].update(Input::Number(number));
            state.states[3].update(Input::Number(number));
        }
        let (keys, values) = decoded(&plan, &key, &state.encode()).unwrap();
        assert_eq!(keys, r#"["/home",true]"#);
        let p95 = match &state.states[3] {
            AggState::Percentile(sketch) => sketch.quantile(0.95).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(values, format!("[2,1,42.50,{p95}]"));
        let mut short = Vec::new();
        encode_text(b"shop", &mut short);
        assert!(
            decoded(&plan, &short, &state.encode()).is_err(),
            "a key of another metric"
        );
        let other = PartialState::new(&[AggregateKind::CountStar]).encode();
        assert!(
            decoded(&plan, &key, &other).is_err(),
            "a state of another metric"
        );
    }
}
