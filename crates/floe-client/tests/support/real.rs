//! The real `floe serve` as a child process: found through `FLOE_BIN` or built once with cargo,
//! started on loopback, read for its "listening" line, and always killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use floe_testkit::{clean_command, serve_args, FloeProcess};

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
    /// The process (addresses, signals, kill on drop).
    process: FloeProcess,
    /// Binary TCP address from the "listening" line.
    pub tcp: SocketAddr,
}

impl Floe {
    /// Starts `floe serve` with the test identity (zone 1, dc 2) and `machine`, on `tcp` (e.g.
    /// `127.0.0.1:0`), keeping its state in `data_dir`.
    ///
    /// Servers that run side by side need distinct machine ids, or they issue equal IDs.
    #[track_caller]
    pub fn start(data_dir: &Path, tcp: &str, machine: u8) -> Floe {
        Floe::start_with(data_dir, tcp, machine, &[])
    }

    /// [`Floe::start`] with `extra` arguments for `floe serve`.
    #[track_caller]
    pub fn start_with(data_dir: &Path, tcp: &str, machine: u8, extra: &[&str]) -> Floe {
        Floe::spawn(floe_bin(), data_dir, tcp, machine, extra)
    }

    /// Starts the binary at `bin` like [`Floe::start_with`].
    #[track_caller]
    pub fn spawn(bin: PathBuf, data_dir: &Path, tcp: &str, machine: u8, extra: &[&str]) -> Floe {
        let identity = format!("zone=1,dc=2,machine={machine}");
        let mut args = serve_args(data_dir);
        // A chosen port (a restarted server keeps its address) instead of the ephemeral one.
        let port = args
            .iter()
            .position(|a| a == "--tcp-listen")
            .expect("serve_args")
            + 1;
        args[port] = tcp.to_string();
        args.extend(["--identity", &identity].map(String::from));
        args.extend(extra.iter().map(|a| a.to_string()));
        let process = FloeProcess::spawn(clean_command(bin, &args, &[]));
        Floe {
            tcp: process.tcp,
            process,
        }
    }

    /// The TCP address as the client takes it.
    pub fn address(&self) -> String {
        self.tcp.to_string()
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        self.process.kill9();
    }

    /// SIGTERM (graceful shutdown), and wait for a clean exit.
    #[track_caller]
    pub fn terminate(&mut self) {
        let status = self.process.terminate(STARTUP);
        assert!(
            status.success(),
            "floe exited with {status} after SIGTERM; stderr:\n{}",
            self.stderr()
        );
    }
}
