//! A 3-member etcd cluster of a test's own, on loopback, whose members can be killed and
//! restarted (the shared cluster `./scripts/services` starts is for tests that do not kill it).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::eventually;

/// How long a cluster or a restarted member may take to take writes again.
const SETTLE: Duration = Duration::from_secs(30);

/// One member: its ports, data dir and process.
#[derive(Debug)]
struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

/// Three `etcd` processes on 127.0.0.1 with free ports, data under `dir`, killed on drop.
/// Short heartbeats (100 ms) and elections (500 ms), so a lost leader is replaced in about a
/// second, as in `./scripts/services`.
#[derive(Debug)]
pub struct EtcdCluster {
    dir: PathBuf,
    members: Vec<Member>,
}

/// `n` distinct ports nobody listens on now: the listeners are held until all are picked, so
/// the OS cannot hand one out twice. Another process may still take one before etcd binds it;
/// [`EtcdCluster::start`] then starts over on new ports.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("a bound port").port())
        .collect()
}

/// Times [`EtcdCluster::start`] picks new ports after a member could not start.
const START_TRIES: usize = 3;

impl EtcdCluster {
    /// Starts the three members and waits until every one of them is up and the cluster takes
    /// writes. A member that exits at once (its port was taken meanwhile) makes it start over
    /// on new ports, up to [`START_TRIES`] times.
    #[track_caller]
    pub fn start(dir: &Path) -> EtcdCluster {
        let mut why = String::new();
        for attempt in 0..START_TRIES {
            let ports = free_ports(6);
            let members = (0..3)
                .map(|i| Member {
                    name: format!("m{}", i + 1),
                    client: ports[2 * i],
                    peer: ports[2 * i + 1],
                    child: None,
                })
                .collect();
            let mut cluster = EtcdCluster {
                dir: dir.join(format!("try{attempt}")),
                members,
            };
            std::fs::create_dir_all(&cluster.dir).expect("etcd cluster dir");
            for i in 0..3 {
                cluster.spawn(i, "new");
            }
            match cluster.settle() {
                Ok(()) => return cluster,
                Err(e) => why = e,
            }
        }
        panic!("the etcd cluster did not start in {START_TRIES} tries: {why}");
    }

    /// Waits until every running member answers and a write commits; `Err` at once if a member
    /// process exited, with the end of its log.
    fn settle(&mut self) -> Result<(), String> {
        let deadline = std::time::Instant::now() + SETTLE;
        loop {
            for m in &mut self.members {
                if let Some(child) = &mut m.child {
                    if let Ok(Some(status)) = child.try_wait() {
                        let log = std::fs::read_to_string(self.dir.join(format!("{}.log", m.name)))
                            .unwrap_or_default();
                        let tail: Vec<&str> = log.lines().rev().take(3).collect();
                        return Err(format!("member {} exited ({status}): {tail:?}", m.name));
                    }
                }
            }
            let live: Vec<String> = self
                .members
                .iter()
                .filter(|m| m.child.is_some())
                .map(|m| format!("127.0.0.1:{}", m.client))
                .collect();
            let healthy = self.etcdctl(&live, &["endpoint", "health"]).is_ok()
                && self.ctl(&["put", "floe-test-probe", "ok"]).is_ok();
            if healthy {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("not every member healthy within {SETTLE:?}"));
            }
            std::thread::sleep(crate::POLL);
        }
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect();
        // One token per cluster (its first member's client port), so members of two test
        // clusters can never join each other.
        let token = format!("floe-test-{}", self.members[0].client);
        let m = &self.members[i];
        let data = self.dir.join(&m.name);
        let log =
            std::fs::File::create(self.dir.join(format!("{}.log", m.name))).expect("etcd log");
        let client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let child = Command::new("etcd")
            .args(["--name", &m.name, "--data-dir"])
            .arg(&data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &initial.join(",")])
            .args([
                "--initial-cluster-state",
                state,
                "--initial-cluster-token",
                &token,
            ])
            .args(["--heartbeat-interval", "100", "--election-timeout", "500"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run etcd ({e}); ./scripts/services installs Debian's etcd-server")
            });
        self.members[i].child = Some(child);
    }

    /// The client URLs of the members, `http://127.0.0.1:port`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect()
    }

    /// `host:port` of member `i`'s client port.
    pub fn client_addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client)
    }

    fn etcdctl(&self, endpoints: &[String], args: &[&str]) -> Result<String, String> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .args(["--command-timeout=2s", "--dial-timeout=1s"])
            .args(args)
            .output()
            .map_err(|e| format!("cannot run etcdctl ({e}); ./scripts/services installs it"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `etcdctl` against every running member, with the output on success.
    pub fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let live: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect();
        self.etcdctl(&live, args)
    }

    /// Waits until every running member answers and a write commits (a leader is elected and
    /// a quorum is up); fails the test if a member exited.
    #[track_caller]
    pub fn wait_writable(&mut self) {
        if let Err(e) = self.settle() {
            panic!("the etcd cluster does not settle: {e}");
        }
    }

    /// The index of the current leader, as the members report it.
    #[track_caller]
    pub fn leader(&self) -> usize {
        eventually(SETTLE, "an etcd member reports itself leader", || {
            for (i, m) in self.members.iter().enumerate() {
                if m.child.is_none() {
                    continue;
                }
                // Simple output: endpoint, id, version, db size, is leader, …; a member that
                // does not answer is skipped, not the end of the search.
                let Ok(out) = self.etcdctl(
                    &[format!("127.0.0.1:{}", m.client)],
                    &["endpoint", "status"],
                ) else {
                    continue;
                };
                if out.split(", ").nth(4) == Some("true") {
                    return Ok(i);
                }
            }
            Err("no member is leader".to_string())
        })
    }

    /// kill -9 member `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts member `i` on its data dir and waits until the cluster takes writes.
    #[track_caller]
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        self.spawn(i, "existing");
        self.wait_writable();
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill9(i);
        }
    }
}
