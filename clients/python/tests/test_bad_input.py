"""Bad input raises a typed error at once, without failover, and leaves the connection usable.

Where each check happens:
- a count below 1, a non-int count, an empty or over-long tag: client-side, before anything is
  sent (FloeBadRequest, also a ValueError; TypeError for a non-int);
- a count over the server's limit (100,000 by default): by the server over v2 (status 4,
  FloeOverLimit) and HTTP (400, FloeBadRequest); over v1, which has no limit, client-side
  (FloeOverLimit), so the protocols agree;
- segment IDs over v1: client-side (FloeUnsupported).
"""

from __future__ import annotations

import pytest

from floe_client import (
    Client,
    FloeBadRequest,
    FloeError,
    FloeOverLimit,
    FloeUnavailable,
    FloeUnsupported,
    HttpClient,
)
from support import FloeServer, strictly_increasing

KINDS = ["v2", "v1", "auto", "http"]


def make(kind: str, server: FloeServer) -> Client | HttpClient:
    if kind == "http":
        return HttpClient(server.http_url)
    return Client(server.tcp, protocol=kind)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [0, -1])
def test_count_below_one_is_a_bad_request(server: FloeServer, kind: str, n: int) -> None:
    with make(kind, server) as c:
        with pytest.raises(FloeBadRequest, match=f"count must be at least 1, got {n}") as e:
            c.get_ids(n)
        assert isinstance(e.value, ValueError)
        assert c.server is None, "checked before connecting"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", ["3", 2.0, True, None])
def test_count_must_be_an_int(server: FloeServer, kind: str, n: object) -> None:
    with make(kind, server) as c, pytest.raises(TypeError, match="count must be an int"):
        c.get_ids(n)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["v2", "auto"])
def test_v2_over_limit_is_refused_by_the_server(server: FloeServer, kind: str) -> None:
    with Client([server.tcp, "127.0.0.1:9"], protocol=kind) as c:
        before = c.get_ids(3)
        with pytest.raises(FloeOverLimit) as e:
            c.get_ids(100_001)
        message = str(e.value)
        assert server.tcp in message and "100001" in message and "100000" in message, message
        assert e.value.server == server.tcp
        # No failover (the other server was never needed), and the connection stays in step.
        assert c.server == server.tcp
        after = c.get_ids(3)
        assert strictly_increasing(before + after), "same connection, same lane"


def test_v1_over_limit_is_refused_by_the_client(server: FloeServer) -> None:
    with Client(server.tcp, protocol="v1") as c:
        with pytest.raises(FloeOverLimit, match="count 100001 is over the limit of 100000"):
            c.get_ids(100_001)
        assert len(c.get_ids(100_000)) == 100_000


def test_http_over_limit_is_a_bad_request(server: FloeServer) -> None:
    with HttpClient([server.http_url, "http://127.0.0.1:9"]) as c:
        with pytest.raises(FloeBadRequest) as e:
            c.get_ids(100_001)
        message = str(e.value)
        assert "HTTP 400" in message and "100001" in message and server.http in message, message
        assert c.get_ids(2)


@pytest.mark.parametrize("kind", ["v2", "auto", "http"])
def test_bad_tags(server: FloeServer, kind: str) -> None:
    with make(kind, server) as c:
        with pytest.raises(FloeBadRequest, match="tag must not be empty"):
            c.segment_ids("", 1)
        with pytest.raises(FloeBadRequest, match="the limit is 255"):
            c.segment_ids("x" * 256, 1)
        with pytest.raises(TypeError):
            c.segment_ids(b"orders", 1)  # type: ignore[arg-type]
        with pytest.raises(FloeBadRequest):
            c.segment_ids("orders", 0)


def test_segment_over_v1_is_unsupported() -> None:
    # Refused before connecting: nothing listens on port 9.
    with Client("127.0.0.1:9", protocol="v1") as c:
        with pytest.raises(FloeUnsupported, match="need protocol v2") as e:
            c.segment_ids("orders", 5)
        assert "'orders'" in str(e.value)
        with pytest.raises(FloeUnsupported):
            c.segment_id("orders")


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="protocol must be one of"):
        Client("127.0.0.1:3778", protocol="v3")
    with pytest.raises(ValueError, match="no servers"):
        Client([])
    with pytest.raises(ValueError, match="port 70000 is outside"):
        Client("127.0.0.1:70000")
    with pytest.raises(ValueError, match="timeout must be > 0"):
        Client("127.0.0.1:3778", timeout=0)
    with pytest.raises(ValueError, match="scheme must be http or https"):
        HttpClient("ftp://127.0.0.1:8880")
    assert Client("a:1, b:2,[::1]:3, c").servers == ["a:1", "b:2", "[::1]:3", "c:3778"]
    assert HttpClient("h1, http://h2:9/base/").servers == ["http://h1:8880", "http://h2:9/base"]


def test_every_error_is_a_floe_error() -> None:
    for cls in (FloeBadRequest, FloeOverLimit, FloeUnavailable, FloeUnsupported):
        assert issubclass(cls, FloeError)
    assert issubclass(FloeOverLimit, FloeBadRequest)
