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

/// A port nobody listens on now (the OS picks it; a race with another process is unlikely and
/// shows as a member that does not start).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl EtcdCluster {
    /// Starts the three members and waits until the cluster takes writes.
    #[track_caller]
    pub fn start(dir: &Path) -> EtcdCluster {
        let members = (1..=3)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let mut cluster = EtcdCluster {
            dir: dir.to_path_buf(),
            members,
        };
        for i in 0..3 {
            cluster.spawn(i, "new");
        }
        cluster.wait_writable();
        cluster
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

    /// Waits until a write through any running member commits (a leader is elected and a
    /// quorum is up).
    #[track_caller]
    pub fn wait_writable(&self) {
        eventually(SETTLE, "the etcd cluster takes writes", || {
            self.ctl(&["put", "floe-test-probe", "ok"]).map(|_| ())
        });
    }

    /// The index of the current leader, as the members report it.
    #[track_caller]
    pub fn leader(&self) -> usize {
        eventually(SETTLE, "an etcd member reports itself leader", || {
            for (i, m) in self.members.iter().enumerate() {
                if m.child.is_none() {
                    continue;
                }
                // Simple output: endpoint, id, version, db size, is leader, …
                let out = self.etcdctl(
                    &[format!("127.0.0.1:{}", m.client)],
                    &["endpoint", "status"],
                )?;
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
