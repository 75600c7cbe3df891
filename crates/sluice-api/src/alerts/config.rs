//! `[alerting]` (evaluation and delivery settings), `[[alert-channels]]` (where notifications
//! go) and `[[alerts]]` (rules defined at start). Defaults live in the binary's `default.toml`.

use serde::Deserialize;
use sluice_core::config::{ConfigProblem, HumanDuration, Validate, join};
use std::time::Duration;

/// `[alerting]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AlertingConfig {
    /// How often rules read the windows that became final.
    pub evaluate_interval: HumanDuration,
    /// How often a rule's state is committed when it made no transition (a transition is
    /// committed at once, with its notifications).
    pub checkpoint_interval: HumanDuration,
    /// The first retry of a failed delivery comes this long after it (then twice as long
    /// each time, ± 50 % jitter).
    pub retry_initial_interval: HumanDuration,
    /// Retries are at most this far apart.
    pub retry_max_interval: HumanDuration,
    /// A notification not delivered this long after its transition is given up (`dead`).
    pub max_retry_duration: HumanDuration,
    /// How long a receiver may take to answer one delivery.
    pub timeout: HumanDuration,
    /// Most rules over all tenants.
    pub max_rules: usize,
}

impl AlertingConfig {
    /// The evaluation interval.
    pub fn evaluate_every(&self) -> Duration {
        self.evaluate_interval.get()
    }
}

/// What a channel's receiver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// sluice's JSON notification, signed with the channel's secret.
    Webhook,
    /// A Slack-compatible incoming webhook (`{"text": …, "blocks": …}`).
    Slack,
    /// Prometheus Alertmanager's webhook format (version 4), as on-call tools consume it.
    Alertmanager,
}

impl ChannelKind {
    /// The name in the config and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
            ChannelKind::Alertmanager => "alertmanager",
        }
    }
}

/// `[[alert-channels]]`: one receiver.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ChannelConfig {
    /// The name rules send to.
    pub name: String,
    /// The receiver's format.
    pub kind: ChannelKind,
    /// `http://…` or `https://…`.
    pub url: String,
    /// Signs each body: `X-Sluice-Signature: sha256=<hex HMAC-SHA256(secret, body)>`. Empty:
    /// unsigned.
    #[serde(default)]
    pub secret: String,
    /// Only these tenants' rules may send here (empty: any tenant's).
    #[serde(default)]
    pub tenants: Vec<String>,
}

impl std::fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("signed", &!self.secret.is_empty())
            .field("tenants", &self.tenants)
            .finish()
    }
}

impl ChannelConfig {
    /// Whether `tenant`'s rules may send here.
    pub fn admits(&self, tenant: &str) -> bool {
        self.tenants.is_empty() || self.tenants.iter().any(|t| t == tenant)
    }
}

/// `[[alerts]]`: a rule defined at start.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AlertRuleConfig {
    /// The tenant whose metric it watches.
    pub tenant: String,
    /// `CREATE ALERT name ON metric … WHEN …`.
    pub sql: String,
    /// Channels it sends to, by name.
    #[serde(default)]
    pub channels: Vec<String>,
}

/// The longest channel or rule name list, and the most channels.
const MAX_CHANNELS: usize = 100;

impl Validate for AlertingConfig {
    fn validate(&self, path: &str, problems: &mut Vec<ConfigProblem>) {
        let secs = Duration::from_secs;
        for (key, value, min, max, human) in [
            (
                "evaluate-interval",
                self.evaluate_interval.get(),
                Duration::from_millis(100),
                secs(3600),
                "between 100ms and 1h",
            ),
            (
                "checkpoint-interval",
                self.checkpoint_interval.get(),
                Duration::from_millis(100),
                secs(3600),
                "between 100ms and 1h",
            ),
            (
                "retry-initial-interval",
                self.retry_initial_interval.get(),
                Duration::from_millis(100),
                secs(3600),
                "between 100ms and 1h",
            ),
            (
                "retry-max-interval",
                self.retry_max_interval.get(),
                secs(1),
                secs(86_400),
                "between 1s and 24h",
            ),
            (
                "max-retry-duration",
                self.max_retry_duration.get(),
                secs(1),
                secs(30 * 86_400),
                "between 1s and 30d",
            ),
            (
                "timeout",
                self.timeout.get(),
                Duration::from_millis(100),
                secs(300),
                "between 100ms and 5m",
            ),
        ] {
            if value < min || value > max {
                problems.push(ConfigProblem::new(
                    join(path, key),
                    format!("is {value:?} but must be {human}"),
                ));
            }
        }
        if self.retry_max_interval.get() < self.retry_initial_interval.get() {
            problems.push(ConfigProblem::new(
                join(path, "retry-max-interval"),
                "must not be shorter than retry-initial-interval",
            ));
        }
        if !(1..=100_000).contains(&self.max_rules) {
            problems.push(ConfigProblem::new(
                join(path, "max-rules"),
                format!("is {} but must be between 1 and 100000", self.max_rules),
            ));
        }
    }
}

/// Checks `[[alert-channels]]` (under `path`).
pub fn validate_channels(
    channels: &[ChannelConfig],
    path: &str,
    problems: &mut Vec<ConfigProblem>,
) {
    if channels.len() > MAX_CHANNELS {
        problems.push(ConfigProblem::new(
            path,
            format!("lists {} channels; at most {MAX_CHANNELS}", channels.len()),
        ));
    }
    let mut names = std::collections::HashSet::new();
    for (index, channel) in channels.iter().enumerate() {
        let here = format!("{path}[{index}]");
        if !sluice_stream::sql::is_valid_name(&channel.name) {
            problems.push(ConfigProblem::new(
                join(&here, "name"),
                format!(
                    "{:?} is not a valid name: use 1 to 64 lowercase letters, digits and _",
                    channel.name
                ),
            ));
        } else if !names.insert(channel.name.as_str()) {
            problems.push(ConfigProblem::new(
                join(&here, "name"),
                format!("{:?} is listed twice", channel.name),
            ));
        }
        match reqwest::Url::parse(&channel.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            Ok(_) => problems.push(ConfigProblem::new(
                join(&here, "url"),
                format!(
                    "{:?} must be an http:// or https:// URL with a host",
                    channel.url
                ),
            )),
            Err(error) => problems.push(ConfigProblem::new(
                join(&here, "url"),
                format!(
                    "{:?} is not a URL ({error}); e.g. https://hooks.example.com/sluice",
                    channel.url
                ),
            )),
        }
        if channel.secret.len() > 4096 {
            problems.push(ConfigProblem::new(
                join(&here, "secret"),
                "is longer than 4096 bytes",
            ));
        }
    }
}
