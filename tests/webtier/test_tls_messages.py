"""Over wss://, a message larger than one read is acted on at once, not at the next ping."""

from __future__ import annotations

import json
import time

from tests.webtier.conftest import Visitor
from tests.webtier.rawsocket import open_socket


def test_a_16_kb_message_in_one_tls_record_is_answered_within_a_second(make_site):
    server = make_site(tls=True)
    tech = Visitor(server).log_in()
    sock = open_socket(server.host, "/console/ws", tech.cookie, tls=True)
    assert sock.status == 101
    assert sock.text(timeout=10).startswith("<tbody")  # the list: the socket is being served

    timings = []
    for _ in range(3):
        message = json.dumps({"type": "no_such_thing", "pad": "x" * 15_960})
        assert 15_900 < len(message) < 16_300  # with its header, one TLS record (16 KiB)
        began = time.monotonic()
        sock.send_text(message)
        answer = json.loads(sock.text(timeout=30))
        timings.append(time.monotonic() - began)
        assert answer["reason"] == "bad_message"
    assert max(timings) < 1.0, timings
    sock.close()
