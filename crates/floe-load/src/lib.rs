//! `floe load`: drives Floe's binary TCP (v1, v2) or HTTP API from many connections, measures throughput and
//! per-request latency, and checks every ID it receives for duplicates.
//!
//! The numbers are meant for the project's benchmarks, so the tool stays cheap on the machine it shares with the
//! server: one task per connection, buffers reused, one `Instant::now()` per write and per read rather than per
//! request, and the duplicate check deferred to the end of the run.
//!
//! [`run`] is the library entry the binary, tests and benchmarks share; [`main`] is `floe load` itself. Errors that
//! stop a run before it starts are [`LoadError`]s; everything that goes wrong during a run (error replies, timeouts,
//! dropped connections, duplicates) is counted in the [`Report`] instead, so one bad connection does not hide what
//! the others measured.

#![warn(missing_docs)]

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::task::JoinSet;

mod args;
mod check;
mod http;
mod pace;
mod report;
mod schedule;
mod tcp;

pub use args::{LoadArgs, Mode, Plan, Protocol};
pub use report::{DuplicateCheck, Errors, Latency, OrderCheck, Report, StopReason};

use report::ConnStats;
use schedule::Schedule;

/// sysexits' EX_USAGE: a bad option, the same code the rest of `floe` uses for bad input.
pub const EX_USAGE: u8 = 64;

/// Connections opened at once while setting up, so a run with thousands of them does not overflow the server's
/// accept backlog and turn into SYN retries that look like a slow server.
const CONNECT_CONCURRENCY: usize = 256;

/// Why a run could not start; problems during a run are counted in the [`Report`] instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// An option is missing, out of range or conflicts with another one.
    #[error("{option}: {message}")]
    Option {
        /// The command-line option at fault, e.g. `--batch`.
        option: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },

    /// A connection could not be opened; the run does not start with fewer connections than asked.
    #[error("cannot connect to {addr}: {source}{hint}")]
    Connect {
        /// The target.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
        /// What to do about it, when the error says.
        hint: &'static str,
    },

    /// Opening a connection took longer than `--timeout`.
    #[error("connecting to {addr} took longer than --timeout {timeout:?}; is the server overloaded or stopped?")]
    ConnectTimeout {
        /// The target.
        addr: SocketAddr,
        /// The limit that ran out.
        timeout: Duration,
    },

    /// The tokio runtime could not be built (threads or the I/O driver could not be created).
    #[error("cannot start the async runtime with {threads} threads: {source}")]
    Runtime {
        /// Worker threads asked for.
        threads: usize,
        /// What the operating system said.
        source: io::Error,
    },

    /// A connection task panicked; a bug in this tool.
    #[error("a connection task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl LoadError {
    /// The process exit code for this error: 64 for bad options, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            LoadError::Option { .. } => EX_USAGE,
            _ => 1,
        }
    }
}

/// Runs the load `plan` describes against its target and reports what happened.
///
/// All connections are opened before the clock starts, so connection setup is not measured. Runs on the caller's
/// tokio runtime; the duplicate check at the end runs on a blocking thread.
pub async fn run(plan: Plan) -> Result<Report, LoadError> {
    plan.validate()?;
    let streams = connect_all(plan.target, plan.connections, plan.timeout).await?;
    let plan = Arc::new(plan);
    let schedule = Arc::new(Schedule::new(Instant::now(), &plan));
    let mut tasks = JoinSet::new();
    for stream in streams {
        let plan = Arc::clone(&plan);
        let schedule = Arc::clone(&schedule);
        tasks.spawn(async move {
            let mut stats = ConnStats::new(&plan, schedule.measure_start());
            match plan.protocol {
                Protocol::V1 | Protocol::V2 => {
                    tcp::drive(stream, &plan, &schedule, &mut stats).await
                }
                Protocol::Http => http::drive(stream, &plan, &schedule, &mut stats).await,
            }
            stats
        });
    }
    let mut conns = Vec::with_capacity(tasks.len());
    while let Some(stats) = tasks.join_next().await {
        conns.push(stats?);
    }
    // Sorting up to hundreds of millions of IDs would stall a runtime worker for seconds.
    let report =
        tokio::task::spawn_blocking(move || Report::build(&plan, &schedule, conns)).await?;
    Ok(report)
}

/// Opens `count` connections to `addr`, a bounded number at a time, with Nagle off so pipelined requests leave at
/// once.
async fn connect_all(
    addr: SocketAddr,
    count: u32,
    timeout: Duration,
) -> Result<Vec<TcpStream>, LoadError> {
    let count = count as usize;
    let mut streams = Vec::with_capacity(count);
    while streams.len() < count {
        let mut wave = JoinSet::new();
        for _ in 0..CONNECT_CONCURRENCY.min(count - streams.len()) {
            wave.spawn(connect(addr, timeout));
        }
        while let Some(stream) = wave.join_next().await {
            streams.push(stream??);
        }
    }
    Ok(streams)
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, LoadError> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| LoadError::ConnectTimeout { addr, timeout })?
        .map_err(|source| connect_error(addr, source))?;
    stream
        .set_nodelay(true)
        .map_err(|source| connect_error(addr, source))?;
    Ok(stream)
}

fn connect_error(addr: SocketAddr, source: io::Error) -> LoadError {
    // EMFILE: every connection is a file descriptor.
    let hint = if source.raw_os_error() == Some(24) {
        "; raise the open-file limit (ulimit -n) or use fewer --connections"
    } else if source.kind() == io::ErrorKind::ConnectionRefused {
        "; is the server running and listening there?"
    } else {
        ""
    };
    LoadError::Connect { addr, source, hint }
}

/// `floe load`: validates the options, runs on a runtime of `--threads` workers, prints the report and turns it
/// into the exit code (0 pass, 1 duplicates, order violations or errors, 64 bad options).
pub fn main(args: LoadArgs) -> ExitCode {
    let plan = match args.plan() {
        Ok(plan) => plan,
        Err(e) => return fail(&e),
    };
    let threads = match args.threads() {
        Ok(threads) => threads,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(source) => return fail(&LoadError::Runtime { threads, source }),
    };
    eprintln!("floe load: {} on {threads} threads", plan.summary());
    match runtime.block_on(run(plan)) {
        Ok(report) => {
            if args.json() {
                // Serializing plain numbers and strings cannot fail.
                println!("{}", serde_json::to_string_pretty(&report).unwrap());
            } else {
                print!("{report}");
            }
            ExitCode::from(report.exit_code())
        }
        Err(e) => fail(&e),
    }
}

fn fail(e: &LoadError) -> ExitCode {
    eprintln!("floe load: {e}");
    ExitCode::from(e.exit_code())
}
