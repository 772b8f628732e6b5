"""The HTTP client: Floe's JSON routes over keep-alive connections, with the same failover as
the TCP client."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, NamedTuple, TypeVar, get_args
from urllib.parse import quote, urlsplit

from ._common import DEFAULT_HTTP_PORT, check_count, check_tag, format_address
from ._pool import Pool, Retryable
from .errors import (
    FloeBadRequest,
    FloeError,
    FloeExhausted,
    FloeInternalError,
    FloeOverLimit,
    FloeProtocolError,
    FloeUnavailable,
    FloeUnknownName,
    FloeUnknownTag,
)
from .forms import FORMS, IdForm, ServerForm, from_form

T = TypeVar("T")

#: Statuses that mean "this server (or the proxy before it) cannot serve now; try another".
_FAILOVER_STATUSES = (502, 503, 504)

#: Largest response body read, well above 100,000 IDs as JSON numbers (~2.1 MB).
_MAX_BODY = 64 * 1024 * 1024


class _Target(NamedTuple):
    """One HTTP server: scheme, host, port and path prefix."""

    https: bool
    host: str
    port: int
    prefix: str

    @property
    def name(self) -> str:
        scheme = "https" if self.https else "http"
        return f"{scheme}://{format_address(self.host, self.port)}{self.prefix}"


def _parse_url(url: str) -> _Target:
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"server URL must be like 'http://host:8880', got {url!r}")
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"server URL {url!r}: scheme must be http or https")
    if not parts.hostname:
        raise ValueError(f"server URL {url!r}: missing host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"server URL {url!r}: the port is not a number in 1..65535") from None
    if port is None:
        port = 443 if parts.scheme == "https" else DEFAULT_HTTP_PORT
    return _Target(parts.scheme == "https", parts.hostname, port, parts.path.rstrip("/"))


class _Reply(NamedTuple):
    """A complete response."""

    status: int
    body: bytes
    #: Seconds from sending the request to the end of the body.
    elapsed: float


class HttpClient:
    """A client of Floe's HTTP API (``/v1/snowflake``, ``/v1/segment/{tag}``) with failover.

    ``servers`` are base URLs such as ``"http://10.0.0.1:8880"`` (a bare ``"host:port"`` means
    http; a path is kept as a prefix, for a server behind a proxy). The client keeps one
    keep-alive connection to one server. Connection errors, timeouts and HTTP 502/503/504 put that
    server in backoff and retry the request whole on the next; 400, 404 and 429 raise at once
    (:class:`FloeBadRequest`, :class:`FloeUnknownTag`, :class:`FloeOverLimit`). When no server
    can serve the request, :class:`FloeUnavailable` lists each server tried and its last error.

    ``timeout`` bounds each network operation of one attempt; ``max_retries``, ``backoff`` and
    ``max_backoff`` work as in :class:`floe_client.Client`.

    Thread-safe: a lock serialises the calls of one client. One client per thread is fastest.
    """

    def __init__(
        self,
        servers: str | Sequence[str],
        *,
        timeout: float = 2.0,
        max_retries: int | None = None,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        urls = [s for s in (p.strip() for p in servers.split(","))] if isinstance(servers, str) else list(servers)
        targets = [_parse_url(u) for u in urls if u]
        self._pool: Pool[_Target] = Pool(
            targets,
            [t.name for t in targets],
            backoff=backoff,
            max_backoff=max_backoff,
            max_retries=max_retries,
            timeout=timeout,
        )
        self._conn: http.client.HTTPConnection | None = None
        #: Pool index of the server ``_conn`` is open to.
        self._conn_index = -1
        #: Whether a request completed on ``_conn`` (see the stale retry in :class:`Retryable`).
        self._conn_used = False
        self._lock = threading.Lock()
        self._closed = False

    # -- public API -------------------------------------------------------------------------

    @property
    def servers(self) -> list[str]:
        """The configured servers as URLs."""
        return [s.name for s in self._pool.states]

    @property
    def server(self) -> str | None:
        """The server the client is connected to now, or None."""
        return self._pool.states[self._conn_index].name if self._conn is not None else None

    @property
    def timeout(self) -> float:
        """Seconds each network operation of one attempt may take."""
        return self._pool.timeout

    def get_id(self) -> int:
        """One snowflake ID."""
        return self.get_ids(1)[0]

    def get_ids(self, n: int) -> list[int]:
        """``n`` snowflake IDs (1..100,000 by default); all of them or an exception."""
        check_count(n)
        what = f"snowflake request (count {n})"
        return self._call(lambda t: f"{t.prefix}/v1/snowflake?count={n}", lambda r, t: _ids(r, t, n, what), what)

    def get_id_strings(self, n: int, form: ServerForm = "string") -> list[str]:
        """``n`` snowflake IDs as strings in ``form`` (``format=`` of ``/v1/snowflake``): ``string``
        (decimal), ``hex``, ``radix62`` and ``radix36`` (fixed width, sorting like the numbers), or
        ``friendly`` (the time and fields; read it back with ``/v1/decode``)."""
        check_count(n)
        _check_form(form, friendly_ok=True)
        what = f"snowflake request (count {n}, format {form})"
        path = f"/v1/snowflake?count={n}&format={form}"
        return self._call(lambda t: t.prefix + path, lambda r, t: _strings(r, t, n, form, what), what)

    def segment_id_strings(self, tag: str, n: int, form: IdForm = "string") -> list[str]:
        """``n`` IDs of ``tag`` as strings in ``form`` (every form but ``friendly``)."""
        check_tag(tag)
        check_count(n)
        _check_form(form, friendly_ok=False)
        what = f"segment request (tag {tag!r}, count {n}, format {form})"
        path = f"/v1/segment/{quote(tag, safe='')}?count={n}&format={form}"
        return self._call(lambda t: t.prefix + path, lambda r, t: _strings(r, t, n, form, what), what)

    def segment_id(self, tag: str) -> int:
        """One ID from the number range of business tag ``tag`` (segment mode)."""
        return self.segment_ids(tag, 1)[0]

    def segment_ids(self, tag: str, n: int) -> list[int]:
        """``n`` IDs from the number range of ``tag``; all of them or an exception."""
        check_tag(tag)
        check_count(n)
        what = f"segment request (tag {tag!r}, count {n})"
        path = f"/v1/segment/{quote(tag, safe='')}?count={n}"
        return self._call(lambda t: t.prefix + path, lambda r, t: _ids(r, t, n, what), what)

    def number(self, name: str) -> str:
        """One business number of the sequence ``name``, e.g. ``"ORD-20261130-000042"``."""
        return self.numbers(name, 1)[0]

    def numbers(self, name: str, n: int) -> list[str]:
        """``n`` numbers of the sequence ``name`` (``GET /v1/numbers/{name}``), increasing within
        their period; all of them or an exception (:class:`FloeExhausted` when the period has no
        value left, :class:`FloeUnknownName` for an undeclared name)."""
        check_tag(name, "name")
        check_count(n)
        what = f"number request (sequence {name!r}, count {n})"
        path = f"/v1/numbers/{quote(name, safe='')}?count={n}"
        return self._call(lambda t: t.prefix + path, lambda r, t: _numbers(r, t, n, what), what)

    def ping(self) -> float:
        """``GET /healthz`` on the current server (failing over as needed); returns the round trip
        in seconds."""
        return self._call(lambda t: f"{t.prefix}/healthz", lambda r, t: r.elapsed, "ping")

    def close(self) -> None:
        """Closes the connection; the client cannot be used afterwards."""
        with self._lock:
            self._closed = True
            self._drop()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HttpClient({self.servers!r}, connected={self.server!r})"

    # -- failover ---------------------------------------------------------------------------

    def _call(self, path: Callable[[_Target], str], parse: Callable[[_Reply, _Target], T], what: str) -> T:
        with self._lock:
            if self._closed:
                raise FloeError("the client is closed; create a new one")

            def attempt(i: int, deadline: float) -> T:
                target = self._pool.targets[i]
                reply = self._get(i, path(target), deadline)
                return parse(_check(reply, target, what), target)

            return self._pool.run(attempt)

    def _get(self, i: int, path: str, deadline: float) -> _Reply:
        if self._conn is not None and self._conn_index == i:
            try:
                return self._request(path, deadline)
            except Retryable as r:
                if not r.stale:
                    raise
        self._open(i, deadline)
        return self._request(path, deadline)

    def _open(self, i: int, deadline: float) -> None:
        self._drop()
        t = self._pool.targets[i]
        left = max(deadline - time.monotonic(), 0.001)
        cls = http.client.HTTPSConnection if t.https else http.client.HTTPConnection
        self._conn = cls(t.host, t.port, timeout=left)
        self._conn_index = i
        self._conn_used = False

    def _request(self, path: str, deadline: float) -> _Reply:
        conn = self._conn
        assert conn is not None
        got_response = False
        try:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out")
            conn.timeout = left
            if conn.sock is not None:
                conn.sock.settimeout(left)
            started = time.monotonic()
            conn.request("GET", path, headers={"Accept": "application/json"})
            response = conn.getresponse()
            got_response = True
            body = response.read(_MAX_BODY + 1)
            if len(body) > _MAX_BODY:
                raise FloeProtocolError(f"response body over {_MAX_BODY} bytes")
            if response.will_close:
                self._drop()
            else:
                self._conn_used = True
            return _Reply(response.status, body, time.monotonic() - started)
        except TimeoutError as e:
            self._drop()
            raise Retryable(TimeoutError(f"no complete response within the timeout of {self.timeout} s")) from e
        except (OSError, http.client.HTTPException) as e:
            stale = self._conn_used and not got_response
            self._drop()
            raise Retryable(e, stale=stale) from e
        except FloeProtocolError as e:
            self._drop()
            raise Retryable(e) from e
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._conn_used = False
        if conn is not None:
            conn.close()


def _check(reply: _Reply, target: _Target, what: str) -> _Reply:
    """Returns a 2xx reply; raises the typed error (or :class:`Retryable`) for the others."""
    if 200 <= reply.status < 300:
        return reply
    code, message = _error_of(reply)
    where = f"{target.name} refused {what}: HTTP {reply.status}"
    detail = f"{where} ({code}): {message}" if code else f"{where}: {message}"
    if reply.status in _FAILOVER_STATUSES:
        raise Retryable(FloeUnavailable(f"HTTP {reply.status}: {message}", server=target.name))
    if code == "exhausted":
        raise FloeExhausted(detail, server=target.name)
    if reply.status == 429 or code == "over_limit":
        raise FloeOverLimit(detail, server=target.name)
    if code == "unknown_tag":
        raise FloeUnknownTag(detail, server=target.name)
    if code == "unknown_name":
        raise FloeUnknownName(detail, server=target.name)
    if reply.status == 400:
        raise FloeBadRequest(detail, server=target.name)
    if reply.status == 500:
        raise FloeInternalError(detail, server=target.name)
    raise FloeProtocolError(f"{detail} (is {target.name} a Floe HTTP address?)", server=target.name)


def _error_of(reply: _Reply) -> tuple[str, str]:
    """``{"error":{"code":…,"message":…}}`` → (code, message); the raw text for other bodies."""
    text = reply.body.decode("utf-8", "replace")
    try:
        error = json.loads(text)["error"]
        return str(error.get("code", "")), str(error.get("message", text))
    except (ValueError, KeyError, TypeError, AttributeError):
        return "", text.strip()[:200] or "(empty body)"


def _ids(reply: _Reply, target: _Target, n: int, what: str) -> list[int]:
    """The ``ids`` of a 200 body, checked to be ``n`` unsigned 64-bit integers."""

    def as_id(x: object) -> int:
        value = _as_id(x)
        if not 0 <= value < 1 << 64:
            raise ValueError(f"not a 64-bit ID: {value}")
        return value

    return _items(reply, target, "ids", n, "IDs", what, as_id)


def _numbers(reply: _Reply, target: _Target, n: int, what: str) -> list[str]:
    """The ``numbers`` of a 200 body, checked to be ``n`` strings."""

    def as_number(x: object) -> str:
        if not isinstance(x, str):
            raise ValueError(f"not a number string: {x!r}")
        return x

    return _items(reply, target, "numbers", n, "strings", what, as_number)


def _items(
    reply: _Reply, target: _Target, key: str, n: int, kind: str, what: str, item: Callable[[object], T]
) -> list[T]:
    """The list under ``key`` of a 200 body, each converted by ``item``: exactly ``n`` of them, or a
    protocol error the next server may not have."""
    try:
        body: Any = json.loads(reply.body)
        raw = body[key]
        items = [item(x) for x in raw] if isinstance(raw, list) else []
        ok = isinstance(raw, list) and len(items) == n
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise Retryable(
            FloeProtocolError(
                f'{target.name}: the answer to {what} is not {{"{key}": [{n} {kind}]}}: {reply.body[:120]!r}',
                server=target.name,
            )
        )
    return items


def _check_form(form: str, *, friendly_ok: bool) -> None:
    allowed: tuple[str, ...] = get_args(ServerForm) if friendly_ok else FORMS
    if form not in allowed:
        raise FloeBadRequest(f"form must be one of {', '.join(allowed)}, got {form!r}")


def _strings(reply: _Reply, target: _Target, n: int, form: str, what: str) -> list[str]:
    """The ``ids`` of a ``format=`` reply: ``n`` strings, each valid in ``form`` (friendly: text)."""
    try:
        body: Any = json.loads(reply.body)
        texts = body["ids"]
        ok = isinstance(texts, list) and len(texts) == n and all(isinstance(t, str) for t in texts)
        if ok and form != "friendly":
            for t in texts:
                from_form(t, form)  # type: ignore[arg-type]
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise Retryable(
            FloeProtocolError(
                f'{target.name}: the answer to {what} is not {{"ids": [{n} {form} strings]}}: {reply.body[:120]!r}',
                server=target.name,
            )
        )
    return list(texts)


def _as_id(x: object) -> int:
    """A JSON number, or a decimal string (``format=string``), as an int; ValueError otherwise."""
    if isinstance(x, int) and not isinstance(x, bool):
        return x
    if isinstance(x, str) and x.isdigit():
        return int(x)
    raise ValueError(f"not an ID: {x!r}")
