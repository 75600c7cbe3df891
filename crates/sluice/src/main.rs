//! The `sluice` command. Everything lives in the library; see `lib.rs`.

use clap::Parser;

// mimalloc: per-thread free lists instead of glibc's locked arenas, which showed up as futex
// contention in the collector's profile (many small allocations across tokio workers).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
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
