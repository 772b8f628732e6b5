//! The etcd worker-id registry against the real 3-member etcd cluster on loopback
//! (`FLOE_TEST_ETCD_ENDPOINTS`, default the three members `./scripts/services` starts). A missing
//! etcd fails these tests.

mod common;

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, DeleteOptions, GetOptions};
use floe_store::registry::{EtcdConfig, EtcdRegistry, LeaseRequest, WorkerRegistry};
use floe_testkit::{etcd_endpoints, unique};

/// A registry on `endpoints` under `prefix`.
fn registry(
    endpoints: Vec<String>,
    prefix: &str,
    call_timeout: Duration,
) -> Arc<dyn WorkerRegistry> {
    let config = EtcdConfig {
        key_prefix: prefix.to_string(),
        call_timeout,
        ..EtcdConfig::new(endpoints)
    };
    Arc::new(EtcdRegistry::new(&config).unwrap())
}

/// A key prefix of its own for one test, whose keys are deleted when the test ends.
struct Prefix(String);

impl Prefix {
    fn new() -> Prefix {
        Prefix(format!("/{}", unique("floetest")))
    }
}

impl common::Store for Prefix {
    fn registry(&self) -> Arc<dyn WorkerRegistry> {
        registry(etcd_endpoints(), &self.0, Duration::from_secs(5))
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        // Best effort, on a runtime of its own so it also runs when a test panics.
        let prefix = format!("{}/", self.0);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut client = Client::connect(etcd_endpoints(), None).await.ok()?;
                client
                    .delete(prefix, Some(DeleteOptions::new().with_prefix()))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

common::contract!(contract, Prefix::new());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_etcd_is_unavailable_within_the_call_timeout() {
    let (addr, hole) = common::black_hole().await;
    let timeout = Duration::from_millis(500);
    let reg = registry(vec![format!("http://{addr}")], "/floetest", timeout);
    common::hung_store_is_unavailable(reg, timeout).await;
    hole.abort();
}

/// What etcd itself holds for a grant: the worker key bound to a lease of at least the ttl
/// (whole seconds, rounded up), the grant key whose revision is the epoch, and a release that
/// revokes the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_is_a_key_on_an_etcd_lease_and_its_revision_is_the_epoch() {
    let p = Prefix::new();
    let reg = common::Store::registry(&p);
    let req = LeaseRequest::new(unique("raw"), 4, Duration::from_millis(2_500));
    let lease = reg.acquire(&req).await.unwrap();
    let mut client = Client::connect(etcd_endpoints(), None).await.unwrap();
    let base = format!("{}/{}", p.0, req.namespace);
    let worker = client
        .get(format!("{base}/worker/{}", lease.id), None)
        .await
        .unwrap();
    let worker = &worker.kvs()[0];
    assert_eq!(worker.value(), req.owner.as_bytes());
    assert_ne!(worker.lease(), 0, "the worker key is bound to a lease");
    let ttl = client
        .lease_time_to_live(worker.lease(), None)
        .await
        .unwrap();
    assert_eq!(ttl.granted_ttl(), 3, "2.5 s rounds up to 3 s");
    let grant = client
        .get(format!("{base}/grant/{}", lease.id), None)
        .await
        .unwrap();
    assert_eq!(grant.kvs()[0].mod_revision() as u64, lease.epoch);
    reg.release(&req, &lease, 42).await.unwrap();
    let after = client
        .lease_time_to_live(worker.lease(), None)
        .await
        .unwrap();
    assert!(after.ttl() <= 0, "the release revoked the lease: {after:?}");
    let left = client
        .get(
            format!("{base}/worker/"),
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!(left.count(), 0);
    let hw = client
        .get(format!("{base}/hw/{}", lease.id), None)
        .await
        .unwrap();
    assert_eq!(hw.kvs()[0].value(), b"42");
}

/// A member that refuses connections and one that accepts and never answers are skipped:
/// every call still succeeds within the call timeout through the members that work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_and_hung_members_are_skipped_within_the_call_timeout() {
    let p = Prefix::new();
    let (hole, hole_task) = common::black_hole().await;
    let call_timeout = Duration::from_secs(3);
    let mut endpoints = vec!["http://127.0.0.1:1".to_string(), format!("http://{hole}")];
    endpoints.extend(etcd_endpoints());
    let reg = registry(endpoints, &p.0, call_timeout);
    let req = LeaseRequest::new(unique("failover"), 8, Duration::from_secs(5));
    for round in 0..5u64 {
        let started = tokio::time::Instant::now();
        let lease = reg.acquire(&req).await.unwrap();
        reg.renew(&req, &lease, 100 + round).await.unwrap();
        reg.release(&req, &lease, 100 + round).await.unwrap();
        assert!(
            started.elapsed() < call_timeout * 3,
            "round {round}: {:?}",
            started.elapsed()
        );
        assert_eq!(
            lease.id, 0,
            "the id is released each round and claimed again"
        );
    }
    hole_task.abort();
}

/// A full `twitter` pool (1,024 held ids) is listed within the default call timeout, with the
/// time each lease has left: the console's cluster view of a large cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_of_1024_is_listed_within_the_call_timeout() {
    let p = Prefix::new();
    let ns = unique("full");
    let claimers: Vec<_> = (0..8)
        .map(|_| {
            let reg = common::Store::registry(&p);
            let ns = ns.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..128 {
                    let req = LeaseRequest::new(ns.clone(), 1_024, Duration::from_secs(60));
                    ids.push(reg.acquire(&req).await.unwrap().id);
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for c in claimers {
        ids.extend(c.await.unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, (0..1_024).collect::<Vec<_>>());
    let reg = registry(
        etcd_endpoints(),
        &p.0,
        floe_store::registry::DEFAULT_CALL_TIMEOUT,
    );
    let slots = reg
        .list(&LeaseRequest::new(ns, 1_024, Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(slots.len(), 1_024);
    for s in &slots {
        assert!(s.held, "{s:?}");
        let left = s.expires_in_ms.unwrap();
        assert!(left > 0 && left <= 60_000, "{s:?}");
    }
}

/// With authentication enabled (on a cluster of the test's own), the configured user with a
/// read-write role on the prefix gets, renews and releases an id; no user or a wrong password
/// gets `Unavailable` naming the store, never an id.
#[test]
fn with_authentication_only_the_configured_user_gets_an_id() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = floe_testkit::EtcdCluster::start(tmp.path());
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "add", "floe:floepw"],
        &["role", "add", "floe-ids"],
        &[
            "role",
            "grant-permission",
            "floe-ids",
            "--prefix=true",
            "readwrite",
            "/floeauth/",
        ],
        &["user", "grant-role", "floe", "floe-ids"],
        &["auth", "enable"],
    ] {
        cluster
            .ctl(args)
            .unwrap_or_else(|e| panic!("etcdctl {args:?}: {e}"));
    }
    let config = |user: Option<(&str, &str)>| {
        let c = EtcdConfig {
            key_prefix: "/floeauth".into(),
            user: user.map(|(u, p)| (u.to_string(), p.to_string())),
            call_timeout: Duration::from_secs(3),
            ..EtcdConfig::new(cluster.endpoints())
        };
        EtcdRegistry::new(&c).unwrap()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let req = LeaseRequest::new("auth", 4, Duration::from_secs(5));
        let reg = config(Some(("floe", "floepw")));
        let lease = reg.acquire(&req).await.unwrap();
        assert_eq!(lease.id, 0);
        reg.renew(&req, &lease, 7).await.unwrap();
        reg.release(&req, &lease, 7).await.unwrap();
        for (what, reg) in [
            ("no user", config(None)),
            ("a wrong password", config(Some(("floe", "nope")))),
        ] {
            match reg.acquire(&req).await {
                Err(e @ floe_store::registry::RegistryError::Unavailable { .. }) => {
                    let e = e.to_string();
                    assert!(e.contains("etcd at"), "{what}: {e}");
                    assert!(
                        e.contains("check registry.user and registry.password"),
                        "{what}: {e}"
                    );
                }
                other => panic!("{what}: expected Unavailable, got {other:?}"),
            }
        }
    });
}

/// Kills a child process when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// etcd over TLS: a member of the test's own with a certificate signed by a CA the test makes.
/// With that CA's file the registry leases, renews and releases an id; with another CA's file
/// the connection is refused (`Unavailable`), and an https:// endpoint without a CA file is a
/// configuration error before any I/O.
#[test]
fn over_tls_the_members_certificate_is_checked_against_the_ca_file() {
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .expect("openssl (./scripts/services installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for (key, pem, cn) in [
        ("ca.key", "ca.pem", "floe-test-ca"),
        ("other.key", "other.pem", "other-ca"),
    ] {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            pem,
            "-days",
            "2",
            "-subj",
            &format!("/CN={cn}"),
        ]);
    }
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "member.key",
        "-out",
        "member.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        d.join("member.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "member.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "member.pem",
        "-days",
        "2",
        "-extfile",
        "member.ext",
    ]);
    let port = |_| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (client, peer) = (port(0), port(1));
    let endpoint = format!("https://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = std::fs::File::create(d.join("etcd.log")).unwrap();
    let _etcd = KillOnDrop(
        Command::new("etcd")
            .args(["--name", "tls", "--data-dir"])
            .arg(d.join("data"))
            .args([
                "--listen-client-urls",
                &endpoint,
                "--advertise-client-urls",
                &endpoint,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("tls={peer_url}")])
            .arg("--cert-file")
            .arg(d.join("member.pem"))
            .arg("--key-file")
            .arg(d.join("member.key"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (./scripts/services installs it)"),
    );
    let registry = |ca: &str| {
        EtcdRegistry::new(&EtcdConfig {
            key_prefix: "/floetls".into(),
            tls: Some(floe_store::registry::EtcdTls {
                ca_file: Some(d.join(ca).display().to_string()),
                ..Default::default()
            }),
            call_timeout: Duration::from_secs(2),
            ..EtcdConfig::new(vec![endpoint.clone()])
        })
        .unwrap()
    };
    let e = EtcdRegistry::new(&EtcdConfig::new(vec![endpoint.clone()])).unwrap_err();
    assert!(e.to_string().contains("need the CA file"), "{e}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let req = LeaseRequest::new("tls", 4, Duration::from_secs(5));
        let reg = registry("ca.pem");
        // The member takes a moment to start: poll, with a deadline.
        let lease = floe_testkit::eventually_async(
            Duration::from_secs(30),
            "the registry leases an id from etcd over TLS",
            async || reg.acquire(&req).await.map_err(|e| e.to_string()),
        )
        .await;
        assert_eq!(lease.id, 0);
        reg.renew(&req, &lease, 9).await.unwrap();
        reg.release(&req, &lease, 9).await.unwrap();
        match registry("other.pem").acquire(&req).await {
            Err(floe_store::registry::RegistryError::Unavailable { .. }) => {}
            other => {
                panic!("a member whose certificate another CA signed must be refused: {other:?}")
            }
        }
    });
}

/// An acquire that committed but whose reply was lost (a member died after the commit) left the
/// worker and grant keys with the request's owner on an etcd lease. The retry of that same
/// request gets that id back, with the grant's revision as its epoch, instead of claiming a
/// second id that would stay leased for nothing; another owner gets the next id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_acquire_finds_its_own_committed_claim() {
    use etcd_client::{PutOptions, Txn, TxnOp};
    let p = Prefix::new();
    let reg = common::Store::registry(&p);
    let req = LeaseRequest::new(unique("retry"), 4, Duration::from_secs(5));
    let mut client = Client::connect(etcd_endpoints(), None).await.unwrap();
    let base = format!("{}/{}", p.0, req.namespace);
    // What the lost attempt committed, exactly as `acquire` writes it.
    let etcd_lease = client.lease_grant(5, None).await.unwrap().id();
    let committed = client
        .txn(Txn::new().and_then(vec![
            TxnOp::put(
                format!("{base}/worker/0"),
                req.owner.as_str(),
                Some(PutOptions::new().with_lease(etcd_lease)),
            ),
            TxnOp::put(format!("{base}/grant/0"), req.owner.as_str(), None),
        ]))
        .await
        .unwrap();
    let revision = committed.header().unwrap().revision() as u64;
    let lease = reg.acquire(&req).await.unwrap();
    assert_eq!((lease.id, lease.epoch), (0, revision), "{lease:?}");
    reg.renew(&req, &lease, 3).await.unwrap();
    let other = reg
        .acquire(&LeaseRequest::new(
            req.namespace.clone(),
            4,
            Duration::from_secs(5),
        ))
        .await
        .unwrap();
    assert_eq!(other.id, 1);
    let held = client
        .get(
            format!("{base}/worker/"),
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!(held.count(), 2, "no id claimed twice by one request");
}
