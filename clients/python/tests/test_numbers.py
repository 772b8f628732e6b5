"""Business numbers (``ORD-20261130-000042``) over v2 and HTTP against a real server.

The server declares two sequences in its configuration: ``order_no`` (the issue's example,
resetting every day in Shanghai) and ``tiny`` (``{seq:02}``, 99 numbers for all time).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from floe_client import (
    Client,
    FloeBadRequest,
    FloeExhausted,
    FloeOverLimit,
    FloeUnknownName,
    FloeUnsupported,
    HttpClient,
)
from support import FloeServer, open_client

NUMBERS_CONFIG = """
[numbers.order_no]
format = "ORD-{date:%Y%m%d}-{seq:06}"
reset = "day"
time_zone = "Asia/Shanghai"
step = 50

[numbers.tiny]
format = "T{seq:02}"
step = 7
"""

ORDER_NO = re.compile(r"ORD-(\d{8})-(\d{6})")


@pytest.fixture(scope="module")
def numbers_server(floe_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FloeServer]:
    server = FloeServer(floe_bin, tmp_path_factory.mktemp("numbers"), config=NUMBERS_CONFIG)
    server.start()
    yield server
    server.stop()


AnyClient = Client | HttpClient


@pytest.fixture(params=["v2", "auto", "http"])
def client(request: pytest.FixtureRequest, numbers_server: FloeServer) -> Iterator[AnyClient]:
    with open_client(request.param, numbers_server) as c:
        yield c


def test_numbers_increase_within_their_period(client: AnyClient) -> None:
    got = client.numbers("order_no", 120)
    got.append(client.number("order_no"))
    assert len(got) == 121 and len(set(got)) == 121
    parsed = [ORDER_NO.fullmatch(n) for n in got]
    assert all(parsed), got[:3]
    # Fixed width, so string order is (date, counter) order: increasing on one node.
    assert got == sorted(got)


def test_unknown_name(client: AnyClient) -> None:
    with pytest.raises(FloeUnknownName) as e:
        client.numbers("no_such_sequence", 2)
    assert "no_such_sequence" in str(e.value)
    assert e.value.server == client.server


def test_bad_input_is_refused_before_sending(client: AnyClient) -> None:
    with pytest.raises(FloeBadRequest):
        client.numbers("", 1)
    with pytest.raises(FloeBadRequest):
        client.numbers("order_no", 0)
    with pytest.raises(TypeError):
        client.numbers(7, 1)  # type: ignore[arg-type]


def test_a_bad_name_is_a_bad_request(client: AnyClient) -> None:
    with pytest.raises(FloeBadRequest) as e:
        client.number("not/a/name")
    assert "is invalid" in str(e.value)


def test_a_padded_counter_runs_out(numbers_server: FloeServer) -> None:
    # Module-scoped server: this test owns `tiny`, over both protocols in turn.
    with Client(numbers_server.tcp, protocol="v2") as tcp, HttpClient(numbers_server.http_url) as web:
        served = [tcp.number("tiny") if i % 2 else web.number("tiny") for i in range(99)]
        assert served == [f"T{n:02}" for n in range(1, 100)]
        with pytest.raises(FloeExhausted) as over_http:
            web.number("tiny")
        assert "exhausted" in str(over_http.value)
        # v2 status 4 means "over the limit" or "exhausted"; the message says which.
        with pytest.raises(FloeOverLimit) as over_tcp:
            tcp.numbers("tiny", 2)
        assert "is exhausted for period all" in str(over_tcp.value)
        # The connection stays usable after an error reply.
        assert ORDER_NO.fullmatch(tcp.number("order_no"))


def test_v1_has_no_numbers(numbers_server: FloeServer) -> None:
    with Client(numbers_server.tcp, protocol="v1") as c, pytest.raises(FloeUnsupported):
        c.number("order_no")
