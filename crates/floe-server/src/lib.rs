//! Floe's network server: the program people run as `floe serve`.
//!
//! - [`config`]: TOML file + `FLOE_…` environment + flags (+ GenID's `config.json`) → [`Config`];
//! - [`run`]: the one entry point of the binary and the tests, mini-redis style: it takes
//!   already-bound [`Listeners`] and a shutdown future;
//! - binary TCP (GenID v1 + v2) and HTTP (native JSON, compatible routes, admin, metrics);
//! - [`serve_main`]: what `floe serve` does — config, logging, bind, one "listening" line on
//!   stdout, serve until SIGTERM/SIGINT;
//! - [`segment`]: segment mode, the buffered [`segment::SegmentService`] every segment route calls;
//! - [`numbers`]: business number sequences, the [`numbers::NumberService`] every number route calls.
//!
//! docs/protocol.md and docs/configuration.md describe the wire formats and every key.

#![warn(missing_docs)]

mod accept;
mod args;
mod backoff;
pub mod config;
mod console;
mod error;
mod fence;
mod http;
mod issue;
pub mod keeper;
mod lease;
mod limits;
mod logging;
mod metrics;
mod node;
pub mod numbers;
mod peers;
pub mod segment;
mod server;
mod tcp;
mod throttle;

use std::process::ExitCode;

pub use args::ServeArgs;
pub use config::{Config, ConfigError, LogConfig, LogFormat, LogLevel};
pub use error::ServerError;
pub use logging::init_logging;
pub use server::{run, Listeners, Server};

/// Entry point of `floe serve`: exit 0 after a graceful shutdown, 64 on a bad configuration,
/// 1 on any other failure.
pub fn serve_main(args: ServeArgs) -> ExitCode {
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let loaded = match config::load(&args, &env) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("floe: configuration error: {e}");
            return ExitCode::from(config::EX_USAGE);
        }
    };
    init_logging(&loaded.config.log);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = loaded.config.server.workers {
        builder.worker_threads(workers);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("floe: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        let config = loaded.config;
        let listeners = Listeners::bind(&config).await?;
        // Installed before the "listening" line, so a SIGTERM right after it is handled.
        let signals = signals::Signals::install()?;
        let server = Server::start(config, listeners).await?;
        println!(
            "floe: listening tcp={} http={}",
            server.tcp_addr(),
            server.http_addr()
        );
        server.serve(signals.recv()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floe: {}", floe_core::report(&e));
            ExitCode::from(e.exit_code())
        }
    }
}

mod signals {
    //! SIGTERM and SIGINT, registered eagerly (a lazily registered handler would leave a window
    //! in which the default action kills the process without a graceful shutdown).

    /// The registered signal streams.
    pub(crate) struct Signals {
        /// SIGTERM, from process managers.
        #[cfg(unix)]
        term: tokio::signal::unix::Signal,
        /// SIGINT, from a terminal.
        #[cfg(unix)]
        int: tokio::signal::unix::Signal,
    }

    impl Signals {
        /// Registers the handlers now.
        pub(crate) fn install() -> std::io::Result<Signals> {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                Ok(Signals {
                    term: signal(SignalKind::terminate())?,
                    int: signal(SignalKind::interrupt())?,
                })
            }
            #[cfg(not(unix))]
            Ok(Signals {})
        }

        /// Completes at the first SIGTERM or SIGINT.
        pub(crate) async fn recv(mut self) {
            #[cfg(unix)]
            tokio::select! {
                _ = self.term.recv() => tracing::info!("SIGTERM received"),
                _ = self.int.recv() => tracing::info!("SIGINT received"),
            }
            #[cfg(not(unix))]
            {
                let _ = &mut self;
                let _ = tokio::signal::ctrl_c().await;
                tracing::info!("Ctrl-C received");
            }
        }
    }
}
