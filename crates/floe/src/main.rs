//! The `floe` command: parse the command line and dispatch. Each subcommand lives in its own
//! module or crate; this file only wires them.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;
mod gen;
mod inspect;
mod leaf;

/// Floe hands out unique 64-bit IDs: snowflake and segment modes, GenID-compatible TCP, HTTP.
#[derive(Debug, Parser)]
#[command(name = "floe", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the ID service (binary TCP on 3778, HTTP on 8880).
    Serve(floe_server::ServeArgs),
    /// Print IDs from a local generator, one per line.
    Gen(gen::GenArgs),
    /// Take an ID apart: its time and every field of the layout.
    Decode(inspect::DecodeArgs),
    /// Show a layout's fields, capacity and the date its time field runs out.
    Layout(inspect::LayoutArgs),
    /// Drive load against a running Floe and check every ID for duplicates.
    Load(floe_load::LoadArgs),
    /// Meituan Leaf's worker-id nodes in ZooKeeper: list them, reclaim the idle ones for Floe.
    Leaf(leaf::LeafArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve(args) => floe_server::serve_main(args),
        Command::Load(args) => floe_load::main(args),
        Command::Gen(args) => cli::finish(gen::run(args)),
        Command::Decode(args) => cli::finish(inspect::decode(args)),
        Command::Layout(args) => cli::finish(inspect::layout(args)),
        Command::Leaf(args) => cli::finish(leaf::run(args)),
    }
}
