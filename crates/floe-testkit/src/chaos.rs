//! A TCP proxy that cuts a service off and heals it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy on 127.0.0.1 that forwards to `upstream` until cut.
///
/// `cut()` drops every open connection and makes new ones close at once (a crashed or
/// partitioned service); `heal()` forwards again. Dropping the proxy stops it.
#[derive(Debug)]
pub struct ChaosProxy {
    /// Where clients connect.
    addr: SocketAddr,
    /// Whether traffic is cut; connections watch it to drop themselves.
    cut: watch::Sender<bool>,
    /// Connections accepted so far, so tests can see that clients reconnected.
    accepted: Arc<AtomicU64>,
    /// Stops the accept loop on drop.
    stop: Arc<AtomicBool>,
}

impl ChaosProxy {
    /// Starts a proxy to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> std::io::Result<ChaosProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, cut_rx) = watch::channel(false);
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_string();
        let (acc, stop2) = (accepted.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop2.load(Ordering::Acquire) {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                acc.fetch_add(1, Ordering::Relaxed);
                let mut cut_rx = cut_rx.clone();
                if *cut_rx.borrow() {
                    drop(client); // refused: closed at once
                    continue;
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_rx.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Ok(ChaosProxy {
            addr,
            cut,
            accepted,
            stop,
        })
    }

    /// Where to connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops all connections and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Forwards again.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.cut.send_replace(true);
    }
}
