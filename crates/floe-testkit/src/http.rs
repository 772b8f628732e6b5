//! The tests' one HTTP/1.1 client: hyper's, over a fresh connection per request ([`request`],
//! [`get`]) or one connection kept alive ([`Connection`]), and a blocking pair for tests that
//! run on plain threads ([`blocking`]). Every call is bounded by [`TIMEOUT`].
//!
//! A test about raw bytes (a head that never ends, a body cut short, chunking by hand) writes
//! them on a socket itself, since no client sends such requests, and reads the answer with
//! [`read_response`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::Location;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Upper bound of one connect or one request and its response.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP response, its body read in full.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (it must be UTF-8: every Floe body is JSON or text).
    pub body: String,
}

impl Response {
    /// A response from its parts: field names lower-cased, values read leniently, the body
    /// required to be UTF-8.
    fn from_parts<'a>(
        status: u16,
        fields: impl Iterator<Item = (&'a str, &'a [u8])>,
        body: Vec<u8>,
    ) -> io::Result<Response> {
        let headers = fields
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value).into_owned();
                (name.to_ascii_lowercase(), value)
            })
            .collect();
        let body =
            String::from_utf8(body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, failing the test if it is not.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.body))
    }
}

/// `method path` with extra `headers` and `body` over a fresh connection to `addr`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> io::Result<Response> {
    Connection::open(addr)
        .await?
        .request(method, path, headers, body)
        .await
}

/// `GET path` over a fresh connection, failing the test (naming the caller's line) if no
/// response comes; any status is returned.
#[track_caller]
pub fn get(addr: SocketAddr, path: &str) -> impl Future<Output = Response> {
    let at = Location::caller();
    let path = path.to_owned();
    async move {
        request(addr, "GET", &path, &[], "")
            .await
            .unwrap_or_else(|e| panic!("GET {path} on {addr} (at {at}): {e}"))
    }
}

/// One HTTP/1.1 connection kept alive across requests; closed when dropped.
#[derive(Debug)]
pub struct Connection {
    /// Where it is connected, for the `Host` header and messages.
    addr: SocketAddr,
    /// hyper's half that sends requests.
    sender: SendRequest<Full<Bytes>>,
    /// hyper's half that drives the socket; it ends when the server closes the connection.
    driver: JoinHandle<Result<(), hyper::Error>>,
}

impl Connection {
    /// Connects to `addr`.
    pub async fn open(addr: SocketAddr) -> io::Result<Connection> {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        Ok(Connection {
            addr,
            sender,
            driver: tokio::spawn(connection),
        })
    }

    /// `method path` with extra `headers` (a `Host` is added unless given) and `body`.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> io::Result<Response> {
        let mut builder = hyper::Request::builder()
            .method(hyper::Method::from_bytes(method.as_bytes()).map_err(io::Error::other)?)
            .uri(path);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            builder = builder.header(hyper::header::HOST, self.addr.to_string());
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let exchange = async {
            self.sender.ready().await.map_err(io::Error::other)?;
            let response = self
                .sender
                .send_request(request)
                .await
                .map_err(io::Error::other)?;
            let (head, body) = response.into_parts();
            let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
            let fields = head.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
            Response::from_parts(head.status.as_u16(), fields, body.to_vec())
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no response in time"))?
    }

    /// `GET path` on this connection, failing the test (naming the caller's line) if no
    /// response comes.
    #[track_caller]
    pub fn get<'a>(&'a mut self, path: &'a str) -> impl Future<Output = Response> + 'a {
        let at = Location::caller();
        async move {
            let addr = self.addr;
            self.request("GET", path, &[], "")
                .await
                .unwrap_or_else(|e| panic!("GET {path} on kept-alive {addr} (at {at}): {e}"))
        }
    }

    /// Resolves once the server has closed the connection.
    pub async fn closed(&mut self) {
        let _ = (&mut self.driver).await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Reads one response whose body has a `Content-Length` (or none) from a socket a test wrote
/// raw bytes on; fails with an error on a close before its end or after [`TIMEOUT`].
pub async fn read_response(from: &mut (impl AsyncRead + Unpin)) -> io::Result<Response> {
    let read = async {
        let mut raw = Vec::new();
        loop {
            let mut fields = [httparse::EMPTY_HEADER; 64];
            let mut head = httparse::Response::new(&mut fields);
            let parsed = head
                .parse(&raw)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let httparse::Status::Complete(head_len) = parsed else {
                read_more(from, &mut raw).await?;
                continue;
            };
            let field = |name: &str| {
                head.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            if field("transfer-encoding").is_some() {
                return Err(io::Error::other(
                    "read_response reads Content-Length bodies only; send this request with `request`",
                ));
            }
            let len: usize = match field("content-length") {
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
                None => 0,
            };
            let status = head.code.unwrap_or(0);
            let fields: Vec<(String, Vec<u8>)> = head
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                .collect();
            while raw.len() < head_len + len {
                read_more(from, &mut raw).await?;
            }
            let body = raw[head_len..head_len + len].to_vec();
            let fields = fields.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
            return Response::from_parts(status, fields, body);
        }
    };
    tokio::time::timeout(TIMEOUT, read)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no whole response in time"))?
}

/// Reads what `from` has into `raw`; an error once it is closed before a whole response.
async fn read_more(from: &mut (impl AsyncRead + Unpin), raw: &mut Vec<u8>) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    let n = from.read(&mut buf).await?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("closed mid-response: {:?}", String::from_utf8_lossy(raw)),
        ));
    }
    raw.extend_from_slice(&buf[..n]);
    Ok(())
}

/// The same client for tests on plain threads: each call runs on a small runtime of its own
/// (shared by all calls), so it works inside and outside an async test. It blocks the calling
/// thread, like any blocking I/O: a server on that thread's own current-thread runtime cannot
/// answer it.
pub mod blocking {
    use std::io;
    use std::net::SocketAddr;
    use std::sync::{mpsc, OnceLock};

    use super::Response;

    /// The runtime the blocking calls run on.
    fn runtime() -> &'static tokio::runtime::Runtime {
        static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
        RUNTIME.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("testkit-http")
                .enable_all()
                .build()
                .expect("start the HTTP client's runtime")
        })
    }

    /// [`super::request`], blocking.
    pub fn request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> io::Result<Response> {
        let (method, path, body) = (method.to_owned(), path.to_owned(), body.to_owned());
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (tx, rx) = mpsc::channel();
        runtime().spawn(async move {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let _ = tx.send(super::request(addr, &method, &path, &headers, &body).await);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(io::Error::other("the HTTP client task panicked")))
    }

    /// [`super::get`], blocking: fails the test if no response comes; any status is returned.
    #[track_caller]
    pub fn get(addr: SocketAddr, path: &str) -> Response {
        request(addr, "GET", path, &[], "").unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::{blocking, get, read_response, request, Connection};

    /// A server that answers every request on a connection with `reply`, echoing the request
    /// line and its `x-q` header in headers.
    async fn canned(reply_body: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut raw = Vec::new();
                    let mut buf = [0u8; 1024];
                    loop {
                        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => raw.extend_from_slice(&buf[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
                        raw.drain(..end + 4);
                        let line = head.lines().next().unwrap_or_default().to_owned();
                        let q = head
                            .lines()
                            .find_map(|l| l.strip_prefix("x-q: "))
                            .unwrap_or("-")
                            .to_owned();
                        let reply = format!(
                            "HTTP/1.1 201 Created\r\nX-Line: {line}\r\nX-Q: {q}\r\nContent-Length: {}\r\n\r\n{reply_body}",
                            reply_body.len()
                        );
                        if s.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_carry_method_path_and_headers() {
        let addr = canned("hello").await;
        let r = request(addr, "PUT", "/a?b=1", &[("X-Q", "7")], "")
            .await
            .unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.header("x-line"), Some("PUT /a?b=1 HTTP/1.1"));
        assert_eq!(r.header("X-Q"), Some("7"));
        assert_eq!(r.body, "hello");
        assert_eq!(get(addr, "/").await.status, 201);
        let mut c = Connection::open(addr).await.unwrap();
        for path in ["/one", "/two"] {
            let r = c.get(path).await;
            assert_eq!(r.header("x-line"), Some(&*format!("GET {path} HTTP/1.1")));
        }
        // Inside a runtime as well as outside one (the server runs on another worker).
        assert_eq!(blocking::get(addr, "/b").body, "hello");
    }

    #[test]
    fn the_blocking_client_needs_no_runtime() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let addr = rt.block_on(canned("x"));
        let r = blocking::request(addr, "POST", "/p", &[], "body").unwrap();
        assert_eq!((r.status, r.body.as_str()), (201, "x"));
    }

    #[tokio::test]
    async fn nothing_listening_is_an_error() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        assert!(request(addr, "GET", "/", &[], "").await.is_err());
    }

    #[tokio::test]
    async fn raw_responses_are_read_by_their_length() {
        let mut wire: &[u8] =
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\n\r\n{\"a\"}extra";
        let r = read_response(&mut wire).await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (413, "{\"a\""));
        let mut cut: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
        let e = read_response(&mut cut).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        let mut chunked: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(read_response(&mut chunked).await.is_err());
    }
}
