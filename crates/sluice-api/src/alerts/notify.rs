//! Delivery: the outbox's due notifications posted to their channels, in the channel's
//! format, signed, retried with exponential backoff and jitter until acknowledged or dead.
//!
//! Every body is JSON, sent with `Content-Type: application/json`,
//! `X-Sluice-Notification-Id: <id>` and, for a channel with a secret,
//! `X-Sluice-Signature: sha256=<hex HMAC-SHA256(secret, body)>` (the receiver computes the
//! same over the raw body and compares in constant time). The formats:
//! - `webhook`: the notification as the runner made it — `id`, `tenant`, `rule`, `metric`,
//!   `key`, `status` (`firing`/`resolved`), `previous`, `severity`, `at`, `at_ms`, `value`,
//!   `description`, `sequence`, `condition`;
//! - `slack`: `{"text": "…"}`, what Slack's incoming webhooks (and Mattermost's, Rocket.Chat's)
//!   take;
//! - `alertmanager`: Prometheus Alertmanager's webhook payload, version 4, one alert per
//!   notification, `fingerprint` the same for a key's firing and resolved notifications.
//!
//! Order: the notifications of one rule and channel due in one round are sent one after the
//! other, oldest first, stopping at the first failure; one being retried may still be
//! overtaken by a later one of the same key, so receivers that keep state order a key's
//! notifications by `sequence`.

use super::{Alerting, ChannelConfig, ChannelKind};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::{Digest, Sha256};
use sluice_core::time::{Millis, format_millis, now_millis};
use sluice_store::{DeliveryOutcome, DeliveryState, Notification, SilenceRecord};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the outbox is read for due notifications.
const POLL: Duration = Duration::from_secs(1);

/// Notifications read per round.
const BATCH: usize = 256;

/// Deliveries in flight at once.
const CONCURRENCY: usize = 16;

/// The most of a failed answer's body kept in the error.
const ERROR_BODY_BYTES: usize = 200;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-sluice-signature";

/// The notification id header.
pub const ID_HEADER: &str = "x-sluice-notification-id";

/// Delivers due notifications until `stop`.
pub(crate) async fn run(alerting: Arc<Alerting>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(POLL) => {}
        }
        match round(&alerting).await {
            Ok(0) => {}
            Ok(sent) => tracing::debug!(sent, "notifications attempted"),
            Err(error) => tracing::warn!(%error, "could not read the alert outbox; trying again"),
        }
        if let Ok(counts) = alerting.store.notification_counts().await {
            for state in [DeliveryState::Pending, DeliveryState::Dead] {
                let count = counts
                    .iter()
                    .find(|(s, _)| *s == state)
                    .map_or(0, |(_, n)| *n);
                let name = match state {
                    DeliveryState::Pending => "sluice_alert_retry_backlog",
                    _ => "sluice_alert_notifications_dead",
                };
                metrics::gauge!(name).set(count as f64);
            }
        }
    }
}

/// One round: the due notifications of the metrics this node evaluates, attempted; returns
/// how many.
async fn round(alerting: &Alerting) -> Result<usize, sluice_store::StoreError> {
    let now = now_millis();
    let due = alerting.store.due_notifications(now, BATCH).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let rules: HashMap<(String, String), String> = alerting
        .store
        .alert_rules()
        .await?
        .into_iter()
        .map(|rule| ((rule.tenant, rule.name), rule.metric))
        .collect();
    let silences = alerting.store.silences().await?;
    // Owned by the node that evaluates the rule's metric; a deleted rule's, by any node.
    let mut owned: BTreeMap<String, bool> = BTreeMap::new();
    let mut mine = Vec::new();
    for notification in due {
        let metric = rules.get(&(notification.tenant.clone(), notification.rule.clone()));
        let here = match metric {
            Some(metric) => match owned.get(metric) {
                Some(&here) => here,
                None => {
                    let here = alerting
                        .serving
                        .source
                        .frontier(metric)
                        .await
                        .is_ok_and(|frontier| frontier.first_partition_here);
                    owned.insert(metric.clone(), here);
                    here
                }
            },
            None => true,
        };
        if here {
            mine.push(notification);
        }
    }
    let count = mine.len();
    // In order per (rule, channel): a key's resolved notification does not overtake its
    // firing one in the same round, and a group stops at its first failure.
    let mut groups: BTreeMap<(String, String, String), Vec<Notification>> = BTreeMap::new();
    for notification in mine {
        groups
            .entry((
                notification.tenant.clone(),
                notification.rule.clone(),
                notification.channel.clone(),
            ))
            .or_default()
            .push(notification);
    }
    let outcomes: Vec<Vec<DeliveryOutcome>> = futures::stream::iter(groups.into_values())
        .map(|mut group| async {
            group.sort_by_key(|n| (n.created_at, sequence_of(&n.id)));
            let mut outcomes = Vec::new();
            for notification in group {
                let outcome = attempt(alerting, notification, &silences).await;
                let failed = outcome.state == DeliveryState::Pending;
                outcomes.push(outcome);
                if failed {
                    break;
                }
            }
            outcomes
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    alerting
        .store
        .record_deliveries(outcomes.into_iter().flatten().collect())
        .await?;
    Ok(count)
}

/// The sequence number at the end of a notification id (0 if there is none).
fn sequence_of(id: &str) -> u64 {
    id.rsplit('/')
        .next()
        .and_then(|tail| tail.parse().ok())
        .unwrap_or(0)
}

/// One attempt at `notification`, and what becomes of it.
async fn attempt(
    alerting: &Alerting,
    notification: Notification,
    silences: &[SilenceRecord],
) -> DeliveryOutcome {
    let mut outcome = DeliveryOutcome {
        id: notification.id.clone(),
        channel: notification.channel.clone(),
        state: DeliveryState::Delivered,
        attempts: notification.attempts,
        next_attempt: notification.next_attempt,
        last_error: None,
        at: now_millis(),
    };
    let channel_label = notification.channel.clone();
    let count = |outcome: &str| {
        metrics::counter!("sluice_alert_notifications_total", "channel" => channel_label.clone(), "outcome" => outcome.to_owned())
            .increment(1);
    };
    if silences
        .iter()
        .any(|silence| covers(silence, &notification))
    {
        outcome.state = DeliveryState::Silenced;
        count("silenced");
        return outcome;
    }
    let Some(channel) = alerting.channels.get(&notification.channel) else {
        outcome.state = DeliveryState::Dead;
        outcome.last_error = Some(format!(
            "channel {:?} is not configured (any more): add it to [[alert-channels]]",
            notification.channel
        ));
        count("dead");
        return outcome;
    };
    if !channel.admits(&notification.tenant) {
        outcome.state = DeliveryState::Dead;
        outcome.last_error = Some(format!(
            "channel {:?} does not take tenant {:?}'s notifications (its tenants list)",
            channel.name, notification.tenant
        ));
        count("dead");
        return outcome;
    }
    outcome.attempts += 1;
    let payload: serde_json::Value =
        serde_json::from_str(&notification.payload).unwrap_or(serde_json::Value::Null);
    match send(alerting, channel, &notification.id, &payload).await {
        Ok(()) => {
            count("delivered");
            outcome
        }
        Err(error) => {
            let now = outcome.at;
            let give_up = notification
                .created_at
                .saturating_add(millis(alerting.config.max_retry_duration.get()));
            if now >= give_up {
                outcome.state = DeliveryState::Dead;
                count("dead");
                tracing::warn!(id = %notification.id, channel = %channel.name, %error, attempts = outcome.attempts, "notification given up");
            } else {
                outcome.state = DeliveryState::Pending;
                let jitter = rand::rng().random_range(0.5..1.5);
                let delay = retry_delay(
                    alerting.config.retry_initial_interval.get(),
                    alerting.config.retry_max_interval.get(),
                    outcome.attempts,
                    jitter,
                );
                outcome.next_attempt = now.saturating_add(millis(delay)).min(give_up);
                count("failed");
                tracing::info!(id = %notification.id, channel = %channel.name, %error, attempts = outcome.attempts, retry_in = ?delay, "notification not delivered; retrying");
            }
            outcome.last_error = Some(error);
            outcome
        }
    }
}

/// Posts `payload` to `channel` in its format: `Ok` on a 2xx answer.
pub(crate) async fn send(
    alerting: &Alerting,
    channel: &ChannelConfig,
    id: &str,
    payload: &serde_json::Value,
) -> Result<(), String> {
    let body = body(channel, payload);
    let mut request = alerting
        .client
        .post(&channel.url)
        .timeout(alerting.config.timeout.get())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(ID_HEADER, id);
    if !channel.secret.is_empty() {
        request = request.header(SIGNATURE_HEADER, signature(&channel.secret, &body));
    }
    let answer = request.body(body).send().await.map_err(|error| {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    })?;
    let status = answer.status();
    if status.is_success() {
        return Ok(());
    }
    let text = answer.text().await.unwrap_or_default();
    let mut end = text.len().min(ERROR_BODY_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Err(format!(
        "{} answered {status}: {}",
        channel.url,
        &text[..end]
    ))
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// The wait before attempt `attempts + 1`: `initial × 2^(attempts − 1)`, at most `max`, times
/// `jitter` (drawn from 0.5…1.5).
pub fn retry_delay(initial: Duration, max: Duration, attempts: u32, jitter: f64) -> Duration {
    let doubled = initial
        .checked_mul(1u32 << attempts.saturating_sub(1).min(20))
        .unwrap_or(max);
    doubled.min(max).mul_f64(jitter.clamp(0.5, 1.5))
}

fn millis(duration: Duration) -> Millis {
    Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX)
}

/// Whether `silence` covers `notification`: its tenant, its rule (or every rule), the key
/// fields it names, and the time the transition was found.
pub fn covers(silence: &SilenceRecord, notification: &Notification) -> bool {
    if silence.tenant != notification.tenant
        || silence
            .rule
            .as_deref()
            .is_some_and(|rule| rule != notification.rule)
        || notification.created_at < silence.from
        || notification.created_at >= silence.to
    {
        return false;
    }
    let Some(fields) = &silence.key else {
        return true;
    };
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str::<serde_json::Value>(fields)
    else {
        return false;
    };
    let payload: serde_json::Value =
        serde_json::from_str(&notification.payload).unwrap_or(serde_json::Value::Null);
    fields
        .iter()
        .all(|(name, value)| payload["key"].get(name) == Some(value))
}

/// The body `channel` receives for `payload`.
pub fn body(channel: &ChannelConfig, payload: &serde_json::Value) -> Vec<u8> {
    let value = match channel.kind {
        ChannelKind::Webhook => payload.clone(),
        ChannelKind::Slack => serde_json::json!({ "text": slack_text(payload) }),
        ChannelKind::Alertmanager => alertmanager(channel, payload),
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

fn text<'a>(payload: &'a serde_json::Value, field: &str) -> &'a str {
    payload[field].as_str().unwrap_or("")
}

fn key_text(payload: &serde_json::Value) -> String {
    match &payload["key"] {
        serde_json::Value::Object(fields) if !fields.is_empty() => fields
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    }
}

fn slack_text(payload: &serde_json::Value) -> String {
    let status = text(payload, "status");
    let mark = match status {
        "firing" => ":rotating_light: FIRING",
        "resolved" => ":white_check_mark: RESOLVED",
        _ => ":bell: TEST",
    };
    let key = key_text(payload);
    let on = if key.is_empty() {
        String::new()
    } else {
        format!(" ({key})")
    };
    format!(
        "{mark} *{}*{on} on `{}` [{}] — {} at {}",
        text(payload, "rule"),
        text(payload, "metric"),
        text(payload, "severity"),
        text(payload, "description"),
        text(payload, "at"),
    )
}

/// Alertmanager's webhook payload (version 4) for one notification.
fn alertmanager(channel: &ChannelConfig, payload: &serde_json::Value) -> serde_json::Value {
    let rule = text(payload, "rule");
    let mut labels = serde_json::Map::new();
    labels.insert("alertname".into(), rule.into());
    labels.insert("tenant".into(), text(payload, "tenant").into());
    labels.insert("metric".into(), text(payload, "metric").into());
    labels.insert("severity".into(), text(payload, "severity").into());
    if let serde_json::Value::Object(fields) = &payload["key"] {
        for (name, value) in fields {
            let value = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            labels.entry(name.clone()).or_insert(value.into());
        }
    }
    let status = if text(payload, "status") == "resolved" {
        "resolved"
    } else {
        "firing"
    };
    let at = text(payload, "at");
    let ends = if status == "resolved" {
        at
    } else {
        "0001-01-01T00:00:00Z"
    };
    // The same for a key's firing and resolved notifications: the alert's identity.
    let identity = format!(
        "{}\u{0}{}\u{0}{}",
        text(payload, "tenant"),
        rule,
        payload["key"]
    );
    let fingerprint = hex(&Sha256::digest(identity.as_bytes())[..8]);
    let mut annotations = serde_json::Map::new();
    annotations.insert("description".into(), text(payload, "description").into());
    annotations.insert(
        "summary".into(),
        format!("{rule} on {}", text(payload, "metric")).into(),
    );
    if let Some(value) = payload["value"].as_f64() {
        annotations.insert("value".into(), value.to_string().into());
    }
    annotations.insert("notification_id".into(), text(payload, "id").into());
    let labels = serde_json::Value::Object(labels);
    let annotations = serde_json::Value::Object(annotations);
    serde_json::json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{rule}\"}}"),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": channel.name,
        "groupLabels": { "alertname": rule },
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": at,
            "endsAt": ends,
            "generatorURL": "",
            "fingerprint": fingerprint,
        }],
    })
}

/// Sends a test notification to `channel` now, outside the outbox: what its receiver
/// answered.
pub(crate) async fn test_fire(
    alerting: &Alerting,
    channel: &ChannelConfig,
    tenant: &str,
) -> Result<String, String> {
    let now = now_millis();
    let id = format!("{tenant}/test/{}/{now}", channel.name);
    let payload = serde_json::json!({
        "id": id,
        "tenant": tenant,
        "rule": "test",
        "metric": "",
        "key": {},
        "status": "test",
        "previous": "ok",
        "severity": "info",
        "at": format_millis(now),
        "at_ms": now,
        "value": null,
        "description": format!("a test notification from sluice to channel {:?}", channel.name),
        "sequence": 0,
        "condition": "",
    });
    send(alerting, channel, &id, &payload).await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(kind: ChannelKind) -> ChannelConfig {
        ChannelConfig {
            name: "ops".into(),
            kind,
            url: "http://127.0.0.1:1/hook".into(),
            secret: "s3cret".into(),
            tenants: Vec::new(),
        }
    }

    fn payload(status: &str) -> serde_json::Value {
        serde_json::json!({
            "id": "shop/errors.7/{\"url\":\"/x\"}/1", "tenant": "shop", "rule": "errors",
            "metric": "page_errors", "key": {"url": "/x"}, "status": status,
            "previous": "ok", "severity": "critical", "at": "2026-12-07T10:00:00Z",
            "at_ms": 1_796_637_600_000_i64, "value": 12.0, "description": "errors 12 > 10",
            "sequence": 1, "condition": "CREATE ALERT …",
        })
    }

    #[test]
    fn the_signature_is_rfc_4231s_hmac_sha256() {
        // RFC 4231, test case 2.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            format!("sha256={}", hex(&mac.finalize().into_bytes()))
        );
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn retries_double_up_to_the_cap_within_their_jitter() {
        let s = Duration::from_secs;
        assert_eq!(retry_delay(s(5), s(3600), 1, 1.0), s(5));
        assert_eq!(retry_delay(s(5), s(3600), 2, 1.0), s(10));
        assert_eq!(retry_delay(s(5), s(3600), 4, 1.0), s(40));
        assert_eq!(retry_delay(s(5), s(3600), 40, 1.0), s(3600));
        assert_eq!(retry_delay(s(5), s(3600), 2, 0.5), s(5));
        assert_eq!(retry_delay(s(5), s(3600), 2, 1.5), s(15));
        assert_eq!(
            retry_delay(s(5), s(3600), 2, 9.0),
            s(15),
            "jitter is clamped"
        );
    }

    #[test]
    fn each_format_carries_the_notification() {
        let webhook: serde_json::Value =
            serde_json::from_slice(&body(&channel(ChannelKind::Webhook), &payload("firing")))
                .unwrap();
        assert_eq!(webhook, payload("firing"));
        let slack: serde_json::Value =
            serde_json::from_slice(&body(&channel(ChannelKind::Slack), &payload("firing")))
                .unwrap();
        let text = slack["text"].as_str().unwrap();
        assert!(
            text.contains("FIRING") && text.contains("*errors*") && text.contains("url=\"/x\""),
            "{text}"
        );
        let firing: serde_json::Value = serde_json::from_slice(&body(
            &channel(ChannelKind::Alertmanager),
            &payload("firing"),
        ))
        .unwrap();
        assert_eq!(firing["version"], "4");
        assert_eq!(firing["status"], "firing");
        let alert = &firing["alerts"][0];
        assert_eq!(alert["labels"]["alertname"], "errors");
        assert_eq!(alert["labels"]["url"], "/x");
        assert_eq!(alert["labels"]["severity"], "critical");
        assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
        let resolved: serde_json::Value = serde_json::from_slice(&body(
            &channel(ChannelKind::Alertmanager),
            &payload("resolved"),
        ))
        .unwrap();
        assert_eq!(resolved["alerts"][0]["endsAt"], "2026-12-07T10:00:00Z");
        assert_eq!(
            resolved["alerts"][0]["fingerprint"], alert["fingerprint"],
            "one alert: firing and resolved share a fingerprint"
        );
    }

    #[test]
    fn silences_match_tenant_rule_key_fields_and_time() {
        let notification = Notification {
            id: "x".into(),
            channel: "ops".into(),
            tenant: "shop".into(),
            rule: "errors".into(),
            status: "firing".into(),
            created_at: 1_000,
            payload: payload("firing").to_string(),
            attempts: 0,
            next_attempt: 1_000,
            state: DeliveryState::Pending,
            last_error: None,
            updated_at: 1_000,
        };
        let silence = |rule: Option<&str>, key: Option<&str>, from, to| SilenceRecord {
            id: "sil_1".into(),
            tenant: "shop".into(),
            rule: rule.map(Into::into),
            key: key.map(Into::into),
            from,
            to,
            comment: String::new(),
            created_at: 0,
        };
        assert!(covers(&silence(None, None, 0, 2_000), &notification));
        assert!(covers(
            &silence(Some("errors"), Some(r#"{"url":"/x"}"#), 1_000, 1_001),
            &notification
        ));
        assert!(!covers(
            &silence(Some("other"), None, 0, 2_000),
            &notification
        ));
        assert!(!covers(
            &silence(None, Some(r#"{"url":"/y"}"#), 0, 2_000),
            &notification
        ));
        assert!(
            !covers(&silence(None, None, 0, 1_000), &notification),
            "the end is exclusive"
        );
        assert!(!covers(&silence(None, None, 1_001, 2_000), &notification));
        let mut other_tenant = silence(None, None, 0, 2_000);
        other_tenant.tenant = "blog".into();
        assert!(!covers(&other_tenant, &notification));
    }
}
