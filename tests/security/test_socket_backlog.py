"""A socket whose unread messages pile up past the bound is closed and they are dropped."""

from __future__ import annotations

import threading

from lens.sockets.backlog import bounded_reader


class FakeServer:
    """What the bound touches of simple-websocket's Server."""

    def __init__(self, arriving: list[str]) -> None:
        self.arriving = arriving
        self.input_buffer: list[str] = []
        self.connected = True
        self.event = threading.Event()
        self.closed_with: tuple[int, str] | None = None

    def _handle_events(self) -> bool:
        self.input_buffer.append(self.arriving.pop(0))
        return True

    def close(self, reason=None, message=None) -> None:
        self.closed_with = (reason, message)
        self.connected = False

    def _thread(self) -> None:
        while self.connected and self.arriving:
            self.connected = self._handle_events()


def test_unread_messages_over_the_bound_close_the_socket_and_are_dropped():
    server = FakeServer(["x" * 100] * 10)
    reader = bounded_reader(max_bytes=350)(target=server._thread)
    reader.start()
    reader.join(timeout=5)
    assert server.closed_with == (1008, "too many messages")
    assert server.input_buffer == []  # nothing of the flood is left for the page
    assert server.event.is_set()  # the page's receive() wakes up and sees the close
    assert len(server.arriving) == 6  # it stopped reading at the fourth message


def test_a_page_that_keeps_up_is_not_closed():
    server = FakeServer(["x" * 100] * 10)
    handle = server._handle_events

    def handle_and_take() -> bool:  # the page takes each message as it comes
        keep = handle()
        server.input_buffer.clear()
        return keep

    server._handle_events = handle_and_take
    reader = bounded_reader(max_bytes=350)(target=server._thread)
    reader.start()
    reader.join(timeout=5)
    assert server.closed_with is None and server.arriving == []
