//! What the local subcommands share: how errors map to exit codes, and the layout flag.

use std::process::ExitCode;

use floe_core::Layout;

/// sysexits' EX_USAGE: the input was wrong (bad id, unknown layout, out-of-range identity).
pub const EX_USAGE: u8 = 64;

/// A failed subcommand: the message for stderr and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// What went wrong, naming the input.
    pub message: String,
}

impl Failure {
    /// A usage error (exit 64).
    pub fn usage(message: impl std::fmt::Display) -> Self {
        Failure {
            code: EX_USAGE,
            message: message.to_string(),
        }
    }

    /// A run-time failure (exit 1).
    pub fn runtime(message: impl std::fmt::Display) -> Self {
        Failure {
            code: 1,
            message: message.to_string(),
        }
    }
}

/// Prints the failure, if any, and turns it into the exit code.
pub fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("floe: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Parses `--layout`, naming the flag in the error.
pub fn layout(text: &str) -> Result<Layout, Failure> {
    Layout::parse(text).map_err(|e| Failure::usage(format!("--layout: {e}")))
}
