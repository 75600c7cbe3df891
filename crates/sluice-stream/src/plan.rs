//! The typed plan of a metric: what [`crate::sql::parse_metric`] produces from the SQL text
//! and everything else consumes (the evaluator, the window engine, the store, the query API).
//! Plain data, comparable and printable; no parser types leak out of [`crate::sql`].

use crate::decimal::Decimal;
use sluice_core::time::Millis;
use std::fmt;

/// One event field, as the metric dialect names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `type`: the Segment call type (`track`, `page`, …).
    Type,
    /// `event`: the track event's name.
    Event,
    /// `name`: the page or screen name.
    Name,
    /// `user_id`.
    UserId,
    /// `anonymous_id`.
    AnonymousId,
    /// `message_id`: the event's id, unique per tenant.
    MessageId,
    /// `timestamp`: event time, epoch milliseconds.
    Timestamp,
    /// `received_at`: when sluice received the event, epoch milliseconds.
    ReceivedAt,
    /// `previous_id`: an `alias` call's former id.
    PreviousId,
    /// `resolved_user_id`: the person an event belongs to, which an identity stream
    /// (`CREATE IDENTITY`, see [`crate::identity`]) adds to each event it writes.
    ResolvedUserId,
    /// `properties.a.b`: a path inside the properties object.
    Properties(Vec<String>),
    /// `context.a.b`.
    Context(Vec<String>),
    /// `traits.a.b`.
    Traits(Vec<String>),
}

impl Field {
    /// The JSON path of the field inside a stored event, from the top-level key down.
    pub fn json_path(&self) -> Vec<&str> {
        let (root, rest): (&str, &[String]) = match self {
            Field::Type => ("type", &[]),
            Field::Event => ("event", &[]),
            Field::Name => ("name", &[]),
            Field::UserId => ("user_id", &[]),
            Field::AnonymousId => ("anonymous_id", &[]),
            Field::MessageId => ("message_id", &[]),
            Field::Timestamp => ("timestamp", &[]),
            Field::ReceivedAt => ("received_at", &[]),
            Field::PreviousId => ("previous_id", &[]),
            Field::ResolvedUserId => ("resolved_user_id", &[]),
            Field::Properties(path) => ("properties", path),
            Field::Context(path) => ("context", path),
            Field::Traits(path) => ("traits", path),
        };
        std::iter::once(root)
            .chain(rest.iter().map(String::as_str))
            .collect()
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.json_path().join("."))
    }
}

/// A constant in the SQL text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Literal {
    /// `NULL`.
    Null,
    /// `TRUE` / `FALSE`.
    Bool(bool),
    /// A number, exact.
    Number(Decimal),
    /// A single-quoted string.
    String(String),
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("NULL"),
            Literal::Bool(value) => f.write_str(if *value { "TRUE" } else { "FALSE" }),
            Literal::Number(value) => write!(f, "{value}"),
            Literal::String(value) => write!(f, "'{}'", value.replace('\'', "''")),
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `=`
    Eq,
    /// `<>` or `!=`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
}

impl CompareOp {
    /// Whether `left op right` holds, given how `left` compares to `right`.
    #[inline]
    pub fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self {
            CompareOp::Eq => ordering == Equal,
            CompareOp::NotEq => ordering != Equal,
            CompareOp::Lt => ordering == Less,
            CompareOp::LtEq => ordering != Greater,
            CompareOp::Gt => ordering == Greater,
            CompareOp::GtEq => ordering != Less,
        }
    }

    /// The operator with its operands swapped: `a < b` is `b > a`.
    pub fn flipped(self) -> CompareOp {
        match self {
            CompareOp::Lt => CompareOp::Gt,
            CompareOp::LtEq => CompareOp::GtEq,
            CompareOp::Gt => CompareOp::Lt,
            CompareOp::GtEq => CompareOp::LtEq,
            other => other,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::NotEq => "<>",
            CompareOp::Lt => "<",
            CompareOp::LtEq => "<=",
            CompareOp::Gt => ">",
            CompareOp::GtEq => ">=",
        }
    }
}

/// A scalar or boolean expression over one event. Missing fields are NULL; values are typed
/// where they are used (see [`crate::eval`]); boolean logic is SQL's three-valued logic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// An event field.
    Field(Field),
    /// A constant.
    Literal(Literal),
    /// `lower(x)`.
    Lower(Box<Expr>),
    /// `upper(x)`.
    Upper(Box<Expr>),
    /// `coalesce(a, b, …)`: the first non-NULL argument.
    Coalesce(Vec<Expr>),
    /// `a <op> b`.
    Compare {
        /// The operator.
        op: CompareOp,
        /// Left side.
        left: Box<Expr>,
        /// Right side.
        right: Box<Expr>,
    },
    /// `x [NOT] IN (literal, …)`.
    InList {
        /// The tested value.
        expr: Box<Expr>,
        /// The constants.
        list: Vec<Literal>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `x [NOT] LIKE 'pattern'` (`%` any run of characters, `_` one character).
    Like {
        /// The tested value.
        expr: Box<Expr>,
        /// The pattern.
        pattern: String,
        /// `NOT LIKE`.
        negated: bool,
    },
    /// `x IS [NOT] NULL`.
    IsNull {
        /// The tested value.
        expr: Box<Expr>,
        /// `IS NOT NULL`.
        negated: bool,
    },
    /// `a AND b`.
    And(Box<Expr>, Box<Expr>),
    /// `a OR b`.
    Or(Box<Expr>, Box<Expr>),
    /// `NOT a`.
    Not(Box<Expr>),
}

impl Expr {
    /// Calls `visit` on every field the expression reads.
    pub fn for_each_field(&self, visit: &mut impl FnMut(&Field)) {
        match self {
            Expr::Field(field) => visit(field),
            Expr::Literal(_) => {}
            Expr::Lower(inner) | Expr::Upper(inner) | Expr::Not(inner) => {
                inner.for_each_field(visit)
            }
            Expr::Coalesce(args) => args.iter().for_each(|arg| arg.for_each_field(visit)),
            Expr::Compare { left, right, .. } | Expr::And(left, right) | Expr::Or(left, right) => {
                left.for_each_field(visit);
                right.for_each_field(visit);
            }
            Expr::InList { expr, .. } | Expr::Like { expr, .. } | Expr::IsNull { expr, .. } => {
                expr.for_each_field(visit)
            }
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Field(field) => write!(f, "{field}"),
            Expr::Literal(literal) => write!(f, "{literal}"),
            Expr::Lower(inner) => write!(f, "lower({inner})"),
            Expr::Upper(inner) => write!(f, "upper({inner})"),
            Expr::Coalesce(args) => {
                f.write_str("coalesce(")?;
                for (index, arg) in args.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{arg}")?;
                }
                f.write_str(")")
            }
            Expr::Compare { op, left, right } => write!(f, "({left} {} {right})", op.symbol()),
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                write!(f, "({expr} {}IN (", if *negated { "NOT " } else { "" })?;
                for (index, literal) in list.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{literal}")?;
                }
                f.write_str("))")
            }
            Expr::Like {
                expr,
                pattern,
                negated,
            } => write!(
                f,
                "({expr} {}LIKE {})",
                if *negated { "NOT " } else { "" },
                Literal::String(pattern.clone())
            ),
            Expr::IsNull { expr, negated } => {
                write!(f, "({expr} IS {}NULL)", if *negated { "NOT " } else { "" })
            }
            Expr::And(left, right) => write!(f, "({left} AND {right})"),
            Expr::Or(left, right) => write!(f, "({left} OR {right})"),
            Expr::Not(inner) => write!(f, "(NOT {inner})"),
        }
    }
}

/// What an aggregate computes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AggregateKind {
    /// `COUNT(*)`: events.
    CountStar,
    /// `COUNT(x)`: events where `x` is not NULL.
    Count,
    /// `COUNT(DISTINCT x)`: distinct non-NULL values, estimated by HyperLogLog.
    CountDistinct,
    /// `SUM(x)`: exact decimal sum of numeric values.
    Sum,
    /// `MIN(x)` of numeric values.
    Min,
    /// `MAX(x)` of numeric values.
    Max,
    /// `AVG(x)`: exact sum / count of numeric values.
    Avg,
    /// `APPROX_PERCENTILE(x, q)`: the q-quantile of numeric values, estimated by DDSketch.
    ApproxPercentile {
        /// The quantile, in `[0, 1]`.
        quantile: f64,
    },
    /// The value (as the event wrote it) of the earliest event, by event time, where the
    /// argument is not NULL; a tie goes to the smaller text. Sessions use it (entry page,
    /// referrer, campaign); the metric dialect has no name for it.
    First,
    /// The value of the latest event where the argument is not NULL; a tie goes to the
    /// larger text. Sessions use it (exit page).
    Last,
}

/// One aggregate of a metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// What it computes.
    pub kind: AggregateKind,
    /// Its argument (`None` only for `COUNT(*)`).
    pub arg: Option<Expr>,
    /// `FILTER (WHERE …)`: only events for which it is TRUE are aggregated.
    pub filter: Option<Expr>,
}

/// Where an output column comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnSource {
    /// The group key at this index of [`MetricPlan::keys`].
    Key(usize),
    /// The aggregate at this index of [`MetricPlan::aggregates`].
    Aggregate(usize),
}

/// One column of the SELECT list, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name: the alias, or the expression's text.
    pub name: String,
    /// Where its values come from.
    pub source: ColumnSource,
}

/// How events are grouped in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowSpec {
    /// `TUMBLE(timestamp, size)`: back-to-back windows aligned to the Unix epoch.
    Tumble {
        /// Window length, ms.
        size: Millis,
    },
    /// `HOP(timestamp, slide, size)`: windows of `size` starting every `slide`.
    Hop {
        /// Distance between window starts, ms.
        slide: Millis,
        /// Window length, ms.
        size: Millis,
    },
    /// `SESSION(timestamp, gap)`: per group key, events less than `gap` apart share a window.
    Session {
        /// Inactivity that ends a session, ms.
        gap: Millis,
    },
}

/// What happens to events that arrive after their window closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LatePolicy {
    /// Copy them, with the metric name and reason, to the late-events topic (and count them).
    Topic,
    /// Count them and drop them.
    Drop,
}

/// Where a plan reads its records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// `FROM events`: the collector's topic.
    Events,
    /// `FROM name`: the records of the derived stream `name`, committed ones only.
    Stream(String),
}

impl Source {
    /// The topic it names, given the events topic's name.
    pub fn topic<'a>(&'a self, events: &'a str) -> &'a str {
        match self {
            Source::Events => events,
            Source::Stream(name) => name,
        }
    }
}

/// One column of a derived stream's records.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Projection {
    /// The key it has in the record's `properties`: the alias, or the field's last name.
    pub name: String,
    /// What it holds.
    pub expr: Expr,
}

/// What a plan produces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Output {
    /// `CREATE METRIC`: windows of aggregates, stored.
    Windows,
    /// `CREATE STREAM`: one record per matching event, appended to the topic named after the
    /// stream: the event's envelope (ids, type, event name, times) with `properties` holding
    /// these columns, in order.
    Records(Vec<Projection>),
    /// `CREATE SESSIONS`: one record per visitor session when it closes (see
    /// [`crate::sessions`]); the plan's window is the session gap, its group key the visitor,
    /// its aggregates the session's summary.
    Sessions {
        /// The longest a session lasts, ms: an event this long after its session's first
        /// one starts a new session.
        max_length: Millis,
    },
    /// `CREATE IDENTITY`: every event again, with its `resolved_user_id`, in the topic named
    /// after the identity, and the profile changes in `<name>.changes` (see
    /// [`crate::identity`]); the identity graph and the profiles are its stored state.
    Identity,
}

/// A parsed, checked metric definition; or, with [`Output::Records`], a derived stream's
/// (which runs through the same pipelines, and has no keys, aggregates or windows).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPlan {
    /// The metric's name (`page_views`).
    pub name: String,
    /// The SQL text it was parsed from.
    pub sql: String,
    /// `FROM`.
    pub source: Source,
    /// What it produces.
    pub output: Output,
    /// `WHERE`; events for which it is not TRUE are skipped.
    pub filter: Option<Expr>,
    /// Group keys besides the tenant (always an implicit key) and the window.
    pub keys: Vec<Expr>,
    /// Names of the group keys, parallel to `keys`.
    pub key_names: Vec<String>,
    /// The aggregates.
    pub aggregates: Vec<Aggregate>,
    /// The SELECT list, in order.
    pub columns: Vec<Column>,
    /// The window.
    pub window: WindowSpec,
    /// How far behind the newest event time the watermark trails, ms.
    pub out_of_orderness: Millis,
    /// How long after a window's end (in watermark time) events still update it, ms.
    pub allowed_lateness: Millis,
    /// What happens to events later than that.
    pub late: LatePolicy,
}

/// The fields a derived record copies from its event, in the order it writes them (after
/// `message_id` and `tenant`).
pub const ENVELOPE: [Field; 7] = [
    Field::MessageId,
    Field::Type,
    Field::Event,
    Field::Name,
    Field::UserId,
    Field::AnonymousId,
    Field::ReceivedAt,
];

impl MetricPlan {
    /// The derived stream's columns, if this is a `CREATE STREAM` plan.
    pub fn records(&self) -> Option<&[Projection]> {
        match &self.output {
            Output::Records(columns) => Some(columns),
            Output::Windows | Output::Sessions { .. } | Output::Identity => None,
        }
    }

    /// Whether the plan writes records to a topic (a stream or sessions) rather than
    /// windows to the store.
    pub fn is_stream(&self) -> bool {
        !matches!(self.output, Output::Windows)
    }

    /// Every field the metric reads, sorted and deduplicated (always including `timestamp`).
    pub fn fields(&self) -> Vec<Field> {
        let mut fields = vec![Field::Timestamp];
        let mut push = |field: &Field| fields.push(field.clone());
        if let Some(filter) = &self.filter {
            filter.for_each_field(&mut push);
        }
        for key in &self.keys {
            key.for_each_field(&mut push);
        }
        for aggregate in &self.aggregates {
            if let Some(arg) = &aggregate.arg {
                arg.for_each_field(&mut push);
            }
            if let Some(filter) = &aggregate.filter {
                filter.for_each_field(&mut push);
            }
        }
        match &self.output {
            Output::Records(columns) => {
                for column in columns {
                    column.expr.for_each_field(&mut push);
                }
                fields.extend(ENVELOPE.iter().cloned());
            }
            Output::Identity => fields.extend(crate::identity::FIELDS.iter().cloned()),
            Output::Windows | Output::Sessions { .. } => {}
        }
        fields.sort();
        fields.dedup();
        fields
    }
}
