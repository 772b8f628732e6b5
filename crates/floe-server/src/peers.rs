//! GenID's planned start-up check: ask every configured peer's `/v1/info` and refuse to start
//! when one runs the same layout with the same identity, since the two would issue the same IDs.
//!
//! A peer that does not answer within [`PEER_TIMEOUT`] is logged and skipped: a cluster must be
//! able to start one node at a time. The request is a minimal HTTP/1.1 GET, so the server needs
//! no HTTP client library.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// How long one peer may take to answer.
pub(crate) const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest `/v1/info` response read from a peer.
const MAX_RESPONSE: usize = 256 * 1024;

/// What this node would collide on.
#[derive(Debug, Clone)]
pub(crate) struct Me {
    /// The layout's spec string.
    pub(crate) layout: String,
    /// The identity as `/v1/info` reports it.
    pub(crate) identity: serde_json::Map<String, Value>,
    /// This node's instance id, to recognise itself in the list.
    pub(crate) instance: String,
    /// This node's HTTP address, to skip itself without a request.
    pub(crate) http: SocketAddr,
}

/// The first peer that has this node's layout and identity, if any.
pub(crate) async fn find_conflict(me: &Me, peers: &[String]) -> Option<String> {
    let mut checks = JoinSet::new();
    for peer in peers {
        let peer = peer.clone();
        let me = me.clone();
        checks.spawn(async move {
            match tokio::time::timeout(PEER_TIMEOUT, check(&me, &peer)).await {
                Ok(Ok(true)) => Some(peer),
                Ok(Ok(false)) => None,
                Ok(Err(e)) => {
                    tracing::warn!("peer {peer}: identity not checked: {e}");
                    None
                }
                Err(_) => {
                    tracing::warn!(
                        "peer {peer}: identity not checked: no answer within {}s",
                        PEER_TIMEOUT.as_secs()
                    );
                    None
                }
            }
        });
    }
    let mut conflict = None;
    while let Some(done) = checks.join_next().await {
        if let Ok(Some(peer)) = done {
            conflict.get_or_insert(peer);
        }
    }
    conflict
}

/// Whether `peer` reports the same layout and identity.
async fn check(me: &Me, peer: &str) -> Result<bool, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(peer)
        .await
        .map_err(|e| format!("cannot resolve: {e}"))?
        .collect();
    if addrs.contains(&me.http) {
        return Ok(false);
    }
    let info = get_info(peer).await?;
    if info.get("instance").and_then(Value::as_str) == Some(me.instance.as_str()) {
        return Ok(false);
    }
    let same_layout = info.get("layout").and_then(Value::as_str) == Some(me.layout.as_str());
    let same_identity = info.get("identity").and_then(Value::as_object) == Some(&me.identity);
    if same_layout && same_identity {
        return Ok(true);
    }
    tracing::info!("peer {peer}: identity differs, ok");
    Ok(false)
}

/// `GET /v1/info` over a fresh connection, with hyper's client (no HTTP parsing of our own).
async fn get_info(peer: &str) -> Result<Value, String> {
    let stream = TcpStream::connect(peer)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| format!("cannot start HTTP: {e}"))?;
    // Drives the connection; it ends when the sender is dropped, and is aborted on the way out.
    let driver = AbortOnDrop(tokio::spawn(connection));
    let request = hyper::Request::get("/v1/info")
        .header(header::HOST, peer)
        .header(header::ACCEPT, "application/json")
        .body(Empty::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    if response.status() != hyper::StatusCode::OK {
        return Err(format!(
            "/v1/info answered {}; is this a Floe HTTP listener?",
            response.status()
        ));
    }
    let body = Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| format!("cannot read the response (at most {MAX_RESPONSE} bytes): {e}"))?
        .to_bytes();
    drop(driver);
    serde_json::from_slice(&body).map_err(|e| format!("/v1/info is not JSON: {e}"))
}

/// Aborts the connection task when the check ends, however it ends.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
