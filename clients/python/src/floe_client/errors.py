"""The exceptions of the Floe client.

Every exception the client raises on purpose is a :class:`FloeError`. The split follows what a
caller can do about it:

- :class:`FloeUnavailable`: no server could answer; retry later (the client already tried every
  server it was given, within its timeout budget).
- :class:`FloeBadRequest` (and its narrower :class:`FloeOverLimit`): fix the input; another server
  would say the same, so the client does not fail over. It is also a :class:`ValueError`.
- :class:`FloeUnknownTag`: create the segment tag on the server, or fix its name.
- :class:`FloeUnknownName`: declare the number sequence on the server, or fix its name.
- :class:`FloeExhausted` (a :class:`FloeOverLimit`): the segment tag, or the number sequence's
  period, has no value left (HTTP 409 ``exhausted``; over TCP v2 it is status 4, raised as
  :class:`FloeOverLimit` with the server's message).
- :class:`FloeUnsupported`: the request needs a protocol the server or client configuration lacks
  (segment IDs over GenID's v1).
- :class:`FloeProtocolError`: a server answered with bytes the client cannot understand.
- :class:`FloeInternalError`: the server reported a bug (v2 status 5, HTTP 500).
"""

from __future__ import annotations


class FloeError(Exception):
    """Base class of every error the Floe client raises.

    ``server`` names the server that gave the answer, when one did.
    """

    def __init__(self, message: str, *, server: str | None = None) -> None:
        super().__init__(message)
        self.server = server


class FloeUnavailable(FloeError):
    """No server could serve the request: every one was down, timed out or reported itself unavailable.

    ``errors`` maps each server tried to the last error it gave, in the order they were tried.
    """

    def __init__(
        self,
        message: str,
        *,
        errors: dict[str, BaseException] | None = None,
        server: str | None = None,
    ) -> None:
        super().__init__(message, server=server)
        self.errors: dict[str, BaseException] = dict(errors or {})


class FloeBadRequest(FloeError, ValueError):
    """The request is invalid (count out of range, empty tag…); fix the input, retrying will not help."""


class FloeOverLimit(FloeBadRequest):
    """The request asked for more IDs than the server allows in one request; ask for fewer."""


class FloeExhausted(FloeOverLimit):
    """The segment tag or the number sequence's period has no value left: every one was issued.

    A ``{seq:0N}`` sequence never issues a wider number; its next period starts again."""


class FloeUnknownTag(FloeError):
    """The segment tag does not exist on the server."""


class FloeUnknownName(FloeError):
    """The number sequence is not declared on the server (``[numbers.<name>]`` or the admin API)."""


class FloeUnsupported(FloeError):
    """The request needs protocol v2 (segment IDs, numbers) but the client or the server speaks only GenID's v1."""


class FloeProtocolError(FloeError):
    """A server sent bytes that do not follow the protocol (wrong magic, req_id or length)."""


class FloeInternalError(FloeError):
    """The server reported an internal error (a bug on the server); see its logs."""
