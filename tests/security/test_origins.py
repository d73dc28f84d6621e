"""A page of another site gets no socket: the Origin is checked before the upgrade."""

from __future__ import annotations

import pytest

from lens.security.upgrades import normalize_origin, origin_allowed, site_origins
from tests.webtier.conftest import Visitor
from tests.webtier.rawsocket import open_socket

BOUND = 10.0


@pytest.mark.parametrize(
    ("origin", "normalized"),
    [
        ("https://Lens.Example", "https://lens.example"),
        ("https://lens.example:443", "https://lens.example"),
        ("http://lens.example:8080", "http://lens.example:8080"),
        ("wss://lens.example", "https://lens.example"),
        ("http://[::1]:5000", "http://[::1]:5000"),
        ("null", None),
        ("file://", None),
        ("https://lens.example:99999", None),
        ("", None),
    ],
)
def test_origins_are_compared_as_scheme_host_and_port(origin, normalized):
    assert normalize_origin(origin) == normalized


def test_only_the_sites_own_origins_are_allowed():
    allowed = site_origins("http://127.0.0.1:5000/", ["https://lens.example"], "")
    assert allowed == {"http://127.0.0.1:5000", "https://lens.example"}
    assert origin_allowed("http://127.0.0.1:5000", allowed)
    assert origin_allowed("https://lens.example:443", allowed)
    assert not origin_allowed("https://127.0.0.1:5000", allowed)  # another scheme
    assert not origin_allowed("http://127.0.0.1:5001", allowed)  # another port
    assert not origin_allowed("https://lens.example.evil.example", allowed)
    assert not origin_allowed("null", allowed)
    assert origin_allowed(None, allowed)  # not a browser: no cookies of a victim to ride on
    assert site_origins("http://a/", [], "https://b.example") == {"http://a", "https://b.example"}


def _pages(site):
    tech = Visitor(site).log_in()
    phone = Visitor(site).join(tech.create_session())
    return [("/console/ws", tech.cookie), ("/web/ws", tech.cookie), ("/c/ws", phone.cookie)]


def test_a_foreign_origin_gets_no_socket_and_the_sites_own_gets_one(make_site):
    site = make_site()
    port = site.port
    foreign = [
        "https://evil.example",
        "null",
        f"http://127.0.0.1:{port + 1}",
        f"https://127.0.0.1:{port}",
        f"http://localhost:{port}",
    ]
    for path, cookie in _pages(site):
        for origin in foreign:
            refused = open_socket(site.host, path, cookie, headers={"Origin": origin})
            assert refused.status == 403, (path, origin, refused.head)
            assert "upgrade" not in refused.head.lower(), refused.head  # no socket at all
            refused.close()
        for headers in ({"Origin": site.base}, {}):  # the site's page; a non-browser client
            accepted = open_socket(site.host, path, cookie, headers=headers)
            assert accepted.status == 101, (path, headers, accepted.head)
            assert accepted.text(timeout=BOUND)  # the page's first push: a live socket
            accepted.close()
    assert "WebSocket from a foreign page refused" in site.log.read_text()


def test_a_proxys_public_origin_is_allowed_when_configured(make_site):
    site = make_site(LENS_ALLOWED_ORIGINS="https://support.example.com", LENS_TRUSTED_PROXIES="1")
    tech = Visitor(site).log_in()
    for headers, status in [
        ({"Origin": "https://support.example.com"}, 101),  # listed
        ({"Origin": f"https://{site.host}", "X-Forwarded-Proto": "https"}, 101),  # proxied TLS
        ({"Origin": f"https://{site.host}"}, 403),  # https page, but the proxy did not say so
        ({"Origin": "https://evil.example", "X-Forwarded-Proto": "https"}, 403),
    ]:
        answer = open_socket(site.host, "/console/ws", tech.cookie, headers=headers)
        assert answer.status == status, (headers, answer.head)
        answer.close()


def test_a_compression_offer_is_declined(make_site):
    """permessage-deflate would inflate a small frame past the size limit before it is seen."""
    site = make_site()
    tech = Visitor(site).log_in()
    offer = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
    answer = open_socket(site.host, "/console/ws", tech.cookie, headers=offer)
    assert answer.status == 101
    assert "sec-websocket-extensions" not in answer.head.lower(), answer.head
    assert answer.text(timeout=BOUND)
    answer.close()
