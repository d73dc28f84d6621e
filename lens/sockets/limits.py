"""Limits that keep one client from taking the web process: sockets held, messages sent."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from lens.security.addresses import address_key

__all__ = ["SocketLimits", "TokenBucket", "TooManySockets", "address_key"]


class TooManySockets(Exception):
    """A client already holds as many sockets as it may; `reason` says which limit."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SocketLimits:
    """Concurrent sockets per address and per owner (a technician, a customer's session)."""

    def __init__(self, per_address: int, per_owner: int) -> None:
        self.per_address = per_address
        self.per_owner = per_owner
        self._lock = threading.Lock()
        self._addresses: Counter[str] = Counter()
        self._owners: Counter[str] = Counter()

    @contextmanager
    def hold(self, address: str | None, owner: str) -> Iterator[None]:
        """Count one socket for the block's life, or raise TooManySockets at once."""
        key = address_key(address)
        with self._lock:
            if self._addresses[key] >= self.per_address:
                raise TooManySockets("too many connections from this address")
            if self._owners[owner] >= self.per_owner:
                raise TooManySockets("too many connections for this session")
            self._addresses[key] += 1
            self._owners[owner] += 1
        try:
            yield
        finally:
            with self._lock:
                self._addresses[key] -= 1
                self._owners[owner] -= 1
                if self._addresses[key] <= 0:
                    del self._addresses[key]
                if self._owners[owner] <= 0:
                    del self._owners[owner]

    def open_sockets(self) -> int:
        with self._lock:
            return sum(self._addresses.values())


class TokenBucket:
    """`rate` messages a second on average, bursts up to `burst`."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()

    def take(self) -> bool:
        """Spend one token; False when the sender is over its allowance."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
