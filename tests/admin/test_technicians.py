"""Technicians in the Admin Center: create, edit, reset, deactivate (logged out at once)."""

from __future__ import annotations

import re

from sqlalchemy import select

from lens.admin.models import AuditEntry
from lens.auth.models import Technician
from lens.extensions import db
from lens.sessions.models import LensSession
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
