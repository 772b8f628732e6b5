//! `floe gen`: IDs from a local generator, safe across runs through the high-water file.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use floe_core::{parse_identity_pairs, Generator, GeneratorConfig, SystemClock};
use floe_store::FileHighWater;

use crate::cli::{self, Failure};

/// Options of `floe gen`.
#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// How many IDs to print.
    #[arg(short = 'n', long, default_value_t = 1)]
    count: u64,
    /// Layout preset or spec string (see `floe layout --help`).
    #[arg(long, short, default_value = "genid", env = "FLOE_LAYOUT")]
    layout: String,
    /// Node identity as name=value pairs, e.g. `zone=1,dc=2,machine=3` or `worker=7`.
    #[arg(long, short, default_value = "", env = "FLOE_IDENTITY")]
    identity: String,
    /// Directory of the high-water file that keeps runs from repeating IDs.
    #[arg(long, default_value = "./data", env = "FLOE_DATA_DIR")]
    data_dir: PathBuf,
}

/// `floe gen`.
pub fn run(args: GenArgs) -> Result<(), Failure> {
    let layout = cli::layout(&args.layout)?;
    let pairs = parse_identity_pairs(&args.identity)
        .map_err(|e| Failure::usage(format!("--identity: {e}")))?;
    let identity = layout
        .identity(&pairs)
        .map_err(|e| Failure::usage(format!("--identity: {e}")))?;
    let hw = FileHighWater::open(&args.data_dir)
        .map_err(|e| Failure::runtime(format!("--data-dir: {e}")))?;
    // One caller, so one lane: GenID's bucket bits join the counter (2^21 IDs per second).
    let config = GeneratorConfig {
        lanes: 1,
        ..GeneratorConfig::default()
    };
    let g = Generator::new(layout, identity, config, SystemClock, Box::new(hw))
        .map_err(|e| Failure::usage(e.to_string()))?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut left = args.count;
    let mut line = Vec::with_capacity(24);
    while left > 0 {
        let n = left.min(g.max_batch()).min(65_536);
        let r = g
            .reserve(0, n)
            .map_err(|e| Failure::runtime(e.to_string()))?;
        for id in r.iter() {
            line.clear();
            let _ = writeln!(line, "{id}");
            if out.write_all(&line).is_err() {
                left = 0; // the reader went away (e.g. `| head`): stop quietly
                break;
            }
        }
        left = left.saturating_sub(n);
    }
    let _ = out.flush();
    // Lowers the mark to the last issued tick, so the next run starts right after it.
    g.shutdown().map_err(|e| Failure::runtime(e.to_string()))
}
