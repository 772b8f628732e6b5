//! One HTTP/1.1 keep-alive connection: one request at a time, each body parsed as `{"ids":[…]}`.
//!
//! hyper's connection future is polled in the same task as the request loop rather than spawned, so a request and
//! the I/O that carries it never wake each other across threads.

use std::pin::pin;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, HOST};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;

use crate::args::{Mode, Plan};
use crate::pace::DueTimer;
use crate::report::{ConnStats, ErrorKind};
use crate::schedule::{Grant, Schedule, Watchdog};

/// Longest piece of an error body kept as an example.
const SNIPPET: usize = 200;

/// The part of Floe's native reply this tool reads; `tag` and other fields are ignored.
#[derive(Debug, Deserialize)]
struct IdsBody {
    ids: Vec<u64>,
}

/// Why a connection stopped early: the kind to count and a message.
type Broken = (ErrorKind, String);

/// Runs one connection until the schedule stops, or until it breaks.
pub(crate) async fn drive(
    stream: TcpStream,
    plan: &Plan,
    schedule: &Schedule,
    stats: &mut ConnStats,
) {
    let (mut sender, connection) = match hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(
        TokioIo::new(stream),
    )
    .await
    {
        Ok(pair) => pair,
        Err(e) => return stats.broke(hyper_kind(&e), &e.to_string(), 0),
    };
    let outcome = {
        let mut connection = pin!(connection);
        let mut work = pin!(requests(&mut sender, plan, schedule, stats));
        tokio::select! {
            outcome = &mut work => outcome,
            // The connection ended on its own (the server closed it); the request in flight, if any, now fails.
            _ = &mut connection => work.await,
        }
    };
    if let Err((kind, message)) = outcome {
        // Every early end happens with the one request of this connection outstanding.
        stats.broke(kind, &message, 1);
    }
}

async fn requests(
    sender: &mut SendRequest<Empty<Bytes>>,
    plan: &Plan,
    schedule: &Schedule,
    stats: &mut ConnStats,
) -> Result<(), Broken> {
    let path = match &plan.mode {
        Mode::Snowflake => format!("/v1/snowflake?count={}", plan.batch),
        Mode::Segment { tag } => format!("/v1/segment/{tag}?count={}", plan.batch),
    };
    // The tag was checked to be URL-safe, so these cannot fail; mapped anyway rather than trusted.
    let uri: Uri = path
        .parse()
        .map_err(|e| (ErrorKind::Protocol, format!("{path}: {e}")))?;
    let host = HeaderValue::from_str(&plan.target.to_string())
        .map_err(|e| (ErrorKind::Protocol, e.to_string()))?;
    let mut watchdog = Watchdog::new(plan.timeout);
    let mut timer = DueTimer::new();
    loop {
        // Closed loop: sent now. Open loop: the instant it was due, which may have passed while the previous
        // request was out; latency counts from then.
        let sent = match schedule.claim(Instant::now(), 1) {
            Grant::Send { first_due, .. } => first_due,
            Grant::Wait(at) => {
                timer.wait_until(at).await;
                continue;
            }
            Grant::Done => return Ok(()),
        };
        let mut request = Request::new(Empty::new());
        *request.uri_mut() = uri.clone();
        request.headers_mut().insert(HOST, host.clone());
        let (status, body) = tokio::select! {
            biased;
            reply = exchange(sender, request) => reply.map_err(|e| (hyper_kind(&e), e.to_string()))?,
            () = watchdog.expired(sent) => {
                return Err((ErrorKind::Timeout, format!("no reply within --timeout {:?}", plan.timeout)));
            }
        };
        let done = Instant::now();
        if status != StatusCode::OK {
            stats.failed(
                sent,
                done,
                ErrorKind::Http(status.as_u16()),
                &snippet(&body),
            );
            continue;
        }
        match serde_json::from_slice::<IdsBody>(&body) {
            Ok(reply) => stats.ok(sent, done, &reply.ids),
            Err(e) => {
                let message = format!(
                    "body is not {{\"ids\":[numbers]}} ({e}): {}",
                    snippet(&body)
                );
                stats.failed(sent, done, ErrorKind::Protocol, &message);
            }
        }
    }
}

/// Sends one request and reads its whole reply.
async fn exchange(
    sender: &mut SendRequest<Empty<Bytes>>,
    request: Request<Empty<Bytes>>,
) -> Result<(StatusCode, Bytes), hyper::Error> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn hyper_kind(e: &hyper::Error) -> ErrorKind {
    if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        ErrorKind::Closed
    } else if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_parse() || e.is_parse_status() {
        ErrorKind::Protocol
    } else {
        ErrorKind::Io
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(SNIPPET)]);
    text.trim().to_owned()
}
