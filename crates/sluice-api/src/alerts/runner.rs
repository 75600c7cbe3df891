//! Evaluation: the rules of each (tenant, metric), fed the windows that became final since
//! their cursor, committed with their notifications in one transaction (the protocol is in
//! the module docs of [`super`]).

use super::Alerting;
use crate::query::cells::close_of;
use sluice_core::time::{Millis, format_millis, now_millis};
use sluice_store::{
    AlertProgress, AlertRuleRecord, DeliveryState, Notification, RowCursor, RowPage,
};
use sluice_stream::agg::{OutputValue, PartialState};
use sluice_stream::alert::{Evaluator, Severity, Transition, number};
use sluice_stream::keys::GroupKey;
use sluice_stream::plan::{AggregateKind, MetricPlan, WindowSpec};
use sluice_stream::window::Window;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Final rows read per page.
const PAGE_ROWS: usize = 4096;

/// How far before a cursor a session window may start and still end after it.
const SESSION_SPAN: Millis = 86_400_000;

/// How often the rules are read again without a change made on this node (another node's).
const RULES_POLL: Duration = Duration::from_secs(5);

/// One rule being evaluated.
struct RuleRun {
    record: AlertRuleRecord,
    /// `None` when it cannot run (its error says why).
    evaluator: Option<Evaluator>,
    /// The plan it was compiled against.
    plan: Option<Arc<MetricPlan>>,
    /// Final windows ending at or before this are evaluated; `None` before its first round.
    cursor: Option<Millis>,
    error: Option<String>,
    /// When its progress was last committed.
    saved: Option<Instant>,
}

/// The rules of one tenant over one metric.
#[derive(Default)]
struct Group {
    runs: Vec<RuleRun>,
    /// The metric's group keys (encoded) numbered from 0, so each rule finds a key's instance
    /// by its number ([`Evaluator::window_by_id`]); forgotten past [`MAX_KEY_IDS`].
    key_ids: foldhash::HashMap<Box<[u8]>, u32>,
    /// Another node evaluated the group last round.
    elsewhere: bool,
}

/// The most key numbers a group keeps.
const MAX_KEY_IDS: usize = 1 << 20;

/// One final row of a page, decoded once for every rule.
struct Decoded {
    id: u32,
    key: GroupKey,
    window: Window,
    state: PartialState,
    /// Its values, for `BY KEY` rules.
    values: Vec<Option<f64>>,
}

/// Evaluates every rule until `stop`.
pub(crate) async fn run(alerting: Arc<Alerting>, stop: CancellationToken) {
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    let mut rules_read: Option<Instant> = None;
    let every = alerting.config.evaluate_every();
    loop {
        let changed = tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => false,
            () = alerting.changed.notified() => true,
        };
        if changed || rules_read.is_none_or(|at| at.elapsed() >= RULES_POLL) {
            match sync_rules(&alerting, &mut groups).await {
                Ok(()) => rules_read = Some(Instant::now()),
                Err(error) => {
                    tracing::warn!(%error, "could not read the alert rules; trying again");
                    continue;
                }
            }
        }
        let mut firing = 0;
        for ((tenant, metric), group) in &mut groups {
            if let Err(error) = evaluate(&alerting, tenant, metric, group).await {
                tracing::warn!(%tenant, %metric, %error, "alert rules not evaluated this round; trying again");
            }
            firing += group
                .runs
                .iter()
                .filter_map(|run| run.evaluator.as_ref())
                .flat_map(|evaluator| evaluator.states())
                .filter(|(_, state)| *state == sluice_stream::alert::AlertState::Firing)
                .count();
        }
        metrics::gauge!("sluice_alerts_firing").set(firing as f64);
        metrics::gauge!("sluice_alert_rules")
            .set(groups.values().map(|group| group.runs.len()).sum::<usize>() as f64);
    }
}

/// Brings the groups in line with the stored rules: new ones restored from their progress,
/// removed ones dropped, replaced ones (a new id) started afresh.
async fn sync_rules(
    alerting: &Alerting,
    groups: &mut BTreeMap<(String, String), Group>,
) -> Result<(), sluice_store::StoreError> {
    let rules = alerting.store.alert_rules().await?;
    let wanted: std::collections::HashSet<u64> = rules.iter().map(|rule| rule.id).collect();
    for group in groups.values_mut() {
        group.runs.retain(|run| wanted.contains(&run.record.id));
    }
    groups.retain(|_, group| !group.runs.is_empty());
    let known: std::collections::HashSet<u64> = groups
        .values()
        .flat_map(|group| group.runs.iter().map(|run| run.record.id))
        .collect();
    let new: Vec<AlertRuleRecord> = rules
        .into_iter()
        .filter(|rule| !known.contains(&rule.id))
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let progress: BTreeMap<u64, AlertProgress> = alerting
        .store
        .alert_progress(new.iter().map(|rule| rule.id).collect())
        .await?
        .into_iter()
        .map(|progress| (progress.rule_id, progress))
        .collect();
    for record in new {
        let saved = progress.get(&record.id);
        let mut run = RuleRun {
            evaluator: None,
            plan: None,
            cursor: saved.map(|progress| progress.cursor),
            error: None,
            saved: None,
            record,
        };
        run.build(alerting, saved.map(|progress| progress.snapshot.as_slice()));
        groups
            .entry((run.record.tenant.clone(), run.record.metric.clone()))
            .or_default()
            .runs
            .push(run);
    }
    Ok(())
}

impl RuleRun {
    /// Compiles the rule against its metric's current plan, restored from `snapshot`.
    fn build(&mut self, alerting: &Alerting, snapshot: Option<&[u8]>) {
        match alerting.evaluator(&self.record, snapshot) {
            Ok(evaluator) => {
                self.evaluator = Some(evaluator);
                self.plan = alerting
                    .serving
                    .plan(&self.record.metric)
                    .ok()
                    .map(|(plan, _)| plan);
                self.error = None;
            }
            Err(error) => {
                if self.error.as_deref() != Some(error.as_str()) {
                    tracing::warn!(tenant = %self.record.tenant, rule = %self.record.name, %error, "alert rule cannot run");
                }
                self.evaluator = None;
                self.plan = None;
                self.error = Some(error);
            }
        }
    }

    fn by_key(&self) -> bool {
        self.evaluator
            .as_ref()
            .is_some_and(|evaluator| evaluator.rule().by_key.is_some())
    }

    fn live(&self) -> bool {
        self.evaluator.as_ref().is_some_and(|evaluator| {
            evaluator.rule().options.on == sluice_stream::alert::Evaluate::Live
        })
    }
}

/// One round of a group: the final windows since the rules' cursors, the watermark, the live
/// windows for live rules, then one commit.
async fn evaluate(
    alerting: &Alerting,
    tenant: &str,
    metric: &str,
    group: &mut Group,
) -> Result<(), String> {
    let Ok((plan, generation)) = alerting.serving.plan(metric) else {
        for run in &mut group.runs {
            run.evaluator = None;
            run.error = Some(format!("metric {metric:?} does not exist"));
        }
        return Ok(());
    };
    // A metric redefined (deleted and made again) compiles anew, keeping each rule's state.
    for run in &mut group.runs {
        let stale = run
            .plan
            .as_ref()
            .is_none_or(|built| !Arc::ptr_eq(built, &plan));
        if stale {
            let snapshot = run
                .evaluator
                .as_ref()
                .and_then(|evaluator| serde_json::to_vec(&evaluator.snapshot()).ok());
            run.build(alerting, snapshot.as_deref());
        }
    }
    let frontier = alerting
        .serving
        .source
        .frontier(metric)
        .await
        .map_err(|error| error.to_string())?;
    if !frontier.first_partition_here {
        // Another node of the cluster evaluates this metric's rules: drop the state, which
        // goes stale, and take the other node's from the store if this one takes over again.
        if !group.elsewhere {
            group.elsewhere = true;
            for run in &mut group.runs {
                run.evaluator = None;
                run.cursor = None;
            }
            group.key_ids.clear();
        }
        return Ok(());
    }
    if group.elsewhere {
        let ids: Vec<u64> = group.runs.iter().map(|run| run.record.id).collect();
        let progress: BTreeMap<u64, AlertProgress> = alerting
            .store
            .alert_progress(ids)
            .await
            .map_err(|error| error.to_string())?
            .into_iter()
            .map(|progress| (progress.rule_id, progress))
            .collect();
        for run in &mut group.runs {
            let saved = progress.get(&run.record.id);
            run.cursor = saved.map(|progress| progress.cursor);
            run.saved = None;
            run.build(alerting, saved.map(|progress| progress.snapshot.as_slice()));
        }
        group.elsewhere = false;
    }
    if frontier.generation != generation {
        return Ok(());
    }
    let Some(watermark) = frontier.watermark else {
        // No window is final yet: a new rule will read every window from the first on.
        let new: Vec<AlertProgress> = group
            .runs
            .iter_mut()
            .filter(|run| run.cursor.is_none())
            .filter_map(|run| {
                let snapshot = serde_json::to_vec(&run.evaluator.as_ref()?.snapshot()).ok()?;
                run.cursor = Some(Millis::MIN);
                run.saved = Some(Instant::now());
                Some(AlertProgress {
                    rule_id: run.record.id,
                    cursor: Millis::MIN,
                    snapshot,
                })
            })
            .collect();
        if !new.is_empty() {
            alerting
                .store
                .commit_alerts(new, Vec::new())
                .await
                .map_err(|error| error.to_string())?;
        }
        return Ok(());
    };
    let final_upto = watermark.saturating_sub(plan.allowed_lateness);
    let before: Vec<Option<Millis>> = group.runs.iter().map(|run| run.cursor).collect();
    for run in &mut group.runs {
        // A new rule over a metric with final windows starts at the frontier: it alerts on
        // what becomes final from now on, not on the history before it.
        run.cursor.get_or_insert(final_upto);
    }
    let mut transitions: Vec<(usize, Transition)> = Vec::new();
    let low = group
        .runs
        .iter()
        .filter(|run| run.evaluator.is_some())
        .filter_map(|run| run.cursor)
        .min();
    if let Some(low) = low.filter(|&low| low < final_upto) {
        let span = match plan.window {
            WindowSpec::Tumble { size } | WindowSpec::Hop { size, .. } => size,
            WindowSpec::Session { .. } => SESSION_SPAN,
        };
        let page = RowPage {
            metric: metric.to_owned(),
            generation,
            tenant: tenant.to_owned(),
            start_from: low.saturating_sub(span),
            start_before: final_upto,
            end_upto: final_upto,
            after: None,
            limit: PAGE_ROWS,
        };
        feed_final(alerting, &plan, page, group, &mut transitions).await?;
    }
    let mut out = Vec::new();
    for (index, run) in group.runs.iter_mut().enumerate() {
        if let Some(evaluator) = &mut run.evaluator {
            if let Some(cursor) = &mut run.cursor {
                *cursor = (*cursor).max(final_upto);
            }
            evaluator.watermark(watermark, &mut out);
            transitions.extend(out.drain(..).map(|transition| (index, transition)));
        }
    }
    let live = group.runs.iter().any(RuleRun::live);
    if live {
        let snapshot = alerting
            .serving
            .snapshot(metric, tenant, &plan, generation, watermark)
            .await
            .map_err(|error| error.message().to_owned())?;
        feed_live(&plan, watermark, &snapshot, group, &mut transitions)?;
    }
    // Commit the transitions' notifications, with the progress of the rules that made them,
    // of new rules, and of the others once per checkpoint interval. Progress committed less
    // often costs nothing in correctness: evaluating again from an older snapshot makes the
    // same transitions with the same ids, which the outbox already has.
    let now = now_millis();
    let every = alerting.config.checkpoint_interval.get();
    let mut progress = Vec::new();
    for (index, run) in group.runs.iter_mut().enumerate() {
        let Some(evaluator) = &run.evaluator else {
            continue;
        };
        let moved = run.cursor != before[index] || run.live();
        let due = before[index].is_none()
            || transitions.iter().any(|(at, _)| *at == index)
            || run.saved.is_none_or(|saved| saved.elapsed() >= every);
        if moved && due {
            run.saved = Some(Instant::now());
            let snapshot = serde_json::to_vec(&evaluator.snapshot()).map_err(|error| {
                format!("serializing rule {:?}'s state: {error}", run.record.name)
            })?;
            progress.push(AlertProgress {
                rule_id: run.record.id,
                cursor: run.cursor.unwrap_or(final_upto),
                snapshot,
            });
        }
    }
    if progress.is_empty() {
        return Ok(());
    }
    let mut notifications = Vec::new();
    for (index, transition) in &transitions {
        let run = &group.runs[*index];
        let severity = run
            .evaluator
            .as_ref()
            .map_or(Severity::Warning, |evaluator| {
                evaluator.rule().options.severity
            });
        notifications.extend(notifications_of(
            &run.record,
            &plan,
            severity,
            transition,
            now,
        ));
    }
    let count = transitions.len();
    let inserted = alerting
        .store
        .commit_alerts(progress, notifications)
        .await
        .map_err(|error| error.to_string())?;
    if count > 0 {
        tracing::info!(%tenant, %metric, transitions = count, new_notifications = inserted, "alert transitions");
        metrics::counter!("sluice_alert_transitions_total").increment(count as u64);
    }
    Ok(())
}

/// Reads the final rows of `page` and feeds them to the rules past whose cursor they end.
async fn feed_final(
    alerting: &Alerting,
    plan: &MetricPlan,
    mut page: RowPage,
    group: &mut Group,
    transitions: &mut Vec<(usize, Transition)>,
) -> Result<(), String> {
    let kinds: Vec<AggregateKind> = plan.aggregates.iter().map(|a| a.kind).collect();
    // Rules without BY KEY: per rule, the windows' totals being gathered.
    let mut totals: Vec<BTreeMap<(Millis, Millis), PartialState>> =
        group.runs.iter().map(|_| BTreeMap::new()).collect();
    let mut out = Vec::new();
    loop {
        let rows = alerting
            .store
            .rows_page(page.clone())
            .await
            .map_err(|error| error.to_string())?;
        let corrupt = |error: sluice_stream::StreamError| {
            format!(
                "metric {:?}: a stored window does not decode: {error}",
                page.metric
            )
        };
        if group.key_ids.len() + rows.len() > MAX_KEY_IDS {
            group.key_ids.clear();
            for evaluator in group
                .runs
                .iter_mut()
                .filter_map(|run| run.evaluator.as_mut())
            {
                evaluator.forget_key_ids();
            }
        }
        let any_by_key = group.runs.iter().any(RuleRun::by_key);
        let mut decoded = Vec::with_capacity(rows.len());
        for row in &rows {
            let next = group.key_ids.len() as u32;
            let id = *group
                .key_ids
                .entry(row.key.clone().into_boxed_slice())
                .or_insert(next);
            let state = PartialState::decode(&row.state, Some(&kinds)).map_err(corrupt)?;
            decoded.push(Decoded {
                id,
                key: GroupKey::from_bytes(&row.key).map_err(corrupt)?,
                window: Window {
                    start: row.window_start,
                    end: row.window_end,
                },
                values: if any_by_key {
                    numbers(&state.finalize(&kinds))
                } else {
                    Vec::new()
                },
                state,
            });
        }
        // Rule after rule over the page (each rule's rows stay in window order per key): one
        // rule's instances stay in the cache while its keys go by.
        for (index, run) in group.runs.iter_mut().enumerate() {
            let by_key = run.by_key();
            let (Some(evaluator), Some(cursor)) = (&mut run.evaluator, run.cursor) else {
                continue;
            };
            for row in &decoded {
                if row.window.end <= cursor {
                    continue;
                }
                if by_key {
                    evaluator.window_by_id(
                        row.id,
                        row.key.values(),
                        row.window,
                        &row.values,
                        true,
                        &mut out,
                    );
                } else if evaluator.key_matches(row.key.values()) {
                    match totals[index].entry((row.window.start, row.window.end)) {
                        std::collections::btree_map::Entry::Vacant(entry) => {
                            entry.insert(row.state.clone());
                        }
                        std::collections::btree_map::Entry::Occupied(mut entry) => {
                            entry.get_mut().merge(&row.state).map_err(corrupt)?;
                        }
                    }
                }
            }
            transitions.extend(out.drain(..).map(|t| (index, t)));
        }
        let done = rows.len() < page.limit;
        // Totals of windows starting before the page's last start are complete (rows come by
        // start): feed them now, in window order, so memory holds about one start's windows.
        let complete_before = if done {
            Millis::MAX
        } else {
            rows.last().map_or(Millis::MAX, |row| row.window_start)
        };
        for (index, run) in group.runs.iter_mut().enumerate() {
            let Some(evaluator) = &mut run.evaluator else {
                continue;
            };
            while let Some(entry) = totals[index].first_entry() {
                if entry.key().0 >= complete_before {
                    break;
                }
                let ((start, end), state) = entry.remove_entry();
                let values = numbers(&state.finalize(&kinds));
                evaluator.window(&[], Window { start, end }, &values, true, &mut out);
                transitions.extend(out.drain(..).map(|t| (index, t)));
            }
        }
        if done {
            return Ok(());
        }
        page.after = rows.last().map(RowCursor::of);
    }
}

/// Feeds live rules the open windows of `snapshot` (those not final at `watermark`), in window
/// order per key; without `BY KEY`, the keys' merged states totalled as for final windows.
fn feed_live(
    plan: &MetricPlan,
    watermark: Millis,
    snapshot: &crate::query::live::LiveSnapshot,
    group: &mut Group,
    transitions: &mut Vec<(usize, Transition)>,
) -> Result<(), String> {
    let kinds: Vec<AggregateKind> = plan.aggregates.iter().map(|a| a.kind).collect();
    let mut out = Vec::new();
    for (index, run) in group.runs.iter_mut().enumerate() {
        if !run.live() {
            continue;
        }
        let by_key = run.by_key();
        let Some(evaluator) = &mut run.evaluator else {
            continue;
        };
        let mut totals: BTreeMap<(Millis, Millis), PartialState> = BTreeMap::new();
        for series in snapshot.keys.values() {
            if !evaluator.key_matches(series.key.values()) {
                continue;
            }
            for (&(start, end), cell) in &series.cells {
                if close_of(plan, end) <= watermark {
                    continue;
                }
                if by_key {
                    let values = numbers(&cell.values);
                    evaluator.window(
                        series.key.values(),
                        Window { start, end },
                        &values,
                        false,
                        &mut out,
                    );
                    transitions.extend(out.drain(..).map(|t| (index, t)));
                } else {
                    match totals.entry((start, end)) {
                        std::collections::btree_map::Entry::Vacant(entry) => {
                            entry.insert(cell.state.clone());
                        }
                        std::collections::btree_map::Entry::Occupied(mut entry) => {
                            entry
                                .get_mut()
                                .merge(&cell.state)
                                .map_err(|error| error.to_string())?;
                        }
                    }
                }
            }
        }
        for ((start, end), state) in totals {
            let values = numbers(&state.finalize(&kinds));
            evaluator.window(&[], Window { start, end }, &values, false, &mut out);
            transitions.extend(out.drain(..).map(|t| (index, t)));
        }
    }
    Ok(())
}

/// Finalized values as the evaluator reads them.
fn numbers(values: &[OutputValue]) -> Vec<Option<f64>> {
    values.iter().map(number).collect()
}

/// The outbox rows of one transition: one per channel (one recorded as delivered when the
/// rule has no channel, so the history still shows it).
fn notifications_of(
    rule: &AlertRuleRecord,
    plan: &MetricPlan,
    severity: Severity,
    transition: &Transition,
    now: Millis,
) -> Vec<Notification> {
    let id = notification_id(rule, transition);
    let key: serde_json::Value =
        serde_json::from_str(&transition.key).unwrap_or(serde_json::Value::Null);
    let payload = serde_json::json!({
        "id": id,
        "tenant": rule.tenant,
        "rule": rule.name,
        "metric": plan.name,
        "key": key,
        "status": transition.to.as_str(),
        "previous": transition.from.as_str(),
        "severity": severity.as_str(),
        "at": format_millis(transition.at_ms),
        "at_ms": transition.at_ms,
        "value": transition.value,
        "description": transition.description,
        "sequence": transition.sequence,
        "condition": rule.sql,
    })
    .to_string();
    let row = |channel: &str, state: DeliveryState| Notification {
        id: id.clone(),
        channel: channel.to_owned(),
        tenant: rule.tenant.clone(),
        rule: rule.name.clone(),
        status: transition.to.as_str().to_owned(),
        created_at: now,
        payload: payload.clone(),
        attempts: 0,
        next_attempt: now,
        state,
        last_error: None,
        updated_at: now,
    };
    if rule.channels.is_empty() {
        return vec![row("", DeliveryState::Delivered)];
    }
    rule.channels
        .iter()
        .map(|channel| row(channel, DeliveryState::Pending))
        .collect()
}

/// `{tenant}/{rule}.{rule id}/{key}/{sequence}`: the same for the same transition after any
/// crash, distinct for a rule replaced under the same name.
pub(crate) fn notification_id(rule: &AlertRuleRecord, transition: &Transition) -> String {
    format!(
        "{}/{}.{}/{}/{}",
        rule.tenant, rule.name, rule.id, transition.key, transition.sequence
    )
}
