//! `CREATE ALERT …` → [`AlertRule`]. The text is tokenized once with sqlparser's tokenizer
//! (tokens carry line and column, as in the metric dialect); the statement is then read by a
//! small recursive-descent parser over those tokens. The condition language is not SQL
//! (duration arguments, percent literals, `absent`), so each error can point at the exact
//! token that is wrong and say what to write instead.

mod condition;
mod options;

use super::rule::{
    AlertOptions, AlertRule, ByKey, DurationArg, KeyFilter, KeyLiteral, Name, Operand, Position,
};
use super::{DEFAULT_KEY_LIMIT, MAX_DURATION, MAX_KEY_LIMIT, error};
use crate::decimal::Decimal;
use crate::error::SqlError;
use crate::sql::{MAX_NAME_LEN, MAX_SQL_BYTES, MetricDialect, is_valid_name};
use sluice_core::config::HumanDuration;
use sluice_core::time::Millis;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

/// Words that end or combine conditions; a value with one of these names is written in
/// double quotes.
pub(super) const RESERVED: [&str; 11] = [
    "and", "or", "not", "between", "for", "with", "when", "null", "true", "false", "absent",
];

/// Deepest nesting of parentheses and NOTs the parser accepts.
const MAX_DEPTH: usize = 64;

/// The most constants in one `IN (…)`.
const MAX_IN_LIST: usize = 1000;

/// Parses one alert rule. The metric it names is not looked up: see [`super::check`].
pub fn parse_alert(sql: &str) -> Result<AlertRule, SqlError> {
    let start = Position { line: 1, column: 1 };
    if sql.len() > MAX_SQL_BYTES {
        return Err(error(
            start,
            format!(
                "the rule is {} bytes; at most {MAX_SQL_BYTES} are accepted",
                sql.len()
            ),
        ));
    }
    let tokens = Tokenizer::new(&MetricDialect, sql)
        .tokenize_with_location()
        .map_err(|e| error(position(e.location), e.message))?;
    let mut parser = Parser {
        tokens: tokens
            .into_iter()
            .filter(|token| !matches!(token.token, Token::Whitespace(_)))
            .collect(),
        index: 0,
        end: end_position(sql),
        depth: 0,
    };
    parser.statement(sql)
}

fn position(location: Location) -> Position {
    Position {
        line: location.line.max(1),
        column: location.column.max(1),
    }
}

/// The position just after the last character (where "unexpected end" errors point).
fn end_position(sql: &str) -> Position {
    let line = sql.matches('\n').count() as u64 + 1;
    let last_line = sql.rsplit('\n').next().unwrap_or("");
    Position {
        line,
        column: last_line.chars().count() as u64 + 1,
    }
}

/// One argument of a function call, before it is checked against the function.
enum Arg {
    Duration(String, Position),
    Operand(Operand, Position),
}

/// An option value as written.
enum OptionValue {
    Number(String),
    Text(String),
}

struct Parser {
    tokens: Vec<TokenWithSpan>,
    index: usize,
    end: Position,
    depth: usize,
}

impl Parser {
    // ---- the statement ----------------------------------------------------------------------

    fn statement(&mut self, sql: &str) -> Result<AlertRule, SqlError> {
        let name = self.head()?;
        self.expect_word(
            "ON",
            "after the alert's name: CREATE ALERT name ON metric …",
        )?;
        let metric = self.name("the name of the metric the rule reads")?;
        let filter = if self.eat_word("WHERE") {
            self.key_filters()?
        } else {
            Vec::new()
        };
        let by_key = self.by_key()?;
        if !self.eat_word("WHEN") {
            return Err(self.error_here(format!(
                "expected WHEN and the rule's condition (like WHEN errors > 100), found {}",
                self.describe()
            )));
        }
        let condition = self.condition()?;
        let hold = if self.eat_word("FOR") {
            Some(self.duration_literal("FOR")?)
        } else {
            None
        };
        let (options, set) = if self.is_word("WITH") {
            self.advance();
            self.options()?
        } else {
            (AlertOptions::default(), Vec::new())
        };
        self.eat(&Token::SemiColon);
        if self.peek() != &Token::EOF {
            return Err(self.error_here(format!(
                "unexpected {} after the rule; a rule ends after its WHEN condition, \
                 FOR 'duration' or WITH (…) options",
                self.describe()
            )));
        }
        options::validate(&condition, hold, &set, &options)?;
        Ok(AlertRule {
            name,
            sql: sql.to_owned(),
            metric,
            filter,
            by_key,
            condition,
            hold,
            options,
        })
    }

    /// `CREATE ALERT name`; returns the name.
    fn head(&mut self) -> Result<String, SqlError> {
        for keyword in ["CREATE", "ALERT"] {
            if !self.eat_word(keyword) {
                return Err(self.error_here(format!(
                    "expected {keyword}, found {}: an alert rule starts with \
                     CREATE ALERT name ON metric WHEN …",
                    self.describe()
                )));
            }
        }
        let name = self.name("the alert's name")?;
        if !is_valid_name(&name.name) {
            return Err(error(
                name.at,
                format!(
                    "{:?} is not a valid alert name: use 1 to {MAX_NAME_LEN} lowercase letters, \
                     digits and '_', starting with a letter",
                    name.name
                ),
            ));
        }
        Ok(name.name)
    }

    /// `key = 'v' [AND key2 IN ('a', 'b')] …` after `WHERE`.
    fn key_filters(&mut self) -> Result<Vec<KeyFilter>, SqlError> {
        let mut filters = vec![self.key_filter()?];
        loop {
            if self.eat_word("AND") {
                filters.push(self.key_filter()?);
            } else if self.is_word("OR") {
                return Err(self.error_here(
                    "key filters combine with AND only; for alternatives write key IN ('a', 'b')",
                ));
            } else {
                return Ok(filters);
            }
        }
    }

    fn key_filter(&mut self) -> Result<KeyFilter, SqlError> {
        let mut key = self.name("a group key name")?;
        while self.eat(&Token::Period) {
            let part = self.name("a group key name")?;
            key.name = format!("{}.{}", key.name, part.name);
        }
        let usage = "WHERE compares group keys with constants: key = 'value', key <> 'value', \
                     key IN ('a', 'b') or key NOT IN (…)";
        let (negated, list) = match self.peek() {
            Token::Eq => (false, false),
            Token::Neq => (true, false),
            _ if self.is_word("IN") => (false, true),
            _ if self.is_word("NOT") && self.nth_is_word(1, "IN") => {
                self.advance();
                (true, true)
            }
            _ => {
                return Err(
                    self.error_here(format!("{usage}; found {} after {key}", self.describe()))
                );
            }
        };
        self.advance();
        let values = if list {
            self.expect(&Token::LParen, "after IN: IN ('a', 'b')")?;
            let mut values = vec![self.key_literal()?];
            while self.eat(&Token::Comma) {
                if values.len() == MAX_IN_LIST {
                    return Err(
                        self.error_here(format!("IN lists hold at most {MAX_IN_LIST} constants"))
                    );
                }
                values.push(self.key_literal()?);
            }
            self.expect(&Token::RParen, "to close the IN list")?;
            values
        } else {
            vec![self.key_literal()?]
        };
        Ok(KeyFilter {
            key,
            values,
            negated,
        })
    }

    fn key_literal(&mut self) -> Result<KeyLiteral, SqlError> {
        let at = self.position();
        let negative = self.eat(&Token::Minus);
        let literal = match self.peek().clone() {
            Token::SingleQuotedString(text) if !negative => KeyLiteral::Text(text),
            Token::Number(text, _) => {
                let text = if negative { format!("-{text}") } else { text };
                let number = Decimal::parse_str(&text).ok_or_else(|| {
                    error(
                        at,
                        format!("the number {text} is out of range (at most 38 digits)"),
                    )
                })?;
                KeyLiteral::Number(number)
            }
            _ if !negative && self.is_word("TRUE") => KeyLiteral::Bool(true),
            _ if !negative && self.is_word("FALSE") => KeyLiteral::Bool(false),
            _ => {
                return Err(self.error_here(format!(
                    "expected a constant ('text', a number, TRUE or FALSE), found {}",
                    self.describe()
                )));
            }
        };
        self.advance();
        Ok(literal)
    }

    /// `BY KEY [LIMIT n]`.
    fn by_key(&mut self) -> Result<Option<ByKey>, SqlError> {
        if !self.is_word("BY") {
            return Ok(None);
        }
        let at = self.position();
        self.advance();
        self.expect_word(
            "KEY",
            "after BY: BY KEY evaluates each group key's series on its own",
        )?;
        let mut limit = DEFAULT_KEY_LIMIT;
        if self.eat_word("LIMIT") {
            let limit_at = self.position();
            let number = match self.peek() {
                Token::Number(text, _) => text.parse::<u64>().ok(),
                _ => None,
            };
            limit = match number {
                Some(n) if (1..=MAX_KEY_LIMIT as u64).contains(&n) => n as usize,
                _ => {
                    return Err(error(
                        limit_at,
                        format!(
                            "LIMIT is the most keys the rule tracks: a whole number from 1 to \
                             {MAX_KEY_LIMIT}, not {}",
                            self.describe()
                        ),
                    ));
                }
            };
            self.advance();
        }
        Ok(Some(ByKey { limit, at }))
    }

    /// A duration string after `what` (`FOR`).
    fn duration_literal(&mut self, what: &str) -> Result<DurationArg, SqlError> {
        let at = self.position();
        match self.peek().clone() {
            Token::SingleQuotedString(text) => {
                self.advance();
                parse_duration(&text, at)
            }
            _ => Err(self.error_here(format!(
                "expected a duration string after {what}, like {what} '5m', found {}",
                self.describe()
            ))),
        }
    }

    // ---- tokens -----------------------------------------------------------------------------

    fn peek(&self) -> &Token {
        self.nth(0)
    }

    fn nth(&self, n: usize) -> &Token {
        self.tokens
            .get(self.index + n)
            .map_or(&Token::EOF, |token| &token.token)
    }

    fn position(&self) -> Position {
        self.tokens
            .get(self.index)
            .map_or(self.end, |token| position(token.span.start))
    }

    fn advance(&mut self) {
        self.index = (self.index + 1).min(self.tokens.len());
    }

    fn is_word(&self, keyword: &str) -> bool {
        self.nth_is_word(0, keyword)
    }

    /// Whether the token `n` ahead is `keyword`, unquoted, in any case.
    fn nth_is_word(&self, n: usize, keyword: &str) -> bool {
        matches!(self.nth(n), Token::Word(word)
            if word.quote_style.is_none() && word.value.eq_ignore_ascii_case(keyword))
    }

    fn eat_word(&mut self, keyword: &str) -> bool {
        let found = self.is_word(keyword);
        if found {
            self.advance();
        }
        found
    }

    fn expect_word(&mut self, keyword: &str, context: &str) -> Result<(), SqlError> {
        if self.eat_word(keyword) {
            return Ok(());
        }
        Err(self.error_here(format!(
            "expected {keyword} {context}; found {}",
            self.describe()
        )))
    }

    fn eat(&mut self, token: &Token) -> bool {
        let found = self.peek() == token;
        if found {
            self.advance();
        }
        found
    }

    fn expect(&mut self, token: &Token, context: &str) -> Result<(), SqlError> {
        if self.eat(token) {
            return Ok(());
        }
        Err(self.error_here(format!(
            "expected `{token}` {context}; found {}",
            self.describe()
        )))
    }

    /// A name: an identifier, quoted or not.
    fn name(&mut self, what: &str) -> Result<Name, SqlError> {
        let at = self.position();
        match self.peek().clone() {
            Token::Word(word) => {
                self.advance();
                Ok(Name {
                    name: word.value,
                    at,
                })
            }
            _ => Err(self.error_here(format!("expected {what}, found {}", self.describe()))),
        }
    }

    fn enter(&mut self) -> Result<(), SqlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_here(format!(
                "the condition is nested too deeply (more than {MAX_DEPTH} levels)"
            )));
        }
        Ok(())
    }

    /// The current token, for messages.
    fn describe(&self) -> String {
        match self.peek() {
            Token::EOF => "the end of the rule".to_owned(),
            token => format!("`{token}`"),
        }
    }

    fn error_here(&self, message: impl Into<String>) -> SqlError {
        error(self.position(), message)
    }
}

/// A duration string (`'1d'`, `'90m'`), more than 0 and at most [`MAX_DURATION`].
fn parse_duration(text: &str, at: Position) -> Result<DurationArg, SqlError> {
    let duration: HumanDuration = text.parse().map_err(|message: String| error(at, message))?;
    let millis = Millis::try_from(duration.get().as_millis()).unwrap_or(Millis::MAX);
    if millis <= 0 || millis > MAX_DURATION {
        return Err(error(
            at,
            format!(
                "the duration '{text}' is out of range: durations are longer than 0 and at most \
                 90d"
            ),
        ));
    }
    Ok(DurationArg { millis, at })
}
