//! `sluice alerts list [--state S] [--history] [--format table|json]`: a running sluice's alert
//! instances and their states (`GET /v1/alerts`), or its recent notifications
//! (`GET /v1/alerts/history`), with a read key. `sluice alerts test CHANNEL --key KEY`: sends a
//! test notification to a channel now (`POST /v1/alerts/channels/CHANNEL/test`) with the
//! tenant's alerts key (or an admin key and `--tenant`; `$SLUICE_ALERTS_KEY` by default), and
//! says what the receiver answered. `sluice alerts create SQL [--channel NAME]…` and `sluice
//! alerts delete NAME` store and delete a rule with the same keys.

use super::query::{encode, table};
use crate::client::{ReadTarget, call_json};
use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use hyper::Method;
use serde_json::Value;
use sluice_core::time::format_millis;

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Alert instances and their states (or, with --history, the recent notifications).
    List(ListArgs),
    /// Send a test notification to a channel and report the receiver's answer.
    Test(TestArgs),
    /// Create or replace an alert rule (`CREATE ALERT …`).
    Create(CreateArgs),
    /// Delete an alert rule made through the API.
    Delete(DeleteArgs),
}

/// The flags of the commands that change a tenant's alerts.
#[derive(Debug, Args)]
pub struct ManageTarget {
    /// The tenant's alerts key, or an admin key with --tenant.
    #[arg(long, env = "SLUICE_ALERTS_KEY", hide_env_values = true)]
    key: String,
    /// The tenant, with an admin key.
    #[arg(long)]
    tenant: Option<String>,
    /// sluice's base URL (default: http:// + the configured `server.listen`).
    #[arg(long)]
    url: Option<String>,
    #[command(flatten)]
    config: crate::config::ConfigArgs,
}

impl ManageTarget {
    /// Calls `path` (with `?tenant=` for an admin key).
    fn call(&self, method: Method, path: &str, body: Bytes) -> anyhow::Result<Value> {
        let (_, target) = crate::client::locate(&self.config, self.url.as_deref())?;
        let path = match &self.tenant {
            Some(tenant) => format!("{path}?tenant={}", encode(tenant)),
            None => path.to_owned(),
        };
        call_json(&target, method, &path, &self.key, body)
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// `CREATE ALERT name ON metric … WHEN …`.
    sql: String,
    /// A channel to notify (repeat for several).
    #[arg(long = "channel", value_name = "NAME")]
    channels: Vec<String>,
    #[command(flatten)]
    target: ManageTarget,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The rule's name.
    name: String,
    #[command(flatten)]
    target: ManageTarget,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only instances in this state: ok, pending, firing, resolved (with --history: pending,
    /// delivered, dead, silenced).
    #[arg(long)]
    state: Option<String>,
    /// The recent notifications instead, newest first.
    #[arg(long)]
    history: bool,
    /// Output: an aligned table, or the API's JSON answer as one line.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    target: ReadTarget,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The channel (`[[alert-channels]]` name).
    channel: String,
    #[command(flatten)]
    target: ManageTarget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

impl AlertsCommand {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            AlertsCommand::List(args) => list(args),
            AlertsCommand::Test(args) => test(args),
            AlertsCommand::Create(args) => {
                let body = serde_json::json!({"sql": args.sql, "channels": args.channels});
                let rule = args.target.call(
                    Method::POST,
                    "/v1/alerts/rules",
                    Bytes::from(body.to_string()),
                )?;
                println!(
                    "rule {} on {} stored (id {})",
                    rule["name"].as_str().unwrap_or("?"),
                    rule["metric"].as_str().unwrap_or("?"),
                    rule["id"]
                );
                Ok(())
            }
            AlertsCommand::Delete(args) => {
                let path = format!("/v1/alerts/rules/{}", encode(&args.name));
                args.target.call(Method::DELETE, &path, Bytes::new())?;
                println!("rule {} deleted", args.name);
                Ok(())
            }
        }
    }
}

fn list(args: ListArgs) -> anyhow::Result<()> {
    let (target, key) = args.target.resolve()?;
    let base = if args.history {
        "/v1/alerts/history"
    } else {
        "/v1/alerts"
    };
    let path = match &args.state {
        Some(state) => format!("{base}?state={}", encode(state)),
        None => base.to_owned(),
    };
    let answer = call_json(&target, Method::GET, &path, &key, Bytes::new())?;
    match (args.format, args.history) {
        (Format::Json, _) => println!("{answer}"),
        (Format::Table, false) => print!("{}", states_table(&answer)),
        (Format::Table, true) => print!("{}", history_table(&answer)),
    }
    Ok(())
}

fn test(args: TestArgs) -> anyhow::Result<()> {
    let path = format!("/v1/alerts/channels/{}/test", encode(&args.channel));
    let answer = args.target.call(Method::POST, &path, Bytes::new())?;
    println!(
        "delivered to {}: notification {}",
        args.channel,
        answer["id"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// `k=v, …` of a key object.
fn key_text(key: &Value) -> String {
    match key {
        Value::Object(fields) if !fields.is_empty() => fields
            .iter()
            .map(|(name, value)| match value {
                Value::String(text) => format!("{name}={text}"),
                other => format!("{name}={other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => "(all)".to_owned(),
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn states_table(answer: &Value) -> String {
    let rows: Vec<Vec<String>> = answer["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|alert| {
            vec![
                cell(&alert["tenant"]),
                cell(&alert["rule"]),
                cell(&alert["metric"]),
                key_text(&alert["key"]),
                cell(&alert["state"]),
                cell(&alert["severity"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        let rules = answer["rules"].as_array().map_or(0, Vec::len);
        return format!("no alert instances ({rules} rules)\n");
    }
    let header = ["tenant", "rule", "metric", "key", "state", "severity"].map(String::from);
    table(&header, &rows)
}

fn history_table(answer: &Value) -> String {
    let rows: Vec<Vec<String>> = answer["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            vec![
                row["created_at"]
                    .as_i64()
                    .map(format_millis)
                    .unwrap_or_default(),
                cell(&row["rule"]),
                key_text(&row["notification"]["key"]),
                cell(&row["status"]),
                cell(&row["channel"]),
                cell(&row["state"]),
                cell(&row["attempts"]),
                cell(&row["last_error"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no notifications\n".to_owned();
    }
    let header = [
        "created",
        "rule",
        "key",
        "status",
        "channel",
        "delivery",
        "attempts",
        "last error",
    ]
    .map(String::from);
    table(&header, &rows)
}
