"""Failover between servers: crashes mid-stream, every server down, silent servers, "unavailable"
answers, restarts and idle connections closed by the server."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import pytest

from floe_client import Client, FloeUnavailable, HttpClient
from support import (
    FloeServer,
    GenIdServer,
    ScriptedV2Server,
    SilentServer,
    all_unique,
    machine_of,
)

AnyClient = Client | HttpClient


def make(kind: str, addresses: Sequence[str], **kwargs: object) -> AnyClient:
    if kind == "http":
        return HttpClient(list(addresses), **kwargs)  # type: ignore[arg-type]
    return Client(list(addresses), protocol=kind, **kwargs)  # type: ignore[arg-type]


def addresses(kind: str, servers: Sequence[FloeServer]) -> list[str]:
    return [s.http_url if kind == "http" else s.tcp for s in servers]


def three(start_server: Callable[..., FloeServer]) -> list[FloeServer]:
    # Distinct machine ids: two servers with one identity would issue equal IDs.
    return [start_server(identity=f"zone=1,dc=2,machine={m}") for m in (3, 4, 5)]


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.01)


@pytest.mark.parametrize("kind", ["v2", "v1", "http"])
def test_crash_mid_stream_fails_over_without_duplicates(start_server: Callable[..., FloeServer], kind: str) -> None:
    servers = three(start_server)
    client = make(kind, addresses(kind, servers), timeout=1.0)
    ids: list[int] = []
    errors: list[BaseException] = []
    batches = [0]
    stop = threading.Event()

    def fetch() -> None:
        try:
            while not stop.is_set():
                ids.extend(client.get_ids(50))
                batches[0] += 1
        except BaseException as e:
            errors.append(e)

    worker = threading.Thread(target=fetch)
    worker.start()
    try:
        wait_until(lambda: batches[0] >= 20 or bool(errors), 20, "20 batches before the crash")
        victim_address = client.server
        victim = next(s for s, a in zip(servers, addresses(kind, servers), strict=True) if a == victim_address)
        victim.kill()
        at_kill = batches[0]
        wait_until(lambda: batches[0] >= at_kill + 20 or bool(errors), 20, "20 batches after the crash")
    finally:
        stop.set()
        worker.join(20)
        client.close()
    assert not errors, f"the client raised while other servers were up: {errors[0]!r}"
    assert all_unique(ids), "duplicate IDs across the failover"
    machines = {machine_of(i) for i in ids}
    victim_machine = servers.index(victim) + 3
    assert victim_machine in machines and len(machines) >= 2, machines
    # Compared by address: the client names servers by the address it was given.
    assert client.server != victim_address, "the client still points at the killed server"


@pytest.mark.parametrize("kind", ["v2", "v1", "auto", "http"])
def test_all_servers_down_raises_unavailable(start_server: Callable[..., FloeServer], kind: str) -> None:
    servers = three(start_server)
    timeout = 1.0
    with make(kind, addresses(kind, servers), timeout=timeout) as client:
        client.get_ids(10)
        for s in servers:
            s.kill()
        started = time.monotonic()
        with pytest.raises(FloeUnavailable) as e:
            client.get_ids(10)
        assert time.monotonic() - started < timeout * len(servers)
        message = str(e.value)
        for a in addresses(kind, servers):
            assert a in message, message
        assert set(e.value.errors) == set(addresses(kind, servers))
        # And again (servers now in backoff): still tried, still bounded.
        started = time.monotonic()
        with pytest.raises(FloeUnavailable):
            client.get_id()
        assert time.monotonic() - started < timeout * len(servers)


@pytest.mark.parametrize("kind", ["v2", "v1", "auto", "http"])
def test_silent_servers_raise_within_the_timeout_budget(kind: str) -> None:
    silent = [SilentServer() for _ in range(3)]
    try:
        timeout = 0.3
        urls = [("http://" if kind == "http" else "") + s.address for s in silent]
        with make(kind, urls, timeout=timeout) as client:
            started = time.monotonic()
            with pytest.raises(FloeUnavailable) as e:
                client.get_ids(5)
            elapsed = time.monotonic() - started
        assert timeout * 3 * 0.9 <= elapsed < timeout * 3 + 1.0, elapsed
        assert "timeout" in str(e.value), str(e.value)
    finally:
        for s in silent:
            s.close()


def test_stays_on_a_working_server_after_failover(server: FloeServer) -> None:
    with SilentServer() as silent:
        with Client([silent.address, server.tcp], timeout=0.3) as client:
            ids = client.get_ids(5)
            assert client.server == server.tcp
            for _ in range(20):
                ids += client.get_ids(5)
        assert silent.accepted == 1, "the long-lived connection stays on the server that works"
    assert all_unique(ids)


def test_v2_unavailable_status_fails_over(server: FloeServer) -> None:
    with ScriptedV2Server(lambda op, req_id, count, tag: (3, b"no lease held")) as sick:
        with Client([sick.address, server.tcp], protocol="v2") as client:
            ids = client.get_ids(10)
            assert len(ids) == 10 and client.server == server.tcp
            client.get_ids(10)
        assert [r[0] for r in sick.requests] == [1], "one snowflake request, then it is avoided"


class _Http503(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"error":{"code":"unavailable","message":"clock moved back 5 s"}}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_503() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Http503)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_http_503_fails_over(server: FloeServer, http_503: str) -> None:
    with HttpClient([http_503, server.http_url]) as client:
        assert len(client.get_ids(10)) == 10
        assert client.server == server.http_url
    with HttpClient([http_503]) as client, pytest.raises(FloeUnavailable, match="clock moved back 5 s"):
        client.get_id()


@pytest.mark.parametrize("kind", ["auto", "http"])
def test_restarted_server_is_used_again_at_once(start_server: Callable[..., FloeServer], kind: str) -> None:
    server = start_server()
    with make(kind, addresses(kind, [server]), timeout=1.0, backoff=5.0) as client:
        before = client.get_ids(100)
        assert server.stop() == 0
        with pytest.raises(FloeUnavailable):
            client.get_id()
        server.start()  # same ports, same data dir
        # In backoff for 5 s, but the only server: tried anyway, and it answers.
        after = client.get_ids(100)
    assert all_unique(before + after)
    assert min(after) > max(before), "the high-water mark carries over the restart"


def test_idle_connection_closed_by_the_server_is_reopened(start_server: Callable[..., FloeServer]) -> None:
    server = start_server(env={"FLOE_SERVER__IDLE_TIMEOUT": "200ms"})
    with GenIdServer() as other:
        with Client([server.tcp, other.address]) as client:
            first = client.get_id()
            time.sleep(0.6)  # the server closes the idle connection meanwhile
            second = client.get_id()
            assert client.server == server.tcp, "a stale connection is reopened, not failed over"
        assert other.accepted == 0
    assert first != second


@pytest.mark.parametrize("kind", ["auto", "v1", "http"])
def test_server_restarted_between_calls_is_reconnected_quietly(
    start_server: Callable[..., FloeServer], kind: str
) -> None:
    server = start_server()
    with SilentServer() as spare:
        spare_address = ("http://" if kind == "http" else "") + spare.address
        with make(kind, [*addresses(kind, [server]), spare_address], timeout=1.0) as client:
            before = client.get_ids(10)
            assert server.stop() == 0
            server.start()  # same ports: the client's open connection is now dead
            after = client.get_ids(10)
            assert client.server == addresses(kind, [server])[0]
        assert spare.accepted == 0, "a connection closed while idle is reopened, not failed over"
    assert all_unique(before + after)
