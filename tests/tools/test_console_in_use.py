"""The tools follow the console in use (issue 15): a session created in the Technician Console
and opened or started in the Web Console offers the Web Console's tools only there, the
server refuses the others through the Web Console, and the phone follows the console the
session was started in (no chat that the technician could not read)."""

from __future__ import annotations

import html
import json

import pytest

from lens import features
from lens.customer.live import EMPTY_CHAT_SLOT
from lens.extensions import db
from lens.features import (
    TECHNICIAN_CONSOLE,
    WEB_CONSOLE,
    customer_features,
    features_of,
    started_in,
)
from lens.sessions.models import LensSession
from tests.tools.conftest import new_session, snapshot
from tests.web.test_live import BOUND, Browser

TECHNICIAN_ONLY = features.SESSION_TOOLS - features.CONSOLE_FEATURES[WEB_CONSOLE]


def panel_offers(panel: str, session_id: int) -> dict[str, bool]:
    """Which Technician Console tools the panel's HTML offers."""
    return {
        features.CHAT: "data-chat-form" in panel,
        features.HOLD: f"/sessions/{session_id}/hold" in panel,
        features.TRANSFER: f"/sessions/{session_id}/transfer" in panel,
        features.SNAPSHOT: "/snapshots" in panel and "Take snapshot" in panel,
        features.RECORDING: "Start recording" in panel,
        features.DISPLAY_SETTINGS: "quality-select" in panel,
    }


@pytest.fixture
def opened_in_web(app, technician, http_server, media) -> tuple[Browser, int]:
    """Tess's session created in /console, its customer waiting, started in /web."""
    tech = Browser(http_server).log_in("tess@example.com")
    session_id = new_session(app, tech, "/console")
    waiting = html.unescape(tech.get(f"/web/sessions/{session_id}").text)
    assert not any(panel_offers(waiting, session_id).values())
    assert tech.post(f"/web/sessions/{session_id}/start").status_code == 200
    return tech, session_id


def test_started_in_the_web_console_the_web_console_and_the_phone_offer_its_tools_only(
    app, opened_in_web
):
    tech, session_id = opened_in_web
    with app.app_context():
        lens_session = db.session.get(LensSession, session_id)
        assert lens_session.console == TECHNICIAN_CONSOLE  # where it was created
        assert started_in(lens_session) == WEB_CONSOLE
        assert not customer_features(lens_session) & TECHNICIAN_ONLY
        assert not features_of(lens_session, WEB_CONSOLE) & TECHNICIAN_ONLY
        assert lens_session.events[-1].data == {"console": "web"}
    panel = html.unescape(tech.get(f"/web/sessions/{session_id}").text)
    offered = panel_offers(panel, session_id)
    assert not any(offered.values()), offered
    assert "Freeze" in panel and "Switch camera" in panel  # the Web Console's own tools
    assert "Session started in the Web Console" in panel
    # the phone offers no chat the technician could not read
    assert "data-chat-form" not in tech.phone.get("/c").text


def test_the_web_console_refuses_every_technician_console_tool(app, opened_in_web, media):
    tech, session_id = opened_in_web
    before = snapshot(app, session_id)
    attempts = [
        tech.post(f"/web/sessions/{session_id}/hold"),
        tech.get(f"/web/sessions/{session_id}/transfer"),
        tech.post(f"/web/sessions/{session_id}/transfer", {"technician": 1}),
        tech.post(f"/web/sessions/{session_id}/snapshots"),
        tech.post(f"/web/sessions/{session_id}/recording/start"),
    ]
    assert [r.status_code for r in attempts] == [403] * len(attempts)
    assert snapshot(app, session_id) == before
    assert media.calls == []


def test_chat_and_quality_are_refused_on_both_sockets(
    app, opened_in_web, controls_connect, subscriptions
):
    tech, session_id = opened_in_web
    phone_ws = controls_connect("/c/ws", tech.phone.http.cookies)
    assert subscriptions.wait_for(f"controls:{session_id}")
    before = snapshot(app, session_id)
    tech_ws = controls_connect("/web/ws", tech.http.cookies, session=session_id)
    for message in ({"type": "chat", "text": "hello"}, {"type": "quality", "level": "low"}):
        tech_ws.send(json.dumps(message))
        reply = json.loads(tech_ws.receive(timeout=BOUND))
        assert (reply["type"], reply["reason"]) == ("error", "not_allowed"), reply
    phone_ws.send(json.dumps({"type": "chat", "text": "anyone there?"}))
    assert json.loads(phone_ws.receive(timeout=BOUND))["reason"] == "not_allowed"
    assert snapshot(app, session_id) == before


def test_the_phones_chat_goes_when_the_session_starts_in_the_web_console(
    app, technician, http_server, media, ws_connect, subscriptions
):
    tech = Browser(http_server).log_in("tess@example.com")
    session_id = new_session(app, tech, "/console")
    assert "data-chat-form" in tech.phone.get("/c").text  # a Technician Console session
    phone_ws = ws_connect("/c/ws", tech.phone.http.cookies)
    assert subscriptions.wait_for(f"session:{session_id}")

    assert tech.post(f"/web/sessions/{session_id}/start").status_code == 200
    pushed = ""
    while "Session active" not in pushed:
        message = phone_ws.receive(timeout=BOUND)
        assert message is not None, "the phone was never told the session started"
        pushed = message if message.startswith("<") else pushed
    assert EMPTY_CHAT_SLOT in pushed


def test_the_phones_chat_goes_when_the_session_started_before_its_socket_opened(
    app, technician, http_server, media, ws_connect
):
    """The page rendered with its chat; the technician starts the session in the Web
    Console before the page's socket pushes anything: the first push empties the chat."""
    tech = Browser(http_server).log_in("tess@example.com")
    session_id = new_session(app, tech, "/console")
    page = tech.phone.get("/c").text
    assert "data-chat-form" in page and 'id="phone-chat-slot"' in page
    assert tech.post(f"/web/sessions/{session_id}/start").status_code == 200

    phone_ws = ws_connect("/c/ws", tech.phone.http.cookies)
    message = phone_ws.receive(timeout=BOUND)
    assert message is not None and message.startswith("<"), message
    assert "Session active" in message and EMPTY_CHAT_SLOT in message


def test_started_in_the_technician_console_it_keeps_its_tools(app, technician, http_server, media):
    tech = Browser(http_server).log_in("tess@example.com")
    session_id = new_session(app, tech, "/console")
    assert tech.post(f"/console/sessions/{session_id}/start").status_code == 200
    with app.app_context():
        assert started_in(db.session.get(LensSession, session_id)) == TECHNICIAN_CONSOLE
    assert "data-chat-form" in tech.phone.get("/c").text
    panel = html.unescape(tech.get(f"/console/sessions/{session_id}").text)
    assert all(panel_offers(panel, session_id).values())
    # opened in the Web Console meanwhile: that page offers the Web Console's tools only
    web_panel = html.unescape(tech.get(f"/web/sessions/{session_id}").text)
    assert not any(panel_offers(web_panel, session_id).values())
    assert tech.post(f"/web/sessions/{session_id}/hold").status_code == 403
