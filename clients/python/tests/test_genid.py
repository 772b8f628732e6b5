"""A plain GenID server (v1 only, closes the connection on any other first byte):
protocol="auto" falls back to v1, explicit v2 explains the failure."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from floe_client import Client, FloeUnavailable, FloeUnsupported, decode_genid
from support import GenIdServer, all_unique, strictly_increasing


@pytest.fixture
def genid() -> Iterator[GenIdServer]:
    with GenIdServer() as server:
        yield server


def test_auto_falls_back_to_v1(genid: GenIdServer) -> None:
    with Client([genid.address], protocol="auto") as c:
        ids = [c.get_id()]
        assert c.server_protocol == "v1"
        for n in (1, 255, 10_000):
            batch = c.get_ids(n)
            assert len(batch) == n
            ids += batch
        assert c.ping() >= 0
    assert all_unique(ids) and strictly_increasing(ids)
    assert {(decode_genid(i).zone, decode_genid(i).dc, decode_genid(i).machine) for i in ids} == {(1, 2, 3)}
    assert genid.rejected == [0xF1], "one v2 probe, then v1 only"
    assert genid.accepted == 2, "the probe connection, then one long-lived v1 connection"


def test_auto_segment_on_a_genid_server_is_unsupported(genid: GenIdServer) -> None:
    with Client(genid.address) as c:
        c.get_id()
        with pytest.raises(FloeUnsupported, match="speaks only GenID's v1") as e:
            c.segment_ids("orders", 3)
        assert genid.address in str(e.value)
        c.get_id()  # the connection is still fine


def test_explicit_v2_against_genid_explains(genid: GenIdServer) -> None:
    with Client(genid.address, protocol="v2", timeout=1.0) as c:
        with pytest.raises(FloeUnavailable, match="protocol='auto' or 'v1'"):
            c.get_id()


def test_explicit_v1_never_probes(genid: GenIdServer) -> None:
    with Client(genid.address, protocol="v1") as c:
        assert len(c.get_ids(600)) == 600
    assert genid.rejected == []
