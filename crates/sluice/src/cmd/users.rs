//! `sluice users erase ID --tenant T`: erases a user through a running sluice's admin API
//! (`DELETE /v1/users/{id}`): their future events are dropped at the collector, and what the log
//! still holds is printed. `sluice users erased [--tenant T]` lists the erased ids.

use super::query::encode;
use crate::client::call_json;
use bytes::Bytes;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::Value;
use sluice_core::time::format_millis;

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Erase a user: their future events are dropped; prints what the log still holds.
    Erase(EraseArgs),
    /// List the erased ids.
    Erased(ErasedArgs),
}

/// Where and with which key.
#[derive(Debug, Args)]
pub struct AdminTarget {
    /// An admin key (default: $SLUICE_ADMIN_KEY, else the config's first).
    #[arg(long, env = "SLUICE_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// sluice's base URL (default: http:// + the configured `server.listen`).
    #[arg(long)]
    url: Option<String>,
    #[command(flatten)]
    config: crate::config::ConfigArgs,
}

impl AdminTarget {
    fn call(&self, method: Method, path: &str) -> anyhow::Result<Value> {
        let (config, target) = crate::client::locate(&self.config, self.url.as_deref())?;
        let key = self
            .admin_key
            .clone()
            .or_else(|| config.admin_keys.first().cloned())
            .ok_or_else(|| {
                crate::UserError(
                    "an admin key is needed: --admin-key KEY, $SLUICE_ADMIN_KEY, or admin-keys in the config".into(),
                )
            })?;
        call_json(&target, method, path, &key, Bytes::new())
    }
}

#[derive(Debug, Args)]
pub struct EraseArgs {
    /// The user id or anonymous id.
    id: String,
    /// The tenant it belongs to.
    #[arg(long)]
    tenant: String,
    #[command(flatten)]
    target: AdminTarget,
}

#[derive(Debug, Args)]
pub struct ErasedArgs {
    /// Only this tenant's.
    #[arg(long)]
    tenant: Option<String>,
    #[command(flatten)]
    target: AdminTarget,
}

impl UsersCommand {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            UsersCommand::Erase(args) => {
                let path = format!(
                    "/v1/users/{}?tenant={}",
                    encode(&args.id),
                    encode(&args.tenant)
                );
                let erased = args.target.call(Method::DELETE, &path)?;
                let at = erased["erased_at"].as_i64().map(format_millis);
                println!(
                    "{} of tenant {} {} {}: their events are dropped from then on",
                    args.id,
                    args.tenant,
                    if erased["already_erased"] == true {
                        "was erased already at"
                    } else {
                        "erased at"
                    },
                    at.as_deref().unwrap_or("?")
                );
                if let Some(note) = erased["remaining"]["note"].as_str() {
                    println!("{note}");
                }
                if let Some(by) = erased["remaining"]["removed_by"].as_i64() {
                    println!("gone from the log by {}", format_millis(by));
                }
                if let Some(archive) = erased["remaining"]["archive"].as_str() {
                    println!("{archive}");
                }
                Ok(())
            }
            UsersCommand::Erased(args) => {
                let path = match &args.tenant {
                    Some(tenant) => format!("/v1/admin/erasures?tenant={}", encode(tenant)),
                    None => "/v1/admin/erasures".to_owned(),
                };
                let list = args.target.call(Method::GET, &path)?;
                for erasure in list["erasures"].as_array().into_iter().flatten() {
                    println!(
                        "{}\t{}\t{}",
                        erasure["tenant"].as_str().unwrap_or("?"),
                        erasure["id"].as_str().unwrap_or("?"),
                        erasure["erased_at"]
                            .as_i64()
                            .map(format_millis)
                            .unwrap_or_default()
                    );
                }
                Ok(())
            }
        }
    }
}
