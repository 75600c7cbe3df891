//! Alert rules: a condition over a metric's windows, evaluated per key by a pure state
//! machine. No I/O and no clock: the caller feeds windows and watermarks, and delivers,
//! silences and checkpoints (see "What the caller does").
//!
//! # Syntax
//!
//! ```text
//! rule      := CREATE ALERT name ON metric
//!              [WHERE filter {AND filter}]
//!              [BY KEY [LIMIT n]]                    n: 1..=100000, default 1000
//!              WHEN condition
//!              [FOR 'duration']                      default 0: fire on the first true
//!              [WITH (option = value {, option = value})] [;]
//! filter    := key (= | <>) constant | key [NOT] IN (constant {, constant})
//! constant  := 'text' | number | TRUE | FALSE
//! condition := condition OR condition | condition AND condition | NOT condition
//!            | (condition)
//!            | number (< | <= | > | >= | = | <>) number
//!            | number [NOT] BETWEEN number AND number
//!            | anomaly(value)
//!            | absent                              alone, with FOR
//! number    := number (+ | - | * | /) number | -number | (number)
//!            | 12 | 0.5 | 5%                        5% is 0.05
//!            | value                               the current window's value
//!            | previous(value) | offset(value, 'duration')
//!            | sum(value, 'duration') | avg(…) | min(…) | max(…)
//!            | baseline(value, 'duration') | change(number, number)
//! duration  := '90s' | '5m' | '1h' | '7d' | '1h30m' …  more than 0, at most 90d
//! ```
//!
//! Names follow the metric dialect: a rule's name is 1 to 64 lowercase letters, digits and
//! `_`; `value` is one of the metric's aggregate columns (its `AS` name, or any column name in
//! double quotes), `key` one of its GROUP BY names. [`parse_alert`] does not know the
//! metrics; [`check`] resolves the names against the metric's plan and reports unknown ones
//! with the valid ones, at their line and column.
//!
//! Options: `on` = `'final'` (default: settled windows only) or `'live'` (open windows too);
//! `resolve_after` = consecutive false evaluations that resolve a firing alert (default 1);
//! `severity` = `'info'`, `'warning'` (default) or `'critical'`; and for `anomaly(…)` only:
//! `sensitivity` (default 3, 0.5 to 20), `history` (default 120 windows, 5 to 10000),
//! `seasonality` (`'1d'`, `'7d'` or `'none'`, the default), `seasons` (default 7, 1 to 52),
//! `min_deviation` (default 0).
//!
//! # Terms
//!
//! Windows are counted in steps of the metric's window: its size for `TUMBLE`, its slide for
//! `HOP`. Terms that read earlier windows need one, so `SESSION` metrics only take
//! current-value comparisons and `absent`.
//!
//! | term | value |
//! |---|---|
//! | `v` | the current window's value |
//! | `previous(v)` | the window one step before the current one |
//! | `offset(v, d)` | the window that started exactly `d` before (`d`: whole steps) |
//! | `sum\|avg\|min\|max(v, d)` | over the windows that started in the last `d`, current included (`⌈d / step⌉` windows) |
//! | `baseline(v, d)` | the median of the windows that started in the `d` before the current one (at least 5 of them) |
//! | `change(a, b)` | `(a - b) / \|b\| × 100`, in percent (compare it with `50`, not `50%`) |
//! | `anomaly(v)` | true when `v` is outside `median ± max(sensitivity × 1.4826 × MAD, min_deviation)` of its baseline |
//! | `absent` | true when the series has had no window for the `FOR` duration |
//!
//! The baseline of `anomaly(v)` is, without seasonality, the `history` windows before the
//! current one. With seasonality `p`, it is the windows around the same offset in each of the
//! previous `seasons` periods: `⌊(history / seasons − 1) / 2⌋` on each side (8 with the
//! defaults, so 7 × 17 = 119 windows). One window per season (7 points) estimates the spread
//! too poorly: the band then shrinks by chance and noise crosses it several times a day. A
//! band needs half of its baseline windows present (and at least 5), so a new key, or a
//! seasonal rule before half its seasons have passed, stays `ok`. When the MAD is 0 but the
//! baseline is not flat (sparse counts), 1.2533 × the mean absolute deviation stands in for
//! 1.4826 × MAD; on a perfectly flat baseline only `min_deviation` keeps a change of 1 from
//! being an anomaly.
//!
//! What the defaults give, measured by `alert::tests::anomaly` (run it with `--nocapture`) on
//! a week of one-minute windows, 1000 ± 50% a minute in a daily sine, `seasonality = '1d'`,
//! three noise seeds; the rule can decide from day 5 on (4 of its 7 seasons), 4320 windows:
//!
//! | noise | sensitivity | alerts on the clean week | ×3 spike, ×0.2 drop (10 min, day 7) |
//! |---|---|---|---|
//! | ±10% uniform | 3 (default) | 0 (noise reaches 0.68–0.82 of the band's half-width) | fire once each, on their first minute |
//! | near-normal, σ ≈ 5.8% | 3 (default) | 5 to 9 | fire once each |
//! | near-normal, σ ≈ 5.8% | 5 | 0 | fire once each |
//!
//! A band of 3 robust standard deviations is crossed by 0.27% of normally distributed noise
//! (about 4 one-minute windows a day): for noisy series, raise `sensitivity` or add `FOR`.
//!
//! # NULL
//!
//! A window without events does not exist (the engine emits none), so it is missing, not 0.
//! A term is NULL when what it reads is missing: no window at that offset, an aggregate that
//! is NULL (AVG of nothing), a range without any window, a baseline with fewer than 5
//! windows, `change` with a reference of 0, a division by 0, an infinite result. NULL spreads
//! through arithmetic; a comparison with NULL is unknown; AND, OR and NOT follow SQL's
//! three-valued logic. A rule fires only on **true**: unknown counts as false (a new key, or
//! one without enough history, stays `ok`; a firing one counts it towards `resolve_after`).
//!
//! # States
//!
//! ```text
//!               true              true for FOR         resolve_after × false
//!   ┌────┐ ─────────────→ ┌─────────┐ ──────────→ ┌────────┐ ─────────────→ ┌──────────┐
//!   │ ok │                │ pending │             │ firing │                │ resolved │
//!   └────┘ ←───────────── └─────────┘             └────────┘                └──────────┘
//!    │ ↑   false (silent)                             ↑                           │
//!    │ └──────────────────────── resolved acts as ok ─┼───────────────────────────┘
//!    └──────────────── true, and FOR is 0 ────────────┘
//! ```
//!
//! Only the transitions to `firing` and to `resolved` are emitted ([`Transition`]);
//! `pending` is internal. `FOR` counts in event time: the instance is pending from the start
//! of the first window of an unbroken run of true evaluations, and fires at the first true
//! evaluation whose time (the window's end; for a live window, the watermark within it) is at
//! least `FOR` after that. A missing window breaks the run (it restarts at the next true
//! one), so `errors > 100 FOR '5m'` on one-minute windows fires after five consecutive
//! windows above 100. For `absent`, the watermark drives time: the rule fires for a key when
//! the watermark (minus the metric's `allowed_lateness` for final windows, since those arrive
//! that late) is `FOR` past the end of its last window, at that instant; its next window
//! counts as a false evaluation.
//!
//! # Determinism and sequence numbers
//!
//! The evaluator depends only on its inputs: the same rule, plan and sequence of
//! [`Evaluator::window`] and [`Evaluator::watermark`] calls give the same transitions, with
//! the same times, values, texts and sequence numbers. Each (rule, key) numbers its
//! transitions 1, 2, 3, … (odd: fired, even: resolved), and a tracked key is never forgotten,
//! so `{rule}/{key}/{sequence}` names one notification for the rule's lifetime: a replay
//! after a crash produces the same ids, and the notifier drops those it already sent. The
//! state, sequence numbers included, is in [`Evaluator::snapshot`]; after
//! [`Evaluator::restore`], the same inputs give the same transitions as without the crash.
//!
//! # What the caller does
//!
//! 1. Build the rule: [`parse_alert`], then [`Evaluator::new`] with the metric's plan (which
//!    runs [`check`]).
//! 2. Feed windows: every final window of the metric (and open ones for `on = 'live'`), **in
//!    window order per key**, with the aggregate values in plan order. With `BY KEY`, pass
//!    each group key (keys failing `WHERE` are skipped); without, total the windows of the
//!    keys for which [`Evaluator::key_matches`] holds and pass the total with an empty key.
//!    Older windows than one already evaluated only update history.
//! 3. Advance event time with [`Evaluator::watermark`], after the windows that watermark
//!    made final (it drives `absent`).
//! 4. Checkpoint [`Evaluator::snapshot`] atomically with the offsets of the windows it has
//!    read; on restart, [`Evaluator::restore`] and resume from those offsets.
//! 5. Deliver transitions as notifications with the id `{rule}/{key}/{sequence}`, dropping
//!    ids already delivered and those a silence covers: silences are not the evaluator's.
//!
//! Bounds: at most `LIMIT` keys per rule (windows of further keys are counted in
//! [`AlertStats::dropped_windows`] and ignored); at most [`MAX_HISTORY_WINDOWS`] windows of
//! history per key, and [`MAX_HISTORY_VALUES`] numbers of history per rule, both checked
//! when the rule is compiled. A threshold rule keeps no history: a window costs the key's
//! lookup (its JSON text, hashed) and the condition: `cargo bench -p sluice-stream --bench
//! alert` measures it with 1000 keys, and a change and a seasonal anomaly rule beside it
//! (figures in `docs/BENCHMARKS.md`).
//!
//! # Layout
//! - `rule.rs`: the parsed rule, printable.
//! - `parse/`: the grammar over sqlparser's tokens: the statement, `condition.rs`,
//!   `options.rs`.
//! - `check.rs`: names and windows against the metric's plan, compiled for evaluation.
//! - `eval/`: the evaluator and its state machine; `compute.rs` (what a condition computes
//!   over one window), `snapshot.rs`.
//! - `baseline.rs`: per-key history, medians and the anomaly band.
//! - `tests/`: grammar and errors, terms and states, the seasonal week, checkpoints.

mod baseline;
mod check;
mod eval;
mod parse;
mod rule;

pub use check::check;
pub use eval::{AlertState, AlertStats, Evaluator, EvaluatorSnapshot, Transition};
pub use parse::parse_alert;
pub use rule::{
    AlertOptions, AlertRule, AnomalyOptions, ArithOp, ByKey, Condition, DurationArg, Evaluate,
    KeyFilter, KeyLiteral, Name, Operand, Position, RangeFn, Severity, Term,
};

use crate::agg::OutputValue;
use crate::error::SqlError;
use sluice_core::config::HumanDuration;
use sluice_core::time::Millis;

/// Keys a `BY KEY` rule tracks without `LIMIT`.
pub const DEFAULT_KEY_LIMIT: usize = 1000;

/// The largest `LIMIT`.
pub const MAX_KEY_LIMIT: usize = 100_000;

/// The longest duration in a rule: 90 days.
pub const MAX_DURATION: Millis = 90 * 86_400_000;

/// The largest `history`.
pub const MAX_HISTORY: usize = 10_000;

/// The largest `seasons`.
pub const MAX_SEASONS: usize = 52;

/// Windows a baseline (`baseline(…)`, `anomaly(…)`) needs before it has a value.
pub const MIN_BASELINE_POINTS: usize = 5;

/// `sensitivity` by default.
pub const DEFAULT_SENSITIVITY: f64 = 3.0;

/// `history` by default.
pub const DEFAULT_HISTORY: usize = 120;

/// `seasons` by default.
pub const DEFAULT_SEASONS: usize = 7;

/// The most windows of history a rule keeps per key: two weeks of one-minute windows.
pub const MAX_HISTORY_WINDOWS: usize = 20_160;

/// The most numbers of history a rule keeps over all its keys (256 MiB of `f64`).
pub const MAX_HISTORY_VALUES: u64 = 1 << 25;

/// The version of [`EvaluatorSnapshot`].
const SNAPSHOT_VERSION: u32 = 1;

/// An aggregate's value as the evaluator reads it: `None` for NULL and for a sum that
/// overflowed the decimal range (it has no faithful `f64`).
pub fn number(value: &OutputValue) -> Option<f64> {
    match value {
        OutputValue::Null | OutputValue::Overflow => None,
        OutputValue::Count(count) => Some(*count as f64),
        OutputValue::Decimal(number) => Some(number.to_f64()),
        OutputValue::Float(number) => Some(*number).filter(|n| n.is_finite()),
    }
}

/// A duration for messages: `1m`, `90s`, `7d`.
fn human(millis: Millis) -> HumanDuration {
    HumanDuration(std::time::Duration::from_millis(millis.unsigned_abs()))
}

/// An error at `at`.
fn error(at: Position, message: impl Into<String>) -> SqlError {
    SqlError {
        line: at.line,
        column: at.column,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests;
