//! `sluice log verify|repair`: check the file log on disk, and salvage what damage left of it.
//!
//! `verify` reads every segment of the chosen partitions without changing anything (beside a
//! running server too) and prints what is damaged; exit 2 when it finds anything. `repair` needs
//! the data directory to itself: it keeps every intact batch, moves damaged bytes to
//! `<log>/quarantine/`, records the offsets lost as gaps (and a cut tail as a new epoch), and
//! prints exactly what was lost. The logic lives in `sluice_log::file::repair`.

use crate::config::{Config, ConfigArgs};
use crate::data_dir::{self, DataDirLock};
use crate::log_tools::user_or_internal;
use crate::{UserError, telemetry};
use clap::{Args, Subcommand};
use sluice_log::LogError;
use sluice_log::config::LogLocation;
use sluice_log::file::repair::{
    self, PartitionCheck, PartitionRepair, Problem, Selection, lost_offsets,
};
use std::fmt::Write as _;
use std::ops::Range;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct LogArgs {
    #[command(subcommand)]
    action: LogAction,
}

#[derive(Debug, Subcommand)]
enum LogAction {
    /// Check every segment (batches, checksums, offsets, indexes) without changing anything;
    /// exit 2 when damage is found.
    Verify(Target),
    /// Salvage damaged segments (needs sluice stopped): keep every intact batch, quarantine the
    /// damaged bytes, record and print what was lost.
    Repair(Target),
}

#[derive(Debug, Args)]
struct Target {
    #[command(flatten)]
    config: ConfigArgs,
    /// Only this topic (default: every topic).
    #[arg(long)]
    topic: Option<String>,
    /// Only this partition (default: every partition).
    #[arg(long, short)]
    partition: Option<u32>,
}

pub fn run(args: LogArgs) -> anyhow::Result<()> {
    let (LogAction::Verify(target) | LogAction::Repair(target)) = &args.action;
    let config = target
        .config
        .load(&[])
        .map_err(|error| UserError(error.to_string().trim_end().to_owned()))?;
    telemetry::init_logs(&config.telemetry);
    let selection = Selection {
        topic: target.topic.clone(),
        partition: target.partition,
    };
    let log_dir = log_dir(&config)?;
    match args.action {
        LogAction::Verify(_) => verify(&config, &log_dir, &selection),
        LogAction::Repair(_) => run_repair(&config, &log_dir, &selection),
    }
}

/// The file log's directory, which must hold a log.
fn log_dir(config: &Config) -> anyhow::Result<PathBuf> {
    let dir = match config.log.location(&config.data_dir).map_err(UserError)? {
        LogLocation::File(dir) => dir,
        LogLocation::Kafka(brokers) => {
            return Err(UserError(format!(
                "log.url names Kafka brokers ({brokers}): `sluice log verify` and `repair` check the built-in file log; Kafka keeps and replicates its own"
            ))
            .into());
        }
    };
    if !dir.join("topics").is_dir() {
        return Err(UserError(format!(
            "there is no log in {}; point --data-dir (or data-dir in the config) at the one sluice serve uses",
            dir.display()
        ))
        .into());
    }
    Ok(dir)
}

/// The data directory's lock when no server holds it.
fn lock_if_free(config: &Config) -> anyhow::Result<Option<DataDirLock>> {
    if !config.data_dir.is_dir() {
        // The log lives elsewhere (`file://…`); its own lock decides.
        return Ok(None);
    }
    Ok(data_dir::lock_if_free(&config.data_dir)?)
}

fn verify(config: &Config, log_dir: &std::path::Path, selection: &Selection) -> anyhow::Result<()> {
    // Held while checking, so that no server starts (and recovers the log) meanwhile.
    let lock = lock_if_free(config)?;
    let writer_running = lock.is_none() && config.data_dir.is_dir();
    let checks = repair::verify(log_dir, &config.log, selection, writer_running)
        .map_err(user_or_internal)?;
    print!("{}", verify_text(&checks));
    let damaged = checks.iter().filter(|c| !c.problems.is_empty()).count();
    if damaged > 0 {
        return Err(UserError(format!(
            "damage found in {damaged} of {} partitions; stop sluice and run `sluice log repair` to keep every intact batch and record what was lost",
            checks.len()
        ))
        .into());
    }
    Ok(())
}

fn run_repair(
    config: &Config,
    log_dir: &std::path::Path,
    selection: &Selection,
) -> anyhow::Result<()> {
    let in_use = || {
        UserError(format!(
            "the log in {} is in use by a running sluice (`sluice serve`?); stop it, then run `sluice log repair` again",
            log_dir.display()
        ))
    };
    let _lock = match lock_if_free(config)? {
        Some(lock) => Some(lock),
        None if config.data_dir.is_dir() => return Err(in_use().into()),
        None => None,
    };
    let repaired = match repair::repair(log_dir, &config.log, selection) {
        Ok(repaired) => repaired,
        Err(LogError::Locked { .. }) => return Err(in_use().into()),
        Err(error) => return Err(user_or_internal(error)),
    };
    print!("{}", repair_text(&repaired));
    Ok(())
}

fn verify_text(checks: &[PartitionCheck]) -> String {
    let mut out = String::new();
    for check in checks {
        let state = if check.problems.is_empty() {
            "ok"
        } else {
            "DAMAGED"
        };
        let _ = writeln!(
            out,
            "{}/{}: {state}: {} segments, offsets {}..{}",
            check.topic, check.partition, check.segments, check.start_offset, check.end_offset
        );
        for problem in &check.problems {
            let _ = writeln!(out, "  {problem}");
            if let Problem::Damaged { damaged, .. } = problem
                && damaged.torn
            {
                let _ = writeln!(
                    out,
                    "    (an incomplete last batch, as a crash in the middle of a write leaves: the next start cuts it)"
                );
            }
        }
        if !check.gaps.is_empty() {
            let _ = writeln!(
                out,
                "  lost earlier (recorded gaps): {}",
                ranges_text(&check.gaps)
            );
        }
        if check.epochs.len() > 1 {
            let epochs: Vec<String> = check
                .epochs
                .iter()
                .map(|e| format!("{} from {}", e.epoch, e.start_offset))
                .collect();
            let _ = writeln!(out, "  epochs: {}", epochs.join(", "));
        }
    }
    let damaged = checks.iter().filter(|c| !c.problems.is_empty()).count();
    let _ = writeln!(
        out,
        "checked {} partitions: {}",
        checks.len(),
        if damaged == 0 {
            "no damage".to_owned()
        } else {
            format!("{damaged} damaged")
        }
    );
    out
}

fn repair_text(repaired: &[PartitionRepair]) -> String {
    let mut out = String::new();
    let mut records = 0u64;
    let mut unknown = false;
    let mut bytes = 0u64;
    for done in repaired {
        let name = format!("{}/{}", done.topic, done.partition);
        if done.is_untouched() {
            let _ = writeln!(out, "{name}: nothing to repair");
            continue;
        }
        let _ = writeln!(out, "{name}: repaired");
        for salvaged in &done.salvaged {
            for loss in &salvaged.losses {
                let stretch = &loss.damaged;
                let len = stretch.bytes.end - stretch.bytes.start;
                if loss.quarantined.is_some() {
                    bytes += len;
                }
                match loss.records() {
                    Some(lost) => records += lost,
                    None => unknown = true,
                }
                let _ = writeln!(
                    out,
                    "  {}: bytes {}..{} ({len} bytes) of {}: {}",
                    lost_offsets(stretch.first_offset, stretch.end_offset),
                    stretch.bytes.start,
                    stretch.bytes.end,
                    loss.segment.display(),
                    stretch.reason
                );
                match &loss.quarantined {
                    Some(path) => {
                        let _ = writeln!(out, "    damaged bytes kept in {}", path.display());
                    }
                    None => {
                        let _ = writeln!(out, "    an incomplete last batch: cut, not kept");
                    }
                }
            }
            for created in &salvaged.created {
                let _ = writeln!(
                    out,
                    "  intact batches after the damage kept in {}",
                    created.display()
                );
            }
            if let Some(epoch) = salvaged.epoch {
                let _ = writeln!(
                    out,
                    "  the end moved back: epoch {} starts at offset {}",
                    epoch.epoch, epoch.start_offset
                );
            }
        }
        if !done.missing.is_empty() {
            records += done.missing.iter().map(|r| r.end - r.start).sum::<u64>();
            let _ = writeln!(
                out,
                "  offsets in no segment file, recorded as lost: {}",
                ranges_text(&done.missing)
            );
        }
        for index in &done.indexes {
            let _ = writeln!(out, "  index rewritten: {}", index.display());
        }
        for (path, kept) in &done.rebuilt {
            let _ = writeln!(
                out,
                "  {} was damaged: rebuilt (the damaged copy is {})",
                path.display(),
                kept.display()
            );
        }
    }
    let touched = repaired.iter().filter(|d| !d.is_untouched()).count();
    let _ = writeln!(
        out,
        "repaired {touched} of {} partitions: {records} records lost{}, {bytes} damaged bytes quarantined",
        repaired.len(),
        if unknown {
            " (and an unknown number in cut tails)"
        } else {
            ""
        }
    );
    out
}

fn ranges_text(ranges: &[Range<u64>]) -> String {
    let parts: Vec<String> = ranges
        .iter()
        .map(|r| format!("{}..{} ({} records)", r.start, r.end, r.end - r.start))
        .collect();
    parts.join(", ")
}
