//! A `floe serve` child process for black-box tests: spawned with a clean environment, its
//! "listening" line read for the bound addresses, signalled, and always killed when dropped.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long the binary may take to print its listening line or to exit after a signal.
pub const STARTUP: Duration = Duration::from_secs(20);

/// `bin args…` with no environment but `PATH` and `env`, so no `FLOE_*` of the caller leaks in.
pub fn clean_command<S: AsRef<std::ffi::OsStr>>(
    bin: impl AsRef<Path>,
    args: &[S],
    env: &[(&str, &str)],
) -> Command {
    let mut cmd = Command::new(bin.as_ref());
    cmd.args(args).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// libfaketime, preloaded directly: the `faketime` wrapper forks, so a signal sent to the
/// process we spawned would not reach `floe`. Fails the test when it is not installed (Debian
/// package `faketime`, which `scripts/services` installs).
pub fn libfaketime() -> std::path::PathBuf {
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
        "/usr/local/lib/faketime/libfaketimeMT.so.1",
    ];
    candidates
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("libfaketime is required (Debian package `faketime`); looked for {candidates:?}")
        })
}

/// Runs `cmd` under libfaketime with `FAKETIME=spec`: an offset such as `"-5s"`, or a start
/// such as `"@2026-11-30 15:59:50"` from which the clock runs on (read in `TZ`, so set
/// `TZ=UTC`). Only the wall clock is faked; tokio's timers run on the real monotonic clock.
pub fn fake_clock(cmd: &mut Command, spec: &str) {
    cmd.env("LD_PRELOAD", libfaketime())
        .env("FAKETIME", spec)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("FAKETIME_NO_CACHE", "1");
}

/// The usual `serve` arguments: ephemeral loopback ports, `data_dir`, warnings only.
#[track_caller]
pub fn serve_args(data_dir: &Path) -> Vec<String> {
    [
        "serve",
        "--tcp-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().expect("a UTF-8 data dir"),
        "--log-level",
        "warn",
    ]
    .map(String::from)
    .to_vec()
}

/// A running `floe serve`.
#[derive(Debug)]
pub struct FloeProcess {
    /// The process; killed in `drop`.
    child: Child,
    /// Binary TCP address from the "listening" line.
    pub tcp: SocketAddr,
    /// HTTP address from the "listening" line.
    pub http: SocketAddr,
    /// When the line was read.
    pub listening_at: Instant,
    /// Everything the process wrote to stderr, for failure messages.
    stderr: Arc<Mutex<String>>,
}

/// Collects a pipe into a string on a thread, so the child never blocks on a full pipe.
pub fn collect(mut from: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    let sink = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buf[..n]);
            sink.lock().push_str(&text);
        }
    });
    out
}

/// `floe: listening tcp=A http=B` → (A, B).
fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.trim_end().strip_prefix("floe: listening tcp=")?;
    let (tcp, http) = rest.split_once(" http=")?;
    Some((tcp.parse().ok()?, http.parse().ok()?))
}

impl FloeProcess {
    /// Spawns `cmd` (a `floe serve` command line) and waits for its listening line; panics with
    /// its stderr if none comes within [`STARTUP`].
    #[track_caller]
    pub fn spawn(mut cmd: Command) -> FloeProcess {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn floe serve");
        let stderr = collect(child.stderr.take().expect("piped stderr"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if line.starts_with("floe: listening") {
                    let _ = tx.send(line);
                    break;
                }
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let Ok(line) = rx.recv_timeout(STARTUP) else {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "floe serve printed no listening line within {STARTUP:?} ({status:?}); stderr:\n{}",
                stderr.lock()
            );
        };
        let (tcp, http) =
            parse_listening(&line).unwrap_or_else(|| panic!("unexpected listening line: {line:?}"));
        FloeProcess {
            child,
            tcp,
            http,
            listening_at: Instant::now(),
            stderr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().clone()
    }

    /// Sends `signal` (e.g. "TERM", "KILL") with the `kill` command.
    #[track_caller]
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit, failing the test after `within` (the process is then
    /// killed when dropped).
    #[track_caller]
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        crate::eventually(within, "floe exits", || match self.child.try_wait() {
            Ok(Some(status)) => Ok(status),
            Ok(None) => Err(format!("still running; stderr:\n{}", self.stderr())),
            Err(e) => panic!("try_wait: {e}"),
        })
    }

    /// SIGTERM, then the exit status (bounded by `within`).
    #[track_caller]
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        self.signal("TERM");
        self.wait(within)
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for FloeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_listening;

    #[test]
    fn listening_line() {
        let (t, h) = parse_listening("floe: listening tcp=127.0.0.1:1 http=[::1]:2\n").unwrap();
        assert_eq!((t.port(), h.port()), (1, 2));
        assert!(parse_listening("floe: listening tcp=x http=y").is_none());
    }
}
