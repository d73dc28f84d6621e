"""The customer ends the session from the phone and sees who the technician is (issue 15)."""

from __future__ import annotations

import html
import time

from lens.extensions import db
from lens.sessions.models import LensSession
from tests.conftest import csrf_from
from tests.web.test_live import (
    BOUND,
    Browser,
    console_socket,
    joined_phone,
    receive_until,
    session_id_of,
    waiting_phone,
)


def test_the_phone_names_the_technician_and_offers_end_with_a_confirm(
    app, technician, http_server, ws_connect, subscriptions
):
    tech, session_id, phone_ws = waiting_phone(
        app, http_server, ws_connect, subscriptions, "Jane End"
    )
    assert tech.post(f"/console/sessions/{session_id}/start").status_code == 200
    active = receive_until(phone_ws, "Session active", time.monotonic() + BOUND)
    assert active is not None
    active = html.unescape(active)
    assert "Your technician: Tess Technician" in active
    assert 'hx-post="/c/end"' in active
    assert "hx-confirm=" in active and ">End session</button>" in active


def test_the_customer_ends_an_active_session_and_the_console_follows(
    app, technician, http_server, ws_connect, subscriptions, controls_connect
):
    tech = Browser(http_server).log_in("tess@example.com")
    phone, session_id = joined_phone(app, http_server, tech, "/console", "Jane Leaves")
    assert tech.post(f"/console/sessions/{session_id}/start").status_code == 200
    console = controls_connect("/console/ws", tech.http.cookies, session=session_id)

    ended = phone.post("/c/end")

    assert ended.status_code == 200
    assert "The session has ended" in ended.text
    with app.app_context():
        lens_session = db.session.get(LensSession, session_id)
        assert (lens_session.state, lens_session.end_reason) == ("closed", "customer")
        assert (lens_session.events[-1].kind, lens_session.events[-1].actor) == ("end", "customer")
    # the open panel is pushed whole: no video, no tools, the log says who ended it
    pushed = console.receive_push('hx-swap-oob="innerHTML:#session-panel"')
    assert pushed, "the ended panel was never pushed"
    pushed = html.unescape(pushed)
    assert "Session ended (by the customer)" in pushed
    assert "This session has ended." in pushed
    assert 'data-media="on"' not in pushed
    # the phone cannot end it twice, nor anything else
    assert phone.post("/c/end").status_code == 410


def test_end_from_the_phone_needs_its_csrf_token_and_its_own_session(app, technician, http_server):
    tech = Browser(http_server).log_in("tess@example.com")
    pin = tech.create_session("Jane Token")
    session_id = session_id_of(app, pin)
    phone = Browser(http_server)
    phone.join(pin)
    without = phone.http.post(phone.base + "/c/end", headers={"HX-Request": "true"}, timeout=10)
    assert without.status_code == 400
    stranger = Browser(http_server)
    stranger.token = csrf_from(stranger.get("/").text)  # a phone that joined nothing
    assert stranger.post("/c/end").status_code == 410
    with app.app_context():
        assert db.session.get(LensSession, session_id).state == "connecting"


def test_a_waiting_customer_ends_before_start_and_the_row_says_closed(
    app, technician, http_server, ws_connect, subscriptions
):
    tech = Browser(http_server).log_in("tess@example.com")
    phone, session_id = joined_phone(app, http_server, tech, "/console", "Jane Waits")
    console_ws = console_socket(tech, ws_connect, subscriptions, technician)

    assert phone.post("/c/end").status_code == 200
    row = receive_until(console_ws, 'data-state="closed"', time.monotonic() + BOUND)
    assert row is not None and f'id="session-row-{session_id}"' in row
