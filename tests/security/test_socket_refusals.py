"""A socket that may not open is refused with an HTTP status before the upgrade; one that
fails afterwards is closed with a code, never sent an error page."""

from __future__ import annotations

import json

from sqlalchemy import update

from lens.auth.models import Technician
from lens.extensions import db
from tests.conftest import add_technician
from tests.web.test_live import Browser
from tests.webtier.rawsocket import Closed, open_socket

BOUND = 10.0


def _cookie(browser: Browser) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in browser.http.cookies)


def _refused(host: str, path: str, cookie: str = "") -> int:
    answer = open_socket(host, path, cookie)
    assert "upgrade" not in answer.head.lower(), answer.head  # an HTTP answer, no socket
    answer.close()
    return answer.status


def test_sockets_without_a_log_in_or_a_joined_session_are_refused_before_the_upgrade(
    app, technician, http_server
):
    stranger = Browser(http_server)
    stranger.get("/")  # a cookie, but no log-in and no session
    assert _refused(http_server, "/console/ws") == 401
    assert _refused(http_server, "/web/ws", _cookie(stranger)) == 401
    assert _refused(http_server, "/c/ws") == 403
    assert _refused(http_server, "/c/ws", _cookie(stranger)) == 403
    # the per-session sockets of before (one socket per page now) are no routes at all
    assert _refused(http_server, "/c/controls", _cookie(stranger)) == 404


def test_a_technician_who_must_change_the_password_gets_403_not_a_redirect(
    app, technician, http_server
):
    tech = Browser(http_server).log_in("tess@example.com")
    with app.app_context():
        db.session.execute(
            update(Technician)
            .where(Technician.id == technician)
            .values(password_change_required=True)
        )
        db.session.commit()
    assert _refused(http_server, "/console/ws", _cookie(tech)) == 403


def test_a_technician_cannot_open_another_technicians_session_on_the_socket(
    app, technician, http_server
):
    tess = Browser(http_server).log_in("tess@example.com")
    pin = tess.create_session("Jane")
    add_technician(app, "Otto Other", "otto@example.com")
    otto = Browser(http_server).log_in("otto@example.com")
    with app.app_context():
        from lens.sessions.models import LensSession

        session_id = db.session.scalar(db.select(LensSession.id).where(LensSession.pin == pin))
    sock = open_socket(http_server, "/console/ws", _cookie(otto))
    assert sock.status == 101
    assert sock.text(timeout=BOUND).startswith("<")  # Otto's own (empty) list
    sock.send_text(json.dumps({"type": "open", "session": session_id}))
    answer = json.loads(sock.text(timeout=BOUND))
    assert answer == {"type": "error", "reason": "not_found", "session": session_id}
    sock.close()


def test_a_refusal_raised_inside_a_socket_closes_it_with_a_code_not_a_page(
    app, technician, http_server, monkeypatch
):
    from flask import abort

    from lens.console.live import ConsolePage

    def refuse(self, message):
        abort(403)

    monkeypatch.setattr(ConsolePage, "on_message", refuse)
    tech = Browser(http_server).log_in("tess@example.com")
    sock = open_socket(http_server, "/console/ws", _cookie(tech))
    assert sock.status == 101
    assert sock.text(timeout=BOUND).startswith("<")
    sock.send_text(json.dumps({"type": "close"}))
    try:
        while True:
            sock.text(timeout=BOUND)
    except Closed as closed:
        assert (closed.code, closed.reason) == (1008, "refused (403)")
    assert b"HTTP/1.1" not in sock.buffer
    sock.close()
