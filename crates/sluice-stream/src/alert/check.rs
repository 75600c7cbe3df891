//! A parsed rule against the metric it reads: names resolved to the plan's aggregates and
//! keys, durations turned into whole windows, history bounded; the result is the compiled
//! [`Program`] the evaluator runs.

use super::rule::{
    AlertRule, AnomalyOptions, ArithOp, Condition, Evaluate, KeyFilter, Name, Operand, Position,
    RangeFn, Term,
};
use super::{MAX_HISTORY_VALUES, MAX_HISTORY_WINDOWS, MIN_BASELINE_POINTS, error, human};
use crate::error::SqlError;
use crate::plan::{CompareOp, MetricPlan, WindowSpec};
use crate::render::aggregate_names;
use sluice_core::time::Millis;

/// Checks a rule against the metric it reads: its value and key names, and that the
/// metric's windows can serve its terms. Errors point at the offending name or term.
pub fn check(rule: &AlertRule, plan: &MetricPlan) -> Result<(), SqlError> {
    compile(rule, plan).map(|_| ())
}

/// One of the metric's values as a rule reads it: its index in the window's values (plan
/// order of the aggregates) and its column in the rule's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ValueRef {
    pub(super) aggregate: usize,
    pub(super) column: usize,
}

/// A compiled number-valued expression (see [`Operand`] and [`Term`]).
#[derive(Debug, Clone)]
pub(super) enum Num {
    Const(f64),
    /// The value `back` windows before the current one (0: the current one).
    At {
        value: ValueRef,
        back: i64,
    },
    /// Over the current window and the `windows - 1` before it.
    Range {
        function: RangeFn,
        value: ValueRef,
        windows: i64,
    },
    /// The median of the `windows` windows before the current one.
    Baseline {
        value: ValueRef,
        windows: i64,
    },
    Change(Box<Num>, Box<Num>),
    Neg(Box<Num>),
    Arith {
        op: ArithOp,
        left: Box<Num>,
        right: Box<Num>,
    },
}

/// A compiled condition (see [`Condition`]).
#[derive(Debug, Clone)]
pub(super) enum Cond {
    Compare {
        op: CompareOp,
        left: Num,
        right: Num,
    },
    Between {
        value: Num,
        low: Num,
        high: Num,
        negated: bool,
    },
    Anomaly(ValueRef),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
}

/// What the rule tests.
#[derive(Debug, Clone)]
pub(super) enum Kind {
    Condition(Cond),
    Absent,
}

/// Which earlier windows `anomaly(…)` reads, in windows back from the current one.
#[derive(Debug, Clone, Copy)]
pub(super) struct AnomalyShape {
    pub(super) options: AnomalyOptions,
    /// The seasonality in windows (0: none, the baseline is the `history` windows before).
    pub(super) period: i64,
    /// Windows on each side of the same offset in each previous period.
    pub(super) spread: i64,
}

impl AnomalyShape {
    /// The windows back the baseline reads, nearest first (what [`AnomalyShape::ranges`]
    /// gives as ranges; kept to check them).
    #[cfg(test)]
    pub(super) fn backs(&self) -> impl Iterator<Item = i64> + '_ {
        let (seasons, spread, period) = if self.period == 0 {
            (1, 0, 0)
        } else {
            (self.options.seasons as i64, self.spread, self.period)
        };
        let history = self.options.history as i64;
        (1..=seasons).flat_map(move |season| {
            if period == 0 {
                1..=history
            } else {
                season * period - spread..=season * period + spread
            }
        })
    }

    /// The same windows as [`AnomalyShape::backs`], as inclusive ranges `(nearest, farthest)`
    /// of windows back: one per season (or one of `history` windows).
    pub(super) fn ranges(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        let seasons = if self.period == 0 {
            1
        } else {
            self.options.seasons as i64
        };
        let history = self.options.history as i64;
        (1..=seasons).map(move |season| {
            if self.period == 0 {
                (1, history)
            } else {
                let middle = season * self.period;
                (middle - self.spread, middle + self.spread)
            }
        })
    }

    /// Windows the baseline holds when none is missing.
    pub(super) fn windows(&self) -> usize {
        if self.period == 0 {
            self.options.history
        } else {
            self.options.seasons * (2 * self.spread as usize + 1)
        }
    }

    /// Windows that must be present for a band: half of them, and at least
    /// [`MIN_BASELINE_POINTS`].
    pub(super) fn needed(&self) -> usize {
        self.windows().div_ceil(2).max(MIN_BASELINE_POINTS)
    }

    fn deepest(&self) -> i64 {
        if self.period == 0 {
            self.options.history as i64
        } else {
            self.options.seasons as i64 * self.period + self.spread
        }
    }
}

/// A rule compiled against its metric.
#[derive(Debug, Clone)]
pub(super) struct Program {
    pub(super) kind: Kind,
    /// Distance between window starts (`None`: session windows).
    pub(super) step: Option<Millis>,
    /// Windows of history kept per key, the current one included (1: none).
    pub(super) depth: usize,
    /// The aggregates kept in history, by history column.
    pub(super) columns: Vec<usize>,
    /// `WHERE`, with each filter's key index.
    pub(super) filter: Vec<(usize, KeyFilter)>,
    pub(super) key_names: Vec<String>,
    /// `BY KEY LIMIT n` (`None`: the total series).
    pub(super) key_limit: Option<usize>,
    pub(super) hold: Millis,
    pub(super) lateness: Millis,
    pub(super) live: bool,
    pub(super) resolve_after: u32,
    pub(super) anomaly: AnomalyShape,
}

impl Program {
    /// The index of the window starting at `start` (its start for session windows).
    #[inline]
    pub(super) fn window_index(&self, start: Millis) -> i64 {
        match self.step {
            Some(step) => start.div_euclid(step),
            None => start,
        }
    }
}

/// Compiles `rule` against `plan`.
pub(super) fn compile(rule: &AlertRule, plan: &MetricPlan) -> Result<Program, SqlError> {
    if rule.metric.name != plan.name {
        return Err(error(
            rule.metric.at,
            format!(
                "the rule reads metric {}, but was checked against metric {}",
                rule.metric.name, plan.name
            ),
        ));
    }
    let mut compiler = Compiler {
        plan,
        values: aggregate_names(plan),
        step: match plan.window {
            WindowSpec::Tumble { size } => Some(size),
            WindowSpec::Hop { slide, .. } => Some(slide),
            WindowSpec::Session { .. } => None,
        },
        columns: Vec::new(),
        deepest: (0, rule.metric.at),
        anomaly: AnomalyShape {
            options: rule.options.anomaly,
            period: 0,
            spread: 0,
        },
    };
    let filter = rule
        .filter
        .iter()
        .map(|filter| Ok((compiler.key(&filter.key)?, filter.clone())))
        .collect::<Result<Vec<_>, SqlError>>()?;
    if let Some(by_key) = rule.by_key
        && plan.key_names.is_empty()
    {
        return Err(error(
            by_key.at,
            format!(
                "BY KEY evaluates each group key separately, and metric {} has no GROUP BY keys; \
                 remove BY KEY",
                plan.name
            ),
        ));
    }
    let kind = match &rule.condition {
        Condition::Absent { at } => {
            compiler.absent(rule, *at)?;
            Kind::Absent
        }
        condition => Kind::Condition(compiler.condition(condition)?),
    };
    let depth = compiler.deepest.0 as usize + 1;
    if depth > MAX_HISTORY_WINDOWS {
        return Err(error(
            compiler.deepest.1,
            format!(
                "this reaches {} windows back over metric {}'s {} windows; rules keep at most \
                 {MAX_HISTORY_WINDOWS} windows of history: use a shorter duration or a metric \
                 with longer windows",
                depth - 1,
                plan.name,
                human(compiler.step.unwrap_or_default()),
            ),
        ));
    }
    let keys = rule.by_key.map_or(1, |by_key| by_key.limit);
    let kept = (keys * (depth - 1) * compiler.columns.len()) as u64;
    if kept > MAX_HISTORY_VALUES {
        return Err(error(
            rule.by_key.map_or(compiler.deepest.1, |by_key| by_key.at),
            format!(
                "this rule keeps {} windows × {} values of history for each of up to {keys} keys \
                 ({kept} numbers); at most {MAX_HISTORY_VALUES} are allowed: lower BY KEY \
                 LIMIT or read less history",
                depth - 1,
                compiler.columns.len(),
            ),
        ));
    }
    Ok(Program {
        kind,
        step: compiler.step,
        depth,
        columns: compiler.columns,
        filter,
        key_names: plan.key_names.clone(),
        key_limit: rule.by_key.map(|by_key| by_key.limit),
        hold: rule.hold_ms(),
        lateness: plan.allowed_lateness,
        live: rule.options.on == Evaluate::Live,
        resolve_after: rule.options.resolve_after,
        anomaly: compiler.anomaly,
    })
}

struct Compiler<'a> {
    plan: &'a MetricPlan,
    values: Vec<&'a str>,
    step: Option<Millis>,
    /// Aggregates kept in history, by column.
    columns: Vec<usize>,
    /// The most windows back any term reads, and where that term is.
    deepest: (i64, Position),
    anomaly: AnomalyShape,
}

impl Compiler<'_> {
    fn key(&self, name: &Name) -> Result<usize, SqlError> {
        if let Some(index) = self.plan.key_names.iter().position(|k| *k == name.name) {
            return Ok(index);
        }
        let message = if self.plan.key_names.is_empty() {
            format!(
                "unknown group key {name}: metric {} has no GROUP BY keys to filter on",
                self.plan.name
            )
        } else {
            format!(
                "unknown group key {name} in metric {}; its keys are {}",
                self.plan.name,
                self.plan.key_names.join(", ")
            )
        };
        Err(error(name.at, message))
    }

    /// Resolves a value name; `history` when earlier windows of it are read.
    fn value(&mut self, name: &Name, history: bool) -> Result<ValueRef, SqlError> {
        let Some(aggregate) = self.values.iter().position(|v| *v == name.name) else {
            let values = self.values.join(", ");
            let message = if self.plan.key_names.contains(&name.name) {
                format!(
                    "{name} is a group key of metric {}, not a value: filter keys in WHERE or \
                     use BY KEY; its values are {values}",
                    self.plan.name
                )
            } else {
                format!(
                    "unknown value {name} in metric {}; its values are {values} (name an \
                     aggregate with AS to use it here)",
                    self.plan.name
                )
            };
            return Err(error(name.at, message));
        };
        let column = match self.columns.iter().position(|&c| c == aggregate) {
            Some(column) => column,
            None if history => {
                self.columns.push(aggregate);
                self.columns.len() - 1
            }
            None => usize::MAX,
        };
        Ok(ValueRef { aggregate, column })
    }

    /// The metric's step, for a term that reads earlier windows.
    fn step(&self, what: &dyn std::fmt::Display, at: Position) -> Result<Millis, SqlError> {
        self.step.ok_or_else(|| {
            error(
                at,
                format!(
                    "{what} reads earlier windows, which needs windows of a fixed size; metric {} \
                     uses SESSION windows: alert on a TUMBLE or HOP metric",
                    self.plan.name
                ),
            )
        })
    }

    fn reach(&mut self, back: i64, at: Position) {
        if back > self.deepest.0 {
            self.deepest = (back, at);
        }
    }

    fn absent(&mut self, rule: &AlertRule, at: Position) -> Result<(), SqlError> {
        let shortest = match self.plan.window {
            WindowSpec::Tumble { size } => size,
            WindowSpec::Hop { slide, .. } => slide,
            WindowSpec::Session { gap } => gap,
        };
        let hold = rule.hold.map_or(at, |hold| hold.at);
        if rule.hold_ms() < shortest {
            return Err(error(
                hold,
                format!(
                    "absent FOR '{}' is shorter than metric {}'s {} windows: a series shows up at \
                     most once per window; use FOR '{}' or longer",
                    human(rule.hold_ms()),
                    self.plan.name,
                    human(shortest),
                    human(shortest)
                ),
            ));
        }
        Ok(())
    }

    fn condition(&mut self, condition: &Condition) -> Result<Cond, SqlError> {
        Ok(match condition {
            Condition::Compare { op, left, right } => Cond::Compare {
                op: *op,
                left: self.operand(left)?,
                right: self.operand(right)?,
            },
            Condition::Between {
                value,
                low,
                high,
                negated,
            } => Cond::Between {
                value: self.operand(value)?,
                low: self.operand(low)?,
                high: self.operand(high)?,
                negated: *negated,
            },
            Condition::Anomaly { value, at } => Cond::Anomaly(self.anomaly(condition, value, *at)?),
            Condition::Absent { at } => {
                // `parse_alert` only accepts `absent` on its own.
                return Err(error(
                    *at,
                    "absent cannot be combined with other conditions",
                ));
            }
            Condition::And(left, right) => Cond::And(
                Box::new(self.condition(left)?),
                Box::new(self.condition(right)?),
            ),
            Condition::Or(left, right) => Cond::Or(
                Box::new(self.condition(left)?),
                Box::new(self.condition(right)?),
            ),
            Condition::Not(inner) => Cond::Not(Box::new(self.condition(inner)?)),
        })
    }

    fn anomaly(
        &mut self,
        call: &Condition,
        value: &Name,
        at: Position,
    ) -> Result<ValueRef, SqlError> {
        let step = self.step(call, at)?;
        let options = self.anomaly.options;
        if let Some(season) = options.seasonality {
            if season % step != 0 || season / step < 2 {
                return Err(error(
                    at,
                    format!(
                        "seasonality '{}' is not a whole number (2 or more) of metric {}'s {} \
                         windows",
                        human(season),
                        self.plan.name,
                        human(step)
                    ),
                ));
            }
            let period = season / step;
            let per_season = (options.history / options.seasons).max(1) as i64;
            self.anomaly.period = period;
            self.anomaly.spread = ((per_season - 1) / 2).min((period - 1) / 2);
            let points = options.seasons as i64 * (2 * self.anomaly.spread + 1);
            if points < MIN_BASELINE_POINTS as i64 {
                return Err(error(
                    at,
                    format!(
                        "{call} reads at most {points} windows of baseline ({} seasons); it needs \
                         at least {MIN_BASELINE_POINTS}: raise seasons or history",
                        options.seasons
                    ),
                ));
            }
        }
        let value = self.value(value, true)?;
        let deepest = self.anomaly.deepest();
        self.reach(deepest, at);
        Ok(value)
    }

    fn operand(&mut self, operand: &Operand) -> Result<Num, SqlError> {
        Ok(match operand {
            Operand::Number {
                written, percent, ..
            } => Num::Const(if *percent { written / 100.0 } else { *written }),
            Operand::Term(term) => self.term(term)?,
            Operand::Neg(inner) => Num::Neg(Box::new(self.operand(inner)?)),
            Operand::Arith { op, left, right } => Num::Arith {
                op: *op,
                left: Box::new(self.operand(left)?),
                right: Box::new(self.operand(right)?),
            },
        })
    }

    fn term(&mut self, term: &Term) -> Result<Num, SqlError> {
        let at = term.at();
        Ok(match term {
            Term::Value(value) => Num::At {
                value: self.value(value, false)?,
                back: 0,
            },
            Term::Previous { value, .. } => {
                self.step(term, at)?;
                self.reach(1, at);
                Num::At {
                    value: self.value(value, true)?,
                    back: 1,
                }
            }
            Term::Offset { value, by, .. } => {
                let step = self.step(term, at)?;
                if by.millis % step != 0 {
                    return Err(error(
                        by.at,
                        format!(
                            "{term}: the offset must be a whole number of metric {}'s {} windows",
                            self.plan.name,
                            human(step)
                        ),
                    ));
                }
                let back = by.millis / step;
                self.reach(back, at);
                Num::At {
                    value: self.value(value, true)?,
                    back,
                }
            }
            Term::Range {
                function,
                value,
                over,
                ..
            } => {
                let step = self.step(term, at)?;
                if over.millis < step {
                    return Err(error(
                        over.at,
                        format!(
                            "{term} covers less than one of metric {}'s {} windows; use a \
                             duration of at least '{}'",
                            self.plan.name,
                            human(step),
                            human(step)
                        ),
                    ));
                }
                let windows = (over.millis + step - 1) / step;
                self.reach(windows - 1, at);
                Num::Range {
                    function: *function,
                    value: self.value(value, true)?,
                    windows,
                }
            }
            Term::Baseline { value, over, .. } => {
                let step = self.step(term, at)?;
                let windows = over.millis / step;
                if windows < MIN_BASELINE_POINTS as i64 {
                    return Err(error(
                        over.at,
                        format!(
                            "{term} covers {windows} of metric {}'s {} windows; a baseline needs \
                             at least {MIN_BASELINE_POINTS}: use '{}' or longer",
                            self.plan.name,
                            human(step),
                            human(step * MIN_BASELINE_POINTS as i64)
                        ),
                    ));
                }
                self.reach(windows, at);
                Num::Baseline {
                    value: self.value(value, true)?,
                    windows,
                }
            }
            Term::Change {
                value, reference, ..
            } => Num::Change(
                Box::new(self.operand(value)?),
                Box::new(self.operand(reference)?),
            ),
        })
    }
}
