"""Snowflake IDs from a real `floe serve` over v2, v1 (GenID), protocol auto, and HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from floe_client import Client, HttpClient, decode_genid
from support import DC, MACHINE, ZONE, FloeServer, all_unique, strictly_increasing

AnyClient = Client | HttpClient
KINDS = ["v2", "v1", "auto", "http"]


def make_client(kind: str, server: FloeServer, **kwargs: object) -> AnyClient:
    if kind == "http":
        return HttpClient([server.http_url], **kwargs)  # type: ignore[arg-type]
    return Client([server.tcp], protocol=kind, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(params=KINDS)
def client(request: pytest.FixtureRequest, server: FloeServer) -> Iterator[AnyClient]:
    with make_client(request.param, server) as c:
        yield c


def check_fields(ids: list) -> None:
    now = int(time.time())
    for i in ids:
        f = decode_genid(i)
        assert (f.zone, f.dc, f.machine) == (ZONE, DC, MACHINE), f"{i} decodes to {f}"
        assert abs(f.time - now) < 120, f"{i}: time field {f.time} is not near now ({now})"


def test_get_id(client: AnyClient) -> None:
    a, b = client.get_id(), client.get_id()
    assert isinstance(a, int) and 0 < a < 1 << 64
    assert a != b
    check_fields([a, b])


@pytest.mark.parametrize("n", [1, 255, 10_000])
def test_get_ids(client: AnyClient, n: int) -> None:
    ids = client.get_ids(n)
    assert isinstance(ids, list) and len(ids) == n
    assert all_unique(ids)
    assert strictly_increasing(ids), "one batch comes from one lane, so it increases"
    check_fields(ids)


@pytest.mark.parametrize("kind", ["v2", "v1", "auto"])
def test_ids_increase_across_calls_on_one_connection(server: FloeServer, kind: str) -> None:
    with Client([server.tcp], protocol=kind) as c:
        ids = []
        for n in (1, 7, 255, 256, 1000, 3):
            ids.extend(c.get_ids(n))
            ids.append(c.get_id())
        assert all_unique(ids)
        assert strictly_increasing(ids), "a connection is bound to one lane"


def test_http_ids_unique_across_calls(server: FloeServer) -> None:
    # HTTP requests are not bound to a lane, so only uniqueness holds across calls.
    with HttpClient(server.http_url) as c:
        ids = [i for _ in range(20) for i in c.get_ids(50)] + [c.get_id() for _ in range(20)]
    assert all_unique(ids)
    check_fields(ids)


def test_largest_v2_batch(server: FloeServer) -> None:
    with Client([server.tcp], protocol="v2") as c:
        ids = c.get_ids(100_000)
    assert len(ids) == 100_000 and all_unique(ids) and strictly_increasing(ids)


def test_auto_detects_v2_on_floe(server: FloeServer) -> None:
    with Client(server.tcp) as c:
        assert c.server_protocol is None
        c.get_id()
        assert c.server_protocol == "v2"
        assert c.server == server.tcp


@pytest.mark.parametrize("kind", KINDS)
def test_ping(server: FloeServer, kind: str) -> None:
    with make_client(kind, server) as c:
        rtt = c.ping()
        assert 0 <= rtt < 2
        c.get_id()


def test_many_threads_share_one_client(server: FloeServer) -> None:
    import threading

    results: list = []
    errors: list = []
    with Client(server.tcp) as c:

        def work() -> None:
            try:
                for _ in range(50):
                    results.extend(c.get_ids(20))
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert not errors
    assert len(results) == 4 * 50 * 20 and all_unique(results)


def test_closed_client_refuses(server: FloeServer) -> None:
    from floe_client import FloeError

    c = Client(server.tcp)
    c.get_id()
    c.close()
    with pytest.raises(FloeError, match="closed"):
        c.get_id()
