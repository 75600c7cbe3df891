//! The evaluator: one rule over the windows of its metric, one state machine per key.
//!
//! - `compute.rs`: what the compiled condition computes over one window.
//! - `snapshot.rs`: the state as a serializable value, and back.

mod compute;
mod snapshot;

pub use snapshot::EvaluatorSnapshot;

use super::baseline::History;
use super::check::{Kind, Program, compile};
use super::human;
use super::rule::AlertRule;
use crate::error::SqlError;
use crate::keys::KeyValue;
use crate::plan::MetricPlan;
use crate::render;
use crate::window::Window;
use compute::{View, describe, truth};
use serde::{Deserialize, Serialize};
use sluice_core::time::{Millis, format_millis};
use std::sync::Arc;

/// Where one (rule, key) instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition is not true (or not known).
    Ok,
    /// The condition is true, for less than the rule's `FOR` so far. Not notified.
    Pending,
    /// The condition held for `FOR`: notified.
    Firing,
    /// It fired, then was false `resolve_after` times in a row: notified. Behaves as
    /// [`AlertState::Ok`] from then on.
    Resolved,
}

impl AlertState {
    /// The name used in notifications and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Ok => "ok",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// A change of state to notify: to [`AlertState::Firing`] or to [`AlertState::Resolved`].
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The rule's name.
    pub rule: Arc<str>,
    /// The key, as JSON text: `{"url":"/home"}`; `{}` for a rule without `BY KEY`.
    pub key: Arc<str>,
    /// The state before.
    pub from: AlertState,
    /// The state after.
    pub to: AlertState,
    /// When, in event time (epoch ms): the end of the window evaluated, or for `absent`, the
    /// moment the series had been absent for `FOR`.
    pub at_ms: Millis,
    /// The value the condition is about (the left side of its first comparison, or the value
    /// of its first `anomaly(…)`), if known.
    pub value: Option<f64>,
    /// The condition and the figures behind it, for people.
    pub description: String,
    /// This (rule, key)'s transition count, from 1. With the rule and key it names the
    /// notification: `{rule}/{key}/{sequence}`.
    pub sequence: u64,
}

/// Counts since the evaluator was created (or restored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertStats {
    /// Keys tracked.
    pub keys: usize,
    /// Windows ignored because their key was new and the rule already tracked `LIMIT` keys.
    /// It counts windows, not distinct keys: remembering the keys turned away would cost the
    /// memory the limit saves.
    pub dropped_windows: u64,
}

/// One (rule, key) state machine and its history.
#[derive(Debug, Clone)]
struct Instance {
    key: Arc<str>,
    state: AlertState,
    sequence: u64,
    /// Start of the first window of the current run of true evaluations (while Pending).
    pending_since: Millis,
    /// Consecutive false evaluations while Firing.
    false_run: u32,
    /// Start of the newest window evaluated.
    newest: Option<Millis>,
    /// End of the newest window seen (what `absent` measures from).
    last_end: Option<Millis>,
    history: History,
}

/// One rule over its metric's windows: call [`Evaluator::window`] for every window of the
/// metric (in order per key), and [`Evaluator::watermark`] as event time advances; both
/// append the notifiable transitions they cause to `out`.
#[derive(Debug)]
pub struct Evaluator {
    rule: Arc<AlertRule>,
    name: Arc<str>,
    program: Program,
    instances: Vec<Instance>,
    index: hashbrown::HashMap<Arc<str>, usize, foldhash::fast::RandomState>,
    /// The newest watermark.
    watermark: Option<Millis>,
    /// For `absent` on a series that never had a window: the first event time watched.
    origin: Option<Millis>,
    dropped_windows: u64,
    /// Reused: the key being looked up, as JSON text.
    key_text: String,
    /// Reused: baseline values.
    scratch: Vec<f64>,
    /// A caller's key ids ([`Evaluator::window_by_id`]) → instance index, or [`UNKNOWN_ID`],
    /// [`FILTERED_ID`], [`DROPPED_ID`].
    by_id: Vec<u32>,
}

/// A key id not seen yet.
const UNKNOWN_ID: u32 = u32::MAX;
/// A key id whose key fails the rule's `WHERE`.
const FILTERED_ID: u32 = u32::MAX - 1;
/// A key id turned away by the rule's `LIMIT`.
const DROPPED_ID: u32 = u32::MAX - 2;

/// The key of the total series (a rule without `BY KEY`).
const TOTAL_KEY: &str = "{}";

impl Evaluator {
    /// An evaluator for `rule` over `plan` (checked as [`super::check`] does), with no state.
    pub fn new(rule: Arc<AlertRule>, plan: &MetricPlan) -> Result<Evaluator, SqlError> {
        let program = compile(&rule, plan)?;
        let mut evaluator = Evaluator {
            name: Arc::from(rule.name.as_str()),
            rule,
            program,
            instances: Vec::new(),
            index: hashbrown::HashMap::default(),
            watermark: None,
            origin: None,
            dropped_windows: 0,
            key_text: String::new(),
            scratch: Vec::new(),
            by_id: Vec::new(),
        };
        if evaluator.program.key_limit.is_none() {
            evaluator.add_instance(Arc::from(TOTAL_KEY));
        }
        Ok(evaluator)
    }

    /// The rule.
    pub fn rule(&self) -> &AlertRule {
        &self.rule
    }

    /// Counts.
    pub fn stats(&self) -> AlertStats {
        AlertStats {
            keys: self.instances.len(),
            dropped_windows: self.dropped_windows,
        }
    }

    /// Each tracked key and its state, in the order the keys were first seen.
    pub fn states(&self) -> impl Iterator<Item = (&str, AlertState)> {
        self.instances
            .iter()
            .map(|instance| (&*instance.key, instance.state))
    }

    /// Whether a group key (the metric's GROUP BY values, in plan order) passes the rule's
    /// `WHERE`. Without `BY KEY`, the caller totals the windows of the keys that pass.
    pub fn key_matches(&self, key: &[KeyValue]) -> bool {
        self.program
            .filter
            .iter()
            .all(|(index, filter)| key.get(*index).is_some_and(|value| filter.matches(value)))
    }

    /// One version of one window of the metric. `key` is the group key's values in plan
    /// order (ignored without `BY KEY`: pass the total series, `&[]`); `values` are the
    /// window's aggregate values in plan order (`None`: NULL). Non-final windows are only
    /// read by `on = 'live'` rules.
    pub fn window(
        &mut self,
        key: &[KeyValue],
        window: Window,
        values: &[Option<f64>],
        is_final: bool,
        out: &mut Vec<Transition>,
    ) {
        if !is_final && !self.program.live {
            return;
        }
        let Some(index) = self.instance(key) else {
            return;
        };
        self.window_at(index, window, values, is_final, out);
    }

    /// [`Evaluator::window`] for a caller that numbers its group keys densely from 0 (the
    /// same key always the same `id`, `key` its values): after a key's first window, its
    /// instance is found by the id alone, without rendering or hashing the key — what makes
    /// thousands of rules over one metric's keys affordable. Ids are forgotten by
    /// [`Evaluator::forget_key_ids`] and on restore.
    pub fn window_by_id(
        &mut self,
        id: u32,
        key: &[KeyValue],
        window: Window,
        values: &[Option<f64>],
        is_final: bool,
        out: &mut Vec<Transition>,
    ) {
        if !is_final && !self.program.live {
            return;
        }
        let slot = id as usize;
        let known = self.by_id.get(slot).copied().unwrap_or(UNKNOWN_ID);
        let index = match known {
            FILTERED_ID => return,
            DROPPED_ID => {
                self.dropped_windows += 1;
                return;
            }
            UNKNOWN_ID => {
                let found = self.instance(key);
                if self.by_id.len() <= slot {
                    self.by_id.resize(slot + 1, UNKNOWN_ID);
                }
                self.by_id[slot] = match found {
                    Some(index) => index as u32,
                    None if !self.key_matches(key) => FILTERED_ID,
                    None => DROPPED_ID,
                };
                match found {
                    Some(index) => index,
                    None => return,
                }
            }
            index => index as usize,
        };
        self.window_at(index, window, values, is_final, out);
    }

    /// Forgets the key ids of [`Evaluator::window_by_id`] (the caller numbers its keys anew).
    pub fn forget_key_ids(&mut self) {
        self.by_id.clear();
    }

    fn window_at(
        &mut self,
        index: usize,
        window: Window,
        values: &[Option<f64>],
        is_final: bool,
        out: &mut Vec<Transition>,
    ) {
        let program = &self.program;
        let instance = &mut self.instances[index];
        let window_index = program.window_index(window.start);
        instance.history.put(window_index, values, &program.columns);
        instance.last_end = Some(instance.last_end.map_or(window.end, |e| e.max(window.end)));
        if instance.newest.is_some_and(|newest| window.start < newest) {
            // An older window than one already evaluated: history only.
            return;
        }
        let previous = instance.newest.map(|newest| program.window_index(newest));
        instance.newest = Some(window.start);
        let at = if is_final {
            window.end
        } else {
            self.watermark
                .unwrap_or(window.start)
                .clamp(window.start, window.end)
        };
        let view = View {
            values,
            history: &instance.history,
            window: window_index,
        };
        let truth = match &program.kind {
            Kind::Absent => Some(false),
            Kind::Condition(condition) => truth(condition, &view, program, &mut self.scratch),
        };
        let contiguous = match (program.step, previous) {
            (Some(_), Some(previous)) => window_index <= previous + 1,
            _ => true,
        };
        let Some((from, to)) = step(
            instance,
            program,
            truth == Some(true),
            window.start,
            at,
            contiguous,
        ) else {
            return;
        };
        let instance = &self.instances[index];
        let (value, description) = match &self.program.kind {
            Kind::Absent => (None, format!("absent: a window arrived for {window}")),
            Kind::Condition(condition) => {
                let view = View {
                    values,
                    history: &instance.history,
                    window: window_index,
                };
                describe(
                    &self.rule.condition,
                    condition,
                    &view,
                    &self.program,
                    &mut self.scratch,
                )
            }
        };
        out.push(self.transition(index, from, to, at, value, description));
    }

    /// Event time advanced to `watermark` (earlier or equal ones are ignored). Fires `absent`
    /// rules for the keys without a window for `FOR`; other rules only note the time.
    pub fn watermark(&mut self, watermark: Millis, out: &mut Vec<Transition>) {
        if self.watermark.is_some_and(|w| watermark <= w) {
            return;
        }
        self.watermark = Some(watermark);
        if !matches!(self.program.kind, Kind::Absent) {
            return;
        }
        // Final windows come `allowed_lateness` after their end: measure from there.
        let now = if self.program.live {
            watermark
        } else {
            watermark.saturating_sub(self.program.lateness)
        };
        let origin = *self.origin.get_or_insert(now);
        let hold = self.program.hold;
        for index in 0..self.instances.len() {
            let instance = &mut self.instances[index];
            if instance.state == AlertState::Firing {
                continue;
            }
            let since = instance.last_end.unwrap_or(origin);
            if now.saturating_sub(since) < hold {
                continue;
            }
            let from = instance.state;
            instance.state = AlertState::Firing;
            instance.false_run = 0;
            let description = match instance.last_end {
                Some(end) => format!(
                    "absent: no window since {} (FOR {})",
                    format_millis(end),
                    human(hold)
                ),
                None => format!(
                    "absent: no window since watching began at {} (FOR {})",
                    format_millis(origin),
                    human(hold)
                ),
            };
            let transition = self.transition(
                index,
                from,
                AlertState::Firing,
                since + hold,
                None,
                description,
            );
            out.push(transition);
        }
    }

    /// The instance of `key`, created if new and under the limit.
    fn instance(&mut self, key: &[KeyValue]) -> Option<usize> {
        let Some(limit) = self.program.key_limit else {
            return Some(0);
        };
        if !self.key_matches(key) {
            return None;
        }
        self.key_text.clear();
        self.key_text.push('{');
        for (position, (name, value)) in self.program.key_names.iter().zip(key).enumerate() {
            if position > 0 {
                self.key_text.push(',');
            }
            render::string(name, &mut self.key_text);
            self.key_text.push(':');
            render::key_value(value, &mut self.key_text);
        }
        self.key_text.push('}');
        if let Some(&index) = self.index.get(self.key_text.as_str()) {
            return Some(index);
        }
        if self.instances.len() >= limit {
            self.dropped_windows += 1;
            return None;
        }
        Some(self.add_instance(Arc::from(self.key_text.as_str())))
    }

    fn add_instance(&mut self, key: Arc<str>) -> usize {
        let index = self.instances.len();
        self.index.insert(key.clone(), index);
        self.instances.push(Instance {
            key,
            state: AlertState::Ok,
            sequence: 0,
            pending_since: 0,
            false_run: 0,
            newest: None,
            last_end: None,
            history: History::new(self.program.depth, self.program.columns.len()),
        });
        index
    }

    fn transition(
        &mut self,
        index: usize,
        from: AlertState,
        to: AlertState,
        at_ms: Millis,
        value: Option<f64>,
        description: String,
    ) -> Transition {
        let instance = &mut self.instances[index];
        instance.sequence += 1;
        Transition {
            rule: self.name.clone(),
            key: instance.key.clone(),
            from,
            to,
            at_ms,
            value,
            description,
            sequence: instance.sequence,
        }
    }
}

/// The state machine: one evaluation (`holds`: the condition is true) of the window starting
/// at `start`, evaluated at event time `at`; `contiguous`: no window is missing since the
/// previous evaluation. Returns the notifiable transition, if any.
fn step(
    instance: &mut Instance,
    program: &Program,
    holds: bool,
    start: Millis,
    at: Millis,
    contiguous: bool,
) -> Option<(AlertState, AlertState)> {
    let from = instance.state;
    if holds {
        instance.false_run = 0;
        match from {
            AlertState::Firing => return None,
            AlertState::Pending if contiguous => {}
            AlertState::Pending | AlertState::Ok | AlertState::Resolved => {
                instance.pending_since = start;
            }
        }
        if at.saturating_sub(instance.pending_since) >= program.hold {
            instance.state = AlertState::Firing;
            return Some((from, AlertState::Firing));
        }
        instance.state = AlertState::Pending;
        return None;
    }
    match from {
        AlertState::Pending => instance.state = AlertState::Ok,
        AlertState::Firing => {
            instance.false_run += 1;
            if instance.false_run >= program.resolve_after {
                instance.false_run = 0;
                instance.state = AlertState::Resolved;
                return Some((from, AlertState::Resolved));
            }
        }
        AlertState::Ok | AlertState::Resolved => {}
    }
    None
}
