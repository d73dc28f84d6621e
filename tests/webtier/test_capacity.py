"""Waiting sockets cost the web process no thread and no database connection (gunicorn+gevent)."""

from __future__ import annotations

import time

import requests

from tests.webtier.conftest import Visitor
from tests.webtier.rawsocket import Closed, open_socket


def healthz_seconds(server) -> float:
    began = time.monotonic()
    response = requests.get(server.base + "/healthz", timeout=30, verify=False)
    assert response.status_code == 200
    return time.monotonic() - began


def test_500_idle_sockets_leave_the_site_answering(make_site):
    server = make_site(LENS_SOCKETS_PER_ADDRESS="2000", LENS_SOCKETS_PER_OWNER="2000")
    tech = Visitor(server).log_in()
    phone = Visitor(server).join(tech.create_session("Jane Idle"))
    assert phone.post("/c/accept").status_code == 200
    held = []
    try:
        for i in range(500):
            path, cookie = ("/console/ws", tech.cookie) if i % 2 else ("/c/ws", phone.cookie)
            sock = open_socket(server.host, path, cookie)
            assert sock.status == 101, f"socket {i} refused: {sock.status}"
            held.append(sock)
        # every socket has been served: its first push (the list, the phone's screen) came
        assert held[-1].text(timeout=10).startswith("<")
        assert held[-2].text(timeout=10).startswith("<")
        assert healthz_seconds(server) < 1.0
        console = tech.get("/console/")
        assert console.status_code == 200 and "Jane Idle" in console.text
    finally:
        for sock in held:
            sock.close()


def test_a_pool_of_two_connections_serves_50_waiting_sockets_and_the_pages(make_site):
    server = make_site(
        LENS_DB_POOL_SIZE="2", LENS_DB_MAX_OVERFLOW="0", LENS_DB_POOL_TIMEOUT="5",
        LENS_SOCKETS_PER_OWNER="100",
    )  # fmt: skip
    tech = Visitor(server).log_in()
    phones = []
    held = []
    try:
        for n in range(25):
            phone = Visitor(server).join(tech.create_session(f"Jane {n}"))
            assert phone.post("/c/accept").status_code == 200
            phones.append(phone)
            for path, cookie in (("/c/ws", phone.cookie), ("/console/ws", tech.cookie)):
                sock = open_socket(server.host, path, cookie)
                assert sock.status == 101
                held.append(sock)
        for sock in held:
            assert sock.text(timeout=10).startswith("<")  # each was served before it waited
        # the pages go on: log-in, the console, a new session, a join, an accept
        assert healthz_seconds(server) < 1.0
        assert "Jane 24" in tech.get("/console/").text
        late = Visitor(server).join(tech.create_session("Jane Late"))
        assert late.post("/c/accept").status_code == 200
        assert Visitor(server).log_in().get("/console/").status_code == 200
    finally:
        for sock in held:
            sock.close()


def test_one_address_is_cut_off_at_its_cap_while_another_client_is_served(make_site):
    server = make_site(LENS_SOCKETS_PER_ADDRESS="100", LENS_SOCKETS_PER_OWNER="5000")
    tech = Visitor(server).log_in()
    held, refused = [], []
    try:
        for _ in range(1000):
            sock = open_socket(server.host, "/console/ws", tech.cookie)
            held.append(sock)
        for sock in held:
            try:
                sock.text(timeout=10)  # the list: this one was let in
            except Closed as closed:
                refused.append(closed)
        assert len(held) - len(refused) == 100
        assert {(c.code, c.reason) for c in refused} == {
            (1013, "too many connections from this address")
        }
        # another address is served as usual while the first holds its 100
        other = open_socket(server.host, "/console/ws", tech.cookie, source="127.0.0.2")
        assert other.status == 101
        assert other.text(timeout=10).startswith("<tbody")
        assert healthz_seconds(server) < 1.0
    finally:
        for sock in held:
            sock.close()


def test_sockets_without_a_login_or_a_joined_session_are_refused_before_the_upgrade(make_site):
    server = make_site()
    stranger = Visitor(server)
    stranger.get("/")  # a cookie, but no log-in and no session
    assert open_socket(server.host, "/console/ws", stranger.cookie).status == 401
    assert open_socket(server.host, "/web/ws", "").status == 401
    assert open_socket(server.host, "/c/ws", stranger.cookie).status == 403
    forged = "session=eyJsZW5zX2pvaW5lZCI6MX0.forged.signature"
    assert open_socket(server.host, "/c/ws", forged).status == 403
