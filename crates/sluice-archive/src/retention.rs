//! Retention of the archive, per tenant (`[archive] retention`, `tenant-retention`): an hour of
//! event time that ended longer ago than its tenant's retention is deleted whole — every file
//! of `events/tenant=<t>/date=<d>/hour=<h>/`, then the emptied directories (in S3, the objects
//! under that prefix). A sweep runs at the start and every [`SWEEP_INTERVAL`].
//!
//! Deleting published files is what retention is for, so the exactly-once protocol is not
//! involved: a batch published into an expired hour (late events) is deleted by the next
//! sweep. Sweeps of several nodes (each runs one) may delete the same hour at once; each
//! deletes what is still there. A sweep reads one listing per tenant, and one per expired
//! date.

use crate::config::ArchiveConfig;
use crate::layout::{DAY, HOUR, parse_hour_dir};
use crate::sink::ArchiveError;
use crate::target::Target;
use sluice_core::time::Millis;
use std::time::Duration;

/// How often expired hours are looked for.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(600);

/// What a sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Hour directories.
    pub hours: usize,
    /// Files in them.
    pub files: usize,
}

/// Deletes the hours every tenant's retention expired at `now`.
pub async fn sweep(
    target: &Target,
    config: &ArchiveConfig,
    now: Millis,
) -> Result<Swept, ArchiveError> {
    let mut swept = Swept::default();
    for (tenant, date_prefix, day) in target.dates().await? {
        let Some(retention) = config.retention_of(&tenant) else {
            continue;
        };
        let cutoff =
            now.saturating_sub(Millis::try_from(retention.as_millis()).unwrap_or(Millis::MAX));
        if day >= cutoff {
            continue;
        }
        let hours = target.list_dirs(&date_prefix).await?;
        if day + DAY <= cutoff {
            swept.files += target.remove_all(&date_prefix).await?;
            swept.hours += hours.len();
            continue;
        }
        for hour_dir in hours {
            let Some(hour) = parse_hour_dir(&hour_dir) else {
                continue;
            };
            if day + hour + HOUR <= cutoff {
                swept.files += target
                    .remove_all(&format!("{date_prefix}{hour_dir}/"))
                    .await?;
                swept.hours += 1;
            }
        }
    }
    Ok(swept)
}

/// Sweeps at once and then every [`SWEEP_INTERVAL`] until `cancel`.
pub(crate) async fn run(
    target: Target,
    config: ArchiveConfig,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        match sweep(&target, &config, sluice_core::time::now_millis()).await {
            Ok(swept) if swept.files > 0 || swept.hours > 0 => {
                metrics::counter!("sluice_archive_retention_files_deleted_total")
                    .increment(swept.files as u64);
                tracing::info!(
                    hours = swept.hours,
                    files = swept.files,
                    "deleted archived hours older than their tenant's archive retention"
                );
            }
            Ok(_) => {}
            Err(error) => {
                metrics::counter!("sluice_archive_errors_total").increment(1);
                tracing::error!(%error, retry_in = ?SWEEP_INTERVAL, "the archive's retention sweep failed");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(SWEEP_INTERVAL) => {}
            () = cancel.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests;
