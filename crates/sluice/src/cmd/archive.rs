//! `sluice archive forget --tenant T --user U`: removes a user's events from the raw event
//! archive (`[archive]` of the config: its directory or S3 bucket), rewriting each file of the
//! tenant that holds some and deleting those that held only theirs; prints what it changed.
//! Erase the id first (`sluice users erase`), so the archiver skips the user's events still in
//! the log; see `sluice_archive::forget` for running it beside a server.

use crate::config::ConfigArgs;
use crate::{UserError, log_tools, telemetry};
use clap::{Args, Subcommand};
use sluice_api::admin::erasures::MAX_ID_BYTES;
use sluice_archive::forget::forget;
use sluice_archive::target::Target;

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Remove a user's events (by user id or anonymous id) from a tenant's archive files.
    Forget(ForgetArgs),
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// The user id or anonymous id whose events are removed.
    #[arg(long)]
    user: String,
    #[command(flatten)]
    config: ConfigArgs,
}

impl ArchiveCommand {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            ArchiveCommand::Forget(args) => run_forget(args),
        }
    }
}

fn run_forget(args: ForgetArgs) -> anyhow::Result<()> {
    let config = args
        .config
        .load(&[])
        .map_err(|error| UserError(error.to_string().trim_end().to_owned()))?;
    telemetry::init_logs(&config.telemetry);
    sluice_core::tenant::check_tenant_name(&args.tenant)
        .map_err(|error| UserError(format!("--tenant {:?}: {error}", args.tenant)))?;
    if args.user.is_empty() || args.user.len() > MAX_ID_BYTES {
        return Err(UserError(format!(
            "--user must be a user id or anonymous id of 1 to {MAX_ID_BYTES} bytes"
        ))
        .into());
    }
    let location = config.archive.location(&config.data_dir);
    log_tools::runtime()?.block_on(async move {
        let target = Target::open(&location).map_err(|error| UserError(error.to_string()))?;
        let grace = sluice_archive::compact::LEASE_GRACE;
        // The events' archive, then each derived stream's (`streams/<name>/`).
        let mut parts = vec![(String::new(), target.clone())];
        let streams = target
            .list_dirs("streams/")
            .await
            .map_err(|error| UserError(format!("listing the archived streams: {error}")))?;
        for stream in streams {
            let prefix = format!("streams/{stream}/");
            parts.push((prefix.clone(), target.under(&prefix)));
        }
        let (mut removed, mut changed, mut scanned) = (0, 0, 0);
        for (prefix, part) in parts {
            let forgotten = forget(&part, &args.tenant, &args.user, grace)
                .await
                .map_err(|error| UserError(format!("forgetting in the archive: {error}")))?;
            for file in &forgotten.changed {
                if file.deleted {
                    println!(
                        "deleted {prefix}{}: all {} rows were the user's",
                        file.name, file.rows
                    );
                } else {
                    println!(
                        "rewrote {prefix}{}: {} of {} rows removed",
                        file.name, file.removed, file.rows
                    );
                }
            }
            for name in &forgotten.skipped {
                println!(
                    "skipped {prefix}{name}: it is staged, not published yet; run forget again once it is (within archive.roll-age, or at the server's next start)"
                );
            }
            removed += forgotten.removed();
            changed += forgotten.changed.len();
            scanned += forgotten.scanned;
        }
        println!(
            "{} of tenant {}: {removed} rows removed from {changed} of {scanned} files in the archive at {location}",
            args.user, args.tenant
        );
        Ok(())
    })
}
