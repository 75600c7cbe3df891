//! The query: one `SELECT` of group keys and aggregates `FROM events` (or a derived stream),
//! an optional `WHERE`, and a `GROUP BY` of keys plus exactly one window; or, for a stream,
//! one `SELECT` of columns and an optional `WHERE`. Everything else SQL offers is rejected by
//! name, with its position.

use super::error_at;
use super::expr::{self, AGGREGATES, WINDOWS, function_name, location, plain_args};
use super::window::lower_window;
use crate::error::SqlError;
use crate::plan::{
    Aggregate, AggregateKind, Column, ColumnSource, Expr, Literal, Output, Projection, Source,
    WindowSpec,
};
use sqlparser::ast::{
    DuplicateTreatment, Expr as AstExpr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    GroupByExpr, Query, Select, SelectFlavor, SelectItem, SetExpr, Spanned, TableFactor,
};
use sqlparser::tokenizer::Location;

/// What is defined: a metric, or a derived stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Metric,
    Stream,
    Sessions,
    Identity,
}

/// The parts of a metric or stream the query defines (a stream's has no keys, aggregates,
/// columns or window: its `output` holds its columns).
pub(super) struct Body {
    pub(super) source: Source,
    pub(super) output: Output,
    pub(super) filter: Option<Expr>,
    pub(super) keys: Vec<Expr>,
    pub(super) key_names: Vec<String>,
    pub(super) aggregates: Vec<Aggregate>,
    pub(super) columns: Vec<Column>,
    pub(super) window: WindowSpec,
}

/// The SELECT list before GROUP BY resolves which items are keys.
enum Item {
    Aggregate(Aggregate, String),
    Scalar(Expr, Option<String>, String, Location),
}

pub(super) fn lower_query(query: &Query, kind: Kind, fallback: Location) -> Result<Body, SqlError> {
    let at = |span: sqlparser::tokenizer::Span| super::span_start(span, fallback);
    if let Some(with) = &query.with {
        return Err(error_at(
            at(with.span()),
            "WITH (common table expressions) is not supported; a metric reads the events topic directly",
        ));
    }
    if let Some(order_by) = &query.order_by {
        return Err(error_at(
            at(order_by.span()),
            "ORDER BY is not supported in a metric; order results when querying them",
        ));
    }
    if let Some(limit) = &query.limit_clause {
        return Err(error_at(
            at(limit.span()),
            "LIMIT is not supported in a metric; limit results when querying them",
        ));
    }
    if let Some(fetch) = &query.fetch {
        return Err(error_at(
            at(fetch.span()),
            "FETCH is not supported in a metric",
        ));
    }
    if !query.locks.is_empty() || query.for_clause.is_some() {
        return Err(error_at(
            fallback,
            "FOR … clauses are not supported in a metric",
        ));
    }
    if query.settings.is_some() || query.format_clause.is_some() || !query.pipe_operators.is_empty()
    {
        return Err(error_at(
            fallback,
            "SETTINGS, FORMAT and pipe operators are not supported in a metric",
        ));
    }
    let select = match query.body.as_ref() {
        SetExpr::Select(select) => select,
        other => {
            return Err(error_at(
                at(other.span()),
                "a metric is a single SELECT; UNION, INTERSECT, EXCEPT, VALUES and nested queries are not supported",
            ));
        }
    };
    match kind {
        // Sessions and identities have no query (`sql::parse_sessions`, `parse_identity`); a
        // metric's rules are the closest.
        Kind::Metric | Kind::Sessions | Kind::Identity => lower_select(select, fallback),
        Kind::Stream => lower_stream(select, fallback),
    }
}

/// A stream's SELECT: columns (fields or expressions, each with a name), FROM and WHERE.
fn lower_stream(select: &Select, fallback: Location) -> Result<Body, SqlError> {
    let select_at = super::span_start(select.select_token.0.span, fallback);
    reject_clauses(select, select_at)?;
    let source = check_from(select, select_at)?;
    let _columns = expr::ColumnsByName::set(matches!(source, Source::Stream(_)));
    match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) if exprs.is_empty() && modifiers.is_empty() => {}
        _ => {
            return Err(error_at(
                select_at,
                "a stream has no GROUP BY: it routes events one by one; count them with a metric FROM the stream",
            ));
        }
    }
    let filter = select
        .selection
        .as_ref()
        .map(|selection| expr::lower(selection, select_at))
        .transpose()?;
    let mut columns: Vec<Projection> = Vec::new();
    for item in &select.projection {
        let (expr, alias, at) = match lower_item(item, select_at)? {
            Item::Scalar(expr, alias, _, at) => (expr, alias, at),
            Item::Aggregate(..) => {
                return Err(error_at(
                    super::span_start(item.span(), select_at),
                    "a stream has no aggregates: it routes events one by one; aggregate in a metric FROM the stream",
                ));
            }
        };
        let name = match (alias, &expr) {
            (Some(alias), _) => alias,
            (None, Expr::Field(field)) => field
                .json_path()
                .last()
                .map_or_else(|| field.to_string(), |last| (*last).to_owned()),
            (None, _) => {
                return Err(error_at(
                    at,
                    format!(
                        "name the column `{expr}` with AS: a stream's columns are the keys of its records' properties"
                    ),
                ));
            }
        };
        if name.is_empty() || name.len() > super::MAX_NAME_LEN {
            return Err(error_at(
                at,
                format!("a column name has 1 to {} characters", super::MAX_NAME_LEN),
            ));
        }
        if columns.iter().any(|column| column.name == name) {
            return Err(error_at(
                at,
                format!("two columns are named {name:?}; give one an alias with AS"),
            ));
        }
        columns.push(Projection { name, expr });
    }
    Ok(Body {
        source,
        output: Output::Records(columns),
        filter,
        keys: Vec::new(),
        key_names: Vec::new(),
        aggregates: Vec::new(),
        columns: Vec::new(),
        // No windows: the plan's window is never used.
        window: WindowSpec::Tumble { size: 1 },
    })
}

fn lower_select(select: &Select, fallback: Location) -> Result<Body, SqlError> {
    let select_at = super::span_start(select.select_token.0.span, fallback);
    reject_clauses(select, select_at)?;
    let source = check_from(select, select_at)?;
    let _columns = expr::ColumnsByName::set(matches!(source, Source::Stream(_)));
    let filter = select
        .selection
        .as_ref()
        .map(|selection| expr::lower(selection, select_at))
        .transpose()?;

    let mut items = Vec::new();
    for item in &select.projection {
        items.push(lower_item(item, select_at)?);
    }

    let group_exprs = match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => exprs,
        GroupByExpr::Expressions(..) => {
            return Err(error_at(
                select_at,
                "GROUP BY modifiers (ROLLUP, CUBE, GROUPING SETS) are not supported",
            ));
        }
        GroupByExpr::All(_) => {
            return Err(error_at(
                select_at,
                "GROUP BY ALL is not supported; list the keys and a window",
            ));
        }
    };
    let mut window = None;
    let mut keys: Vec<(Expr, String)> = Vec::new();
    for group in group_exprs {
        let group_at = location(group, select_at);
        if let AstExpr::Function(function) = group {
            let name = function_name(function).unwrap_or_default();
            if WINDOWS.contains(&name.as_str()) {
                if window.is_some() {
                    return Err(error_at(
                        group_at,
                        "a metric has exactly one window; remove the second window function",
                    ));
                }
                window = Some(lower_window(function, group_at)?);
                continue;
            }
        }
        let (key, name) = resolve_key(group, &items, group_at)?;
        if keys.iter().any(|(existing, _)| *existing == key) {
            return Err(error_at(
                group_at,
                format!("`{group}` is already a group key"),
            ));
        }
        keys.push((key, name));
    }
    let Some(window) = window else {
        let at = group_exprs
            .first()
            .map_or(select_at, |e| location(e, select_at));
        return Err(error_at(
            at,
            "GROUP BY needs a window: TUMBLE(timestamp, INTERVAL …), HOP(timestamp, slide, size) \
             or SESSION(timestamp, gap)",
        ));
    };

    let mut aggregates = Vec::new();
    let mut columns: Vec<Column> = Vec::new();
    let mut key_names: Vec<String> = keys.iter().map(|(_, name)| name.clone()).collect();
    for item in items {
        let (name, source, at) = match item {
            Item::Aggregate(aggregate, name) => {
                aggregates.push(aggregate);
                (
                    name,
                    ColumnSource::Aggregate(aggregates.len() - 1),
                    select_at,
                )
            }
            Item::Scalar(expr, alias, text, at) => {
                let Some(index) = keys.iter().position(|(key, _)| *key == expr) else {
                    return Err(error_at(
                        at,
                        format!("`{text}` must appear in GROUP BY or inside an aggregate"),
                    ));
                };
                let name = alias.unwrap_or_else(|| key_names[index].clone());
                key_names[index] = name.clone();
                (name, ColumnSource::Key(index), at)
            }
        };
        if columns.iter().any(|column| column.name == name) {
            return Err(error_at(
                at,
                format!("two columns are named {name:?}; give one an alias with AS"),
            ));
        }
        columns.push(Column { name, source });
    }
    if aggregates.is_empty() {
        return Err(error_at(
            select_at,
            "a metric needs at least one aggregate, like COUNT(*)",
        ));
    }
    Ok(Body {
        source,
        output: Output::Windows,
        filter,
        keys: keys.into_iter().map(|(key, _)| key).collect(),
        key_names,
        aggregates,
        columns,
        window,
    })
}

/// A GROUP BY entry: a SELECT alias, or an expression (named after a SELECT item that
/// computes the same expression, else after its own text).
fn resolve_key(group: &AstExpr, items: &[Item], at: Location) -> Result<(Expr, String), SqlError> {
    if let AstExpr::Identifier(ident) = group {
        for item in items {
            match item {
                Item::Scalar(expr, Some(alias), _, _) if *alias == ident.value => {
                    return Ok((expr.clone(), alias.clone()));
                }
                Item::Aggregate(_, name) if *name == ident.value => {
                    return Err(error_at(
                        at,
                        format!("cannot group by the aggregate {name}"),
                    ));
                }
                _ => {}
            }
        }
    }
    if let AstExpr::Value(value) = group
        && matches!(value.value, sqlparser::ast::Value::Number(..))
    {
        return Err(error_at(
            at,
            "GROUP BY by position is not supported; name the key or its alias",
        ));
    }
    let key = expr::lower(group, at)?;
    if matches!(key, Expr::Literal(_)) {
        return Err(error_at(at, "grouping by a constant is not supported"));
    }
    let name = items
        .iter()
        .find_map(|item| match item {
            Item::Scalar(expr, alias, _, _) if *expr == key => alias.clone(),
            _ => None,
        })
        .unwrap_or_else(|| match group {
            // As written: a derived stream's column `currency` is `properties.currency`.
            AstExpr::Identifier(ident) => ident.value.clone(),
            _ => key.to_string(),
        });
    Ok((key, name))
}

fn lower_item(item: &SelectItem, fallback: Location) -> Result<Item, SqlError> {
    let at = super::span_start(item.span(), fallback);
    let (expr, alias) = match item {
        SelectItem::UnnamedExpr(expr) => (expr, None),
        SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
        SelectItem::ExprWithAliases { .. } => {
            return Err(error_at(
                at,
                "multiple aliases for one item are not supported",
            ));
        }
        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
            return Err(error_at(
                at,
                "SELECT * is not supported; list the group keys and aggregates",
            ));
        }
    };
    if let AstExpr::Function(function) = expr {
        let name = function_name(function).unwrap_or_default();
        if AGGREGATES.contains(&name.as_str()) {
            let aggregate = lower_aggregate(function, &name, at)?;
            return Ok(Item::Aggregate(
                aggregate,
                alias.unwrap_or_else(|| expr.to_string()),
            ));
        }
        if WINDOWS.contains(&name.as_str()) {
            return Err(error_at(
                at,
                format!(
                    "{name} belongs in GROUP BY; every result row carries its window's start and end"
                ),
            ));
        }
    }
    Ok(Item::Scalar(
        expr::lower(expr, at)?,
        alias,
        expr.to_string(),
        at,
    ))
}

fn lower_aggregate(function: &Function, name: &str, at: Location) -> Result<Aggregate, SqlError> {
    let filter = match &function.filter {
        None => None,
        // An aggregate inside is refused by `lower` (aggregates only top a SELECT item).
        Some(filter) => Some(expr::lower(filter, location(filter, at))?),
    };
    let mut aggregate = lower_aggregate_call(function, name, at)?;
    aggregate.filter = filter;
    Ok(aggregate)
}

/// The aggregate without its `FILTER`, which [`lower_aggregate`] adds.
fn lower_aggregate_call(
    function: &Function,
    name: &str,
    at: Location,
) -> Result<Aggregate, SqlError> {
    let unfiltered;
    let function = if function.filter.is_some() {
        let mut copy = function.clone();
        copy.filter = None;
        unfiltered = copy;
        &unfiltered
    } else {
        function
    };
    let distinct = match &function.args {
        FunctionArguments::List(list) => match list.duplicate_treatment {
            Some(DuplicateTreatment::Distinct) => true,
            Some(DuplicateTreatment::All) | None => false,
        },
        _ => false,
    };
    if name == "COUNT"
        && let FunctionArguments::List(list) = &function.args
        && let [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)] = list.args.as_slice()
    {
        if distinct {
            return Err(error_at(
                at,
                "COUNT(DISTINCT *) is not supported; count distinct values of a field",
            ));
        }
        plain_args_except_wildcard(function, at)?;
        return Ok(Aggregate {
            kind: AggregateKind::CountStar,
            arg: None,
            filter: None,
        });
    }
    let args = plain_args(function, at)?;
    if distinct && name != "COUNT" {
        return Err(error_at(
            at,
            format!("{name}(DISTINCT …) is not supported; only COUNT(DISTINCT x) is"),
        ));
    }
    let argument = |index: usize| -> Result<Expr, SqlError> {
        let arg = args[index];
        let arg_at = location(arg, at);
        if contains_aggregate(arg) {
            return Err(error_at(arg_at, "aggregates cannot be nested"));
        }
        expr::lower(arg, arg_at)
    };
    let expected = if name == "APPROX_PERCENTILE" { 2 } else { 1 };
    if args.len() != expected {
        let usage = if name == "APPROX_PERCENTILE" {
            "APPROX_PERCENTILE(x, 0.95)".to_owned()
        } else {
            format!("{name}(x)")
        };
        return Err(error_at(
            at,
            format!(
                "{name} takes {expected} argument{}: {usage}",
                if expected == 1 { "" } else { "s" }
            ),
        ));
    }
    let kind = match name {
        "COUNT" if distinct => AggregateKind::CountDistinct,
        "COUNT" => AggregateKind::Count,
        "SUM" => AggregateKind::Sum,
        "MIN" => AggregateKind::Min,
        "MAX" => AggregateKind::Max,
        "AVG" => AggregateKind::Avg,
        _ => {
            let q_at = location(args[1], at);
            let quantile = match expr::constant(args[1], q_at) {
                Ok(Literal::Number(q)) => q.to_f64(),
                _ => f64::NAN,
            };
            if !(0.0..=1.0).contains(&quantile) {
                return Err(error_at(
                    q_at,
                    format!(
                        "the quantile must be a number from 0 to 1, like 0.95, not `{}`",
                        args[1]
                    ),
                ));
            }
            AggregateKind::ApproxPercentile { quantile }
        }
    };
    Ok(Aggregate {
        kind,
        arg: Some(argument(0)?),
        filter: None,
    })
}

/// Checks COUNT(*)'s call for extras (`FILTER`, `OVER`, …) the way [`plain_args`] does.
fn plain_args_except_wildcard(function: &Function, at: Location) -> Result<(), SqlError> {
    let mut stripped = function.clone();
    if let FunctionArguments::List(list) = &mut stripped.args {
        list.args.clear();
    }
    plain_args(&stripped, at).map(|_| ())
}

fn contains_aggregate(expr: &AstExpr) -> bool {
    match expr {
        AstExpr::Function(function) => {
            let name = function_name(function).unwrap_or_default();
            AGGREGATES.contains(&name.as_str())
                || match &function.args {
                    FunctionArguments::List(list) => list.args.iter().any(|arg| {
                        matches!(arg, FunctionArg::Unnamed(FunctionArgExpr::Expr(inner)) if contains_aggregate(inner))
                    }),
                    _ => false,
                }
        }
        AstExpr::Nested(inner) => contains_aggregate(inner),
        _ => false,
    }
}

/// The source: `events`, or a derived stream's name.
fn check_from(select: &Select, at: Location) -> Result<Source, SqlError> {
    let usage = "read FROM events, or FROM a derived stream";
    let [table] = select.from.as_slice() else {
        let where_at = select
            .from
            .get(1)
            .map_or(at, |t| super::span_start(t.span(), at));
        return Err(error_at(
            where_at,
            if select.from.is_empty() {
                format!("FROM is missing: {usage}")
            } else {
                format!("only one source is supported: {usage}")
            },
        ));
    };
    let table_at = super::span_start(table.span(), at);
    if let Some(join) = table.joins.first() {
        return Err(error_at(
            super::span_start(join.span(), table_at),
            format!("JOIN is not supported: {usage}"),
        ));
    }
    match &table.relation {
        TableFactor::Table {
            name,
            alias,
            args,
            with_hints,
            version,
            partitions,
            sample,
            ..
        } => {
            let text = name.to_string();
            let source = if text.eq_ignore_ascii_case("events") {
                Source::Events
            } else if super::is_valid_name(&text) {
                Source::Stream(text)
            } else {
                return Err(error_at(
                    table_at,
                    format!("unknown source `{name}`: {usage}"),
                ));
            };
            if alias.is_some()
                || args.is_some()
                || !with_hints.is_empty()
                || version.is_some()
                || !partitions.is_empty()
                || sample.is_some()
            {
                return Err(error_at(
                    table_at,
                    format!("aliases, hints and table options are not supported: {usage}"),
                ));
            }
            Ok(source)
        }
        _ => Err(error_at(
            table_at,
            format!("subqueries and table functions are not supported: {usage}"),
        )),
    }
}

fn reject_clauses(select: &Select, at: Location) -> Result<(), SqlError> {
    let here = |span: sqlparser::tokenizer::Span| super::span_start(span, at);
    let checks: [(bool, &str, Location); 16] = [
        (
            select.distinct.is_some(),
            "SELECT DISTINCT is not supported; use COUNT(DISTINCT x)",
            at,
        ),
        (select.top.is_some(), "TOP is not supported", at),
        (
            !select.optimizer_hints.is_empty(),
            "optimizer hints are not supported",
            at,
        ),
        (
            select.select_modifiers.is_some(),
            "SELECT modifiers are not supported",
            at,
        ),
        (select.exclude.is_some(), "EXCLUDE is not supported", at),
        (
            select.into.is_some(),
            "SELECT INTO is not supported",
            select.into.as_ref().map_or(at, |i| here(i.span())),
        ),
        (
            !select.lateral_views.is_empty(),
            "LATERAL VIEW is not supported",
            at,
        ),
        (
            select.prewhere.is_some(),
            "PREWHERE is not supported; use WHERE",
            select.prewhere.as_ref().map_or(at, |e| here(e.span())),
        ),
        (
            !select.connect_by.is_empty(),
            "CONNECT BY is not supported",
            at,
        ),
        (
            !select.cluster_by.is_empty()
                || !select.distribute_by.is_empty()
                || !select.sort_by.is_empty(),
            "CLUSTER BY, DISTRIBUTE BY and SORT BY are not supported",
            at,
        ),
        (
            select.having.is_some(),
            "HAVING is not supported in a metric; filter events with WHERE, or results when querying them",
            select.having.as_ref().map_or(at, |e| here(e.span())),
        ),
        (
            !select.named_window.is_empty(),
            "WINDOW clauses are not supported; put TUMBLE, HOP or SESSION in GROUP BY",
            at,
        ),
        (
            select.qualify.is_some(),
            "QUALIFY is not supported",
            select.qualify.as_ref().map_or(at, |e| here(e.span())),
        ),
        (
            select.value_table_mode.is_some(),
            "SELECT AS VALUE/STRUCT is not supported",
            at,
        ),
        (
            !matches!(select.flavor, SelectFlavor::Standard),
            "FROM-first SELECT is not supported; write SELECT … FROM events",
            at,
        ),
        (select.projection.is_empty(), "the SELECT list is empty", at),
    ];
    match checks.into_iter().find(|(bad, _, _)| *bad) {
        Some((_, message, location)) => Err(error_at(location, message)),
        None => Ok(()),
    }
}
