"""The binary TCP client: Floe's v2 protocol, GenID's v1, and failover between servers."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from ._common import (
    MAX_COUNT,
    MAX_NUMBER_LEN,
    Servers,
    check_count,
    check_tag,
    format_address,
    parse_address,
    server_list,
    unpack_ids,
    unpack_numbers,
)
from ._pool import Pool, Retryable
from .errors import (
    FloeBadRequest,
    FloeError,
    FloeInternalError,
    FloeOverLimit,
    FloeProtocolError,
    FloeUnavailable,
    FloeUnknownName,
    FloeUnknownTag,
    FloeUnsupported,
)

T = TypeVar("T")

V2_MAGIC = 0xF1
OP_SNOWFLAKE = 1
OP_SEGMENT = 2
OP_PING = 3
OP_NUMBER = 4

#: magic, op, req_id, count, tag_len (the tag follows).
_V2_REQUEST = struct.Struct(">BBIIB")
#: magic, status, req_id, len (the body follows).
_V2_REPLY = struct.Struct(">BBII")
#: Longest error message the client accepts, as the server cuts its messages there.
_MAX_MESSAGE = 64 * 1024
#: v1 batches carry their count in one byte.
_V1_MAX_BATCH = 255

_STATUS_ERRORS = {
    1: FloeBadRequest,
    2: FloeUnknownTag,
    4: FloeOverLimit,
    5: FloeInternalError,
}
_STATUS_UNAVAILABLE = 3

PROTOCOLS = ("auto", "v2", "v1")


class _Closed(Exception):
    """The server closed the connection (EOF, reset or broken pipe); ``got`` reply bytes had arrived."""

    def __init__(self, what: str, got: int) -> None:
        super().__init__(what)
        self.got = got


class _Connection:
    """One socket to one server, with the protocol it speaks and a per-attempt deadline."""

    def __init__(self, sock: socket.socket, index: int, name: str, protocol: str) -> None:
        self.sock = sock
        #: The server's index in the pool.
        self.index = index
        #: ``host:port``, for messages.
        self.name = name
        #: ``"v1"`` or ``"v2"``.
        self.protocol = protocol
        #: Whether a request completed on it: a failure before any reply byte on a used
        #: connection is most likely a server-side idle close, worth one fresh retry.
        self.used = False
        #: Reply bytes read during the current request.
        self.got = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def _arm(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        self.sock.settimeout(left)

    def send(self, data: bytes, deadline: float) -> None:
        self._arm(deadline)
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as e:
            raise _Closed(f"connection closed by the server while sending ({e})", self.got) from e

    def recv_exact(self, n: int, deadline: float) -> bytearray:
        buf = bytearray(n)
        view = memoryview(buf)
        filled = 0
        while filled < n:
            self._arm(deadline)
            try:
                k = self.sock.recv_into(view[filled:], n - filled)
            except (ConnectionResetError, ConnectionAbortedError) as e:
                raise _Closed(f"connection reset by the server ({e})", self.got) from e
            if k == 0:
                raise _Closed("connection closed by the server", self.got)
            filled += k
            self.got += k
        return buf


class Client:
    """A client of Floe's binary TCP protocol (v2, or GenID's v1) with failover.

    ``servers`` is a list of ``"host:port"`` addresses (or one comma-separated string). The client
    keeps one long-lived connection to one server. When a request fails with a connection error,
    a timeout or a v2 "unavailable" answer, that server is avoided for a backoff period
    (``backoff`` seconds, doubling per consecutive failure up to ``max_backoff``) and the request
    is retried whole on the next server; a batch is never returned partially. Bad input, an
    unknown tag or an over-limit count raise at once, as every server would answer the same.
    When no server can serve the request, :class:`FloeUnavailable` lists each server tried and
    its last error.

    ``timeout`` bounds one attempt on one server (connect, send, whole reply); a call makes at
    most ``max_retries + 1`` attempts (default: one per server), so it raises within about
    ``timeout × len(servers)`` when every server is down or silent.

    ``protocol``: ``"v2"`` (Floe), ``"v1"`` (GenID's 2-byte protocol: batches of up to 255 IDs,
    no segment IDs, no error replies) or ``"auto"``: a v2 ping on each new server, falling back to
    v1 for a server that closes the connection on it (a plain GenID server does).

    Thread-safe: a lock serialises the calls of one client. One client per thread is fastest.
    """

    def __init__(
        self,
        servers: Servers,
        *,
        timeout: float = 2.0,
        protocol: str = "auto",
        max_retries: int | None = None,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        addresses = [parse_address(a) for a in server_list(servers)]
        #: Configured protocol.
        self.protocol = protocol
        self._pool: Pool[tuple[str, int]] = Pool(
            addresses,
            [format_address(h, p) for h, p in addresses],
            backoff=backoff,
            max_backoff=max_backoff,
            max_retries=max_retries,
            timeout=timeout,
        )
        #: Per server, the protocol found by ``"auto"`` (None until probed).
        self._detected: list[str | None] = [None if protocol == "auto" else protocol] * len(addresses)
        self._conn: _Connection | None = None
        self._lock = threading.Lock()
        self._req_id = 0
        self._closed = False

    # -- public API -------------------------------------------------------------------------

    @property
    def servers(self) -> list[str]:
        """The configured servers as ``host:port``."""
        return [s.name for s in self._pool.states]

    @property
    def server(self) -> str | None:
        """The server the client is connected to now, or None."""
        conn = self._conn
        return conn.name if conn is not None else None

    @property
    def server_protocol(self) -> str | None:
        """The protocol spoken with the current server, ``"v1"`` or ``"v2"``, or None when not connected."""
        conn = self._conn
        return conn.protocol if conn is not None else None

    @property
    def timeout(self) -> float:
        """Seconds one attempt on one server may take."""
        return self._pool.timeout

    def get_id(self) -> int:
        """One snowflake ID."""
        return self._call(lambda c, d: self._snowflake(c, d, 1, single=True))[0]

    def get_ids(self, n: int) -> list[int]:
        """``n`` snowflake IDs (1..100,000 by default), increasing; all of them or an exception.

        Over v1 the client splits the batch into pipelined requests of at most 255 IDs.
        """
        check_count(n)
        if self.protocol == "v1":
            check_count(n, limit=MAX_COUNT)
        return self._call(lambda c, d: self._snowflake(c, d, n, single=False))

    def segment_id(self, tag: str) -> int:
        """One ID from the number range of business tag ``tag`` (segment mode; needs v2)."""
        return self.segment_ids(tag, 1)[0]

    def segment_ids(self, tag: str, n: int) -> list[int]:
        """``n`` IDs from the number range of ``tag``; all of them or an exception. Needs v2."""
        raw = check_tag(tag)
        check_count(n)
        if self.protocol == "v1":
            raise FloeUnsupported(
                f"segment IDs (tag {tag!r}) need protocol v2; this client was created with protocol='v1' "
                "(GenID's protocol has no segment mode): use protocol='v2' or 'auto'"
            )
        return self._call(lambda c, d: self._segment(c, d, raw, tag, n))

    def number(self, name: str) -> str:
        """One business number of the sequence ``name``, e.g. ``"ORD-20261130-000042"`` (needs v2)."""
        return self.numbers(name, 1)[0]

    def numbers(self, name: str, n: int) -> list[str]:
        """``n`` numbers of the sequence ``name``, increasing within their period; all of them or
        an exception. Needs v2. An exhausted period raises :class:`FloeOverLimit` (v2 status 4)
        with the server's message; an undeclared name :class:`FloeUnknownName`."""
        raw = check_tag(name, "name")
        check_count(n)
        if self.protocol == "v1":
            raise FloeUnsupported(
                f"numbers (sequence {name!r}) need protocol v2; this client was created with protocol='v1': "
                "use protocol='v2' or 'auto'"
            )
        return self._call(lambda c, d: self._numbers(c, d, raw, name, n))

    def ping(self) -> float:
        """Checks that a server answers (connecting or failing over as needed); returns the round
        trip in seconds. Over v1 it sends an empty batch request, which issues no ID."""
        return self._call(self._ping)

    def close(self) -> None:
        """Closes the connection; the client cannot be used afterwards."""
        with self._lock:
            self._closed = True
            self._drop()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.servers!r}, protocol={self.protocol!r}, connected={self.server!r})"

    # -- failover ---------------------------------------------------------------------------

    def _call(self, op: Callable[[_Connection, float], T]) -> T:
        with self._lock:
            if self._closed:
                raise FloeError("the client is closed; create a new one")
            return self._pool.run(lambda i, deadline: self._attempt(i, deadline, op))

    def _attempt(self, i: int, deadline: float, op: Callable[[_Connection, float], T]) -> T:
        conn = self._conn
        if conn is not None and conn.index != i:
            self._drop()
            conn = None
        if conn is not None:
            try:
                return self._run(conn, deadline, op)
            except Retryable as r:
                if not r.stale:
                    raise
        return self._run(self._open(i, deadline), deadline, op)

    def _run(self, conn: _Connection, deadline: float, op: Callable[[_Connection, float], T]) -> T:
        """Runs ``op`` on ``conn``, turning transport failures into :class:`Retryable` and dropping
        the connection whenever its stream may be out of step."""
        conn.got = 0
        try:
            result = op(conn, deadline)
        except _Closed as e:
            self._drop()
            hint = ""
            if conn.protocol == "v2" and self.protocol == "v2" and not conn.used:
                hint = " (a GenID v1-only server does this on a v2 request: use protocol='auto' or 'v1')"
            raise Retryable(ConnectionError(f"{e}{hint}"), stale=conn.used and e.got == 0) from e
        except TimeoutError as e:
            self._drop()
            raise Retryable(TimeoutError(f"no complete reply within the timeout of {self.timeout} s")) from e
        except OSError as e:
            self._drop()
            raise Retryable(e) from e
        except Retryable:
            self._drop()
            raise
        except FloeProtocolError as e:
            self._drop()
            raise Retryable(e) from e
        except FloeError:
            # A complete v2 error reply: the stream is in step, the connection stays.
            conn.used = True
            raise
        except BaseException:
            # Interrupted mid-request (KeyboardInterrupt…): unread reply bytes would be taken
            # for the next reply.
            self._drop()
            raise
        conn.used = True
        return result

    def _open(self, i: int, deadline: float) -> _Connection:
        """Connects to server ``i``, probing its protocol under ``"auto"``."""
        host, port = self._pool.targets[i]
        name = self._pool.states[i].name
        protocol = self._detected[i]
        conn = _Connection(self._connect(host, port, name, deadline), i, name, protocol or "v2")
        self._conn = conn
        if protocol is None:
            try:
                self._run(conn, deadline, self._ping)
                self._detected[i] = "v2"
            except Retryable as r:
                if not isinstance(r.__cause__, _Closed) or r.__cause__.got:
                    raise
                # Closed on the v2 magic without a reply: a GenID server. Speak v1 from now on.
                self._detected[i] = "v1"
                conn = _Connection(self._connect(host, port, name, deadline), i, name, "v1")
                self._conn = conn
        return conn

    def _connect(self, host: str, port: int, name: str, deadline: float) -> socket.socket:
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError("timed out")
            sock = socket.create_connection((host, port), timeout=left)
        except TimeoutError as e:
            raise Retryable(TimeoutError(f"connect timed out after {self.timeout} s")) from e
        except OSError as e:
            raise Retryable(e) from e
        # Requests are small and written whole; Nagle would only delay them.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            if self.protocol == "auto" and not conn.used:
                # Probe again next time: what looked like GenID may have been a dying server.
                self._detected[conn.index] = None

    # -- protocol ---------------------------------------------------------------------------

    def _next_req_id(self) -> int:
        self._req_id = (self._req_id + 1) & 0xFFFF_FFFF
        return self._req_id

    def _v2(self, conn: _Connection, deadline: float, op: int, count: int, tag: bytes = b"") -> list[int]:
        """Sends one v2 request for IDs and reads its reply; returns the IDs or raises the typed error."""
        length = self._v2_exchange(conn, deadline, op, count, tag)
        expected = 0 if op == OP_PING else count
        if length != expected:
            raise FloeProtocolError(
                f"{conn.name}: ok reply carries {length} IDs where {expected} were asked", server=conn.name
            )
        return unpack_ids(conn.recv_exact(8 * length, deadline)) if length else []

    def _v2_exchange(self, conn: _Connection, deadline: float, op: int, count: int, tag: bytes) -> int:
        """Sends one v2 request and reads its reply header; returns the ``len`` of an ok reply (its
        body still to read) or raises the typed error of an error reply."""
        req_id = self._next_req_id()
        conn.send(_V2_REQUEST.pack(V2_MAGIC, op, req_id, count, len(tag)) + tag, deadline)
        magic, status, got_id, length = _V2_REPLY.unpack(conn.recv_exact(_V2_REPLY.size, deadline))
        if magic != V2_MAGIC:
            raise FloeProtocolError(
                f"{conn.name}: reply starts with {magic:#04x}, not the v2 magic 0xf1; is this a Floe binary TCP port?",
                server=conn.name,
            )
        if got_id != req_id:
            raise FloeProtocolError(f"{conn.name}: reply for req_id {got_id}, expected {req_id}", server=conn.name)
        if status == 0:
            return int(length)
        if status > 5 or length > _MAX_MESSAGE:
            raise FloeProtocolError(
                f"{conn.name}: v2 reply with status {status} and a {length}-byte body is not valid", server=conn.name
            )
        message = bytes(conn.recv_exact(length, deadline)).decode("utf-8", "replace") if length else ""
        what = _describe_request(op, count, tag)
        if status == _STATUS_UNAVAILABLE:
            raise Retryable(FloeUnavailable(f"status 3 (unavailable): {message}", server=conn.name))
        error = FloeUnknownName if (op, status) == (OP_NUMBER, 2) else _STATUS_ERRORS[status]
        raise error(f"{conn.name} refused {what}: {message}", server=conn.name)

    def _numbers(self, conn: _Connection, deadline: float, raw: bytes, name: str, n: int) -> list[str]:
        if conn.protocol != "v2":
            raise FloeUnsupported(
                f"{conn.name} speaks only GenID's v1 protocol, which has no number sequences ({name!r})",
                server=conn.name,
            )
        length = self._v2_exchange(conn, deadline, OP_NUMBER, n, raw)
        if length > 4 + n * (1 + MAX_NUMBER_LEN):
            raise FloeProtocolError(
                f"{conn.name}: a {length}-byte number reply is too large for {n} numbers", server=conn.name
            )
        try:
            return unpack_numbers(conn.recv_exact(length, deadline), n)
        except ValueError as e:
            raise FloeProtocolError(f"{conn.name}: malformed number reply: {e}", server=conn.name) from e

    def _snowflake(self, conn: _Connection, deadline: float, n: int, *, single: bool) -> list[int]:
        if conn.protocol == "v2":
            return self._v2(conn, deadline, OP_SNOWFLAKE, n)
        if single:
            conn.send(b"\x00\x00", deadline)
            return unpack_ids(conn.recv_exact(8, deadline))
        check_count(n, limit=MAX_COUNT)
        sizes = [_V1_MAX_BATCH] * (n // _V1_MAX_BATCH)
        if n % _V1_MAX_BATCH:
            sizes.append(n % _V1_MAX_BATCH)
        # Pipelined: every request in one write, then the replies in order.
        conn.send(b"".join(bytes((1, k)) for k in sizes), deadline)
        ids: list[int] = []
        for k in sizes:
            got = conn.recv_exact(1, deadline)[0]
            if got != k:
                raise FloeProtocolError(
                    f"{conn.name}: v1 batch reply announces {got} IDs where {k} were asked", server=conn.name
                )
            ids.extend(unpack_ids(conn.recv_exact(8 * k, deadline)))
        return ids

    def _segment(self, conn: _Connection, deadline: float, raw: bytes, tag: str, n: int) -> list[int]:
        if conn.protocol != "v2":
            raise FloeUnsupported(
                f"{conn.name} speaks only GenID's v1 protocol, which has no segment mode (tag {tag!r})",
                server=conn.name,
            )
        return self._v2(conn, deadline, OP_SEGMENT, n, raw)

    def _ping(self, conn: _Connection, deadline: float) -> float:
        started = time.monotonic()
        if conn.protocol == "v2":
            self._v2(conn, deadline, OP_PING, 0)
        else:
            conn.send(b"\x01\x00", deadline)
            got = conn.recv_exact(1, deadline)[0]
            if got != 0:
                raise FloeProtocolError(f"{conn.name}: v1 empty batch answered with count {got}", server=conn.name)
        return time.monotonic() - started


def _describe_request(op: int, count: int, tag: bytes) -> str:
    if op == OP_NUMBER:
        return f"number request (sequence {tag.decode('utf-8', 'replace')!r}, count {count})"
    if op == OP_SEGMENT:
        return f"segment request (tag {tag.decode('utf-8', 'replace')!r}, count {count})"
    if op == OP_PING:
        return "ping"
    return f"snowflake request (count {count})"
