//! The `WHEN` condition: boolean logic over comparisons of arithmetic on terms.
//!
//! Precedence, loosest first: `OR`, `AND`, `NOT`, comparisons and `BETWEEN`, `+ -`, `* /`,
//! unary `-`. A `(` where a condition is expected may open a condition or a number
//! (`(a > 1 OR b > 1)`, `(a + b) > 1`): the parser tries the comparison first and falls back.

use super::{Arg, Parser, RESERVED, parse_duration};
use crate::alert::error;
use crate::alert::rule::{ArithOp, Condition, Name, Operand, Position, RangeFn, Term};
use crate::error::SqlError;
use crate::plan::CompareOp;
use sqlparser::tokenizer::Token;

/// The functions of the condition language, for error messages.
const FUNCTIONS: &str = "previous, offset, sum, avg, min, max, baseline, change and anomaly";

impl Parser {
    /// `a OR b …`
    pub(super) fn condition(&mut self) -> Result<Condition, SqlError> {
        self.enter()?;
        let mut left = self.conjunction()?;
        while self.eat_word("OR") {
            let right = self.conjunction()?;
            left = Condition::Or(Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    /// `a AND b …`
    fn conjunction(&mut self) -> Result<Condition, SqlError> {
        let mut left = self.negation()?;
        while self.eat_word("AND") {
            let right = self.negation()?;
            left = Condition::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// `NOT a`
    fn negation(&mut self) -> Result<Condition, SqlError> {
        if self.eat_word("NOT") {
            self.enter()?;
            let inner = self.negation()?;
            self.depth -= 1;
            return Ok(Condition::Not(Box::new(inner)));
        }
        self.predicate()
    }

    /// A comparison, `BETWEEN`, `anomaly(v)`, `absent`, or a condition in parentheses.
    fn predicate(&mut self) -> Result<Condition, SqlError> {
        let at = self.position();
        if self.is_word("anomaly") && self.nth(1) == &Token::LParen {
            self.advance();
            let args = self.arguments()?;
            let compared = matches!(
                self.peek(),
                Token::Eq | Token::Neq | Token::Lt | Token::LtEq | Token::Gt | Token::GtEq
            ) || self.is_word("BETWEEN");
            if compared {
                return Err(self.error_here(
                    "anomaly(…) is a condition (true or false), not a number: it is not compared; \
                     tune it in WITH (sensitivity = …)",
                ));
            }
            return match args.as_slice() {
                [Arg::Operand(Operand::Term(Term::Value(value)), _)] => Ok(Condition::Anomaly {
                    value: value.clone(),
                    at,
                }),
                [Arg::Operand(_, arg_at) | Arg::Duration(_, arg_at)] => Err(error(
                    *arg_at,
                    "anomaly takes a value name, like anomaly(latency); tune it in WITH (…)",
                )),
                _ => Err(error(
                    at,
                    format!(
                        "anomaly takes 1 argument, a value name, like anomaly(latency); found {}",
                        args.len()
                    ),
                )),
            };
        }
        if self.is_word("absent") {
            self.advance();
            if self.peek() == &Token::LParen {
                return Err(self.error_here(
                    "absent takes no arguments: write WHEN absent FOR '10m' (the series named in \
                     ON has had no window for 10 minutes)",
                ));
            }
            return Ok(Condition::Absent { at });
        }
        if self.peek() == &Token::LParen {
            // `(a + b) > 1` or `(a > 1 OR b > 1)`: try the comparison first.
            let (index, depth) = (self.index, self.depth);
            if let Ok(comparison) = self.comparison() {
                return Ok(comparison);
            }
            (self.index, self.depth) = (index, depth);
            self.advance();
            let inner = self.condition()?;
            self.expect(&Token::RParen, "to close the parenthesis")?;
            return Ok(inner);
        }
        self.comparison()
    }

    /// `a <op> b`, `a [NOT] BETWEEN low AND high`.
    fn comparison(&mut self) -> Result<Condition, SqlError> {
        let left = self.operand()?;
        let op = match self.peek() {
            Token::Eq => Some(CompareOp::Eq),
            Token::Neq => Some(CompareOp::NotEq),
            Token::Lt => Some(CompareOp::Lt),
            Token::LtEq => Some(CompareOp::LtEq),
            Token::Gt => Some(CompareOp::Gt),
            Token::GtEq => Some(CompareOp::GtEq),
            Token::DoubleEq => return Err(self.error_here("write = to compare, not ==")),
            _ => None,
        };
        if let Some(op) = op {
            self.advance();
            let right = self.operand()?;
            check_percent(&left, &right)?;
            return Ok(Condition::Compare { op, left, right });
        }
        let negated = self.is_word("NOT") && self.nth_is_word(1, "BETWEEN");
        if negated {
            self.advance();
        }
        if self.eat_word("BETWEEN") {
            let low = self.operand()?;
            self.expect_word("AND", "between the bounds: x BETWEEN low AND high")?;
            let high = self.operand()?;
            check_percent(&left, &low)?;
            check_percent(&left, &high)?;
            return Ok(Condition::Between {
                value: left,
                low,
                high,
                negated,
            });
        }
        Err(self.error_here(format!(
            "expected a comparison (<, <=, >, >=, =, <>) or BETWEEN after {left}, found {}: a \
             condition is true or false, like {left} > 100",
            self.describe()
        )))
    }

    // ---- numbers ----------------------------------------------------------------------------

    /// `a + b - c …`
    fn operand(&mut self) -> Result<Operand, SqlError> {
        let mut left = self.product()?;
        loop {
            let op = match self.peek() {
                Token::Plus => ArithOp::Add,
                Token::Minus => ArithOp::Sub,
                _ => return Ok(left),
            };
            self.advance();
            let right = self.product()?;
            left = Operand::Arith {
                op,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
    }

    /// `a * b / c …`
    fn product(&mut self) -> Result<Operand, SqlError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Token::Mul => ArithOp::Mul,
                Token::Div => ArithOp::Div,
                Token::Mod => {
                    return Err(self.error_here(
                        "% only follows a number, as a percent (5% is 0.05); the remainder \
                         operator is not supported",
                    ));
                }
                _ => return Ok(left),
            };
            self.advance();
            let right = self.unary()?;
            left = Operand::Arith {
                op,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
    }

    /// `-a`, `+a`
    fn unary(&mut self) -> Result<Operand, SqlError> {
        if self.eat(&Token::Plus) {
            return self.unary();
        }
        if self.peek() != &Token::Minus {
            return self.atom();
        }
        self.advance();
        self.enter()?;
        let inner = self.unary()?;
        self.depth -= 1;
        Ok(match inner {
            Operand::Number {
                written,
                percent,
                at,
            } if written > 0.0 => Operand::Number {
                written: -written,
                percent,
                at,
            },
            other => Operand::Neg(Box::new(other)),
        })
    }

    /// A number, a value name, a function call, or a number in parentheses.
    fn atom(&mut self) -> Result<Operand, SqlError> {
        let at = self.position();
        match self.peek().clone() {
            Token::Number(text, _) => {
                self.advance();
                let written: f64 = text
                    .parse()
                    .ok()
                    .filter(|n: &f64| n.is_finite())
                    .ok_or_else(|| error(at, format!("the number {text} is out of range")))?;
                let percent = self.eat(&Token::Mod);
                Ok(Operand::Number {
                    written,
                    percent,
                    at,
                })
            }
            Token::LParen => {
                self.advance();
                self.enter()?;
                let inner = self.operand()?;
                self.depth -= 1;
                self.expect(&Token::RParen, "to close the parenthesis")?;
                Ok(inner)
            }
            Token::Word(word) => {
                let quoted = word.quote_style.is_some();
                if self.nth(1) == &Token::LParen && !quoted {
                    self.advance();
                    return self.call(&word.value, at).map(Operand::Term);
                }
                let lower = word.value.to_ascii_lowercase();
                if !quoted && (lower == "absent" || lower == "anomaly") {
                    return Err(error(
                        at,
                        format!(
                            "{lower} is a condition (true or false), not a number: write it on its \
                             own or with AND/OR, like WHEN {}",
                            if lower == "absent" {
                                "absent FOR '10m'"
                            } else {
                                "anomaly(latency)"
                            }
                        ),
                    ));
                }
                if !quoted && RESERVED.contains(&lower.as_str()) {
                    return Err(error(
                        at,
                        format!(
                            "expected a number, a value name or a function, found {}{}",
                            word.value.to_ascii_uppercase(),
                            if lower == "null" {
                                " (comparing with NULL is never true)"
                            } else {
                                " (write a value with this name in double quotes)"
                            }
                        ),
                    ));
                }
                self.advance();
                Ok(Operand::Term(Term::Value(Name {
                    name: word.value,
                    at,
                })))
            }
            Token::SingleQuotedString(_) => Err(error(
                at,
                "a string is not a number; durations like '1d' go inside functions such as \
                 offset(v, '1d')",
            )),
            _ => Err(self.error_here(format!(
                "expected a number, a value name or a function like previous(v), found {}",
                self.describe()
            ))),
        }
    }

    /// A function call; the cursor is on `(`.
    fn call(&mut self, name: &str, at: Position) -> Result<Term, SqlError> {
        let function = name.to_ascii_lowercase();
        let usage = match function.as_str() {
            "previous" => "previous(value)",
            "offset" => "offset(value, '1d')",
            "sum" | "avg" | "min" | "max" => "sum(value, '1h') (or avg, min, max)",
            "baseline" => "baseline(value, '7d')",
            "change" => "change(value, previous(value))",
            "anomaly" => {
                return Err(error(
                    at,
                    "anomaly(v) is a condition (true or false), not a number: write it on its \
                     own or with AND/OR, like WHEN anomaly(latency)",
                ));
            }
            _ => {
                return Err(error(
                    at,
                    format!("unknown function {name}; the functions are {FUNCTIONS}"),
                ));
            }
        };
        let args = self.arguments()?;
        let expected = if function == "previous" { 1 } else { 2 };
        if args.len() != expected {
            return Err(error(
                at,
                format!(
                    "{function} takes {expected} argument{}: {usage}; found {}",
                    if expected == 1 { "" } else { "s" },
                    args.len()
                ),
            ));
        }
        let mut args = args.into_iter();
        let (first, second) = (args.next(), args.next());
        if function == "change" {
            let operand = |arg: Option<Arg>| match arg {
                Some(Arg::Operand(operand, _)) => Ok(Box::new(operand)),
                Some(Arg::Duration(_, arg_at)) => Err(error(
                    arg_at,
                    format!("change takes two numbers, not durations: {usage}"),
                )),
                None => Err(error(at, format!("change takes two arguments: {usage}"))),
            };
            return Ok(Term::Change {
                value: operand(first)?,
                reference: operand(second)?,
                at,
            });
        }
        let value = match first {
            Some(Arg::Operand(Operand::Term(Term::Value(value)), _)) => value,
            Some(Arg::Operand(_, arg_at) | Arg::Duration(_, arg_at)) => {
                return Err(error(
                    arg_at,
                    format!(
                        "the first argument of {function} is the name of one of the metric's \
                         values: {usage}"
                    ),
                ));
            }
            None => return Err(error(at, format!("{function} needs arguments: {usage}"))),
        };
        if function == "previous" {
            return Ok(Term::Previous { value, at });
        }
        let duration = match second {
            Some(Arg::Duration(text, arg_at)) => parse_duration(&text, arg_at)?,
            Some(Arg::Operand(_, arg_at)) => {
                return Err(error(
                    arg_at,
                    format!("the second argument of {function} is a duration string: {usage}"),
                ));
            }
            None => return Err(error(at, format!("{function} needs a duration: {usage}"))),
        };
        Ok(match function.as_str() {
            "offset" => Term::Offset {
                value,
                by: duration,
                at,
            },
            "baseline" => Term::Baseline {
                value,
                over: duration,
                at,
            },
            other => Term::Range {
                function: match other {
                    "sum" => RangeFn::Sum,
                    "avg" => RangeFn::Avg,
                    "min" => RangeFn::Min,
                    _ => RangeFn::Max,
                },
                value,
                over: duration,
                at,
            },
        })
    }

    /// `(arg, …)`: duration strings or numbers.
    fn arguments(&mut self) -> Result<Vec<Arg>, SqlError> {
        self.expect(&Token::LParen, "to start the arguments")?;
        let mut args = Vec::new();
        if self.eat(&Token::RParen) {
            return Ok(args);
        }
        self.enter()?;
        loop {
            let at = self.position();
            if let Token::SingleQuotedString(text) = self.peek().clone() {
                self.advance();
                args.push(Arg::Duration(text, at));
            } else {
                args.push(Arg::Operand(self.operand()?, at));
            }
            if !self.eat(&Token::Comma) {
                break;
            }
        }
        self.depth -= 1;
        self.expect(&Token::RParen, "to close the argument list")?;
        Ok(args)
    }
}

/// `change(…)` is already in percent: `change(v, previous(v)) > 50%` would mean 0.5 percent.
fn check_percent(left: &Operand, right: &Operand) -> Result<(), SqlError> {
    for (one, other) in [(left, right), (right, left)] {
        let mut has_change = false;
        one.for_each_term(&mut |term| has_change |= matches!(term, Term::Change { .. }));
        if let (true, Some((written, at))) = (has_change, percent_literal(other)) {
            return Err(error(
                at,
                format!(
                    "change(…) is already in percent: write {written}, not {written}% (which \
                     would mean {} percent)",
                    written / 100.0
                ),
            ));
        }
    }
    Ok(())
}

fn percent_literal(operand: &Operand) -> Option<(f64, Position)> {
    match operand {
        Operand::Number {
            written,
            percent: true,
            at,
        } => Some((*written, *at)),
        Operand::Number { .. } | Operand::Term(_) => None,
        Operand::Neg(inner) => percent_literal(inner),
        Operand::Arith { left, right, .. } => percent_literal(left).or(percent_literal(right)),
    }
}
