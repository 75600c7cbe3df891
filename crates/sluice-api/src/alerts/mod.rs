//! Alerts (issue 19): rules on a tenant's metric, evaluated as its windows become final (or
//! live), with notifications that arrive once. The rules themselves — grammar, checks, the
//! per-key state machine — are `sluice_stream::alert`, pure; this module runs them.
//!
//! # Protocol
//!
//! **Rules** are store rows ([`sluice_store::Alerts`]): from the config's `[[alerts]]` (stored
//! at start, replaced when their text changes, deleted when removed from the config) and from
//! `/v1/alerts/rules`. Each version of a rule has an id the store never reuses.
//!
//! **Evaluation** ([`runner`]). Every `alerting.evaluate-interval`, for each (tenant, metric)
//! with rules, on the node computing the metric's partition 0 (every node in a cluster knows
//! which):
//! 1. the metric's *frontier* is read: the lowest committed watermark of its partitions. A
//!    window ending at or before `frontier − allowed_lateness` is final in every partition and
//!    its final row holds every partition's part;
//! 2. each rule has a *cursor*: every final window ending at or before it has been evaluated.
//!    The final rows ending after the lowest cursor and at or before the frontier are read in
//!    pages, in (window start, key, window end) order, and fed to the rules whose cursor they
//!    are past — per key for `BY KEY`, else totalled over the keys its `WHERE` accepts (the
//!    partial states merged, so distinct counts and percentiles of the total are right);
//!    then the frontier is fed as the watermark (which drives `absent`);
//! 3. `on = 'live'` rules are fed the open windows of the live snapshot after that;
//! 4. the rules' evaluator snapshots, new cursors and one outbox row per (transition,
//!    channel) are committed in **one store transaction** ([`sluice_store::Alerts::commit_alerts`]).
//!
//! A crash before step 4 restores the snapshots and cursors committed before and reads the
//! same final rows again; the evaluator being deterministic, the same transitions come out
//! with the same sequence numbers, so the same notification ids. A crash after it finds the
//! rows in the outbox, and an id inserted twice is stored once. A new rule over a metric with
//! final windows starts at the frontier it first sees: it alerts on windows that become final
//! after it exists (not on the history before), and its baselines fill from then on; over a
//! metric with none yet, it reads every window from the first.
//!
//! **Delivery** ([`notify`]). Every second the node's notifier reads the due outbox rows of
//! the rules it evaluates, drops those a silence covers (marked `silenced`), and posts the
//! rest: a 2xx marks a row `delivered`; anything else schedules the next attempt
//! `min(retry-max-interval, retry-initial-interval × 2^attempts) × jitter(0.5…1.5)` later,
//! until `max-retry-duration` after the transition, when the row is `dead` (listed by
//! `GET /v1/alerts/history?state=dead`). Receivers dedupe on the notification id.
//!
//! # Layout
//! - [`config`]: `[alerting]`, `[[alert-channels]]` and `[[alerts]]`.
//! - [`runner`]: evaluation, per (tenant, metric).
//! - [`notify`]: payloads (webhook, Slack, Alertmanager), signatures, delivery with backoff.
//! - [`routes`]: the `/v1/alerts…` routes.

pub mod config;
pub mod notify;
pub mod routes;
pub mod runner;

pub use config::{AlertRuleConfig, AlertingConfig, ChannelConfig, ChannelKind};

use crate::error::ApiError;
use crate::query::Serving;
use sluice_core::time::now_millis;
use sluice_store::{AlertRuleRecord, StoreBackend};
use sluice_stream::alert::{Evaluator, EvaluatorSnapshot, parse_alert};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Where a rule came from, as stored.
pub const ORIGIN_CONFIG: &str = "config";
/// A rule made through the API.
pub const ORIGIN_API: &str = "api";

/// The alerting service: rules, their evaluation and the notifier, shared by the routes.
#[derive(Debug)]
pub struct Alerting {
    pub(crate) store: StoreBackend,
    pub(crate) serving: Arc<Serving>,
    pub(crate) config: AlertingConfig,
    /// Channels by name.
    pub(crate) channels: BTreeMap<String, ChannelConfig>,
    pub(crate) client: reqwest::Client,
    /// Asks the runner to read the rules again (one changed).
    pub(crate) changed: tokio::sync::Notify,
}

/// An alert instance as `GET /v1/alerts` lists it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AlertInstance {
    /// The rule.
    pub rule: String,
    /// The metric it watches.
    pub metric: String,
    /// The group key, as an object (`{}` for a rule without `BY KEY`).
    pub key: serde_json::Value,
    /// `ok`, `pending`, `firing` or `resolved`.
    pub state: String,
    /// The rule's severity.
    pub severity: String,
}

impl Alerting {
    /// The service over `store`, reading metrics through `serving`, posting to `channels`.
    pub fn new(
        store: StoreBackend,
        serving: Arc<Serving>,
        config: AlertingConfig,
        channels: &[ChannelConfig],
    ) -> Result<Arc<Alerting>, String> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| format!("cannot make the notifications' HTTP client: {error}"))?;
        Ok(Arc::new(Alerting {
            store,
            serving,
            config,
            channels: channels
                .iter()
                .map(|channel| (channel.name.clone(), channel.clone()))
                .collect(),
            client,
            changed: tokio::sync::Notify::new(),
        }))
    }

    /// Stores the config's rules (replacing changed ones, deleting config rules no longer
    /// listed); a rule that does not check against its metric is refused with its place.
    pub async fn apply_config(&self, rules: &[AlertRuleConfig]) -> Result<(), String> {
        let stored = self
            .store
            .alert_rules()
            .await
            .map_err(|error| format!("reading the alert rules: {error}"))?;
        let mut listed = std::collections::HashSet::new();
        for (index, rule) in rules.iter().enumerate() {
            let record = self
                .checked(&rule.tenant, &rule.sql, &rule.channels, ORIGIN_CONFIG)
                .map_err(|error| format!("alerts[{index}]: {}", error.message()))?;
            listed.insert((record.tenant.clone(), record.name.clone()));
            self.store
                .put_alert_rule(record)
                .await
                .map_err(|error| format!("storing alerts[{index}]: {error}"))?;
        }
        for old in stored {
            if old.origin == ORIGIN_CONFIG
                && !listed.contains(&(old.tenant.clone(), old.name.clone()))
            {
                self.store
                    .delete_alert_rule(&old.tenant, &old.name)
                    .await
                    .map_err(|error| format!("deleting alert rule {:?}: {error}", old.name))?;
            }
        }
        self.changed.notify_one();
        Ok(())
    }

    /// A rule checked against its metric and the channels: the record to store, or a 400
    /// naming what to fix (with line and column for the SQL).
    pub fn checked(
        &self,
        tenant: &str,
        sql: &str,
        channels: &[String],
        origin: &str,
    ) -> Result<AlertRuleRecord, ApiError> {
        let rule = parse_alert(sql).map_err(sql_error)?;
        let Ok((plan, _)) = self.serving.plan(&rule.metric.name) else {
            return Err(sql_error(sluice_stream::SqlError {
                line: rule.metric.at.line,
                column: rule.metric.at.column,
                message: format!(
                    "unknown metric {:?}: define it first (GET /v1/metrics lists the tenant's metrics)",
                    rule.metric.name
                ),
            }));
        };
        sluice_stream::alert::check(&rule, &plan).map_err(sql_error)?;
        for (index, channel) in channels.iter().enumerate() {
            if channels[..index].contains(channel) {
                return Err(ApiError::bad_request(
                    "invalid_channels",
                    format!("channel {channel:?} is listed twice: list each channel once"),
                ));
            }
            if !self.channels.contains_key(channel) {
                let known: Vec<&str> = self.channels.keys().map(String::as_str).collect();
                return Err(ApiError::bad_request(
                    "unknown_channel",
                    format!(
                        "unknown channel {channel:?}: configured channels are {known:?} ([[alert-channels]])"
                    ),
                ));
            }
        }
        Ok(AlertRuleRecord {
            id: 0,
            tenant: tenant.to_owned(),
            name: rule.name.clone(),
            metric: rule.metric.name.clone(),
            sql: sql.trim().to_owned(),
            channels: channels.to_vec(),
            origin: origin.to_owned(),
            created_at: now_millis(),
        })
    }

    /// Every rule's instances and states as last committed, for one tenant or all, with why
    /// a rule cannot run (its metric is gone, or no longer has what it reads).
    pub async fn instances(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<(AlertRuleRecord, Vec<AlertInstance>, Option<String>)>, ApiError> {
        let rules: Vec<AlertRuleRecord> = self
            .store
            .alert_rules()
            .await?
            .into_iter()
            .filter(|rule| tenant.is_none_or(|tenant| rule.tenant == tenant))
            .collect();
        let progress = self
            .store
            .alert_progress(rules.iter().map(|rule| rule.id).collect())
            .await?;
        let progress: BTreeMap<u64, Vec<u8>> = progress
            .into_iter()
            .map(|p| (p.rule_id, p.snapshot))
            .collect();
        let mut out = Vec::new();
        for rule in rules {
            let mut instances = Vec::new();
            let snapshot = progress.get(&rule.id).map(Vec::as_slice);
            let error = match self.evaluator(&rule, snapshot) {
                Ok(evaluator) if snapshot.is_some() => {
                    let severity = evaluator.rule().options.severity.as_str();
                    for (key, state) in evaluator.states() {
                        instances.push(AlertInstance {
                            rule: rule.name.clone(),
                            metric: rule.metric.clone(),
                            key: serde_json::from_str(key).unwrap_or(serde_json::Value::Null),
                            state: state.as_str().to_owned(),
                            severity: severity.to_owned(),
                        });
                    }
                    None
                }
                Ok(_) => None,
                Err(error) => Some(error),
            };
            out.push((rule, instances, error));
        }
        Ok(out)
    }

    /// An evaluator for `rule` over its metric's current plan, restored from `snapshot`.
    pub(crate) fn evaluator(
        &self,
        rule: &AlertRuleRecord,
        snapshot: Option<&[u8]>,
    ) -> Result<Evaluator, String> {
        let parsed = parse_alert(&rule.sql).map_err(|error| error.to_string())?;
        let (plan, _) = self
            .serving
            .plan(&rule.metric)
            .map_err(|_| format!("metric {:?} does not exist", rule.metric))?;
        let mut evaluator =
            Evaluator::new(Arc::new(parsed), &plan).map_err(|error| error.to_string())?;
        if let Some(bytes) = snapshot {
            let snapshot: EvaluatorSnapshot = serde_json::from_slice(bytes)
                .map_err(|error| format!("its stored state does not parse: {error}"))?;
            evaluator
                .restore(snapshot)
                .map_err(|error| error.to_string())?;
        }
        Ok(evaluator)
    }

    /// Starts evaluating and delivering until `stop`.
    pub fn start(self: &Arc<Self>, stop: CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            tokio::spawn(runner::run(Arc::clone(self), stop.clone())),
            tokio::spawn(notify::run(Arc::clone(self), stop)),
        ]
    }
}

/// A rule's SQL error as a 400 with its place.
fn sql_error(error: sluice_stream::SqlError) -> ApiError {
    ApiError::bad_request("invalid_sql", error.to_string())
        .with("line", error.line)
        .with("column", error.column)
}
