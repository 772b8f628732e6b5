//! Prints IDs from a Floe server, one per line.
//!
//! ```text
//! cargo run -p floe-client --example get_ids -- [--count N] [--segment TAG] [--prefetch] ADDR...
//! cargo run -p floe-client --example get_ids -- --count 5 127.0.0.1:3778 127.0.0.1:3779
//! ```
//!
//! With several addresses the client fails over between them; with `--prefetch` IDs come from
//! a local buffer refilled in the background.

use std::process::ExitCode;

use floe_client::{ClientBuilder, Prefetch};

/// The command line.
struct Args {
    /// How many IDs to print.
    count: usize,
    /// Segment tag; snowflake IDs without it.
    segment: Option<String>,
    /// Serve IDs from a local prefetch buffer.
    prefetch: bool,
    /// Server addresses, in failover order.
    servers: Vec<String>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        count: 10,
        segment: None,
        prefetch: false,
        servers: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--count" => {
                let value = it.next().ok_or("--count needs a number")?;
                args.count = value.parse().map_err(|e| format!("--count {value}: {e}"))?;
            }
            "--segment" => args.segment = Some(it.next().ok_or("--segment needs a tag")?),
            "--prefetch" => args.prefetch = true,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ => args.servers.push(arg),
        }
    }
    if args.servers.is_empty() {
        return Err("give at least one server address, e.g. 127.0.0.1:3778".into());
    }
    Ok(args)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!(
                "get_ids: {e}\nusage: get_ids [--count N] [--segment TAG] [--prefetch] ADDR..."
            );
            return ExitCode::from(64);
        }
    };
    let mut builder = ClientBuilder::new(args.servers);
    if args.prefetch {
        builder = builder
            .snowflake_prefetch(Prefetch::default())
            .segment_prefetch(Prefetch::default());
    }
    let client = match builder.build() {
        Ok(client) => client,
        Err(e) => {
            eprintln!("get_ids: {e}");
            return ExitCode::from(64);
        }
    };
    let segment = args.segment.map(|tag| client.segment(&tag));
    for _ in 0..args.count {
        let id = match &segment {
            Some(handle) => handle.next_id().await,
            None => client.next_id().await,
        };
        match id {
            Ok(id) => println!("{id}"),
            Err(e) => {
                eprintln!("get_ids: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
