"""Test helpers: a real `floe serve` process, and tiny fake servers (GenID v1-only, silent,
scripted v2) for the cases a real server cannot be made to produce on demand."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from floe_client import Client, HttpClient

#: How long a server may take to print its "listening" line.
START_TIMEOUT = 20.0
#: How long SIGTERM may take before SIGKILL (the server's contract: graceful shutdown).
STOP_TIMEOUT = 10.0
LISTENING = "floe: listening tcp="

#: The identity of the default test server; its IDs must decode to these fields.
ZONE, DC, MACHINE = 1, 2, 3


class FloeServer:
    """One `floe serve` process on loopback ports, reading its bound addresses from stdout."""

    def __init__(
        self,
        binary: str,
        data_dir: Path,
        *,
        identity: str = "zone=1,dc=2,machine=3",
        tcp_listen: str = "127.0.0.1:0",
        http_listen: str = "127.0.0.1:0",
        config: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.identity = identity
        self.config = config
        self.extra_env = dict(env or {})
        self.tcp_listen = tcp_listen
        self.http_listen = http_listen
        self.proc: subprocess.Popen[bytes] | None = None
        #: ``host:port`` of the binary TCP listener, once started.
        self.tcp = ""
        #: ``host:port`` of the HTTP listener, once started.
        self.http = ""

    @property
    def http_url(self) -> str:
        return f"http://{self.http}"

    def start(self) -> FloeServer:
        """Starts the process and waits for its "listening" line; raises with its stderr if it
        exits first or stays silent for START_TIMEOUT."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        n = len(list(self.data_dir.glob("stdout*")))
        self.stdout_path = self.data_dir / f"stdout{n}.txt"
        self.stderr_path = self.data_dir / f"stderr{n}.txt"
        args = [
            self.binary,
            "serve",
            "--tcp-listen",
            self.tcp_listen,
            "--http-listen",
            self.http_listen,
            "--data-dir",
            str(self.data_dir / "data"),
            "--identity",
            self.identity,
        ]
        if self.config is not None:
            config_path = self.data_dir / "floe.toml"
            config_path.write_text(self.config)
            args += ["--config", str(config_path)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOE_")}
        env.update(self.extra_env)
        # Files, not pipes: a server that logs a lot can never block on a full pipe.
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for line in self.stdout_path.read_text(errors="replace").splitlines():
                if line.startswith(LISTENING):
                    self._parse_listening(line)
                    return self
            if self.proc.poll() is not None:
                raise ServerStartError(self.proc.returncode, self.stderr())
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(
            f"floe serve printed no '{LISTENING}…' line within {START_TIMEOUT} s; stderr:\n{self.stderr()}"
        )

    def _parse_listening(self, line: str) -> None:
        fields = dict(part.split("=", 1) for part in line[len("floe: listening ") :].split())
        self.tcp, self.http = fields["tcp"], fields["http"]
        # A restart (same ports) binds the same addresses.
        self.tcp_listen, self.http_listen = self.tcp, self.http

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, no graceful shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)


def open_client(kind: str, server: FloeServer) -> Client | HttpClient:
    """A client of ``server``: ``"http"`` for :class:`HttpClient`, else :class:`Client` with that
    protocol (``"v2"``, ``"auto"``, ``"v1"``)."""
    if kind == "http":
        return HttpClient(server.http_url)
    return Client(server.tcp, protocol=kind)


class ServerStartError(RuntimeError):
    """`floe serve` exited before it was ready."""

    def __init__(self, code: int, stderr: str) -> None:
        super().__init__(f"floe serve exited with code {code} before listening; stderr:\n{stderr}")
        self.code = code
        self.stderr = stderr


def machine_of(id: int) -> int:
    return (id >> 21) & 7


class FakeServer:
    """A loopback TCP server; each connection is handled by ``handle(sock)`` in its own thread."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self._handle = handle
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        #: Connections accepted so far.
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._conns.append(sock)
            threading.Thread(target=self._run, args=(sock,), daemon=True).start()

    def _run(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        try:
            self._handle(sock)
        except OSError:
            pass
        finally:
            sock.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(2)
        for sock in self._conns:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def recv_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class GenIdServer(FakeServer):
    """Speaks only GenID's v1 (2-byte requests) and closes the connection on any other first
    byte, as GenID does. IDs come from one counter, so they are unique and increasing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = (int(time.time()) << 32) | (1 << 27) | (2 << 24) | (3 << 21)
        #: First bytes that made it close a connection.
        self.rejected: list[int] = []
        super().__init__(self._genid)

    def _take(self, n: int) -> list[int]:
        with self._lock:
            first = self._next
            self._next += n
        return list(range(first, first + n))

    def _genid(self, sock: socket.socket) -> None:
        while True:
            req = recv_exact(sock, 2)
            if req is None:
                return
            cmd, count = req
            if cmd == 0:
                sock.sendall(struct.pack(">Q", self._take(1)[0]))
            elif cmd == 1:
                ids = self._take(count)
                sock.sendall(bytes([count]) + struct.pack(f">{count}Q", *ids))
            else:
                self.rejected.append(cmd)
                return


class SilentServer(FakeServer):
    """Accepts connections and never answers: every request times out."""

    def __init__(self) -> None:
        super().__init__(self._silent)

    def _silent(self, sock: socket.socket) -> None:
        while not self._stop.is_set() and recv_wait(sock):
            pass


def recv_wait(sock: socket.socket) -> bool:
    try:
        return bool(sock.recv(4096))
    except TimeoutError:
        return True


#: One scripted v2 answer: (status, body) where body is IDs for status 0 or a message.
Script = Callable[[int, int, int, bytes], tuple[int, bytes]]


class ScriptedV2Server(FakeServer):
    """Answers every v2 request with ``script(op, req_id, count, tag) -> (status, body)``;
    ``raw(op, req_id, count, tag) -> bytes`` replaces the whole reply when given."""

    def __init__(
        self, script: Script | None = None, raw: Callable[[int, int, int, bytes], bytes] | None = None
    ) -> None:
        self._script = script
        self._raw = raw
        #: (op, count, tag) of every request seen.
        self.requests: list[tuple[int, int, bytes]] = []
        super().__init__(self._v2)

    def _v2(self, sock: socket.socket) -> None:
        while True:
            head = recv_exact(sock, 11)
            if head is None or head[0] != 0xF1:
                return
            _, op, req_id, count, tag_len = struct.unpack(">BBIIB", head)
            tag = recv_exact(sock, tag_len) if tag_len else b""
            if tag is None:
                return
            self.requests.append((op, count, tag))
            if self._raw is not None:
                sock.sendall(self._raw(op, req_id, count, tag))
                continue
            assert self._script is not None
            status, body = self._script(op, req_id, count, tag)
            length = len(body) // 8 if status == 0 else len(body)
            sock.sendall(struct.pack(">BBII", 0xF1, status, req_id, length) + body)


def v2_ok_ids(count: int, first: int = 1 << 40) -> bytes:
    return struct.pack(f">{count}Q", *range(first, first + count))


def all_unique(ids: Sequence[int]) -> bool:
    return len(set(ids)) == len(ids)


def strictly_increasing(ids: Sequence[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(ids))
