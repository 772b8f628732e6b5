"""How v2 replies map to errors, with a scripted fake server (a real server cannot be made to
answer every status on demand). The second server in each list is never needed: typed errors
raise at once, without failover."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

import pytest

from floe_client import (
    Client,
    FloeBadRequest,
    FloeInternalError,
    FloeOverLimit,
    FloeProtocolError,
    FloeUnavailable,
    FloeUnknownTag,
)
from support import FakeServer, GenIdServer, ScriptedV2Server, recv_exact, v2_ok_ids


@pytest.mark.parametrize(
    "status, error",
    [(1, FloeBadRequest), (2, FloeUnknownTag), (4, FloeOverLimit), (5, FloeInternalError)],
)
def test_error_statuses_raise_without_failover(status: int, error: type) -> None:
    def script(op: int, req_id: int, count: int, tag: bytes) -> tuple[int, bytes]:
        if op == 3:
            return 0, b""
        return status, "unknown tag `orders`: créez-le".encode()

    with ScriptedV2Server(script) as s, GenIdServer() as other:
        with Client([s.address, other.address]) as c:
            with pytest.raises(error) as e:
                c.segment_ids("orders", 7)
            assert s.address in str(e.value) and "créez-le" in str(e.value)
            assert "'orders'" in str(e.value) and "count 7" in str(e.value)
            assert e.value.server == s.address
            assert c.server == s.address, "the connection is kept"
        assert other.accepted == 0
        assert s.requests == [(3, 0, b""), (2, 7, b"orders")]


def test_ok_reply_ids_and_tag_on_the_wire() -> None:
    with ScriptedV2Server(lambda op, req_id, count, tag: (0, v2_ok_ids(count))) as s:
        with Client(s.address, protocol="v2") as c:
            assert c.segment_ids("ordérs", 3) == [1 << 40, (1 << 40) + 1, (1 << 40) + 2]
        assert s.requests == [(2, 3, "ordérs".encode())]


@pytest.mark.parametrize(
    "raw, what",
    [
        (lambda op, req_id, count, tag: struct.pack(">BBII", 0xF1, 0, req_id + 1, count) + v2_ok_ids(count), "req_id"),
        (lambda op, req_id, count, tag: struct.pack(">BBII", 0xF2, 0, req_id, count) + v2_ok_ids(count), "magic"),
        (
            lambda op, req_id, count, tag: struct.pack(">BBII", 0xF1, 0, req_id, count - 1) + v2_ok_ids(count - 1),
            "asked",
        ),
        (lambda op, req_id, count, tag: struct.pack(">BBII", 0xF1, 9, req_id, 2) + b"??", "status 9"),
    ],
)
def test_protocol_errors_fail_over_and_are_reported(raw: object, what: str) -> None:
    with ScriptedV2Server(raw=raw) as bad:  # type: ignore[arg-type]
        with Client(bad.address, protocol="v2") as c, pytest.raises(FloeProtocolError, match=what):
            c.get_ids(4)
        with GenIdServer() as good, Client([bad.address, good.address], protocol="v2", timeout=1) as c:
            # good speaks only v1, so under explicit v2 both fail: unavailable, listing both.
            with pytest.raises(FloeUnavailable) as e:
                c.get_ids(4)
            assert what in str(e.value) and bad.address in str(e.value) and good.address in str(e.value)


def test_partial_reply_is_never_returned() -> None:
    # The server promises 10 IDs, sends 3 and closes (or stalls): the request fails whole.
    def handler(close: bool) -> Callable[[socket.socket], None]:
        def handle(sock: socket.socket) -> None:
            head = recv_exact(sock, 11)
            assert head is not None
            _, _op, req_id, count, _ = struct.unpack(">BBIIB", head)
            sock.sendall(struct.pack(">BBII", 0xF1, 0, req_id, count) + v2_ok_ids(3))
            if not close:
                recv_exact(sock, 1)

        return handle

    for close in (True, False):
        with FakeServer(handler(close)) as s, Client(s.address, protocol="v2", timeout=0.5) as c:
            with pytest.raises(FloeUnavailable):
                c.get_ids(10)
