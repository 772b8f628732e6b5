"""What the TCP and HTTP clients share: input checks, address parsing, ID unpacking."""

from __future__ import annotations

import array
import struct
import sys
from collections.abc import Sequence

from .errors import FloeBadRequest, FloeOverLimit

#: The server's default limit of IDs per request (v2 and HTTP). Over v1, which has no limit of its
#: own, the client applies it too so both protocols behave alike.
MAX_COUNT = 100_000

#: The binary TCP port GenID and Floe listen on by default.
DEFAULT_TCP_PORT = 3778

#: Floe's default HTTP port.
DEFAULT_HTTP_PORT = 8880

#: Longest segment tag in UTF-8 bytes (v2 carries its length in one byte).
MAX_TAG_LEN = 255

#: An address as ``"host:port"``, ``"[v6]:port"``, ``"host"`` (default port) or ``(host, port)``.
Address = str | tuple[str, int]

#: One address, a comma-separated string of them, or a sequence of addresses.
Servers = str | tuple[str, int] | Sequence[Address]


def check_count(n: object, *, limit: int = 0xFFFF_FFFF) -> int:
    """Validates a requested number of IDs, client-side, before anything is sent.

    Raises :class:`TypeError` for a non-integer, :class:`FloeBadRequest` for ``n < 1`` and
    :class:`FloeOverLimit` above ``limit`` (the most the protocol can carry; the server applies
    its own, usually lower, limit and answers over-limit itself).
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"count must be an int, got {type(n).__name__} {n!r}")
    if n < 1:
        raise FloeBadRequest(f"count must be at least 1, got {n}")
    if n > limit:
        raise FloeOverLimit(f"count {n} is over the limit of {limit} IDs per request; ask for fewer")
    return n


def check_tag(tag: object, what: str = "tag") -> bytes:
    """Validates a segment tag (or, with ``what="name"``, a number sequence's name) and returns
    its UTF-8 bytes: both travel in v2's one-byte-length tag field."""
    if not isinstance(tag, str):
        raise TypeError(f"{what} must be a str, got {type(tag).__name__} {tag!r}")
    raw = tag.encode("utf-8")
    if not raw:
        raise FloeBadRequest(f"{what} must not be empty")
    if len(raw) > MAX_TAG_LEN:
        raise FloeBadRequest(f"{what} {tag[:40]!r}… is {len(raw)} bytes in UTF-8; the limit is {MAX_TAG_LEN}")
    return raw


#: Longest number in a v2 number reply (one length byte).
MAX_NUMBER_LEN = 255


def unpack_numbers(body: bytes | bytearray, n: int) -> list[str]:
    """A v2 number reply's body: ``count u32``, then ``count`` strings of ``len u8`` + UTF-8.

    Raises ValueError when it does not hold exactly ``n`` numbers and nothing more."""
    if len(body) < 4:
        raise ValueError(f"a body of {len(body)} bytes has no count")
    (count,) = struct.unpack_from(">I", body)
    if count != n:
        raise ValueError(f"it carries {count} numbers where {n} were asked")
    numbers: list[str] = []
    at = 4
    for i in range(count):
        if at >= len(body):
            raise ValueError(f"the body ends before number {i} of {count}")
        length = body[at]
        end = at + 1 + length
        if end > len(body):
            raise ValueError(f"number {i} of {count} is cut short")
        numbers.append(bytes(body[at + 1 : end]).decode("utf-8"))
        at = end
    if at != len(body):
        raise ValueError(f"{len(body) - at} bytes after the last number")
    return numbers


def parse_address(address: Address, default_port: int = DEFAULT_TCP_PORT) -> tuple[str, int]:
    """``"host:port"`` (or ``"[::1]:port"``, ``"host"``, ``(host, port)``) → ``(host, port)``."""
    if isinstance(address, tuple):
        return str(address[0]), _port(address[1], address)
    if not isinstance(address, str) or not address.strip():
        raise ValueError(f"server address must be 'host:port' or (host, port), got {address!r}")
    text = address.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"server address {address!r}: missing ']' after the IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if not rest:
            return host, default_port
        if not rest.startswith(":"):
            raise ValueError(f"server address {address!r}: expected ':port' after ']'")
        return host, _port(rest[1:], address)
    if text.count(":") > 1:
        # A bare IPv6 address has no port.
        return text, default_port
    host, sep, port_text = text.partition(":")
    if not sep:
        return host, default_port
    if not host:
        raise ValueError(f"server address {address!r}: missing host before ':'")
    return host, _port(port_text, address)


def _port(port: object, address: object) -> int:
    try:
        value = int(str(port))
    except (TypeError, ValueError):
        raise ValueError(f"server address {address!r}: port {port!r} is not a number") from None
    if not 0 < value < 65536:
        raise ValueError(f"server address {address!r}: port {value} is outside 1..65535")
    return value


def format_address(host: str, port: int) -> str:
    """``(host, port)`` → ``"host:port"``, bracketing IPv6 hosts."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def server_list(servers: Servers) -> list[Address]:
    """Accepts one address, a comma-separated string, or a sequence of addresses."""
    if isinstance(servers, str):
        items: list[Address] = [s for s in (p.strip() for p in servers.split(",")) if s]
    elif isinstance(servers, tuple) and len(servers) == 2 and isinstance(servers[1], int):
        items = [servers]  # one (host, port) pair
    else:
        items = list(servers)
    if not items:
        raise ValueError("no servers given: pass at least one address, e.g. ['127.0.0.1:3778']")
    return items


_NATIVE_Q = array.array("Q").itemsize == 8


def unpack_ids(buf: bytes | bytearray | memoryview) -> list[int]:
    """Big-endian u64s → ints (array + byteswap: several times faster than struct for big batches)."""
    if _NATIVE_Q:
        ids = array.array("Q")
        ids.frombytes(bytes(buf) if isinstance(buf, memoryview) else buf)
        if sys.byteorder == "little":
            ids.byteswap()
        return ids.tolist()
    return list(struct.unpack(f">{len(buf) // 8}Q", buf))
