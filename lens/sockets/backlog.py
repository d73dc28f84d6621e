"""A bound on what a socket's reader may hold that the page has not taken yet.

simple-websocket's reader (a thread, a greenlet under gevent) reads as fast as the client
sends and queues each message for the page; the page takes them one at a time and does
its work in between (the rate limit closes a page that sends too many, but only as it takes
them). A client that floods while the page is busy would have its messages pile up in
memory, which the worker then keeps. Over `max_bytes` waiting, the socket is closed at
once (1008, as for too many messages) and what waited is dropped.

This wraps the reader's event handling (simple-websocket 1.1's `_handle_events` and
`input_buffer`, the version requirements.lock pins); `thread_class` is the hook
simple-websocket offers for the reader.
"""

from __future__ import annotations

import threading
from typing import Any

CLOSE_POLICY = 1008


def bounded_reader(max_bytes: int) -> type[threading.Thread]:
    """A thread class for simple-websocket's reader that closes a socket whose unread
    messages exceed max_bytes."""

    class BoundedReader(threading.Thread):
        def __init__(self, *args: Any, target: Any = None, **kwargs: Any) -> None:
            ws = getattr(target, "__self__", None)
            if ws is not None and hasattr(ws, "_handle_events"):
                _bound(ws, max_bytes)
            super().__init__(*args, target=target, **kwargs)

    return BoundedReader


def _bound(ws: Any, max_bytes: int) -> None:
    handle_events = ws._handle_events

    def handle_within_bound() -> bool:
        keep_going = handle_events()
        if keep_going and sum(len(message) for message in ws.input_buffer) > max_bytes:
            ws.input_buffer.clear()
            try:
                ws.close(CLOSE_POLICY, "too many messages")
            except Exception:  # the client went away meanwhile
                ws.connected = False
            ws.event.set()
            return False
        return keep_going

    ws._handle_events = handle_within_bound
