"""Live updates over real WebSockets: the console's list and the customer's status screen."""

from __future__ import annotations

import html
import re
import time
from datetime import timedelta

import pytest
import requests
from simple_websocket import ConnectionClosed
from simple_websocket import ConnectionError as HandshakeRefused
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from lens.auth.models import Technician
from lens.extensions import db
from lens.sessions import lifecycle
from lens.sessions.models import LensSession, SessionState
from lens.timeutil import now_utc
from tests.conftest import PASSWORD, add_technician, csrf_from

BOUND = 5.0  # seconds a pushed change may take to reach an open page
# the shape of an offer (lens.sockets.messages checks it before a sidecar is asked)
OFFER = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"


class Browser:
    """A browser talking to the live server over HTTP."""

    def __init__(self, base: str) -> None:
        self.base = f"http://{base}"
        self.http = requests.Session()
        self.token = ""

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.base + path, allow_redirects=False, timeout=10)

    def post(self, path: str, data: dict | None = None) -> requests.Response:
        headers = {"HX-Request": "true", "X-CSRFToken": self.token}
        return self.http.post(
            self.base + path, data=data or {}, headers=headers, allow_redirects=False, timeout=10
        )

    def log_in(self, email: str) -> Browser:
        self.token = csrf_from(self.get("/login").text)
        response = self.http.post(
            self.base + "/login",
            data={"email": email, "password": PASSWORD, "csrf_token": self.token},
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 302, response.text
        self.token = csrf_from(self.get("/console/").text)
        return self

    def create_session(self, name: str) -> str:
        response = self.post("/console/sessions", {"name": name})
        assert response.status_code == 201, response.text
        return re.search(r'data-pin="(\d{6})"', response.text).group(1)

    def join(self, pin: str) -> None:
        self.token = csrf_from(self.get("/").text)
        response = self.http.post(
            self.base + "/",
            data={"pin": pin, "csrf_token": self.token},
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 303, response.text


def receive_until(ws, needle: str, deadline: float) -> str | None:
    """The first message containing needle, or None when the deadline passes first."""
    while (left := deadline - time.monotonic()) > 0:
        message = ws.receive(timeout=left)
        if message is None:
            return None
        if needle in message:
            return message
    return None


def session_id_of(app, pin: str) -> int:
    with app.app_context():
        return db.session.scalar(select(LensSession.id).where(LensSession.pin == pin))


def test_console_list_receives_the_connected_customer(
    app, technician, http_server, ws_connect, subscriptions
):
    tech = Browser(http_server).log_in("tess@example.com")
    pin = tech.create_session("Jane Live")
    session_id = session_id_of(app, pin)
    ws = ws_connect("/console/ws", tech.http.cookies)
    assert subscriptions.wait_for(f"technician:{technician}"), "console socket never subscribed"

    phone = Browser(http_server)
    phone.join(pin)
    began = time.monotonic()
    accepted = phone.post("/c/accept")
    assert accepted.status_code == 200

    message = receive_until(ws, "Customer connected", began + BOUND)
    elapsed = time.monotonic() - began

    assert message is not None, f"no row with 'Customer connected' within {BOUND} s"
    assert elapsed < BOUND
    # only the changed row goes out, not the list
    assert 'id="session-rows"' not in message
    assert re.search(r'<tr id="session-row-\d+"[^>]*hx-swap-oob="true"', message)
    row = re.search(rf'<tr id="session-row-{session_id}".*?</tr>', message, re.S)
    assert row, message
    assert 'data-state="waiting"' in row.group(0)
    assert "Jane Live" in row.group(0)


def test_console_socket_carries_only_own_sessions(
    app, technician, http_server, ws_connect, subscriptions
):
    other_id = add_technician(app, "Otto Other", "otto@example.com")
    tess = Browser(http_server).log_in("tess@example.com")
    otto = Browser(http_server).log_in("otto@example.com")
    ws = ws_connect("/console/ws", otto.http.cookies)
    assert subscriptions.wait_for(f"technician:{other_id}")
    initial = ws.receive(timeout=BOUND)  # the list as it was when the socket opened
    assert initial is not None and "No sessions yet" in initial

    Browser(http_server).join(tess.create_session("Tess Customer"))
    otto.create_session("Otto Customer")

    # Messages arrive in order: had Tess's changes reached Otto, they would come first.
    first = ws.receive(timeout=BOUND)
    assert first is not None
    assert "Otto Customer" in first
    assert "Tess Customer" not in first


def joined_phone(
    app, http_server: str, tech: Browser, prefix: str, name: str
) -> tuple[Browser, int]:
    """A phone that joined a new session of tech's (in the console at prefix) and accepted."""
    response = tech.post(f"{prefix}/sessions", {"name": name})
    assert response.status_code == 201, response.text
    pin = re.search(r'data-pin="(\d{6})"', response.text).group(1)
    session_id = session_id_of(app, pin)  # read before the join uses the PIN up
    phone = Browser(http_server)
    phone.join(pin)
    assert phone.post("/c/accept").status_code == 200
    return phone, session_id


def phone_socket(phone: Browser, session_id: int, ws_connect, subscriptions):
    """The phone page's socket, open once the server listens for its session."""
    ws = ws_connect("/c/ws", phone.http.cookies)
    assert subscriptions.wait_for(f"session:{session_id}"), "customer socket never subscribed"
    return ws


def console_socket(tech: Browser, ws_connect, subscriptions, technician: int):
    """The console page's socket, after the list as it is (its first message)."""
    ws = ws_connect("/console/ws", tech.http.cookies)
    assert subscriptions.wait_for(f"technician:{technician}"), "console socket never subscribed"
    assert ws.receive(timeout=BOUND) is not None  # the list as it is
    return ws


def waiting_phone(app, http_server, ws_connect, subscriptions, name: str):
    """Tess's session with a phone that joined, accepted and has its status socket open."""
    tech = Browser(http_server).log_in("tess@example.com")
    phone, session_id = joined_phone(app, http_server, tech, "/console", name)
    return tech, session_id, phone_socket(phone, session_id, ws_connect, subscriptions)


def test_customer_status_becomes_active_when_the_technician_starts(
    app, technician, http_server, ws_connect, subscriptions
):
    tech, session_id, ws = waiting_phone(app, http_server, ws_connect, subscriptions, "Jane Live")

    began = time.monotonic()
    assert tech.post(f"/console/sessions/{session_id}/start").status_code == 200
    message = receive_until(ws, "Session active", began + BOUND)

    assert message is not None, f"no 'Session active' within {BOUND} s"
    assert time.monotonic() - began < BOUND
    assert 'data-screen="active"' in message
    assert 'hx-swap-oob="true"' in message


def test_customer_socket_without_a_session_is_refused(http_server, ws_connect):
    phone = Browser(http_server)
    phone.get("/")  # a cookie, but no session joined
    with pytest.raises(HandshakeRefused) as refused:
        ws_connect("/c/ws", phone.http.cookies)
    assert refused.value.status_code == 403


def test_console_socket_refuses_a_browser_that_is_not_logged_in(http_server, ws_connect):
    with pytest.raises(HandshakeRefused) as refused:
        ws_connect("/console/ws", requests.Session().cookies)
    assert refused.value.status_code == 401


def test_customer_socket_closes_once_the_session_has_ended(
    app, technician, http_server, ws_connect, subscriptions
):
    tech, session_id, ws = waiting_phone(app, http_server, ws_connect, subscriptions, "Jane Live")

    assert tech.post(f"/console/sessions/{session_id}/end").status_code == 200
    ended = receive_until(ws, "The session has ended", time.monotonic() + BOUND)
    assert ended is not None
    with pytest.raises(ConnectionClosed):
        ws.receive(timeout=BOUND)


def test_an_open_customer_page_is_seen_and_a_waiting_session_not_seen_since_is_closed(
    app, technician, http_server, ws_connect, subscriptions
):
    tech, session_id, ws = waiting_phone(app, http_server, ws_connect, subscriptions, "Jane Away")

    def seen_at():
        with app.app_context():
            return db.session.get(LensSession, session_id).customer_seen_at

    deadline = time.monotonic() + BOUND
    while seen_at() is None:  # the socket says so as soon as it is open
        assert time.monotonic() < deadline, "the open page was never seen"
        time.sleep(0.05)
    first_seen = seen_at()
    gone_after = timedelta(minutes=app.config["LENS_CUSTOMER_GONE_MINUTES"])
    with app.app_context():
        # a sweep within the grace period leaves it waiting
        soon = first_seen + gone_after / 2
        assert lifecycle.expire_due_sessions(db.session, soon, timedelta(hours=1), gone_after) == 0
        db.session.commit()
        # the page closed and nothing was heard of it for longer: the sweep closes the session
        ws.close()
        later = first_seen + gone_after + timedelta(seconds=1)
        assert lifecycle.expire_due_sessions(db.session, later, timedelta(hours=1), gone_after) == 1
        db.session.commit()
        lens_session = db.session.get(LensSession, session_id)
        assert (lens_session.state, lens_session.end_reason) == ("closed", "customer_left")
    panel = html.unescape(tech.get(f"/console/sessions/{session_id}").text)
    assert "Session ended (the customer's page was closed)" in panel


def test_a_failed_seen_mark_does_not_end_the_customers_status_socket(
    app, technician, http_server, ws_connect, subscriptions, monkeypatch
):
    def busy(*args, **kwargs):
        raise OperationalError("UPDATE lens_session", {}, Exception("database is locked"))

    monkeypatch.setattr(lifecycle, "customer_seen", busy)
    tech, session_id, ws = waiting_phone(app, http_server, ws_connect, subscriptions, "Jane Busy")

    began = time.monotonic()
    assert tech.post(f"/console/sessions/{session_id}/start").status_code == 200
    assert receive_until(ws, "Session active", began + BOUND) is not None


def test_an_offer_waits_for_a_sidecar_and_a_page_may_have_only_a_few_waiting(
    app, technician, http_server, ws_connect, subscriptions
):
    """With no sidecar listening an offer waits (one may come up in a moment), so a page
    gets only OFFERS_IN_FLIGHT of them waiting at once: the next is "busy" at once."""
    import json
    import socket

    from lens.sidecars import MediaRouter, StaticRegistry
    from lens.signaling.relay import OFFERS_IN_FLIGHT

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{probe.getsockname()[1]}"
    app.extensions["lens.media"] = MediaRouter(StaticRegistry(nobody), "s", offer_wait=1.5)
    _, session_id, ws = waiting_phone(app, http_server, ws_connect, subscriptions, "Olga Offers")
    sent = time.monotonic()
    for ref in range(OFFERS_IN_FLIGHT + 1):
        ws.send(json.dumps({"type": "offer", "ref": ref, "sdp": OFFER}))
    replies = {}
    while len(replies) < OFFERS_IN_FLIGHT + 1:
        raw = ws.receive(timeout=BOUND)
        assert raw is not None, f"replies so far: {replies}"
        if raw.startswith("{"):
            reply = json.loads(raw)
            replies[reply["ref"]] = (reply["reason"], time.monotonic() - sent)
    busy = [ref for ref, (reason, _) in replies.items() if reason == "busy"]
    assert len(busy) == 1 and replies[busy[0]][1] < 1.0  # at once, not after the wait
    waited = [at for reason, at in replies.values() if reason == "unavailable"]
    assert len(waited) == OFFERS_IN_FLIGHT and min(waited) >= 1.0  # after waiting
    # the allowance is given back: the next offer waits again rather than being busy
    ws.send(json.dumps({"type": "offer", "ref": "again", "sdp": OFFER}))
    while (raw := ws.receive(timeout=BOUND)) is not None and not raw.startswith("{"):
        pass
    assert raw is not None and json.loads(raw)["reason"] == "unavailable"
    # the session's log says once that the media server did not answer, not once an offer
    with app.app_context():
        kinds = [e.kind for e in db.session.get(LensSession, session_id).events]
        assert kinds.count("media_unavailable") == 1, kinds
        assert "media_connected" not in kinds


def test_media_notes_say_each_outage_once_and_each_connection_once(app, technician):
    """A page's offers in its session's log (MediaNotes): connected once a page; the media
    server not answering once an outage, however often the page re-offers meanwhile."""
    from lens.signaling.relay import MediaNotes

    with app.app_context():
        lens_session = lifecycle.create_session(
            db.session,
            technician=db.session.get(Technician, technician),
            console="technician",
            customer_name="Nora Notes",
            pin_validity=timedelta(minutes=10),
            now=now_utc(),
        )
        lens_session.state = SessionState.ACTIVE  # (media is logged for live sessions only)
        db.session.commit()
        session_id = lens_session.id
        notes = MediaNotes()
        unavailable = {"type": "error", "ref": 1, "reason": "unavailable"}
        for reply in (
            unavailable,
            unavailable,
            {"type": "answer", "ref": 2, "sdp": "v=0"},
            {"type": "error", "ref": 3, "reason": "busy"},
            {"type": "answer", "ref": 4, "sdp": "v=0"},
            unavailable,
            unavailable,
        ):
            notes.replied(session_id, "customer", reply)
        db.session.expire_all()
        kinds = [e.kind for e in db.session.get(LensSession, session_id).events]
        media = [k for k in kinds if k.startswith("media_")]
        assert media == ["media_unavailable", "media_connected", "media_unavailable"], kinds
        assert notes.connected == {session_id}
