"""Limits that protect the site: a flood closes that page's socket, and no one else's."""

from __future__ import annotations

import json

import pytest
from simple_websocket import ConnectionClosed

from lens.sockets import SocketLimits, TokenBucket, TooManySockets
from lens.sockets.limits import address_key
from tests.web.test_live import BOUND, Browser


def test_a_message_flood_closes_that_socket_with_a_reason_and_others_go_on(
    app, technician, http_server, ws_connect, subscriptions
):
    tech = Browser(http_server).log_in("tess@example.com")
    flood = ws_connect("/console/ws", tech.http.cookies)
    calm = ws_connect("/console/ws", tech.http.cookies)
    assert subscriptions.wait_for(f"technician:{technician}", count=2)
    burst = app.config["LENS_SOCKET_BURST"]
    with pytest.raises(ConnectionClosed):
        for _ in range(int(burst) * 3):
            flood.send(json.dumps({"type": "close"}))
        while True:
            flood.receive(timeout=BOUND)
    assert (flood.close_reason, flood.close_message) == (1008, "too many messages")
    assert calm.receive(timeout=BOUND).startswith("<tbody")  # its list; it goes on
    calm.send("not json")
    assert json.loads(calm.receive(timeout=BOUND))["reason"] == "bad_message"


def test_token_bucket_allows_bursts_then_the_rate():
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 1.0  # two more tokens
    assert [bucket.take() for _ in range(3)] == [True, True, False]


def test_socket_caps_count_addresses_and_owners_and_release():
    limits = SocketLimits(per_address=2, per_owner=1)
    with limits.hold("203.0.113.5", "customer:1"), limits.hold("203.0.113.5", "customer:2"):
        with pytest.raises(TooManySockets, match="address"), limits.hold("203.0.113.5", "c:3"):
            pass
        with (
            pytest.raises(TooManySockets, match="session"),
            limits.hold("198.51.100.1", "customer:1"),
        ):
            pass
        assert limits.open_sockets() == 2
    assert limits.open_sockets() == 0
    with limits.hold("203.0.113.5", "customer:1"):
        pass


def test_ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4():
    assert address_key("2001:db8:1:2::5") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::5") != address_key("2001:db8:1:3::5")
    assert address_key("::ffff:203.0.113.5") == "203.0.113.5"
    assert address_key(None) == "unknown"
