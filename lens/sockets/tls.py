"""A selector for simple-websocket that sees data already decrypted inside a TLS socket.

simple-websocket waits with select() and then reads `receive_bytes`. A TLS record larger
than that read is decrypted whole into the SSL object; the rest waits there, invisible to
select() on the raw socket, until more bytes arrive (the next ping, 25 s later). Reads are
made larger than a TLS record (16 KiB), and this selector reports a socket with pending
decrypted bytes as readable at once.
"""

from __future__ import annotations

import selectors
from typing import Any

RECEIVE_BYTES = 64 * 1024


class TLSAwareSelector:
    """The default selector, but readable at once while the TLS layer holds data."""

    def __init__(self) -> None:
        self._inner = selectors.DefaultSelector()  # looked up now: gevent may have patched it
        self._files: list[Any] = []

    def register(self, fileobj: Any, events: int, data: Any = None):
        self._files.append(fileobj)
        return self._inner.register(fileobj, events, data)

    def select(self, timeout: float | None = None):
        ready = [f for f in self._files if callable(getattr(f, "pending", None)) and f.pending()]
        if ready:
            return [(self._inner.get_key(f), selectors.EVENT_READ) for f in ready]
        return self._inner.select(timeout)

    def close(self) -> None:
        self._inner.close()
