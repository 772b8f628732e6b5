//! A fake Floe (or plain GenID) server built on floe-proto's `ServerCodec`, for behaviour the
//! real server cannot be made to show on demand: segment tags, "unavailable" replies, hangs,
//! GenID's close on the v2 magic byte. It runs on its own thread and runtime, so async and
//! blocking tests (and benchmarks) use it alike; dropping it closes every connection.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::BytesMut;
use floe_proto::{
    encode_v1_batch, encode_v1_single, encode_v2_error, encode_v2_numbers, encode_v2_ok, Op,
    Request, ServerCodec, Status, V1_CMD_BATCH, V1_CMD_SINGLE,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::codec::Decoder;

/// What the fake server is.
#[derive(Debug, Clone)]
pub struct Options {
    /// A plain GenID server: v1 only, closes the connection on any other first byte.
    pub genid: bool,
    /// Most IDs per v2 request; more is answered with status 4.
    pub max_count: u32,
    /// Segment tags it knows; others get status 2.
    pub tags: Vec<String>,
    /// Address to bind, e.g. to come back on the port of a server that was stopped.
    pub bind: String,
    /// The first snowflake ID is one above this; distinct bases keep fake servers' IDs apart.
    pub id_base: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            genid: false,
            max_count: floe_proto::DEFAULT_MAX_COUNT,
            tags: vec!["orders".into()],
            bind: "127.0.0.1:0".into(),
            id_base: 0,
        }
    }
}

/// Switches a test flips while the server runs, and counters it reads.
#[derive(Debug, Default)]
pub struct State {
    /// Next snowflake ID; shared by all connections, so IDs are unique and increase.
    pub next_id: AtomicU64,
    /// Snowflake and segment requests received, answered or not.
    pub asked: AtomicU64,
    /// Answer snowflake and segment requests with status 3.
    pub unavailable: AtomicBool,
    /// Read requests but never answer.
    pub hang: AtomicBool,
    /// Requests answered with IDs.
    pub served: AtomicU64,
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Segment tags known, with each tag's next ID.
    tags: Mutex<HashMap<String, u64>>,
    /// Every v2 op seen, for tests that check what the client sent.
    pub ops: Mutex<HashSet<u8>>,
}

/// A running fake server; dropping it stops it and closes every connection.
pub struct FakeServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Switches and counters.
    pub state: Arc<State>,
    /// Stops the server thread.
    stop: Option<oneshot::Sender<()>>,
    /// The server thread.
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// A Floe-like server (v1 and v2) with the default options.
    pub fn floe() -> FakeServer {
        FakeServer::start(Options::default())
    }

    /// A plain GenID server: v1 only.
    pub fn genid() -> FakeServer {
        FakeServer::start(Options {
            genid: true,
            ..Options::default()
        })
    }

    /// Starts a server with `options`.
    pub fn start(options: Options) -> FakeServer {
        let state = State::default();
        state.next_id.store(options.id_base, Ordering::Relaxed);
        FakeServer::start_with(options, Arc::new(state))
    }

    /// Starts a server sharing `state` (e.g. with a stopped one, so IDs carry on).
    #[track_caller]
    pub fn start_with(options: Options, state: Arc<State>) -> FakeServer {
        {
            let mut tags = state.tags.lock().unwrap();
            for (i, tag) in options.tags.iter().enumerate() {
                tags.entry(tag.clone())
                    .or_insert(1_000_000_000 * (i as u64 + 1));
            }
        }
        let std_listener = std::net::TcpListener::bind(&options.bind).expect("bind fake server");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                tokio::select! {
                    _ = stopped => {}
                    _ = accept(listener, options, shared) => {}
                }
            });
            // Dropping the runtime drops every connection task and so closes its socket.
        });
        FakeServer {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The address as the client takes it.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept(listener: TcpListener, options: Options, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        state.accepted.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve(stream, options.clone(), state.clone()));
    }
}

async fn serve(mut stream: TcpStream, options: Options, state: Arc<State>) {
    let _ = stream.set_nodelay(true);
    let mut codec = ServerCodec::new(options.max_count);
    let mut rbuf = BytesMut::with_capacity(4096);
    let mut wbuf = BytesMut::new();
    loop {
        match stream.read_buf(&mut rbuf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if options.genid
            && rbuf
                .first()
                .is_some_and(|&b| b != V1_CMD_SINGLE && b != V1_CMD_BATCH)
        {
            // GenID reads its two-byte request and closes on a command it does not know.
            return;
        }
        if state.hang.load(Ordering::Relaxed) {
            rbuf.clear();
            continue;
        }
        loop {
            match codec.decode(&mut rbuf) {
                Ok(Some(Ok(request))) => answer(request, &state, &mut wbuf),
                Ok(Some(Err(rejection))) => {
                    encode_v2_error(
                        rejection.req_id,
                        rejection.status,
                        &rejection.message,
                        &mut wbuf,
                    )
                    .unwrap();
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if !wbuf.is_empty() {
            if stream.write_all(&wbuf).await.is_err() {
                return;
            }
            wbuf.clear();
        }
    }
}

fn take(counter: &AtomicU64, n: u32) -> Vec<u64> {
    let first = counter.fetch_add(u64::from(n), Ordering::Relaxed) + 1;
    (first..first + u64::from(n)).collect()
}

fn answer(request: Request, state: &State, out: &mut BytesMut) {
    if !matches!(&request, Request::V2(req) if req.op == Op::Ping) {
        state.asked.fetch_add(1, Ordering::Relaxed);
    }
    match request {
        Request::V1Single => {
            encode_v1_single(take(&state.next_id, 1)[0], out);
            state.served.fetch_add(1, Ordering::Relaxed);
        }
        Request::V1Batch { count } => {
            encode_v1_batch(&take(&state.next_id, count.into()), out).unwrap();
            state.served.fetch_add(1, Ordering::Relaxed);
        }
        Request::V2(req) => {
            state.ops.lock().unwrap().insert(req.op.into());
            let unavailable = state.unavailable.load(Ordering::Relaxed);
            match req.op {
                Op::Ping => encode_v2_ok(req.req_id, &[], out).unwrap(),
                _ if unavailable => encode_v2_error(
                    req.req_id,
                    Status::Unavailable,
                    "fake server told to be unavailable",
                    out,
                )
                .unwrap(),
                Op::Snowflake => {
                    encode_v2_ok(req.req_id, &take(&state.next_id, req.count), out).unwrap();
                    state.served.fetch_add(1, Ordering::Relaxed);
                }
                Op::Number => {
                    let numbers: Vec<String> = take(&state.next_id, req.count)
                        .iter()
                        .map(|n| format!("{}-{n}", req.tag))
                        .collect();
                    encode_v2_numbers(req.req_id, &numbers, out).unwrap();
                    state.served.fetch_add(1, Ordering::Relaxed);
                }
                Op::Segment => {
                    let mut tags = state.tags.lock().unwrap();
                    match tags.get_mut(&req.tag) {
                        Some(next) => {
                            let ids: Vec<u64> = (*next..*next + u64::from(req.count)).collect();
                            *next += u64::from(req.count);
                            encode_v2_ok(req.req_id, &ids, out).unwrap();
                            state.served.fetch_add(1, Ordering::Relaxed);
                        }
                        None => encode_v2_error(
                            req.req_id,
                            Status::UnknownTag,
                            &format!("unknown tag `{}`", req.tag),
                            out,
                        )
                        .unwrap(),
                    }
                }
            }
        }
    }
}
