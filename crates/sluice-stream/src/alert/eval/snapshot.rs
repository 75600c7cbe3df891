//! An evaluator's state as a serializable value, and back.

use super::{AlertState, Evaluator, Instance};
use crate::alert::SNAPSHOT_VERSION;
use crate::alert::baseline::History;
use crate::error::StreamError;
use serde::{Deserialize, Serialize};
use sluice_core::time::Millis;
use std::sync::Arc;

impl Evaluator {
    /// The evaluator's whole state, to checkpoint with the offsets of the windows it has
    /// read. Deterministic: equal states give equal snapshots.
    pub fn snapshot(&self) -> EvaluatorSnapshot {
        EvaluatorSnapshot {
            version: SNAPSHOT_VERSION,
            rule: self.rule.name.clone(),
            depth: self.program.depth,
            columns: self.program.columns.clone(),
            by_key: self.program.key_limit.is_some(),
            watermark: self.watermark,
            origin: self.origin,
            dropped_windows: self.dropped_windows,
            instances: self
                .instances
                .iter()
                .map(|instance| {
                    let (first, newest, history) = instance.history.to_parts();
                    InstanceSnapshot {
                        key: instance.key.to_string(),
                        state: instance.state,
                        sequence: instance.sequence,
                        pending_since: instance.pending_since,
                        false_run: instance.false_run,
                        newest: instance.newest,
                        last_end: instance.last_end,
                        history_first: first,
                        history_newest: newest,
                        history,
                    }
                })
                .collect(),
        }
    }

    /// Replaces the state with a snapshot taken of an evaluator of the same rule. Fed the
    /// same inputs after, it produces the same transitions as the one snapshotted.
    ///
    /// The rule may have been edited since: each key keeps its state and sequence number (so
    /// notification ids stay unique), and if the edit changed which values or how many
    /// windows the rule keeps, the history starts afresh. A snapshot of another rule, of the
    /// rule with or without `BY KEY` where it now is the other way, or with more keys than
    /// its `LIMIT`, is refused.
    pub fn restore(&mut self, snapshot: EvaluatorSnapshot) -> Result<(), StreamError> {
        let fail = |reason: String| StreamError::Restore {
            metric: self.rule.metric.name.clone(),
            reason: format!("alert rule {}: {reason}", self.rule.name),
        };
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(fail(format!(
                "snapshot version {} is not {SNAPSHOT_VERSION}",
                snapshot.version
            )));
        }
        if snapshot.rule != self.rule.name {
            return Err(fail(format!("the snapshot is of rule {}", snapshot.rule)));
        }
        let by_key = self.program.key_limit.is_some();
        if snapshot.by_key != by_key {
            return Err(fail(format!(
                "the snapshot is of the rule {} BY KEY; start it without a snapshot",
                if snapshot.by_key { "with" } else { "without" }
            )));
        }
        let limit = self.program.key_limit.unwrap_or(1);
        if snapshot.instances.len() > limit || (!by_key && snapshot.instances.len() != 1) {
            return Err(fail(format!(
                "{} keys in the snapshot; the rule tracks {limit}: raise its LIMIT",
                snapshot.instances.len()
            )));
        }
        let same_history =
            snapshot.depth == self.program.depth && snapshot.columns == self.program.columns;
        let mut instances = Vec::with_capacity(snapshot.instances.len());
        let mut index = hashbrown::HashMap::default();
        for (position, saved) in snapshot.instances.into_iter().enumerate() {
            let (depth, columns) = (self.program.depth, self.program.columns.len());
            let history = if same_history {
                History::from_parts(
                    depth,
                    columns,
                    saved.history_first,
                    saved.history_newest,
                    &saved.history,
                )
                .ok_or_else(|| fail(format!("the history of key {} does not fit", saved.key)))?
            } else {
                History::new(depth, columns)
            };
            let key: Arc<str> = Arc::from(saved.key);
            if index.insert(key.clone(), position).is_some() {
                return Err(fail(format!("key {key} appears twice")));
            }
            instances.push(Instance {
                key,
                state: saved.state,
                sequence: saved.sequence,
                pending_since: saved.pending_since,
                false_run: saved.false_run,
                newest: saved.newest,
                last_end: saved.last_end,
                history,
            });
        }
        self.instances = instances;
        self.index = index;
        self.by_id.clear();
        self.watermark = snapshot.watermark;
        self.origin = snapshot.origin;
        self.dropped_windows = snapshot.dropped_windows;
        Ok(())
    }
}

/// An [`Evaluator`]'s state (see [`Evaluator::snapshot`]). Serializable with serde; numbers
/// of the history are kept as exact `f64` bit patterns, so every format round-trips them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluatorSnapshot {
    version: u32,
    rule: String,
    /// Windows of history kept per key.
    depth: usize,
    /// The aggregates kept in history, by column.
    columns: Vec<usize>,
    by_key: bool,
    watermark: Option<Millis>,
    origin: Option<Millis>,
    dropped_windows: u64,
    instances: Vec<InstanceSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct InstanceSnapshot {
    key: String,
    state: AlertState,
    sequence: u64,
    pending_since: Millis,
    false_run: u32,
    newest: Option<Millis>,
    last_end: Option<Millis>,
    history_first: i64,
    history_newest: Option<i64>,
    history: Vec<u64>,
}
