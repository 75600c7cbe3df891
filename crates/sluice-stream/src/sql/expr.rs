//! Expressions: fields, literals, comparisons, `IN`, `LIKE`, `IS [NOT] NULL`, `AND`/`OR`/`NOT`,
//! and the scalar functions `lower`, `upper`, `coalesce`.

use super::{error_at, span_start};
use crate::decimal::Decimal;
use crate::error::SqlError;
use crate::plan::{CompareOp, Expr, Field, Literal};
use sqlparser::ast::{
    BinaryOperator, Expr as AstExpr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    Ident, InTarget, Spanned, UnaryOperator, Value,
};
use sqlparser::tokenizer::Location;

/// The deepest path inside `properties`, `context` or `traits`.
const MAX_PATH_DEPTH: usize = 8;

const FIELDS: &str = "type, event, name, user_id, anonymous_id, message_id, timestamp, received_at, \
                      properties.…, context.…, traits.…";

thread_local! {
    /// Set while a definition that reads a derived stream is lowered: a plain name that is no
    /// field names one of the stream's columns, `properties.<name>`.
    static COLUMNS_BY_NAME: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// While alive, plain names that are no field name a derived stream's columns (see
/// [`field`]); restores the previous setting when dropped.
pub(super) struct ColumnsByName(bool);

impl ColumnsByName {
    pub(super) fn set(on: bool) -> ColumnsByName {
        ColumnsByName(COLUMNS_BY_NAME.with(|cell| cell.replace(on)))
    }
}

impl Drop for ColumnsByName {
    fn drop(&mut self) {
        COLUMNS_BY_NAME.with(|cell| cell.set(self.0));
    }
}

/// Aggregate function names (upper case).
pub(super) const AGGREGATES: [&str; 6] = ["COUNT", "SUM", "MIN", "MAX", "AVG", "APPROX_PERCENTILE"];

/// Window function names (upper case).
pub(super) const WINDOWS: [&str; 3] = ["TUMBLE", "HOP", "SESSION"];

/// The function's name in upper case (`None` for qualified names like `a.b()`).
pub(super) fn function_name(function: &Function) -> Option<String> {
    match function.name.0.as_slice() {
        [part] => part
            .as_ident()
            .map(|ident| ident.value.to_ascii_uppercase()),
        _ => None,
    }
}

/// Where an expression appears, for error messages.
pub(super) fn location(expr: &AstExpr, fallback: Location) -> Location {
    span_start(expr.span(), fallback)
}

/// Lowers a scalar or boolean expression.
pub(super) fn lower(expr: &AstExpr, fallback: Location) -> Result<Expr, SqlError> {
    let at = location(expr, fallback);
    match expr {
        AstExpr::Identifier(ident) => field(std::slice::from_ref(ident), at).map(Expr::Field),
        AstExpr::CompoundIdentifier(idents) => field(idents, at).map(Expr::Field),
        AstExpr::Value(value) => literal(&value.value, at).map(Expr::Literal),
        AstExpr::Nested(inner) => lower(inner, at),
        AstExpr::UnaryOp {
            op: UnaryOperator::Not,
            expr: inner,
        } => Ok(Expr::Not(Box::new(lower(inner, at)?))),
        AstExpr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            ..
        } => signed_number(expr, at).map(|n| Expr::Literal(Literal::Number(n))),
        AstExpr::BinaryOp { left, op, right } => binary(left, op, right, at),
        AstExpr::IsNull(inner) => Ok(Expr::IsNull {
            expr: Box::new(lower(inner, at)?),
            negated: false,
        }),
        AstExpr::IsNotNull(inner) => Ok(Expr::IsNull {
            expr: Box::new(lower(inner, at)?),
            negated: true,
        }),
        AstExpr::In {
            expr: inner,
            target: InTarget::List(list),
            negated,
            global: false,
        } => {
            let list = list
                .iter()
                .map(|item| constant(item, at))
                .collect::<Result<_, _>>()?;
            Ok(Expr::InList {
                expr: Box::new(lower(inner, at)?),
                list,
                negated: *negated,
            })
        }
        AstExpr::Like {
            negated,
            any,
            expr: inner,
            pattern,
            escape_char,
        } => {
            if *any {
                return Err(error_at(
                    at,
                    "LIKE ANY is not supported; combine LIKEs with OR",
                ));
            }
            if let Some(escape) = escape_char {
                return Err(error_at(
                    location(escape, at),
                    "LIKE … ESCAPE is not supported; patterns use % and _ without escapes",
                ));
            }
            let pattern_at = location(pattern, at);
            let Literal::String(pattern) = constant(pattern, at)? else {
                return Err(error_at(
                    pattern_at,
                    "a LIKE pattern must be a string literal",
                ));
            };
            Ok(Expr::Like {
                expr: Box::new(lower(inner, at)?),
                pattern,
                negated: *negated,
            })
        }
        AstExpr::Function(function) => scalar_function(function, at),
        other => Err(error_at(at, unsupported(other))),
    }
}

fn binary(
    left: &AstExpr,
    op: &BinaryOperator,
    right: &AstExpr,
    at: Location,
) -> Result<Expr, SqlError> {
    let compare = match op {
        BinaryOperator::Eq => Some(CompareOp::Eq),
        BinaryOperator::NotEq => Some(CompareOp::NotEq),
        BinaryOperator::Lt => Some(CompareOp::Lt),
        BinaryOperator::LtEq => Some(CompareOp::LtEq),
        BinaryOperator::Gt => Some(CompareOp::Gt),
        BinaryOperator::GtEq => Some(CompareOp::GtEq),
        _ => None,
    };
    let left_expr = lower(left, at)?;
    let right_expr = lower(right, location(right, at))?;
    match (compare, op) {
        (Some(op), _) => Ok(Expr::Compare {
            op,
            left: Box::new(left_expr),
            right: Box::new(right_expr),
        }),
        (None, BinaryOperator::And) => Ok(Expr::And(Box::new(left_expr), Box::new(right_expr))),
        (None, BinaryOperator::Or) => Ok(Expr::Or(Box::new(left_expr), Box::new(right_expr))),
        (None, other) => Err(error_at(
            at,
            format!(
                "the operator {other} is not supported; metrics use = <> < <= > >=, IN, LIKE, \
                 IS [NOT] NULL, AND, OR and NOT"
            ),
        )),
    }
}

fn scalar_function(function: &Function, at: Location) -> Result<Expr, SqlError> {
    let name = function_name(function).unwrap_or_else(|| function.name.to_string());
    if AGGREGATES.contains(&name.as_str()) {
        return Err(error_at(
            at,
            format!("the aggregate {name} is only allowed at the top of a SELECT item"),
        ));
    }
    if WINDOWS.contains(&name.as_str()) {
        return Err(error_at(
            at,
            format!("the window function {name} is only allowed in GROUP BY"),
        ));
    }
    let args = plain_args(function, at)?;
    match (name.as_str(), args.as_slice()) {
        ("LOWER", [arg]) => Ok(Expr::Lower(Box::new(lower(arg, at)?))),
        ("UPPER", [arg]) => Ok(Expr::Upper(Box::new(lower(arg, at)?))),
        ("COALESCE", args) if args.len() >= 2 => Ok(Expr::Coalesce(
            args.iter()
                .map(|arg| lower(arg, at))
                .collect::<Result<_, _>>()?,
        )),
        ("LOWER" | "UPPER", _) => Err(error_at(
            at,
            format!("{} takes exactly one argument", name.to_ascii_lowercase()),
        )),
        ("COALESCE", _) => Err(error_at(at, "coalesce takes at least two arguments")),
        _ => Err(error_at(
            at,
            format!(
                "the function {name} is not supported; scalar functions are lower, upper and \
                 coalesce, aggregates are {}",
                AGGREGATES.join(", ")
            ),
        )),
    }
}

/// The positional arguments of a function call, rejecting every SQL extra (`DISTINCT`,
/// `FILTER`, `OVER`, named arguments, `ORDER BY` inside the call, …).
pub(super) fn plain_args(function: &Function, at: Location) -> Result<Vec<&AstExpr>, SqlError> {
    let name = function.name.to_string();
    if function.over.is_some() {
        return Err(error_at(
            at,
            format!("{name}(…) OVER (…) is not supported; windows are set in GROUP BY"),
        ));
    }
    if let Some(filter) = &function.filter {
        return Err(error_at(
            location(filter, at),
            format!("{name}(…) FILTER (WHERE …) is not supported; filter events with WHERE"),
        ));
    }
    if !function.within_group.is_empty() || function.null_treatment.is_some() {
        return Err(error_at(
            at,
            format!("{name}: WITHIN GROUP and IGNORE/RESPECT NULLS are not supported"),
        ));
    }
    if !matches!(function.parameters, FunctionArguments::None) {
        return Err(error_at(
            at,
            format!("{name}: parameter lists are not supported"),
        ));
    }
    let list = match &function.args {
        FunctionArguments::List(list) => list,
        FunctionArguments::None => return Ok(Vec::new()),
        FunctionArguments::Subquery(_) => {
            return Err(error_at(
                at,
                format!("{name}: subqueries are not supported"),
            ));
        }
    };
    if !list.clauses.is_empty() {
        return Err(error_at(
            at,
            format!(
                "{name}: clauses inside the argument list (ORDER BY, LIMIT, …) are not supported"
            ),
        ));
    }
    list.args
        .iter()
        .map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => Ok(expr),
            FunctionArg::Unnamed(_) => Err(error_at(
                at,
                format!("{name}: `*` is only allowed in COUNT(*)"),
            )),
            FunctionArg::Named { .. } | FunctionArg::ExprNamed { .. } => Err(error_at(
                at,
                format!("{name}: named arguments are not supported"),
            )),
        })
        .collect()
}

/// A field from its identifier parts.
pub(super) fn field(idents: &[Ident], at: Location) -> Result<Field, SqlError> {
    let at = idents
        .first()
        .map_or(at, |ident| span_start(ident.span, at));
    let root = idents
        .first()
        .map(|ident| ident.value.to_ascii_lowercase())
        .unwrap_or_default();
    let path: Vec<String> = idents[1.min(idents.len())..]
        .iter()
        .map(|ident| ident.value.clone())
        .collect();
    let top = |field: Field| {
        if path.is_empty() {
            Ok(field)
        } else {
            Err(error_at(
                at,
                format!(
                    "{root} is a plain value and has no field {}",
                    path.join(".")
                ),
            ))
        }
    };
    match root.as_str() {
        "type" => top(Field::Type),
        "event" => top(Field::Event),
        "name" => top(Field::Name),
        "user_id" => top(Field::UserId),
        "anonymous_id" => top(Field::AnonymousId),
        "message_id" => top(Field::MessageId),
        "timestamp" => top(Field::Timestamp),
        "received_at" => top(Field::ReceivedAt),
        "previous_id" => top(Field::PreviousId),
        "resolved_user_id" => top(Field::ResolvedUserId),
        "properties" | "context" | "traits" => {
            if path.is_empty() {
                return Err(error_at(
                    at,
                    format!(
                        "name a field inside {root}, like {root}.name; the whole object is not a value"
                    ),
                ));
            }
            if path.len() > MAX_PATH_DEPTH {
                return Err(error_at(
                    at,
                    format!("paths inside {root} may be at most {MAX_PATH_DEPTH} levels deep"),
                ));
            }
            Ok(match root.as_str() {
                "properties" => Field::Properties(path),
                "context" => Field::Context(path),
                _ => Field::Traits(path),
            })
        }
        // A derived stream's column: `revenue` for `properties.revenue`.
        _ if path.is_empty() && COLUMNS_BY_NAME.with(std::cell::Cell::get) => {
            let name = idents.first().map(|ident| ident.value.clone());
            Ok(Field::Properties(name.into_iter().collect()))
        }
        _ => Err(error_at(
            at,
            format!(
                "unknown field `{}`; the fields are {FIELDS}",
                idents
                    .iter()
                    .map(|ident| ident.value.as_str())
                    .collect::<Vec<_>>()
                    .join(".")
            ),
        )),
    }
}

/// A constant: a literal, or a negated number.
pub(super) fn constant(expr: &AstExpr, fallback: Location) -> Result<Literal, SqlError> {
    let at = location(expr, fallback);
    match expr {
        AstExpr::Value(value) => literal(&value.value, at),
        AstExpr::UnaryOp { .. } => signed_number(expr, at).map(Literal::Number),
        AstExpr::Nested(inner) => constant(inner, at),
        other => Err(error_at(
            at,
            format!("expected a constant (a string, number, TRUE, FALSE or NULL), found `{other}`"),
        )),
    }
}

fn signed_number(expr: &AstExpr, at: Location) -> Result<Decimal, SqlError> {
    match expr {
        AstExpr::UnaryOp {
            op: op @ (UnaryOperator::Minus | UnaryOperator::Plus),
            expr: inner,
        } => {
            let value = signed_number(inner, at)?;
            if matches!(op, UnaryOperator::Minus) {
                Decimal::ZERO
                    .checked_add(value)
                    .and_then(|v| Decimal::new(-v.mantissa(), v.scale()))
                    .ok_or_else(|| error_at(at, "number out of range"))
            } else {
                Ok(value)
            }
        }
        AstExpr::Value(value) => match literal(&value.value, at)? {
            Literal::Number(number) => Ok(number),
            _ => Err(error_at(at, "only numbers can be negated")),
        },
        AstExpr::Nested(inner) => signed_number(inner, at),
        other => Err(error_at(
            at,
            format!("arithmetic is not supported: `{other}`"),
        )),
    }
}

fn literal(value: &Value, at: Location) -> Result<Literal, SqlError> {
    match value {
        Value::Number(text, _) => Decimal::parse_str(text)
            .map(Literal::Number)
            .ok_or_else(|| {
                error_at(
                    at,
                    format!(
                        "the number {text} is out of range (at most 38 digits, 18 after the point)"
                    ),
                )
            }),
        Value::SingleQuotedString(text) => Ok(Literal::String(text.clone())),
        Value::Boolean(value) => Ok(Literal::Bool(*value)),
        Value::Null => Ok(Literal::Null),
        Value::DoubleQuotedString(text) => Err(error_at(
            at,
            format!("\"{text}\" is a quoted name, not a string; write strings in single quotes"),
        )),
        other => Err(error_at(
            at,
            format!(
                "the literal {other} is not supported; use a number, a 'string', TRUE, FALSE or NULL"
            ),
        )),
    }
}

/// Names the unsupported expression for an error message.
fn unsupported(expr: &AstExpr) -> String {
    let what = match expr {
        AstExpr::Case { .. } => "CASE",
        AstExpr::Cast { .. } => "CAST",
        AstExpr::Subquery(_) | AstExpr::Exists { .. } | AstExpr::In { .. } => {
            "a subquery (IN takes a list of constants)"
        }
        AstExpr::Between { .. } => "BETWEEN (write x >= a AND x <= b)",
        AstExpr::ILike { .. } => "ILIKE (write lower(x) LIKE 'pattern')",
        AstExpr::SimilarTo { .. } | AstExpr::RLike { .. } => "regular expression matching",
        AstExpr::Interval(_) => "an INTERVAL outside a window function",
        AstExpr::Wildcard(_) | AstExpr::QualifiedWildcard(..) => "`*` (only COUNT(*) takes it)",
        AstExpr::Tuple(_) => "a tuple",
        AstExpr::Array(_) => "an array",
        AstExpr::TypedString(_) => "a typed literal",
        AstExpr::IsTrue(_)
        | AstExpr::IsFalse(_)
        | AstExpr::IsNotTrue(_)
        | AstExpr::IsNotFalse(_) => "IS TRUE / IS FALSE (write x = TRUE)",
        _ => "",
    };
    if what.is_empty() {
        format!("the expression `{expr}` is not supported in a metric")
    } else {
        format!("{what} is not supported in a metric")
    }
}
