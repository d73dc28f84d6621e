"""Hold, Resume and Transfer through the console's views, the sidecar's client and the lists."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from lens.auth.models import Technician
from lens.extensions import db
from lens.sessions import lifecycle
from lens.sessions.errors import InvalidTransition, NotYourSession, TransferRefused
from lens.sessions.models import LensSession, SessionEvent
from lens.timeutil import now_utc
from tests.conftest import add_technician
from tests.tools.conftest import new_session, snapshot
from tests.web.test_live import BOUND, Browser, receive_until


@pytest.fixture
def tess(app, technician, http_server) -> Browser:
    return Browser(http_server).log_in("tess@example.com")


@pytest.fixture
def otto(app, http_server) -> Browser:
    add_technician(app, "Otto Other", "otto@example.com")
    return Browser(http_server).log_in("otto@example.com")


def technician_id(app, email: str) -> int:
    with app.app_context():
        return db.session.scalar(select(Technician.id).where(Technician.email == email))


def last_event(app, session_id: int) -> tuple[str, str, str | None]:
    with app.app_context():
        event = db.session.scalar(
            select(SessionEvent)
            .where(SessionEvent.session_id == session_id)
            .order_by(SessionEvent.id.desc())
        )
        return event.kind, event.actor, event.detail


def started(app, tess: Browser) -> int:
    session_id = new_session(app, tess)
    assert tess.post(f"/console/sessions/{session_id}/start").status_code == 200
    return session_id


# --- Hold and Resume --------------------------------------------------------------------


def test_hold_and_resume_change_the_state_tell_the_sidecar_and_show_the_buttons(app, tess, media):
    session_id = started(app, tess)
    panel = tess.get(f"/console/sessions/{session_id}").text
    assert ">Hold</button>" in panel and ">Resume</button>" not in panel

    held = tess.post(f"/console/sessions/{session_id}/hold")
    assert held.status_code == 200
    assert 'data-state="on_hold"' in held.text and ">Resume</button>" in held.text
    assert 'class="video-area"' not in held.text  # the head alone: the picture stays
    assert snapshot(app, session_id)[0] == "on_hold"
    assert last_event(app, session_id)[:2] == (
        "hold",
        f"technician:{technician_id(app, 'tess@example.com')}",
    )
    rows = tess.get("/console/").text
    assert "On hold" in rows
    assert "On hold" in tess.phone.get("/c").text  # the phone's status screen

    resumed = tess.post(f"/console/sessions/{session_id}/resume")
    assert resumed.status_code == 200 and ">Hold</button>" in resumed.text
    assert snapshot(app, session_id)[0] == "active"
    assert media.calls == [("hold", session_id), ("resume", session_id)]


def test_a_sidecar_that_is_down_does_not_lose_the_hold(app, tess, media):
    session_id = started(app, tess)
    media.down = True
    assert tess.post(f"/console/sessions/{session_id}/hold").status_code == 200
    assert snapshot(app, session_id)[0] == "on_hold"  # the phone follows this and stops sending
    assert tess.post(f"/console/sessions/{session_id}/resume").status_code == 200
    assert snapshot(app, session_id)[0] == "active"


def test_hold_needs_an_active_session(app, tess, media):
    session_id = new_session(app, tess)  # waiting, not started
    before = snapshot(app, session_id)
    response = tess.post(f"/console/sessions/{session_id}/hold")
    assert response.status_code == 409
    assert "not possible in the session&#39;s current state" in response.text
    assert snapshot(app, session_id) == before
    assert tess.post(f"/console/sessions/{session_id}/resume").status_code == 409
    assert media.calls == []


def test_another_technicians_session_cannot_be_held_or_transferred(app, tess, otto, media):
    session_id = started(app, tess)
    before = snapshot(app, session_id)
    for action in ("hold", "resume", "transfer"):
        assert otto.post(f"/console/sessions/{session_id}/{action}").status_code == 403
    assert snapshot(app, session_id) == before


def test_the_technician_sees_that_the_customer_paused_the_camera(
    app, tess, http_server, controls_connect, subscriptions
):
    session_id = started(app, tess)
    phone_ws = controls_connect("/c/ws", tess.phone.http.cookies)
    assert subscriptions.wait_for(f"controls:{session_id}")
    tech_ws = controls_connect("/console/ws", tess.http.cookies, session=session_id)
    assert subscriptions.wait_for(f"controls:{session_id}", count=2)
    phone_ws.send(json.dumps({"type": "camera_paused", "on": True}))
    message = receive_until(tech_ws, '"camera_paused"', time.monotonic() + BOUND)
    assert message is not None and json.loads(message)["on"] is True
    panel = tess.get(f"/console/sessions/{session_id}").text
    assert "Customer paused the camera" in panel  # in the log, and the live note's text


# --- Transfer ---------------------------------------------------------------------------


def test_transfer_targets_list_the_other_active_technicians_with_their_state(
    app, tess, otto, media
):
    add_technician(app, "Ivy Inactive", "ivy@example.com", active=False)
    otto_session = started(app, otto)
    assert otto_session
    session_id = new_session(app, tess)
    listing = tess.get(f"/console/sessions/{session_id}/transfer").text
    assert "Otto Other" in listing and "In a session" in listing
    assert "Ivy Inactive" not in listing and "Tess Technician" not in listing


def test_transfer_moves_an_active_session_to_the_others_list_as_waiting(
    app, tess, otto, media, ws_connect, subscriptions
):
    session_id = started(app, tess)
    otto_id = technician_id(app, "otto@example.com")
    otto_list = ws_connect("/console/ws", otto.http.cookies)
    assert subscriptions.wait_for(f"technician:{otto_id}")
    otto_list.receive(timeout=BOUND)  # the list as it was

    response = tess.post(f"/console/sessions/{session_id}/transfer", {"technician": otto_id})
    assert response.status_code == 200
    assert "was transferred to Otto Other" in response.text
    state, owner, _, _ = snapshot(app, session_id)
    assert (state, owner) == ("waiting", otto_id)
    kind, _, detail = last_event(app, session_id)
    assert (kind, detail) == ("transfer", "Tess Technician\nOtto Other")
    assert media.calls == [("close", session_id)]  # the phone prepares afresh for Otto

    pushed = receive_until(otto_list, f'data-session="{session_id}"', time.monotonic() + BOUND)
    assert pushed is not None, "the session never arrived in Otto's list"
    assert "Customer connected" in pushed
    assert f'data-session="{session_id}"' not in tess.get("/console/").text
    assert f'data-session="{session_id}"' in otto.get("/console/").text
    detail = otto.get(f"/console/sessions/{session_id}").text
    assert "Session transferred from Tess Technician to Otto Other" in detail
    assert "Waiting for your technician" in tess.phone.get("/c").text
    assert otto.post(f"/console/sessions/{session_id}/start").status_code == 200


def test_the_one_active_rule_holds_for_the_receiver(app, tess, otto, media):
    otto_session = started(app, otto)
    session_id = started(app, tess)
    otto_id = technician_id(app, "otto@example.com")
    assert tess.post(f"/console/sessions/{session_id}/transfer", {"technician": otto_id}).ok
    refused = otto.post(f"/console/sessions/{session_id}/start")
    assert refused.status_code == 409 and "already have an active session" in refused.text
    assert snapshot(app, session_id)[0] == "waiting"
    assert otto.post(f"/console/sessions/{otto_session}/end").ok
    assert otto.post(f"/console/sessions/{session_id}/start").status_code == 200


def test_transfer_is_refused_to_oneself_the_inactive_the_unknown_and_when_closed(
    app, tess, otto, media
):
    session_id = new_session(app, tess)
    tess_id = technician_id(app, "tess@example.com")
    ivy = add_technician(app, "Ivy Inactive", "ivy@example.com", active=False)
    before = snapshot(app, session_id)
    path = f"/console/sessions/{session_id}/transfer"
    assert "already yours" in tess.post(path, {"technician": tess_id}).text
    assert "Ivy Inactive cannot receive sessions" in tess.post(path, {"technician": ivy}).text
    assert tess.post(path, {"technician": 9999}).status_code == 422
    assert tess.post(path, {"technician": "x"}).status_code == 422
    assert snapshot(app, session_id) == before

    assert tess.post(f"/console/sessions/{session_id}/end").ok
    otto_id = technician_id(app, "otto@example.com")
    closed = tess.post(path, {"technician": otto_id})
    assert closed.status_code == 409
    assert snapshot(app, session_id)[:2] == ("closed", tess_id)
    assert media.calls == [("close", session_id)]  # from End, none from the refusals


def test_transfer_in_the_domain(app, db_session):
    """The domain function alone: states, owner checks, the receiver's rule."""
    tess = Technician(name="Tess", email="t@example.com", password_hash="x")
    otto = Technician(name="Otto", email="o@example.com", password_hash="x")
    db_session.add_all([tess, otto])
    db_session.flush()
    now = now_utc()
    lens_session = lifecycle.create_session(
        db_session,
        technician=tess,
        console="technician",
        customer_name="Jane",
        pin_validity=timedelta(minutes=5),
        now=now,
    )
    with pytest.raises(InvalidTransition):  # no customer yet
        lifecycle.transfer_session(db_session, lens_session, tess, otto, now)
    with pytest.raises(NotYourSession):
        lifecycle.transfer_session(db_session, lens_session, otto, tess, now)
    with pytest.raises(TransferRefused):
        lifecycle.transfer_session(db_session, lens_session, tess, tess, now)
    for state in ("waiting", "active", "on_hold"):
        lens_session.state = state
        lens_session.technician_id, lens_session.technician = tess.id, tess
        lifecycle.transfer_session(db_session, lens_session, tess, otto, now)
        assert (lens_session.state, lens_session.technician_id) == ("waiting", otto.id)
    assert db_session.get(LensSession, lens_session.id).technician is otto


def test_chat_history_travels_with_the_session(
    app, tess, otto, media, controls_connect, subscriptions
):
    session_id = new_session(app, tess)
    tech_ws = controls_connect("/console/ws", tess.http.cookies, session=session_id)
    tech_ws.send(json.dumps({"type": "chat", "text": "Handing you to Otto"}))
    assert receive_until(tech_ws, "Handing you to Otto", time.monotonic() + BOUND)
    otto_id = technician_id(app, "otto@example.com")
    assert tess.post(f"/console/sessions/{session_id}/transfer", {"technician": otto_id}).ok
    detail = otto.get(f"/console/sessions/{session_id}").text
    assert re.search(
        r"Tess Technician</span>\s*<span class=\"chat-text\">Handing you to Otto", detail
    )


def test_the_old_technicians_open_console_is_told_where_the_session_went(
    app, tess, otto, media, ws_connect, subscriptions
):
    session_id = started(app, tess)
    tess_id = technician_id(app, "tess@example.com")
    tess_list = ws_connect("/console/ws", tess.http.cookies)
    assert subscriptions.wait_for(f"technician:{tess_id}")
    tess_list.receive(timeout=BOUND)  # the list as it was
    tess_list.send(json.dumps({"type": "open", "session": session_id}))  # her panel is open
    assert receive_until(tess_list, f'id="session-head-{session_id}"', time.monotonic() + BOUND)

    otto_id = technician_id(app, "otto@example.com")
    assert tess.post(f"/console/sessions/{session_id}/transfer", {"technician": otto_id}).ok
    pushed = receive_until(tess_list, "was transferred to Otto Other", time.monotonic() + BOUND)
    assert pushed is not None, "Tess's open panel was never told"
    assert f'id="session-detail-{session_id}"' in pushed and 'hx-swap-oob="true"' in pushed
    gone = f'<tr id="session-row-{session_id}" hx-swap-oob="delete">'
    assert gone in pushed  # gone from her list
