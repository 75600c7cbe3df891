//! The metric dialect: `CREATE METRIC name AS SELECT … FROM events [WHERE …] GROUP BY …,
//! <window> [WITH (…)]`, parsed with `sqlparser` into a [`MetricPlan`]; and derived streams,
//! `CREATE STREAM name AS SELECT column [AS name], … FROM events [WHERE …]`, into a plan with
//! [`Output::Records`](crate::plan::Output::Records). A metric or stream may read `FROM` a
//! derived stream instead of `events`.
//!
//! `CREATE METRIC` is not standard SQL, so the statement is taken apart at the token level:
//! the whole text is tokenized once (tokens carry line and column), the head
//! `CREATE METRIC name AS` is matched token by token, the query is handed to the parser's
//! `parse_query`, and the trailing `WITH (…)` options to `parse_options`. A custom dialect
//! keeps `GROUP BY … WITH` free for the options. Every construct outside the dialect is an
//! error naming it and its line and column.
//!
//! # Layout
//! - `mod.rs`: the statement head, options, and error positions.
//! - `select.rs`: the SELECT list, FROM, WHERE and GROUP BY.
//! - `expr.rs`: scalar and boolean expressions, literals, fields.
//! - `window.rs`: `TUMBLE`, `HOP`, `SESSION` and intervals.

mod expr;
mod select;
mod window;

use crate::error::SqlError;
use crate::plan::{LatePolicy, MetricPlan};
use sluice_core::config::HumanDuration;
use sluice_core::time::Millis;
use sqlparser::ast::{Expr as AstExpr, SqlOption, Value};
use sqlparser::dialect::Dialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Span, Token, Tokenizer};

/// Values a metric gets for the options its `WITH (…)` does not set (from `[stream]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDefaults {
    /// `out_of_orderness`, ms.
    pub out_of_orderness: Millis,
    /// `allowed_lateness`, ms.
    pub allowed_lateness: Millis,
    /// `late`.
    pub late: LatePolicy,
}

/// The longest metric name.
pub const MAX_NAME_LEN: usize = 64;

/// Whether `name` is a valid metric (or alert) name: 1 to [`MAX_NAME_LEN`] lowercase letters,
/// digits and `_`, starting with a letter.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The SQL text of a metric may not be longer than this.
pub const MAX_SQL_BYTES: usize = 64 * 1024;

/// Deepest expression nesting the parser accepts.
const RECURSION_LIMIT: usize = 64;

/// The dialect: generic identifiers, and no `GROUP BY … WITH ROLLUP`, so that a `WITH`
/// after `GROUP BY` starts the metric's options.
#[derive(Debug)]
pub(crate) struct MetricDialect;

impl Dialect for MetricDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_ascii_alphabetic() || ch == '_'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_ascii_alphanumeric() || ch == '_'
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '"' || ch == '`'
    }

    /// Parsed only to be rejected with a clear message.
    fn supports_filter_during_aggregation(&self) -> bool {
        true
    }
}

/// Parses one metric definition.
pub fn parse_metric(sql: &str, defaults: &MetricDefaults) -> Result<MetricPlan, SqlError> {
    let plan = parse_definition(sql, defaults)?;
    if plan.source == crate::plan::Source::Events
        && plan.fields().contains(&crate::plan::Field::ResolvedUserId)
    {
        let at = sql
            .to_ascii_lowercase()
            .find("resolved_user_id")
            .map_or(Location { line: 1, column: 1 }, |offset| {
                location_of(sql, offset)
            });
        return Err(error_at(
            at,
            "resolved_user_id is in the records of an identity, not in events: define \
             CREATE IDENTITY people and read FROM people",
        ));
    }
    Ok(plan)
}

/// The line and column of byte `offset` of `sql`.
fn location_of(sql: &str, offset: usize) -> Location {
    let before = &sql[..offset];
    let line = before.matches('\n').count() as u64 + 1;
    let column = before
        .rfind('\n')
        .map_or(before.chars().count(), |newline| {
            before[newline + 1..].chars().count()
        }) as u64
        + 1;
    Location { line, column }
}

fn parse_definition(sql: &str, defaults: &MetricDefaults) -> Result<MetricPlan, SqlError> {
    let start = Location { line: 1, column: 1 };
    if sql.len() > MAX_SQL_BYTES {
        return Err(error_at(
            start,
            format!(
                "the definition is {} bytes; at most {MAX_SQL_BYTES} are accepted",
                sql.len()
            ),
        ));
    }
    let dialect = MetricDialect;
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|error| error_at(error.location, error.message))?;
    let end = end_location(sql);
    let mut parser = Parser::new(&dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .with_tokens_with_locations(tokens);
    let (kind, name) = parse_head(&mut parser, end)?;
    if kind == select::Kind::Sessions {
        return parse_sessions(&mut parser, name, sql, defaults, end);
    }
    if kind == select::Kind::Identity {
        return parse_identity(&mut parser, name, sql, defaults, end);
    }
    let query = parser
        .parse_query()
        .map_err(|error| parser_error(&parser, error, end))?;
    let options = parser
        .parse_options(Keyword::WITH)
        .map_err(|error| parser_error(&parser, error, end))?;
    let _semicolon = parser.consume_token(&Token::SemiColon);
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(error_at(
            next.span.start,
            format!(
                "unexpected `{}` after the metric definition; a definition ends after GROUP BY \
                 or its WITH (…) options",
                next.token
            ),
        ));
    }
    if kind == select::Kind::Stream && !options.is_empty() {
        return Err(error_at(
            start,
            "a stream takes no WITH (…) options: it has no windows; give them to the metrics that read it",
        ));
    }
    let options = parse_options(&options, defaults, start)?;
    let body = select::lower_query(&query, kind, start)?;
    Ok(MetricPlan {
        name,
        sql: sql.to_owned(),
        source: body.source,
        output: body.output,
        filter: body.filter,
        keys: body.keys,
        key_names: body.key_names,
        aggregates: body.aggregates,
        columns: body.columns,
        window: body.window,
        out_of_orderness: options.out_of_orderness,
        allowed_lateness: options.allowed_lateness,
        late: options.late,
    })
}

/// `CREATE METRIC name AS` or `CREATE STREAM name AS`; returns which, and the name.
fn parse_head(parser: &mut Parser<'_>, end: Location) -> Result<(select::Kind, String), SqlError> {
    let expected =
        "a definition starts with CREATE METRIC name AS SELECT … or CREATE STREAM name AS SELECT …";
    let token = parser.next_token();
    if !matches!(&token.token, Token::Word(word) if word.keyword == Keyword::CREATE) {
        return Err(error_at(
            located(token.span.start, end),
            format!("expected CREATE, found `{}`: {expected}", token.token),
        ));
    }
    let token = parser.next_token();
    let kind = match &token.token {
        Token::Word(word) if word.value.eq_ignore_ascii_case("metric") => select::Kind::Metric,
        Token::Word(word) if word.value.eq_ignore_ascii_case("stream") => select::Kind::Stream,
        Token::Word(word) if word.value.eq_ignore_ascii_case("sessions") => select::Kind::Sessions,
        Token::Word(word) if word.value.eq_ignore_ascii_case("identity") => select::Kind::Identity,
        other => {
            return Err(error_at(
                located(token.span.start, end),
                format!(
                    "expected METRIC, STREAM, SESSIONS or IDENTITY, found `{other}`: {expected}, CREATE SESSIONS name GAP '30m', or CREATE IDENTITY name"
                ),
            ));
        }
    };
    let ident = parser
        .parse_identifier()
        .map_err(|error| parser_error(parser, error, end))?;
    let name = ident.value.clone();
    let valid = is_valid_name(&name);
    if !valid {
        return Err(error_at(
            ident.span.start,
            format!(
                "{name:?} is not a valid metric name: use 1 to {MAX_NAME_LEN} lowercase letters, \
                 digits and '_', starting with a letter"
            ),
        ));
    }
    if kind != select::Kind::Metric && name == "events" {
        return Err(error_at(
            ident.span.start,
            "a stream cannot be named events: that is the collector's topic",
        ));
    }
    if matches!(kind, select::Kind::Sessions | select::Kind::Identity) {
        return Ok((kind, name));
    }
    if !parser.parse_keyword(Keyword::AS) {
        let token = parser.peek_token();
        return Err(error_at(
            located(token.span.start, end),
            format!("expected AS after the metric name, found `{}`", token.token),
        ));
    }
    Ok((kind, name))
}

/// The rest of `CREATE IDENTITY name`: `[FROM events]` (see [`crate::identity`]).
fn parse_identity(
    parser: &mut Parser<'_>,
    name: String,
    sql: &str,
    defaults: &MetricDefaults,
    end: Location,
) -> Result<MetricPlan, SqlError> {
    let usage = "write CREATE IDENTITY name [FROM events]";
    if parser.parse_keyword(Keyword::FROM) {
        let ident = parser
            .parse_identifier()
            .map_err(|error| parser_error(parser, error, end))?;
        if ident.value != "events" {
            return Err(error_at(
                ident.span.start,
                format!(
                    "an identity reads the collector's events (FROM events), not {:?}: identify and alias calls are there",
                    ident.value
                ),
            ));
        }
    }
    let _semicolon = parser.consume_token(&Token::SemiColon);
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(error_at(
            next.span.start,
            format!("unexpected `{}`: {usage}", next.token),
        ));
    }
    Ok(crate::identity::plan(
        name,
        crate::plan::Source::Events,
        defaults.out_of_orderness,
        sql,
    ))
}

/// The rest of `CREATE SESSIONS name`: `GAP 'd' [MAX LENGTH 'd'] [FROM source] [WHERE …]
/// [WITH (out_of_orderness = 'd', late = 'topic'|'drop')]` (see [`crate::sessions`]).
fn parse_sessions(
    parser: &mut Parser<'_>,
    name: String,
    sql: &str,
    defaults: &MetricDefaults,
    end: Location,
) -> Result<MetricPlan, SqlError> {
    let usage = "write CREATE SESSIONS name GAP '30m' [MAX LENGTH '24h'] [FROM events] [WHERE …] [WITH (out_of_orderness = '10s')]";
    let word = |parser: &mut Parser<'_>, wanted: &str| {
        let token = parser.peek_token();
        let found = matches!(&token.token, Token::Word(w) if w.value.eq_ignore_ascii_case(wanted));
        if found {
            parser.next_token();
        }
        found
    };
    let duration = |parser: &mut Parser<'_>, what: &str| -> Result<Millis, SqlError> {
        let at = located(parser.peek_token_ref().span.start, end);
        let value = parser
            .parse_expr()
            .map_err(|error| parser_error(parser, error, end))?;
        let millis = duration_option(what, &value, at)?;
        if millis <= 0 {
            return Err(error_at(at, format!("{what} must be longer than 0")));
        }
        Ok(millis)
    };
    let gap_at = located(parser.peek_token_ref().span.start, end);
    if !word(parser, "gap") {
        return Err(error_at(
            gap_at,
            format!("expected GAP after the sessions' name: {usage}"),
        ));
    }
    let gap = duration(parser, "GAP")?;
    let mut max_length = crate::sessions::DEFAULT_MAX_LENGTH;
    let max_at = located(parser.peek_token_ref().span.start, end);
    if word(parser, "max") {
        if !word(parser, "length") {
            return Err(error_at(max_at, format!("expected MAX LENGTH: {usage}")));
        }
        max_length = duration(parser, "MAX LENGTH")?;
    }
    if max_length < gap {
        return Err(error_at(
            max_at,
            "MAX LENGTH is shorter than GAP: a session lasts at least its gap",
        ));
    }
    let mut source = crate::plan::Source::Events;
    if parser.parse_keyword(Keyword::FROM) {
        let ident = parser
            .parse_identifier()
            .map_err(|error| parser_error(parser, error, end))?;
        if ident.value != "events" {
            if ident.value == name {
                return Err(error_at(
                    ident.span.start,
                    "sessions cannot read themselves",
                ));
            }
            source = crate::plan::Source::Stream(ident.value);
        }
    }
    let mut filter = None;
    if parser.parse_keyword(Keyword::WHERE) {
        let at = located(parser.peek_token_ref().span.start, end);
        let condition = parser
            .parse_expr()
            .map_err(|error| parser_error(parser, error, end))?;
        let _columns = expr::ColumnsByName::set(matches!(source, crate::plan::Source::Stream(_)));
        filter = Some(expr::lower(&condition, at)?);
    }
    let options = parser
        .parse_options(Keyword::WITH)
        .map_err(|error| parser_error(parser, error, end))?;
    let _semicolon = parser.consume_token(&Token::SemiColon);
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(error_at(
            next.span.start,
            format!("unexpected `{}`: {usage}", next.token),
        ));
    }
    let start = Location { line: 1, column: 1 };
    if let Some(option) = options.iter().find(|option| {
        matches!(option, SqlOption::KeyValue { key, .. }
            if key.to_string().eq_ignore_ascii_case("allowed_lateness"))
    }) {
        return Err(error_at(
            span_start(sqlparser::ast::Spanned::span(option), start),
            "sessions take no allowed_lateness: a session is written once, when it closes; \
             give a longer out_of_orderness to wait for late events",
        ));
    }
    let options = parse_options(&options, defaults, start)?;
    Ok(crate::sessions::plan(
        crate::sessions::SessionsSpec {
            name,
            source,
            gap,
            max_length,
            filter,
            out_of_orderness: options.out_of_orderness,
            late: options.late,
        },
        sql,
    ))
}

struct Options {
    out_of_orderness: Millis,
    allowed_lateness: Millis,
    late: LatePolicy,
}

const OPTION_NAMES: &str = "out_of_orderness, allowed_lateness, late";

fn parse_options(
    options: &[SqlOption],
    defaults: &MetricDefaults,
    fallback: Location,
) -> Result<Options, SqlError> {
    let mut parsed = Options {
        out_of_orderness: defaults.out_of_orderness,
        allowed_lateness: defaults.allowed_lateness,
        late: defaults.late,
    };
    let mut seen: Vec<String> = Vec::new();
    for option in options {
        let at = span_start(sqlparser::ast::Spanned::span(option), fallback);
        let SqlOption::KeyValue { key, value } = option else {
            return Err(error_at(
                at,
                format!(
                    "`{option}` is not an option; write WITH (name = 'value', …) with names {OPTION_NAMES}"
                ),
            ));
        };
        let name = key.to_string().to_ascii_lowercase();
        if seen.contains(&name) {
            return Err(error_at(at, format!("option {name} is set twice")));
        }
        seen.push(name.clone());
        let value_at = span_start(sqlparser::ast::Spanned::span(value), at);
        match name.as_str() {
            "out_of_orderness" => {
                parsed.out_of_orderness = duration_option(&name, value, value_at)?
            }
            "allowed_lateness" => {
                parsed.allowed_lateness = duration_option(&name, value, value_at)?
            }
            "late" => {
                parsed.late = match string_literal(value).as_deref() {
                    Some("topic") => LatePolicy::Topic,
                    Some("drop") => LatePolicy::Drop,
                    _ => {
                        return Err(error_at(
                            value_at,
                            format!("late must be 'topic' or 'drop', not `{value}`"),
                        ));
                    }
                }
            }
            _ => {
                return Err(error_at(
                    at,
                    format!("unknown option {name}; the options are {OPTION_NAMES}"),
                ));
            }
        }
    }
    Ok(parsed)
}

fn duration_option(name: &str, value: &AstExpr, at: Location) -> Result<Millis, SqlError> {
    if let AstExpr::Interval(interval) = value {
        return window::interval_millis(interval, at)
            .map_err(|e| error_at(at, format!("{name}: {}", e.message)));
    }
    let text = string_literal(value).ok_or_else(|| {
        error_at(
            at,
            format!("{name} must be a duration string like '10s' or '1m', not `{value}`"),
        )
    })?;
    let duration: HumanDuration = text
        .parse()
        .map_err(|message: String| error_at(at, format!("{name}: {message}")))?;
    Millis::try_from(duration.get().as_millis())
        .map_err(|_| error_at(at, format!("{name} is too long")))
}

fn string_literal(value: &AstExpr) -> Option<String> {
    match value {
        AstExpr::Value(value) => match &value.value {
            Value::SingleQuotedString(text) => Some(text.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// An error at `location`.
pub(crate) fn error_at(location: Location, message: impl Into<String>) -> SqlError {
    SqlError {
        line: location.line.max(1),
        column: location.column.max(1),
        message: message.into(),
    }
}

/// The start of `span`, or `fallback` for the empty spans some AST nodes carry.
pub(crate) fn span_start(span: Span, fallback: Location) -> Location {
    if span.start.line == 0 {
        fallback
    } else {
        span.start
    }
}

fn located(location: Location, end: Location) -> Location {
    if location.line == 0 { end } else { location }
}

/// The position just after the last character (where "unexpected end" errors point).
fn end_location(sql: &str) -> Location {
    let line = sql.matches('\n').count() as u64 + 1;
    let last_line = sql.rsplit('\n').next().unwrap_or("");
    Location {
        line,
        column: last_line.chars().count() as u64 + 1,
    }
}

/// A parser error, positioned at the token the parser stopped at. sqlparser appends
/// " at Line: L, Column: C" to its messages; the position is reported separately instead.
fn parser_error(parser: &Parser<'_>, error: ParserError, end: Location) -> SqlError {
    let location = located(parser.peek_token_ref().span.start, end);
    let message = match error {
        ParserError::TokenizerError(message) | ParserError::ParserError(message) => message,
        ParserError::RecursionLimitExceeded => {
            format!("expressions are nested too deeply (more than {RECURSION_LIMIT} levels)")
        }
    };
    let message = match message.rsplit_once(" at Line: ") {
        Some((text, position)) if position.contains(", Column: ") => text.to_owned(),
        _ => message,
    };
    error_at(location, format!("syntax error: {message}"))
}

#[cfg(test)]
mod tests;
