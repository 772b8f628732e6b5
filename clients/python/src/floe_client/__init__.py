"""Floe client: unique 64-bit IDs from Floe (or GenID) servers, with failover.

- :class:`Client` speaks the binary TCP protocol (Floe's v2, GenID's v1) on port 3778;
- :class:`HttpClient` speaks Floe's JSON HTTP API on port 8880.

Both take a list of servers, keep a long-lived connection to one of them, and fail over to the
next when it stops answering. Every error they raise is a :class:`FloeError`.

>>> from floe_client import Client
>>> with Client(["10.0.0.1:3778", "10.0.0.2:3778"]) as floe:   # doctest: +SKIP
...     ids = floe.get_ids(100)
...     order = floe.number("order_no")   # "ORD-20261130-000042"
"""

from ._common import MAX_COUNT
from .client import Client
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
    FloeUnsupported,
)
from .forms import IdForm, ServerForm, from_form, to_form
from .genid import GenIdFields, decode_genid
from .http import HttpClient

__version__ = "0.1.0"

__all__ = [
    "MAX_COUNT",
    "Client",
    "FloeBadRequest",
    "FloeError",
    "FloeExhausted",
    "FloeInternalError",
    "FloeOverLimit",
    "FloeProtocolError",
    "FloeUnavailable",
    "FloeUnknownName",
    "FloeUnknownTag",
    "FloeUnsupported",
    "GenIdFields",
    "HttpClient",
    "IdForm",
    "ServerForm",
    "__version__",
    "decode_genid",
    "from_form",
    "to_form",
]
