//! The real `floe serve` as a child process: found through `FLOE_BIN` or built once with cargo,
//! started on loopback, read for its "listening" line, and always killed when dropped.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long the server may take to start or stop.
pub const STARTUP: Duration = Duration::from_secs(30);

/// The workspace root, two levels above this crate.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf()
}

/// The `floe` binary: `FLOE_BIN`, else built with `cargo build -p floe` (once per test binary)
/// into `CARGO_TARGET_DIR` or the workspace's `target`.
pub fn floe_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build(false)).clone()
}

/// Like [`floe_bin`] but an optimised build, for benchmarks.
pub fn floe_bin_release() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build(true)).clone()
}

fn build(release: bool) -> PathBuf {
    if let Some(bin) = std::env::var_os("FLOE_BIN") {
        return PathBuf::from(bin);
    }
    let root = workspace();
    let mut args = vec!["build", "-p", "floe", "--message-format=short"];
    if release {
        args.push("--release");
    }
    let output = Command::new(env!("CARGO"))
        .args(&args)
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .expect("run cargo build -p floe");
    assert!(
        output.status.success(),
        "cargo build -p floe failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_relative() { root.join(t) } else { t })
        .unwrap_or_else(|| root.join("target"));
    let bin = target
        .join(if release { "release" } else { "debug" })
        .join("floe");
    assert!(bin.exists(), "built floe but {} is missing", bin.display());
    bin
}

/// A running `floe serve`; killed (SIGKILL) when dropped.
pub struct Floe {
    /// The process.
    child: Child,
    /// Binary TCP address from the "listening" line.
    pub tcp: SocketAddr,
    /// Everything the process wrote to stderr, for failure messages.
    stderr: Arc<Mutex<String>>,
}

impl Floe {
    /// Starts `floe serve` with the test identity (zone 1, dc 2) and `machine`, on `tcp` (e.g.
    /// `127.0.0.1:0`), keeping its state in `data_dir`.
    ///
    /// Servers that run side by side need distinct machine ids, or they issue equal IDs.
    pub fn start(data_dir: &Path, tcp: &str, machine: u8) -> Floe {
        Floe::start_with(data_dir, tcp, machine, &[])
    }

    /// [`Floe::start`] with `extra` arguments for `floe serve`.
    pub fn start_with(data_dir: &Path, tcp: &str, machine: u8, extra: &[&str]) -> Floe {
        Floe::spawn(floe_bin(), data_dir, tcp, machine, extra)
    }

    /// Starts the binary at `bin` like [`Floe::start_with`].
    pub fn spawn(bin: PathBuf, data_dir: &Path, tcp: &str, machine: u8, extra: &[&str]) -> Floe {
        let identity = format!("zone=1,dc=2,machine={machine}");
        let mut child = Command::new(bin)
            .args([
                "serve",
                "--tcp-listen",
                tcp,
                "--http-listen",
                "127.0.0.1:0",
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--identity",
                &identity,
                "--log-level",
                "warn",
            ])
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn floe serve");
        let stderr = collect(child.stderr.take().unwrap());
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if line.starts_with("floe: listening") {
                    let _ = tx.send(line);
                    break;
                }
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(STARTUP) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "floe serve printed no listening line within {STARTUP:?} ({status:?}); stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        let tcp = line
            .strip_prefix("floe: listening tcp=")
            .and_then(|rest| rest.split_once(" http="))
            .and_then(|(tcp, _)| tcp.parse().ok())
            .unwrap_or_else(|| panic!("unexpected listening line: {line:?}"));
        Floe { child, tcp, stderr }
    }

    /// The TCP address as the client takes it.
    pub fn address(&self) -> String {
        self.tcp.to_string()
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (graceful shutdown), and wait for a clean exit.
    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "floe exited with {status} after SIGTERM; stderr:\n{}",
                    self.stderr()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "floe did not exit within {STARTUP:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Floe {
    fn drop(&mut self) {
        self.kill();
    }
}

fn collect(mut from: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    let sink = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    out
}
