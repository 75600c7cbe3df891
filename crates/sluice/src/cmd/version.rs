//! `sluice version`.

pub fn run() -> anyhow::Result<()> {
    println!("sluice {}", env!("CARGO_PKG_VERSION"));
    Ok(())
}
