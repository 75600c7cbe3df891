//! The `sluice` command. Everything lives in the library; see `lib.rs`.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = sluice::cmd::Cli::parse();
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(sluice::exit_code(&error))
        }
    }
}
