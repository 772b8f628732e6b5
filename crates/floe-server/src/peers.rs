//! GenID's planned start-up check: ask every configured peer's `/v1/info` and refuse to start
//! when one runs the same layout with the same identity, since the two would issue the same IDs.
//!
//! A peer that does not answer within [`PEER_TIMEOUT`] is logged and skipped: a cluster must be
//! able to start one node at a time. The request is a minimal HTTP/1.1 GET, so the server needs
//! no HTTP client library.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// How long one peer may take to answer.
pub(crate) const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest `/v1/info` response read from a peer.
const MAX_RESPONSE: u64 = 256 * 1024;

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

/// `GET /v1/info` over a fresh connection.
async fn get_info(peer: &str) -> Result<Value, String> {
    let mut stream = TcpStream::connect(peer)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let request =
        format!("GET /v1/info HTTP/1.1\r\nHost: {peer}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("cannot read the response: {e}"))?;
    let body = parse_response(&raw)?;
    serde_json::from_slice(&body).map_err(|e| format!("/v1/info is not JSON: {e}"))
}

/// The body of a 200 response, de-chunked if needed.
fn parse_response(raw: &[u8]) -> Result<Vec<u8>, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("truncated HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    if status != "200" {
        return Err(format!(
            "/v1/info answered {status:?}; is this a Floe HTTP listener?"
        ));
    }
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::parse_response;

    #[test]
    fn plain_and_chunked_bodies() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).unwrap(), b"{}");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{\"\r\n3\r\na\":\r\n2\r\n1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), b"{\"a\":1}");
        assert!(parse_response(b"HTTP/1.1 404 Not Found\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200").is_err());
    }
}
