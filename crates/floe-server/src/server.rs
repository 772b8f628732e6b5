//! Starting and stopping a node: listeners, the generator, the background high-water refresh,
//! and graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use floe_core::GenError;
use floe_store::FileHighWater;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinSet;
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::error::ServerError;
use crate::node::Node;
use crate::{console, http, lease, limits, logging, metrics, numbers, peers, segment, tcp};
use arc_swap::ArcSwap;

/// How often the high-water mark is extended ahead of need and the clock metrics refreshed;
/// well inside the default 2 s window, so the issuing path never writes the mark itself.
pub(crate) const MAINTENANCE_PERIOD: Duration = Duration::from_millis(250);

/// Pending connections the kernel queues for each listener; a burst of clients (a fleet
/// reconnecting after a deploy) should wait in the queue, not get SYN retries.
const BACKLOG: u32 = 1024;

/// The two bound listeners a node serves on. Binding is separate from running so tests bind
/// `127.0.0.1:0` and read the ports before the server starts.
#[derive(Debug)]
pub struct Listeners {
    /// Binary TCP (GenID v1 + v2).
    pub tcp: TcpListener,
    /// HTTP.
    pub http: TcpListener,
}

fn listen(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let bind = || -> io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // A restarted node must rebind at once, not wait out TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(BACKLOG)
    };
    bind().map_err(|source| ServerError::Bind { what, addr, source })
}

impl Listeners {
    /// Binds the configured `server.tcp_listen` and `server.http_listen`.
    pub async fn bind(config: &Config) -> Result<Listeners, ServerError> {
        Listeners::bind_to(config.server.tcp_listen, config.server.http_listen).await
    }

    /// Binds the given addresses (port 0 picks a free port).
    pub async fn bind_to(tcp: SocketAddr, http: SocketAddr) -> Result<Listeners, ServerError> {
        Ok(Listeners {
            tcp: listen("server.tcp_listen", tcp)?,
            http: listen("server.http_listen", http)?,
        })
    }

    /// The bound binary TCP address.
    pub fn tcp_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> io::Result<SocketAddr> {
        self.http.local_addr()
    }
}

/// A node that has checked its peers, opened its data directory and is ready to serve.
#[derive(Debug)]
pub struct Server {
    /// Shared state.
    node: Arc<Node>,
    /// Where to serve.
    listeners: Listeners,
}

/// Runs a node until `shutdown` completes, then shuts down gracefully: the one entry point of
/// the binary and the tests (`Server::start` then `Server::serve`).
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    Server::start(config, listeners)
        .await?
        .serve(shutdown)
        .await
}

impl Server {
    /// Checks peers, opens the data directory (taking its lock) and builds the generator; IDs are
    /// issued only once [`Server::serve`] runs.
    pub async fn start(config: Config, listeners: Listeners) -> Result<Server, ServerError> {
        let metrics = metrics::global();
        let log = logging::control(config.log.level);
        limits::raise_open_files(config.server.max_connections);
        let tcp_addr = listeners.tcp_addr()?;
        let http_addr = listeners.http_addr()?;
        let instance = format!("{:016x}", fastrand::u64(..));
        let sf = config.snowflake.clone();

        if !config.server.peers.is_empty() {
            let identity: serde_json::Map<String, serde_json::Value> = sf
                .layout
                .node_fields()
                .zip(sf.identity.values())
                .map(|(f, v)| (f.name.clone(), serde_json::json!(v)))
                .collect();
            let me = peers::Me {
                layout: sf.layout.to_string(),
                identity: identity.clone(),
                instance: instance.clone(),
                http: http_addr,
            };
            if let Some(peer) = peers::find_conflict(&me, &config.server.peers).await {
                return Err(ServerError::PeerConflict {
                    peer,
                    identity: serde_json::Value::Object(identity).to_string(),
                });
            }
        }

        let data_dir = config.data_dir.clone();
        let cfg = config.clone();
        let (generator, high_water) =
            tokio::task::spawn_blocking(move || -> Result<_, GenError> {
                let high_water = Arc::new(FileHighWater::open(&data_dir)?);
                let identity = cfg.snowflake.identity.clone();
                let generator = lease::build_generator(&cfg, identity, &high_water, 0)?;
                Ok((generator, high_water))
            })
            .await
            .map_err(io::Error::other)?
            .map_err(|source| ServerError::Generator {
                data_dir: config.data_dir.display().to_string(),
                source,
            })?;
        let (lease, lease_states) = match &config.registry {
            Some(settings) => {
                let (guard, states) =
                    lease::start(&config, settings).map_err(ServerError::Registry)?;
                (Some(guard), Some(states))
            }
            None => (None, None),
        };

        let opened = segment::service(&config)
            .await
            .map_err(ServerError::Segment)?;
        let numbers = numbers::service(&config, opened.as_ref().map(|o| &o.store))
            .map_err(ServerError::Segment)?;
        let node = Arc::new(Node {
            segments: opened.map(|o| o.service),
            numbers,
            config,
            generator: ArcSwap::from_pointee(generator),
            high_water,
            lease,
            metrics,
            log,
            shutting_down: Default::default(),
            fatal: CancellationToken::new(),
            fatal_reason: Mutex::new(None),
            maintenance_error: Mutex::new(None),
            instance,
            tcp_addr,
            http_addr,
            started: std::time::Instant::now(),
            rates: Default::default(),
        });
        if let Some(states) = lease_states {
            tokio::spawn(lease::follow(node.clone(), states));
        }
        if let (_, Some(warning)) = node.layout_time_left() {
            warn!("{warning}");
        }
        // Metrics and readiness are right from the first scrape.
        let first = node.clone();
        tokio::task::spawn_blocking(move || first.maintain())
            .await
            .map_err(io::Error::other)?;
        Ok(Server { node, listeners })
    }

    /// The bound binary TCP address.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.node.tcp_addr
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.node.http_addr
    }

    /// Serves until `shutdown` completes; then stops accepting, lets every connection finish the
    /// requests it has read (within `server.shutdown_timeout`), and lowers the high-water mark to
    /// the last issued ID.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Server { node, listeners } = self;
        let token = CancellationToken::new();
        let maintenance = tokio::spawn(maintain_loop(node.clone(), token.clone()));
        tokio::spawn(sample_loop(node.clone(), token.clone()));
        let tcp = tokio::spawn(tcp::accept_loop(listeners.tcp, node.clone(), token.clone()));
        let mut http = tokio::spawn(http::accept_loop(
            listeners.http,
            node.clone(),
            token.clone(),
        ));
        info!(tcp = %node.tcp_addr, http = %node.http_addr, layout = %node.generator.load().layout(), "serving");

        let timeout = node.config.server.shutdown_timeout;
        let mut http_done = false;
        tokio::select! {
            _ = shutdown => info!(
                "shutting down: finishing in-flight requests (up to {})",
                humantime::format_duration(timeout)
            ),
            result = &mut http => {
                http_done = true;
                error!("the HTTP accept loop stopped unexpectedly ({:?}); shutting down", result.err());
            }
            _ = node.fatal.cancelled() => error!("shutting down: the node cannot go on"),
        }
        node.shutting_down.store(true, Ordering::Release);
        node.metrics.ready.set(0.0);
        token.cancel();
        let deadline = Instant::now() + timeout;

        let mut conns = tcp.await.unwrap_or_else(|e| {
            error!("the TCP accept loop failed: {e}");
            JoinSet::new()
        });
        let mut http_conns = if http_done {
            JoinSet::new()
        } else {
            http.await.unwrap_or_else(|e| {
                error!("the HTTP accept loop failed: {e}");
                JoinSet::new()
            })
        };
        // Both drain against the one deadline, so shutdown takes at most shutdown_timeout.
        let (aborted, http_aborted) = tokio::join!(
            drain(&mut conns, deadline),
            drain(&mut http_conns, deadline)
        );
        if aborted > 0 {
            warn!(
                "{aborted} TCP connections still busy after server.shutdown_timeout; closed them"
            );
        }
        if http_aborted > 0 {
            warn!("{http_aborted} HTTP connections still busy after server.shutdown_timeout; closed them");
        }
        if let Err(e) = maintenance.await {
            error!("the maintenance task failed: {e}");
        }

        if let Some(segments) = &node.segments {
            segments.shutdown().await;
        }
        if let Some(numbers) = &node.numbers {
            numbers.shutdown().await;
        }
        let generator = node.generator.load_full();
        let stopped = generator.clone();
        tokio::task::spawn_blocking(move || stopped.shutdown())
            .await
            .map_err(io::Error::other)?
            .map_err(ServerError::Shutdown)?;
        if let Some(lease) = &node.lease {
            lease.release(generator.clock_state().high_water_ms).await;
        }
        info!("stopped");
        let fatal = node.fatal_reason.lock().take();
        match fatal {
            Some(reason) => Err(ServerError::LeaseFailed(reason)),
            None => Ok(()),
        }
    }
}

/// Waits for the connections until `deadline`, then aborts the rest; returns how many.
async fn drain(conns: &mut JoinSet<()>, deadline: Instant) -> usize {
    loop {
        match timeout_at(deadline, conns.join_next()).await {
            Ok(Some(_)) => {}
            Ok(None) => return 0,
            Err(_) => {
                let left = conns.len();
                conns.abort_all();
                while conns.join_next().await.is_some() {}
                return left;
            }
        }
    }
}

/// Feeds the console's rate history from the node's own metrics page, once a second.
async fn sample_loop(node: Arc<Node>, token: CancellationToken) {
    let mut tick = tokio::time::interval(console::INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let page = node.metrics.prometheus.render();
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        node.rates.sample(&page, unix_ms);
    }
}

async fn maintain_loop(node: Arc<Node>, token: CancellationToken) {
    let mut tick = tokio::time::interval(MAINTENANCE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let n = node.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || n.maintain()).await {
            error!("high-water refresh failed: {e}");
        }
    }
}
