//! Placeholder until the server lands.

use std::process::ExitCode;

/// Options of `floe serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

/// Entry point of `floe serve`.
pub fn serve_main(_args: ServeArgs) -> ExitCode {
    eprintln!("floe serve: not built yet");
    ExitCode::from(70)
}
