//! The client against fake servers it can steer: protocol fallback, segment logic, typed
//! errors, failover on every kind of failure, prefetch, pipelining, and the blocking wrapper.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use floe_client::{Backoff, ClientBuilder, Error, Prefetch, Protocol, ServerOrder};
use floe_testkit::{assert_increasing, assert_unique, eventually_async};
use support::dead_address;
use support::fake::{FakeServer, Options};

/// Quick ejection, so tests that wait for a server to come back stay short.
fn fast_backoff() -> Backoff {
    Backoff {
        base: Duration::from_millis(50),
        max: Duration::from_millis(200),
    }
}

fn builder(servers: &[&FakeServer]) -> ClientBuilder {
    ClientBuilder::new(servers.iter().map(|s| s.address()))
        .connect_timeout(Duration::from_millis(500))
        .attempt_timeout(Duration::from_millis(500))
        .request_timeout(Duration::from_secs(2))
        .backoff(fast_backoff())
}

#[tokio::test]
async fn v2_single_and_batches_are_unique_and_increasing() {
    let server = FakeServer::floe();
    let client = builder(&[&server])
        .protocol(Protocol::V2)
        .connections_per_server(1)
        .build()
        .unwrap();
    let mut all = vec![client.next_id().await.unwrap()];
    for n in [1, 255, 10_000] {
        let ids = client.next_ids(n).await.unwrap();
        assert_eq!(ids.len(), n);
        all.extend(ids);
    }
    assert_eq!(all.len(), 10_257);
    assert_unique(&all);
    assert_increasing(&all);
    assert!(client.next_ids(0).await.unwrap().is_empty());
}

#[tokio::test]
async fn auto_probes_with_a_ping_and_speaks_v2_to_floe() {
    let server = FakeServer::floe();
    let client = builder(&[&server]).build().unwrap();
    assert_eq!(client.next_ids(3).await.unwrap(), [1, 2, 3]);
    let ops = server.state.ops.lock().unwrap().clone();
    assert!(ops.contains(&3), "no ping: {ops:?}");
    assert!(ops.contains(&1), "no v2 snowflake request: {ops:?}");
}

#[tokio::test]
async fn auto_falls_back_to_v1_on_a_plain_genid_server() {
    let server = FakeServer::genid();
    let client = builder(&[&server])
        .connections_per_server(1)
        .build()
        .unwrap();
    let mut all = vec![client.next_id().await.unwrap()];
    for n in [1, 255, 10_000] {
        let ids = client.next_ids(n).await.unwrap();
        assert_eq!(ids.len(), n);
        all.extend(ids);
    }
    assert_unique(&all);
    assert_increasing(&all);
    // The probe's connection was closed by the server, the rest went over one v1 connection.
    assert_eq!(server.state.accepted.load(Ordering::Relaxed), 2);
    match client.segment("orders").next_id().await {
        Err(Error::Protocol(message)) => assert!(message.contains("v1"), "{message}"),
        other => panic!("segment over v1 must be a protocol error, got {other:?}"),
    }
}

#[tokio::test]
async fn v1_configured_never_sends_v2() {
    let server = FakeServer::floe();
    let client = builder(&[&server]).protocol(Protocol::V1).build().unwrap();
    let ids = client.next_ids(600).await.unwrap();
    assert_eq!(ids.len(), 600);
    assert_unique(&ids);
    assert!(server.state.ops.lock().unwrap().is_empty());
    assert!(matches!(
        client.segment("orders").next_id().await,
        Err(Error::Protocol(_))
    ));
}

#[tokio::test]
async fn large_calls_are_split_and_pipelined_on_one_connection() {
    let server = FakeServer::start(Options {
        max_count: 1_000,
        ..Options::default()
    });
    let client = builder(&[&server])
        .protocol(Protocol::V2)
        .max_count(1_000)
        .connections_per_server(1)
        .build()
        .unwrap();
    let ids = client.next_ids(2_500).await.unwrap();
    assert_eq!(ids.len(), 2_500);
    assert_increasing(&ids);
    assert_eq!(server.state.asked.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn concurrent_calls_share_one_pipelined_connection() {
    let server = FakeServer::floe();
    let client = builder(&[&server])
        .protocol(Protocol::V2)
        .connections_per_server(1)
        .build()
        .unwrap();
    let tasks: Vec<_> = (1..=64)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                let ids = client.next_ids(n).await.unwrap();
                assert_eq!(ids.len(), n);
                assert_increasing(&ids);
                ids
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    assert_eq!(all.len(), 64 * 65 / 2);
    assert_unique(&all);
    assert_eq!(server.state.accepted.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn refused_requests_are_typed_errors_without_failover() {
    let strict = FakeServer::start(Options {
        max_count: 1_000,
        ..Options::default()
    });
    let spare = FakeServer::floe();
    let client = builder(&[&strict, &spare]).build().unwrap();
    match client.next_ids(5_000).await {
        Err(Error::OverLimit(message)) => assert!(message.contains("1000"), "{message}"),
        other => panic!("expected OverLimit, got {other:?}"),
    }
    match client.segment("no-such-tag").next_id().await {
        Err(Error::UnknownTag(tag)) => assert_eq!(tag, "no-such-tag"),
        other => panic!("expected UnknownTag, got {other:?}"),
    }
    assert_eq!(spare.state.asked.load(Ordering::Relaxed), 0);
    // The refusing server is healthy: it still serves.
    assert_eq!(client.next_ids(10).await.unwrap().len(), 10);
    assert_eq!(spare.state.asked.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn bad_tags_are_refused_before_sending() {
    let server = FakeServer::floe();
    let client = builder(&[&server]).build().unwrap();
    for tag in [String::new(), "x".repeat(256)] {
        assert!(matches!(
            client.segment(&tag).next_id().await,
            Err(Error::BadRequest(_))
        ));
    }
    assert_eq!(server.state.asked.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn segment_ids_come_from_the_tag() {
    let server = FakeServer::start(Options {
        tags: vec!["orders".into(), "users".into()],
        ..Options::default()
    });
    let client = builder(&[&server]).build().unwrap();
    let orders = client.segment("orders");
    assert_eq!(orders.tag(), "orders");
    assert_eq!(orders.next_id().await.unwrap(), 1_000_000_000);
    let batch = orders.next_ids(500).await.unwrap();
    assert_eq!(batch.len(), 500);
    assert_eq!(batch[0], 1_000_000_001);
    assert_increasing(&batch);
    assert_eq!(
        client.segment("users").next_id().await.unwrap(),
        2_000_000_000
    );
    assert_eq!(orders.buffered(), 0);
}

#[tokio::test]
async fn segment_prefetch_is_shared_per_tag_and_unique_across_tasks() {
    let server = FakeServer::floe();
    let client = builder(&[&server])
        .segment_prefetch(Prefetch::new(100, 30))
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let handle = client.segment("orders");
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..500 {
                    ids.push(handle.next_id().await.unwrap());
                }
                ids.extend(handle.next_ids(20).await.unwrap());
                ids
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    assert_eq!(all.len(), 16 * 520);
    assert_unique(&all);
    // One refill serves about a batch of calls: far fewer requests than IDs.
    let asked = server.state.asked.load(Ordering::Relaxed);
    assert!(asked < 200, "{asked} requests for {} IDs", all.len());
}

#[tokio::test]
async fn a_handle_made_per_call_still_uses_the_tags_buffer() {
    let server = FakeServer::floe();
    let client = builder(&[&server])
        .segment_prefetch(Prefetch::new(100, 10))
        .build()
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids.push(client.segment("orders").next_id().await.unwrap());
    }
    assert_unique(&ids);
    assert_eq!(server.state.asked.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn prefetch_refills_in_the_background_below_low_water() {
    let server = FakeServer::floe();
    let client = builder(&[&server])
        .snowflake_prefetch(Prefetch::new(100, 50))
        .build()
        .unwrap();
    assert_eq!(client.try_next_id(), None);
    assert_eq!(client.warm_up().await.unwrap(), 100);
    let asked = server.state.asked.load(Ordering::Relaxed);
    let mut ids: Vec<u64> = (0..60).map(|_| client.try_next_id().unwrap()).collect();
    eventually_async(
        Duration::from_secs(2),
        "a refill below low water",
        async || {
            let buffered = client.buffered();
            (buffered >= 50)
                .then_some(())
                .ok_or(format!("{buffered} buffered"))
        },
    )
    .await;
    assert!(server.state.asked.load(Ordering::Relaxed) > asked);
    ids.extend(client.next_ids(40).await.unwrap());
    ids.extend(client.next_ids(1_000).await.unwrap());
    assert_unique(&ids);
}

#[tokio::test]
async fn numbers_fail_over_from_an_unavailable_server() {
    let sick = FakeServer::floe();
    sick.state.unavailable.store(true, Ordering::Relaxed);
    let healthy = FakeServer::floe();
    let client = builder(&[&sick, &healthy]).build().unwrap();
    let numbers = client.numbers("order_no", 3).await.unwrap();
    assert_eq!(numbers.len(), 3);
    assert!(
        numbers.iter().all(|n| n.starts_with("order_no-")),
        "{numbers:?}"
    );
    assert_eq!(healthy.state.served.load(Ordering::Relaxed), 1);
    assert!(client
        .number("order_no")
        .await
        .unwrap()
        .starts_with("order_no-"));
}

#[tokio::test]
async fn unavailable_status_ejects_the_server_and_fails_over() {
    let sick = FakeServer::floe();
    sick.state.unavailable.store(true, Ordering::Relaxed);
    let healthy = FakeServer::start(Options {
        id_base: 1 << 40,
        ..Options::default()
    });
    let client = builder(&[&sick, &healthy])
        .backoff(Backoff {
            base: Duration::from_secs(30),
            max: Duration::from_secs(30),
        })
        .build()
        .unwrap();
    for _ in 0..10 {
        assert_eq!(client.next_ids(5).await.unwrap().len(), 5);
    }
    // Asked once, then left out for the ejection period.
    assert_eq!(sick.state.asked.load(Ordering::Relaxed), 1);
    assert_eq!(healthy.state.served.load(Ordering::Relaxed), 10);
    // Segment mode not configured anywhere is status 3 everywhere: Unavailable, not a hang.
    healthy.state.unavailable.store(true, Ordering::Relaxed);
    match client.segment("orders").next_id().await {
        Err(Error::Unavailable { servers }) => {
            assert_eq!(servers.len(), 2);
            assert!(servers[0].1.contains("ejected"), "{servers:?}");
            assert!(
                servers[1].1.contains("told to be unavailable"),
                "{servers:?}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_server_going_away_mid_stream_costs_no_error_and_no_duplicate() {
    let first = FakeServer::floe();
    let second = FakeServer::start(Options {
        id_base: 1 << 40,
        ..Options::default()
    });
    let third = FakeServer::start(Options {
        id_base: 2 << 40,
        ..Options::default()
    });
    let client = builder(&[&first, &second, &third])
        .server_order(ServerOrder::RoundRobin)
        .build()
        .unwrap();
    let mut all = Vec::new();
    let mut first = Some(first);
    for i in 0..300 {
        if i == 100 {
            drop(first.take());
        }
        all.extend(client.next_ids(7).await.unwrap());
    }
    assert_eq!(all.len(), 2_100);
    assert_unique(&all);
    // Round robin: the dead server's turns go to the next one in the list.
    assert!(second.state.served.load(Ordering::Relaxed) > 150);
    assert!(third.state.served.load(Ordering::Relaxed) > 75);
}

#[tokio::test]
async fn all_servers_down_is_unavailable_within_the_timeout() {
    let addresses = [dead_address(), dead_address(), dead_address()];
    let client = ClientBuilder::new(addresses.clone())
        .request_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    for round in 0..2 {
        let started = Instant::now();
        match client.next_id().await {
            Err(Error::Unavailable { servers }) => {
                let listed: Vec<_> = servers.iter().map(|(a, _)| a.clone()).collect();
                assert_eq!(listed, addresses);
                for (addr, error) in &servers {
                    assert!(error.contains("connect failed"), "{addr}: {error}");
                    if round == 1 {
                        assert!(error.contains("ejected for another"), "{addr}: {error}");
                    }
                }
                let text = Error::Unavailable { servers }.to_string();
                assert!(text.contains(&addresses[2]), "{text}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}

#[tokio::test]
async fn a_hung_server_is_ejected_after_the_attempt_timeout() {
    let hung = FakeServer::floe();
    hung.state.hang.store(true, Ordering::Relaxed);
    let healthy = FakeServer::start(Options {
        id_base: 1 << 40,
        ..Options::default()
    });
    let client = builder(&[&hung, &healthy])
        .protocol(Protocol::V2)
        .attempt_timeout(Duration::from_millis(500))
        .backoff(Backoff {
            base: Duration::from_secs(30),
            max: Duration::from_secs(30),
        })
        .build()
        .unwrap();
    let started = Instant::now();
    assert!(client.next_id().await.unwrap() > 1 << 40);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // Ejected: the next call does not wait for it.
    let started = Instant::now();
    client.next_id().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(250));
}

#[tokio::test]
async fn a_lone_hung_server_times_out_within_the_request_timeout() {
    let hung = FakeServer::floe();
    hung.state.hang.store(true, Ordering::Relaxed);
    let client = builder(&[&hung])
        .request_timeout(Duration::from_millis(300))
        .attempt_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Instant::now();
    assert_eq!(client.next_id().await, Err(Error::Timeout));
    let took = started.elapsed();
    assert!(took < Duration::from_millis(800), "{took:?}");
}

#[tokio::test]
async fn an_ejected_server_is_used_again_once_it_is_back() {
    let primary = FakeServer::floe();
    let port = primary.address();
    let standby = FakeServer::start(Options {
        id_base: 1 << 40,
        ..Options::default()
    });
    let client = builder(&[&primary, &standby]).build().unwrap();
    assert!(client.next_id().await.unwrap() < 1 << 40);
    let state = primary.state.clone();
    drop(primary);
    assert!(client.next_id().await.unwrap() > 1 << 40);
    let primary = FakeServer::start_with(
        Options {
            bind: port,
            ..Options::default()
        },
        state,
    );
    eventually_async(
        Duration::from_secs(3),
        "the primary is used again",
        async || client.next_id().await.unwrap() < 1 << 40,
    )
    .await;
    drop(primary);
}

#[tokio::test]
async fn prefetch_drains_then_reports_unavailable() {
    let server = FakeServer::floe();
    let client = builder(&[&server])
        .snowflake_prefetch(Prefetch::new(50, 10))
        .request_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    client.warm_up().await.unwrap();
    drop(server);
    let started = Instant::now();
    let mut served = 0;
    let error = loop {
        match client.next_id().await {
            Ok(_) => served += 1,
            Err(e) => break e,
        }
    };
    assert!(served >= 50, "only {served} IDs from the buffer");
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn bad_options_are_refused() {
    let none: [&str; 0] = [];
    assert!(matches!(
        ClientBuilder::new(none).build(),
        Err(Error::Config(_))
    ));
    let bad = [
        ClientBuilder::new(["127.0.0.1:1"]).connections_per_server(0),
        ClientBuilder::new(["127.0.0.1:1"]).request_timeout(Duration::ZERO),
        ClientBuilder::new(["127.0.0.1:1"]).snowflake_prefetch(Prefetch::new(0, 0)),
        ClientBuilder::new(["127.0.0.1:1"]).backoff(Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(1),
        }),
    ];
    for builder in bad {
        assert!(matches!(builder.build(), Err(Error::Config(_))));
    }
}

#[test]
fn build_outside_a_runtime_points_to_the_blocking_client() {
    match ClientBuilder::new(["127.0.0.1:1"]).build() {
        Err(Error::Config(message)) => assert!(message.contains("blocking"), "{message}"),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn blocking_client_works_without_a_runtime() {
    let server = FakeServer::floe();
    let client = floe_client::blocking::Client::new(
        builder(&[&server])
            .snowflake_prefetch(Prefetch::new(100, 20))
            .segment_prefetch(Prefetch::new(100, 20)),
    )
    .unwrap();
    let mut ids = vec![client.next_id().unwrap()];
    ids.extend(client.next_ids(1_000).unwrap());
    ids.extend((0..500).map(|_| client.next_id().unwrap()));
    assert_unique(&ids);
    let orders = client.segment("orders");
    let mut segment: Vec<u64> = (0..300).map(|_| orders.next_id().unwrap()).collect();
    segment.extend(orders.next_ids(10).unwrap());
    assert_unique(&segment);
    assert!(matches!(
        client.segment("nope").next_id(),
        Err(Error::UnknownTag(_))
    ));
    drop(orders);
    // Dropping the last blocking client inside a runtime must not panic.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move { drop(client) });
}
