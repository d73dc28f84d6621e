"""A page's code driven without a network: the same dispatcher a live socket feeds.

`console_page(world, role)` and `phone_page(world, role)` build the page object a socket
would (lens.console.live, lens.customer.live) on a recording socket; `page.say(message)`
hands it one raw message through `receive` (schema check, then the handler) and returns
the JSON the page got back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lens.console.live import ConsolePage
from lens.customer.live import PhonePage
from lens.extensions import db
from lens.features import TECHNICIAN_CONSOLE, WEB_CONSOLE
from lens.sessions import lifecycle
from lens.sockets import PageSocket, TokenBucket

UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade"}  # a socket's request


class RecordingWs:
    """Stands in for simple-websocket's connection: what is sent is kept."""

    def __init__(self) -> None:
        self.connected = True
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None

    def send(self, text: str) -> None:
        self.sent.append(text)

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.connected = False
        self.closed = (code, reason)

    def receive(self, timeout=None):
        return None


class DrivenPage:
    """A page object and its recording socket."""

    def __init__(self, page, ws: RecordingWs) -> None:
        self.page = page
        self.ws = ws

    @property
    def open(self) -> bool:
        return self.page.sock.open and self.ws.closed is None

    def say(self, raw: Any) -> list[dict[str, Any]]:
        """Hand the page one raw message; the JSON messages it answered with."""
        before = len(self.ws.sent)
        self.page.receive(raw)
        return [json.loads(text) for text in self.ws.sent[before:] if not text.startswith("<")]


def _socket(owner: str) -> tuple[PageSocket, RecordingWs]:
    ws = RecordingWs()
    return PageSocket(ws, TokenBucket(10_000, 10_000), owner), ws


@contextmanager
def console_page(
    app, technician_id: int, console: str = TECHNICIAN_CONSOLE
) -> Iterator[DrivenPage]:
    """A technician's console page (Technician or Web Console), in a request of its own."""
    path = {TECHNICIAN_CONSOLE: "/console/ws", WEB_CONSOLE: "/web/ws"}[console]
    with app.test_request_context(path, headers=UPGRADE) as request:
        request.match_request()  # the pages' templates name the socket's blueprint
        from lens.auth.models import Technician

        technician = db.session.get(Technician, technician_id)
        actor = lifecycle.technician_actor(technician)
        sock, ws = _socket(f"technician:{technician_id}")
        page = ConsolePage(sock, technician_id, actor, console)
        db.session.remove()
        try:
            yield DrivenPage(page, ws)
        finally:
            sock.finish()
            db.session.remove()


@contextmanager
def phone_page(app, session_id: int) -> Iterator[DrivenPage]:
    """The phone page of a session's joined customer, in a request of its own."""
    with app.test_request_context("/c/ws", headers=UPGRADE) as request:
        request.match_request()
        sock, ws = _socket(f"customer:{session_id}")
        page = PhonePage(sock, session_id)
        try:
            yield DrivenPage(page, ws)
        finally:
            sock.finish()
            db.session.remove()
