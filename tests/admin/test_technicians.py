"""Technicians in the Admin Center: create, edit, reset, deactivate (logged out at once)."""

from __future__ import annotations

import email
import html
import re
import socket

import pytest
from sqlalchemy import select

from lens.admin.models import AuditEntry
from lens.auth.models import Technician, TechnicianGroup
from lens.extensions import db
from lens.sessions.models import LensSession
from tests.admin.conftest import make_group, put_in_group
from tests.conftest import Console, add_technician, csrf_from
from tests.tools.conftest import FakeMedia, new_session
from tests.web.test_live import BOUND, Browser, receive_until


def audit_fields(app) -> list[tuple[str, str, str | None, str | None]]:
    with app.app_context():
        return [
            (e.target, e.field, e.before, e.after)
            for e in db.session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]


def test_create_with_a_one_time_password_that_must_be_changed(app, admin, client):
    response = admin.post(
        "/technicians/new",
        {"name": "Nina New", "email": "Nina@Example.com", "role": "technician", "group": 0,
         "invite": "password"},
    )  # fmt: skip
    assert response.status_code == 200
    password = re.search(r"data-password>([^<]+)<", response.text).group(1)
    assert ("Nina New <nina@example.com>", "created", None, "technician") in audit_fields(app)
    page = client.get("/login")
    login = client.post(
        "/login",
        data={
            "email": "nina@example.com",
            "password": password,
            "csrf_token": csrf_from(page.text),
        },
    )
    assert login.status_code == 302 and "/account/password" in login.location
    # the same address twice is refused with a reason
    again = admin.post(
        "/technicians/new",
        {"name": "Nina Two", "email": "nina@example.com", "role": "technician", "group": 0},
    )
    assert again.status_code == 422 and "already uses this e-mail" in again.text


def test_edit_is_audited_field_by_field(app, admin, technician):
    response = admin.post(
        f"/technicians/{technician}",
        {"name": "Tess T.", "email": "tess@example.com", "role": "admin", "group": 0},
    )
    assert response.status_code == 302
    changes = {(field, before, after) for _t, field, before, after in audit_fields(app)}
    assert changes == {("name", "Tess Technician", "Tess T."), ("role", "technician", "admin")}


def test_an_admin_cannot_demote_or_deactivate_themself(app, admin, admin_id):
    demote = admin.post(
        f"/technicians/{admin_id}",
        {"name": "Ada Admin", "email": "ada@example.com", "role": "technician", "group": 0},
    )
    assert demote.status_code == 409
    assert admin.post(f"/technicians/{admin_id}/deactivate", {"hand_to": 0}).status_code == 409
    with app.app_context():
        assert db.session.get(Technician, admin_id).is_admin


def test_reset_password(app, admin, technician):
    response = admin.post(f"/technicians/{technician}/password", {"via": "password"})
    password = re.search(r"data-password>([^<]+)<", response.text).group(1)
    with app.app_context():
        tess = db.session.get(Technician, technician)
        assert tess.check_password(password) and tess.password_change_required
    assert any(f == "password" for _t, f, _b, _a in audit_fields(app))
    assert password not in str(audit_fields(app))


def test_a_deactivated_technicians_open_console_is_logged_out(
    app, admin, technician, http_server, ws_connect, subscriptions
):
    app.extensions["lens.media"] = FakeMedia()
    otto = add_technician(app, "Otto Other", "otto@example.com")
    tess = Browser(http_server).log_in("tess@example.com")
    waiting = new_session(app, tess, name="Waiting Walt")
    not_joined = tess.create_session("Not joined")
    live = ws_connect("/console/ws", tess.http.cookies)
    assert live.receive(timeout=BOUND)  # the list as it is now

    response = admin.post(f"/technicians/{technician}/deactivate", {"hand_to": otto})
    assert response.status_code == 302

    pushed = receive_until(live, "You have been logged out", _deadline())
    assert pushed is not None and 'id="main"' in pushed
    assert tess.get("/console/").status_code == 302  # every tab: log in again
    assert tess.get("/console/").headers["Location"].startswith("/login")
    relogin = Console(app.test_client()).login("tess@example.com")
    assert relogin.status_code != 302 and "Wrong e-mail or password" in relogin.text
    with app.app_context():
        handed = db.session.get(LensSession, waiting)
        assert (handed.technician_id, handed.state) == (otto, "waiting")
        ended = db.session.scalar(
            select(LensSession).where(LensSession.customer_name == "Not joined")
        )
        assert (ended.state, ended.end_reason) == ("closed", "technician_deactivated")
    assert not_joined
    assert ("Tess Technician <tess@example.com>", "active", "yes", "no") in audit_fields(app)

    # reactivated, she can log in again
    assert admin.post(f"/technicians/{technician}/reactivate").status_code == 302
    assert Console(app.test_client()).login("tess@example.com").status_code == 302


def _deadline() -> float:
    import time

    return time.monotonic() + BOUND


def test_the_list_shows_who_is_online_and_in_a_session(app, admin, technician, console):
    console.client.get("/console/")  # Tess's request marks her as seen
    page = admin.get("/technicians").text
    row = re.search(rf'<tr data-technician="{technician}".*?</tr>', page, re.S).group(0)
    assert "Online" in row


@pytest.fixture
def smtp(app):
    """An SMTP server (aiosmtpd) on a free loopback port, and the app's mail pointed at it."""
    from aiosmtpd.controller import Controller

    from lens.extensions import mail

    class Keep:
        def __init__(self) -> None:
            self.messages: list[str] = []

        async def handle_DATA(self, server, session, envelope) -> str:
            self.messages.append(envelope.content.decode())
            return "250 Message accepted"

    handler = Keep()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    app.config.update(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=port,
        MAIL_DEFAULT_SENDER="lens@example.com",
        MAIL_SUPPRESS_SEND=False,
    )
    mail.init_app(app)
    yield handler
    controller.stop()


def test_an_e_mailed_link_sets_the_password_once(app, admin, smtp, client):
    response = admin.post(
        "/technicians/new",
        {"name": "Mia Mail", "email": "mia@example.com", "role": "technician", "group": 0,
         "invite": "email"},
    )  # fmt: skip
    assert response.status_code == 302
    assert len(smtp.messages) == 1
    message = email.message_from_string(smtp.messages[0])
    text = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    body = text.get_payload(decode=True).decode()
    link = re.search(r"http://localhost(/account/welcome/\S+)", body).group(1)
    page = client.get(link)
    assert page.status_code == 200
    new_password = "a long new password"
    saved = client.post(
        link,
        data={
            "password": new_password,
            "confirm": new_password,
            "csrf_token": csrf_from(page.text),
        },
    )
    assert saved.status_code == 302
    with app.app_context():
        mia = db.session.scalar(select(Technician).where(Technician.email == "mia@example.com"))
        assert mia.check_password(new_password) and not mia.password_change_required
    assert client.get(link).status_code == 404  # used once


def test_an_open_console_keeps_its_technician_online(
    app, admin, technician, http_server, ws_connect
):
    import time
    from datetime import timedelta

    from lens.timeutil import now_utc

    tess = Browser(http_server).log_in("tess@example.com")
    with app.app_context():  # as if her last request were long ago
        db.session.get(Technician, technician).last_seen_at = now_utc() - timedelta(hours=1)
        db.session.commit()
    assert "Offline" in row_of(admin.get("/technicians").text, technician)
    live = ws_connect("/console/ws", tess.http.cookies)
    assert live.receive(timeout=BOUND)
    deadline = time.monotonic() + BOUND
    while "Online" not in row_of(admin.get("/technicians").text, technician):
        assert time.monotonic() < deadline, "the open console did not mark her online"
        time.sleep(0.1)


def row_of(page: str, technician_id: int) -> str:
    return re.search(rf'<tr data-technician="{technician_id}".*?</tr>', page, re.S).group(0)


def test_a_refused_change_says_why_and_changes_nothing(app, admin, technician):
    def refusal(path: str) -> str:
        response = admin.post(path, follow_redirects=True)
        assert response.status_code == 200
        return html.unescape(response.text)

    assert "This technician is already active." in refusal(f"/technicians/{technician}/reactivate")
    page = refusal(f"/technicians/{technician}/two-factor/reset")
    assert "This technician has no two-step verification to reset." in page
    in_use = make_group(app, "Field service", ())
    put_in_group(app, technician, in_use)
    page = refusal(f"/groups/{in_use}/delete")
    assert "Move the group's technicians to another group first." in page
    with app.app_context():
        assert db.session.get(TechnicianGroup, in_use) is not None
        assert db.session.get(Technician, technician).active
    # the same route with nothing to refuse does the change
    put_in_group(app, technician, None)
    assert "Group deleted." in refusal(f"/groups/{in_use}/delete")
    with app.app_context():
        assert db.session.get(TechnicianGroup, in_use) is None
