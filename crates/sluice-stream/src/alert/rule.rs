//! The parsed form of an alert rule: plain data, comparable and printable. What
//! [`super::parse_alert`] produces and [`super::check`] and [`super::Evaluator`] read; no
//! parser types leak out.

use crate::decimal::Decimal;
use crate::keys::KeyValue;
use crate::plan::CompareOp;
use sluice_core::time::Millis;
use std::fmt;

/// Where something is in the rule's text (1-based), for errors found after parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    /// Line, from 1.
    pub line: u64,
    /// Column, from 1.
    pub column: u64,
}

/// A parsed `CREATE ALERT` statement.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// The rule's name (`checkout_errors`).
    pub name: String,
    /// The SQL text it was parsed from.
    pub sql: String,
    /// The metric it reads, from `ON metric`.
    pub metric: Name,
    /// `WHERE`: conditions on the metric's group keys, all of which must hold.
    pub filter: Vec<KeyFilter>,
    /// `BY KEY [LIMIT n]`: one alert instance per group key; `None` reads the total series.
    pub by_key: Option<ByKey>,
    /// `WHEN`.
    pub condition: Condition,
    /// `FOR 'duration'`: how long the condition must hold before the rule fires.
    pub hold: Option<DurationArg>,
    /// `WITH (…)`.
    pub options: AlertOptions,
}

impl AlertRule {
    /// The `FOR` duration, 0 when the rule has none.
    pub fn hold_ms(&self) -> Millis {
        self.hold.map_or(0, |hold| hold.millis)
    }
}

/// A name in the rule's text and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name {
    /// The name.
    pub name: String,
    /// Where it is written.
    pub at: Position,
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = self
            .name
            .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !super::parse::RESERVED
                .iter()
                .any(|word| word.eq_ignore_ascii_case(&self.name));
        if plain {
            f.write_str(&self.name)
        } else {
            write!(f, "\"{}\"", self.name.replace('"', "\"\""))
        }
    }
}

/// A duration argument (`'1d'`) and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DurationArg {
    /// Its length, ms (more than 0, at most [`super::MAX_DURATION`]).
    pub millis: Millis,
    /// Where it is written.
    pub at: Position,
}

impl fmt::Display for DurationArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", super::human(self.millis))
    }
}

/// One `WHERE` condition on a group key: `key = 'v'`, `key <> 'v'`, `key [NOT] IN (…)`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyFilter {
    /// The key's name, as the metric's GROUP BY names it.
    pub key: Name,
    /// The accepted (or, when `negated`, rejected) values.
    pub values: Vec<KeyLiteral>,
    /// `<>` or `NOT IN`.
    pub negated: bool,
}

impl KeyFilter {
    /// Whether a key value passes this filter. As in SQL, a NULL key passes none, `<>` and
    /// `NOT IN` included.
    pub fn matches(&self, value: &KeyValue) -> bool {
        !matches!(value, KeyValue::Null)
            && self.values.iter().any(|literal| literal.matches(value)) != self.negated
    }
}

/// A constant a group key is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLiteral {
    /// `'text'`.
    Text(String),
    /// A number, exact (`1.50` equals `1.5`).
    Number(Decimal),
    /// `TRUE` / `FALSE`.
    Bool(bool),
}

impl KeyLiteral {
    /// Whether a key value equals this constant (values of different kinds never do).
    pub fn matches(&self, value: &KeyValue) -> bool {
        match (self, value) {
            (KeyLiteral::Text(literal), KeyValue::Text(text)) => literal == text,
            (KeyLiteral::Number(literal), KeyValue::Number(number)) => {
                literal.normalized() == number.normalized()
            }
            (KeyLiteral::Bool(literal), KeyValue::Bool(value)) => literal == value,
            _ => false,
        }
    }
}

impl fmt::Display for KeyLiteral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyLiteral::Text(text) => write!(f, "'{}'", text.replace('\'', "''")),
            KeyLiteral::Number(number) => write!(f, "{number}"),
            KeyLiteral::Bool(value) => f.write_str(if *value { "TRUE" } else { "FALSE" }),
        }
    }
}

/// `BY KEY [LIMIT n]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByKey {
    /// The most keys the rule tracks (`LIMIT`, default [`super::DEFAULT_KEY_LIMIT`]).
    pub limit: usize,
    /// Where `BY` is written.
    pub at: Position,
}

/// `WITH (…)`, with every default filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertOptions {
    /// `on`: which windows the rule evaluates.
    pub on: Evaluate,
    /// `resolve_after`: consecutive false evaluations that resolve a firing alert (from 1).
    pub resolve_after: u32,
    /// `severity`, passed through to notifications.
    pub severity: Severity,
    /// The options of `anomaly(…)`.
    pub anomaly: AnomalyOptions,
}

impl Default for AlertOptions {
    fn default() -> Self {
        AlertOptions {
            on: Evaluate::Final,
            resolve_after: 1,
            severity: Severity::Warning,
            anomaly: AnomalyOptions::default(),
        }
    }
}

/// `on = 'final' | 'live'`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Evaluate {
    /// Only final windows (the default): every value is evaluated once, when it is settled.
    Final,
    /// Open windows too: faster alerts on values that may still grow.
    Live,
}

/// `severity = 'info' | 'warning' | 'critical'`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// `'info'`.
    Info,
    /// `'warning'` (the default).
    Warning,
    /// `'critical'`.
    Critical,
}

impl Severity {
    /// The name used in the rule and in notifications.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// How `anomaly(v)` builds its band (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnomalyOptions {
    /// `sensitivity`: the band's half-width in robust standard deviations
    /// (1.4826 × MAD), 0.5 to 20.
    pub sensitivity: f64,
    /// `history`: the most windows in the baseline.
    pub history: usize,
    /// `seasonality`: the period whose previous cycles make the baseline, ms (`None`: the
    /// windows just before the current one).
    pub seasonality: Option<Millis>,
    /// `seasons`: how many previous periods the baseline reads.
    pub seasons: usize,
    /// `min_deviation`: the smallest half-width of the band, in the value's units.
    pub min_deviation: f64,
}

impl Default for AnomalyOptions {
    fn default() -> Self {
        AnomalyOptions {
            sensitivity: super::DEFAULT_SENSITIVITY,
            history: super::DEFAULT_HISTORY,
            seasonality: None,
            seasons: super::DEFAULT_SEASONS,
            min_deviation: 0.0,
        }
    }
}

/// The `WHEN` condition: SQL's three-valued logic over [`Operand`]s.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `a <op> b`.
    Compare {
        /// The operator.
        op: CompareOp,
        /// Left side.
        left: Operand,
        /// Right side.
        right: Operand,
    },
    /// `x [NOT] BETWEEN low AND high` (bounds included).
    Between {
        /// The tested value.
        value: Operand,
        /// Lower bound.
        low: Operand,
        /// Upper bound.
        high: Operand,
        /// `NOT BETWEEN`.
        negated: bool,
    },
    /// `anomaly(v)`: the value is outside the band its baseline predicts.
    Anomaly {
        /// The value.
        value: Name,
        /// Where the call is written.
        at: Position,
    },
    /// `absent`: the series has had no window for the rule's `FOR` duration.
    Absent {
        /// Where it is written.
        at: Position,
    },
    /// `a AND b`.
    And(Box<Condition>, Box<Condition>),
    /// `a OR b`.
    Or(Box<Condition>, Box<Condition>),
    /// `NOT a`.
    Not(Box<Condition>),
}

impl Condition {
    /// Calls `visit` on every term of every operand of the condition.
    pub fn for_each_term(&self, visit: &mut impl FnMut(&Term)) {
        match self {
            Condition::Compare { left, right, .. } => {
                left.for_each_term(visit);
                right.for_each_term(visit);
            }
            Condition::Between {
                value, low, high, ..
            } => {
                value.for_each_term(visit);
                low.for_each_term(visit);
                high.for_each_term(visit);
            }
            Condition::Anomaly { .. } | Condition::Absent { .. } => {}
            Condition::And(left, right) | Condition::Or(left, right) => {
                left.for_each_term(visit);
                right.for_each_term(visit);
            }
            Condition::Not(inner) => inner.for_each_term(visit),
        }
    }

    /// The `anomaly(…)` calls, in text order.
    pub fn anomalies(&self) -> Vec<(&Name, Position)> {
        let mut found = Vec::new();
        self.walk(&mut |condition| {
            if let Condition::Anomaly { value, at } = condition {
                found.push((value, *at));
            }
        });
        found
    }

    /// Where `absent` is written, if it is.
    pub fn absent(&self) -> Option<Position> {
        let mut found = None;
        self.walk(&mut |condition| {
            if let Condition::Absent { at } = condition {
                found = found.or(Some(*at));
            }
        });
        found
    }

    fn walk<'a>(&'a self, visit: &mut impl FnMut(&'a Condition)) {
        visit(self);
        match self {
            Condition::And(left, right) | Condition::Or(left, right) => {
                left.walk(visit);
                right.walk(visit);
            }
            Condition::Not(inner) => inner.walk(visit),
            _ => {}
        }
    }

    fn precedence(&self) -> u8 {
        match self {
            Condition::Or(..) => 1,
            Condition::And(..) => 2,
            Condition::Not(_) => 3,
            _ => 4,
        }
    }
}

/// Writes `inner`, in parentheses when it binds less tightly than `at_least`.
fn write_condition(f: &mut fmt::Formatter<'_>, inner: &Condition, at_least: u8) -> fmt::Result {
    if inner.precedence() < at_least {
        write!(f, "({inner})")
    } else {
        write!(f, "{inner}")
    }
}

/// The symbol of a comparison, as the rule writes it.
pub(super) fn compare_symbol(op: CompareOp) -> &'static str {
    match op {
        CompareOp::Eq => "=",
        CompareOp::NotEq => "<>",
        CompareOp::Lt => "<",
        CompareOp::LtEq => "<=",
        CompareOp::Gt => ">",
        CompareOp::GtEq => ">=",
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Compare { op, left, right } => {
                write!(f, "{left} {} {right}", compare_symbol(*op))
            }
            Condition::Between {
                value,
                low,
                high,
                negated,
            } => write!(
                f,
                "{value} {}BETWEEN {low} AND {high}",
                if *negated { "NOT " } else { "" }
            ),
            Condition::Anomaly { value, .. } => write!(f, "anomaly({value})"),
            Condition::Absent { .. } => f.write_str("absent"),
            Condition::And(left, right) => {
                write_condition(f, left, 2)?;
                f.write_str(" AND ")?;
                write_condition(f, right, 3)
            }
            Condition::Or(left, right) => {
                write_condition(f, left, 1)?;
                f.write_str(" OR ")?;
                write_condition(f, right, 2)
            }
            Condition::Not(inner) => {
                f.write_str("NOT ")?;
                write_condition(f, inner, 3)
            }
        }
    }
}

/// An arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (NULL when dividing by 0)
    Div,
}

impl ArithOp {
    fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        }
    }

    fn precedence(self) -> u8 {
        match self {
            ArithOp::Add | ArithOp::Sub => 1,
            ArithOp::Mul | ArithOp::Div => 2,
        }
    }
}

/// A number-valued expression: NULL when an input is missing (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A number: `100`, `0.5`, or a percent `5%` (= 0.05).
    Number {
        /// The number as written (5 for `5%`).
        written: f64,
        /// Written with `%`.
        percent: bool,
        /// Where it is written.
        at: Position,
    },
    /// A value of the series.
    Term(Term),
    /// `-x`.
    Neg(Box<Operand>),
    /// `a <op> b`.
    Arith {
        /// The operator.
        op: ArithOp,
        /// Left side.
        left: Box<Operand>,
        /// Right side.
        right: Box<Operand>,
    },
}

impl Operand {
    /// Calls `visit` on every term, including those inside `change(…)`.
    pub fn for_each_term(&self, visit: &mut impl FnMut(&Term)) {
        match self {
            Operand::Number { .. } => {}
            Operand::Term(term) => {
                visit(term);
                if let Term::Change {
                    value, reference, ..
                } = term
                {
                    value.for_each_term(visit);
                    reference.for_each_term(visit);
                }
            }
            Operand::Neg(inner) => inner.for_each_term(visit),
            Operand::Arith { left, right, .. } => {
                left.for_each_term(visit);
                right.for_each_term(visit);
            }
        }
    }

    fn precedence(&self) -> u8 {
        match self {
            Operand::Arith { op, .. } => op.precedence(),
            Operand::Neg(_) => 3,
            Operand::Number { written, .. } if *written < 0.0 => 3,
            _ => 4,
        }
    }
}

fn write_operand(f: &mut fmt::Formatter<'_>, inner: &Operand, at_least: u8) -> fmt::Result {
    if inner.precedence() < at_least {
        write!(f, "({inner})")
    } else {
        write!(f, "{inner}")
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Number {
                written, percent, ..
            } => write!(f, "{written}{}", if *percent { "%" } else { "" }),
            Operand::Term(term) => write!(f, "{term}"),
            Operand::Neg(inner) => {
                f.write_str("-")?;
                write_operand(f, inner, 3)
            }
            Operand::Arith { op, left, right } => {
                let level = op.precedence();
                write_operand(f, left, level)?;
                write!(f, " {} ", op.symbol())?;
                // Left-associative: `a - (b - c)` keeps its parentheses.
                write_operand(f, right, level + 1)
            }
        }
    }
}

/// What a rolling range computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RangeFn {
    /// `sum(v, d)`
    Sum,
    /// `avg(v, d)`
    Avg,
    /// `min(v, d)`
    Min,
    /// `max(v, d)`
    Max,
}

impl RangeFn {
    /// The function's name.
    pub fn as_str(self) -> &'static str {
        match self {
            RangeFn::Sum => "sum",
            RangeFn::Avg => "avg",
            RangeFn::Min => "min",
            RangeFn::Max => "max",
        }
    }
}

/// A value of the series: the current window's, an earlier one's, or a summary of several.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    /// `v`: the current window's value.
    Value(Name),
    /// `previous(v)`: the window one step before the current one.
    Previous {
        /// The value.
        value: Name,
        /// Where the call is written.
        at: Position,
    },
    /// `offset(v, d)`: the window that started `d` before the current one.
    Offset {
        /// The value.
        value: Name,
        /// How far back.
        by: DurationArg,
        /// Where the call is written.
        at: Position,
    },
    /// `sum|avg|min|max(v, d)`: over the windows that started in the last `d`, the current
    /// one included.
    Range {
        /// What it computes.
        function: RangeFn,
        /// The value.
        value: Name,
        /// How far back.
        over: DurationArg,
        /// Where the call is written.
        at: Position,
    },
    /// `baseline(v, d)`: the median over the windows that started in the `d` before the
    /// current one.
    Baseline {
        /// The value.
        value: Name,
        /// How far back.
        over: DurationArg,
        /// Where the call is written.
        at: Position,
    },
    /// `change(v, ref)`: `(v - ref) / |ref| * 100`, in percent.
    Change {
        /// The new value.
        value: Box<Operand>,
        /// The value it is compared with.
        reference: Box<Operand>,
        /// Where the call is written.
        at: Position,
    },
}

impl Term {
    /// Where the term is written.
    pub fn at(&self) -> Position {
        match self {
            Term::Value(name) => name.at,
            Term::Previous { at, .. }
            | Term::Offset { at, .. }
            | Term::Range { at, .. }
            | Term::Baseline { at, .. }
            | Term::Change { at, .. } => *at,
        }
    }

    /// The series value the term reads (`None` for `change`, which reads its operands').
    pub fn value(&self) -> Option<&Name> {
        match self {
            Term::Value(value)
            | Term::Previous { value, .. }
            | Term::Offset { value, .. }
            | Term::Range { value, .. }
            | Term::Baseline { value, .. } => Some(value),
            Term::Change { .. } => None,
        }
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Term::Value(value) => write!(f, "{value}"),
            Term::Previous { value, .. } => write!(f, "previous({value})"),
            Term::Offset { value, by, .. } => write!(f, "offset({value}, {by})"),
            Term::Range {
                function,
                value,
                over,
                ..
            } => write!(f, "{}({value}, {over})", function.as_str()),
            Term::Baseline { value, over, .. } => write!(f, "baseline({value}, {over})"),
            Term::Change {
                value, reference, ..
            } => write!(f, "change({value}, {reference})"),
        }
    }
}
