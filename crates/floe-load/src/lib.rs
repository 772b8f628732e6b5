//! Placeholder until the load tool lands.

use std::process::ExitCode;

/// Options of `floe load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {}

/// Entry point of `floe load`.
pub fn main(_args: LoadArgs) -> ExitCode {
    eprintln!("floe load: not built yet");
    ExitCode::from(70)
}
