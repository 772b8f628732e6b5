"""Server lists, health and failover: the one retry loop both clients use.

A server that fails (connection error, timeout, "unavailable" answer) is avoided for a backoff
period that doubles with each consecutive failure up to a cap, with jitter so a fleet of clients
does not come back in step. Servers in backoff are tried only after every healthy one; when all
are in backoff they are still tried (soonest-to-recover first), so a restarted server is used as
soon as it answers instead of after its backoff.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from .errors import FloeError, FloeProtocolError, FloeUnavailable

T = TypeVar("T")
R = TypeVar("R")


class Retryable(Exception):
    """Internal: this attempt failed in a way another server (or a later try) may not.

    ``stale`` is set when a reused connection was found closed before any reply byte arrived:
    the server most likely closed an idle connection, so one fresh connection to the same server
    is tried before it is counted as failed.
    """

    def __init__(self, error: BaseException, *, stale: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.stale = stale


class ServerState:
    """Health bookkeeping of one server."""

    __slots__ = ("down_until", "failures", "last_error", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        #: Consecutive failures; 0 while healthy.
        self.failures = 0
        #: time.monotonic() until which the server is avoided.
        self.down_until = 0.0
        #: The last error it gave, for FloeUnavailable's message.
        self.last_error: BaseException | None = None


class Pool(Generic[T]):
    """The servers of one client, their health, and the order to try them in.

    ``targets`` are what the client connects to (parsed addresses); ``names`` how they are shown.
    Not thread-safe by itself: the clients call it under their own lock.
    """

    def __init__(
        self,
        targets: Sequence[T],
        names: Sequence[str],
        *,
        backoff: float,
        max_backoff: float,
        max_retries: int | None,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not targets:
            raise ValueError("no servers given: pass at least one address, e.g. ['127.0.0.1:3778']")
        if backoff < 0 or max_backoff < backoff:
            raise ValueError(
                f"backoff must be >= 0 and <= max_backoff, got backoff={backoff}, max_backoff={max_backoff}"
            )
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if max_retries is not None and max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.targets: list[T] = list(targets)
        self.states = [ServerState(n) for n in names]
        self.backoff = backoff
        self.max_backoff = max_backoff
        #: Attempts per call after the first; by default each server is tried once.
        self.max_retries = len(self.targets) - 1 if max_retries is None else max_retries
        #: Seconds one attempt (connect + request + reply) may take.
        self.timeout = timeout
        self.clock = clock
        #: Index of the server the client currently talks to.
        self.current = 0

    def order(self) -> list[int]:
        """Indexes to try, best first: the current server if healthy, the other healthy ones in
        list order after it, then the ones in backoff by the time they recover."""
        now = self.clock()
        n = len(self.targets)
        rotated = [(self.current + k) % n for k in range(n)]
        healthy = [i for i in rotated if self.states[i].down_until <= now]
        resting = sorted(
            (i for i in rotated if self.states[i].down_until > now), key=lambda i: self.states[i].down_until
        )
        return healthy + resting

    def succeeded(self, i: int) -> None:
        """Marks server ``i`` healthy and current."""
        state = self.states[i]
        state.failures = 0
        state.down_until = 0.0
        self.current = i

    def failed(self, i: int, error: BaseException) -> None:
        """Puts server ``i`` in backoff: backoff × 2^(failures-1), capped, with ±25% jitter."""
        state = self.states[i]
        state.failures += 1
        state.last_error = error
        delay = min(self.max_backoff, self.backoff * (2 ** min(state.failures - 1, 30)))
        state.down_until = self.clock() + delay * random.uniform(0.75, 1.25)

    def run(self, attempt: Callable[[int, float], R]) -> R:
        """Calls ``attempt(server_index, deadline)`` on one server after another until one returns.

        ``attempt`` raises :class:`Retryable` for failures another server may not have (the server
        is put in backoff and the next is tried) and any other exception to stop at once.
        Raises :class:`FloeUnavailable` (or :class:`FloeProtocolError` when every server answered
        in a foreign protocol) once ``max_retries + 1`` attempts failed.
        """
        errors: dict[str, BaseException] = {}
        last: BaseException | None = None
        attempts = 0
        while True:
            for i in self.order():
                if attempts > self.max_retries:
                    raise self._exhausted(errors) from last
                if attempts and attempts % len(self.targets) == 0:
                    # A new round over servers that all just failed: pause before going again.
                    time.sleep(self.backoff)
                attempts += 1
                try:
                    result = attempt(i, self.clock() + self.timeout)
                except Retryable as r:
                    self.failed(i, r.error)
                    errors[self.states[i].name] = last = r.error
                    continue
                self.succeeded(i)
                return result

    def _exhausted(self, errors: dict[str, BaseException]) -> FloeError:
        tried = "; ".join(f"{name}: {describe(e)}" for name, e in errors.items())
        names = ", ".join(s.name for s in self.states)
        if errors and all(isinstance(e, FloeProtocolError) for e in errors.values()):
            err: FloeError = FloeProtocolError(f"no server answered in the Floe protocol ({tried})")
            return err
        return FloeUnavailable(
            f"no Floe server could serve the request (servers: {names}; tried {tried})",
            errors=errors,
        )


def describe(error: BaseException) -> str:
    """An error as ``Type: message``, for listing in one line."""
    text = str(error) or repr(error)
    return f"{type(error).__name__}: {text}"
