//! `sluice check-config FILE`: loads a file exactly as `serve` would (with the environment's
//! `SLUICE__…` overrides) and reports every problem at once.

use crate::UserError;
use crate::config::{self, LoadError};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The config file to check.
    file: PathBuf,
}

pub fn run(args: CheckConfigArgs) -> anyhow::Result<()> {
    match config::load(Some(&args.file), &[]) {
        Ok(config) => {
            println!(
                "{}: OK (listen {}, data dir {}, {} tenant{})",
                args.file.display(),
                config.server.listen,
                config.data_dir.display(),
                config.tenants.len(),
                if config.tenants.len() == 1 { "" } else { "s" }
            );
            Ok(())
        }
        Err(LoadError::Problems(problems)) => Err(UserError(
            format!("{}: {problems}", args.file.display())
                .trim_end()
                .to_owned(),
        )
        .into()),
        Err(error) => Err(UserError(error.to_string()).into()),
    }
}
