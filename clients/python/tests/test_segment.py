"""Segment ("number range") IDs over v2 and HTTP against a real server.

The server is started with a segment store when it accepts the configuration below. A server
without segment mode answers "segment mode is not configured" (v2 status 3, HTTP 503); the tests
that need it then xfail with exactly that reason, and pass by themselves once segment mode lands.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from floe_client import Client, FloeUnavailable, FloeUnknownTag, HttpClient
from support import FloeServer, ServerStartError, all_unique, open_client, strictly_increasing

T = TypeVar("T")
NOT_CONFIGURED = "segment mode is not configured"
TAG = "orders"

#: The configuration that turns segment mode on: an SQLite store (docs/segments.md, keys
#: `segment.url`, `segment.schema`). Adjust here if the server's keys differ.
SEGMENT_CONFIG = """
[segment]
url = "sqlite://{db}"
"""


def seed_store(db: Path) -> None:
    """Creates the `floe` schema's table with the tag the tests use (as `floe` would on first
    start), so no admin call is needed."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS floe_segments "
            "(biz_tag TEXT NOT NULL PRIMARY KEY, max_id INTEGER NOT NULL, step INTEGER NOT NULL)"
        )
        conn.execute("INSERT OR IGNORE INTO floe_segments VALUES (?, 1000, 100)", (TAG,))
    conn.close()


@pytest.fixture(scope="module")
def segment_server(floe_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FloeServer]:
    directory = tmp_path_factory.mktemp("segment")
    db = directory / "segments.db"
    seed_store(db)
    server = FloeServer(floe_bin, directory, config=SEGMENT_CONFIG.format(db=db.as_posix()))
    try:
        server.start()
    except ServerStartError as e:
        if e.code != 64 or "unknown key `segment`" not in e.stderr:
            raise
        # This server has no segment mode yet: run it without, and the tests xfail.
        server = FloeServer(floe_bin, directory / "plain")
        server.start()
    yield server
    server.stop()


def segment_or_xfail(call: Callable[[], T]) -> T:
    try:
        return call()
    except FloeUnavailable as e:
        if NOT_CONFIGURED in str(e):
            pytest.xfail(NOT_CONFIGURED)
        raise


AnyClient = Client | HttpClient


@pytest.fixture(params=["v2", "auto", "http"])
def client(request: pytest.FixtureRequest, segment_server: FloeServer) -> Iterator[AnyClient]:
    with open_client(request.param, segment_server) as c:
        yield c


def test_segment_ids(client: AnyClient) -> None:
    ids: list[int] = segment_or_xfail(lambda: client.segment_ids(TAG, 10))
    ids += client.segment_ids(TAG, 1000)
    ids.append(client.segment_id(TAG))
    assert len(ids) == 1011 and all_unique(ids)
    assert strictly_increasing(ids)


def test_unknown_tag(client: AnyClient) -> None:
    with pytest.raises(FloeUnknownTag) as e:
        segment_or_xfail(lambda: client.segment_ids("no-such-tag", 3))
    assert "no-such-tag" in str(e.value)
    assert e.value.server == client.server


def test_snowflake_still_served_after_a_segment_failure(client: AnyClient) -> None:
    # Whatever the segment outcome ("not configured" puts the only server in backoff), the node
    # still serves snowflake IDs and the client still reaches it.
    with contextlib.suppress(FloeUnavailable, FloeUnknownTag):
        client.segment_ids(TAG, 1)
    assert len(client.get_ids(10)) == 10
