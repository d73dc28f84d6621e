"""The tools follow the console in use (issue 15): a session created in the Technician Console
and opened or started in the Web Console offers the Web Console's tools only, on both sides,
and the server refuses the others whichever console's address they are sent to."""

from __future__ import annotations

import html
import json

import pytest

from lens import features
from lens.extensions import db
from lens.features import TECHNICIAN_CONSOLE, WEB_CONSOLE, console_handled_in, features_of
from lens.sessions.models import LensSession
from tests.tools.conftest import new_session, snapshot
from tests.web.test_live import BOUND, Browser

TECHNICIAN_ONLY = features.SESSION_TOOLS - features.CONSOLE_FEATURES[WEB_CONSOLE]


def test_the_console_offering_less_is_the_one_a_session_is_handled_in():
    assert console_handled_in(TECHNICIAN_CONSOLE, WEB_CONSOLE) == WEB_CONSOLE
    assert console_handled_in(WEB_CONSOLE, TECHNICIAN_CONSOLE) == WEB_CONSOLE
    assert console_handled_in(TECHNICIAN_CONSOLE, TECHNICIAN_CONSOLE) == TECHNICIAN_CONSOLE
    assert console_handled_in(WEB_CONSOLE, "unknown") == WEB_CONSOLE


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


def test_started_in_the_web_console_it_is_a_web_console_session(app, opened_in_web):
    tech, session_id = opened_in_web
    with app.app_context():
        lens_session = db.session.get(LensSession, session_id)
        assert lens_session.console == WEB_CONSOLE
        assert not features_of(lens_session, TECHNICIAN_CONSOLE) & TECHNICIAN_ONLY
        assert lens_session.events[-1].data == {"console": "web", "was": "technician"}
    for prefix in ("/web", "/console"):
        panel = html.unescape(tech.get(f"{prefix}/sessions/{session_id}").text)
        offered = panel_offers(panel, session_id)
        assert not any(offered.values()), (prefix, offered)
        assert "Freeze" in panel and "Switch camera" in panel  # the Web Console's own tools
    assert "Session started in the Web Console" in html.unescape(
        tech.get(f"/console/sessions/{session_id}").text
    )
    # the phone offers no chat the technician could not read
    assert "data-chat-form" not in tech.phone.get("/c").text


@pytest.mark.parametrize("prefix", ["/web", "/console"])
def test_the_server_refuses_every_technician_console_tool(app, opened_in_web, media, prefix):
    tech, session_id = opened_in_web
    before = snapshot(app, session_id)
    attempts = [
        tech.post(f"{prefix}/sessions/{session_id}/hold"),
        tech.get(f"{prefix}/sessions/{session_id}/transfer"),
        tech.post(f"{prefix}/sessions/{session_id}/transfer", {"technician": 1}),
        tech.post(f"{prefix}/sessions/{session_id}/snapshots"),
        tech.post(f"{prefix}/sessions/{session_id}/recording/start"),
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
    for prefix in ("/web", "/console"):
        tech_ws = controls_connect(f"{prefix}/ws", tech.http.cookies, session=session_id)
        for message in ({"type": "chat", "text": "hello"}, {"type": "quality", "level": "low"}):
            tech_ws.send(json.dumps(message))
            reply = json.loads(tech_ws.receive(timeout=BOUND))
            assert (reply["type"], reply["reason"]) == ("error", "not_allowed"), (prefix, reply)
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
    assert '<section id="phone-chat" hx-swap-oob="delete">' in pushed


def test_started_in_the_technician_console_it_keeps_its_tools(app, technician, http_server, media):
    tech = Browser(http_server).log_in("tess@example.com")
    session_id = new_session(app, tech, "/console")
    assert tech.post(f"/console/sessions/{session_id}/start").status_code == 200
    with app.app_context():
        assert db.session.get(LensSession, session_id).console == TECHNICIAN_CONSOLE
    panel = html.unescape(tech.get(f"/console/sessions/{session_id}").text)
    assert all(panel_offers(panel, session_id).values())
    # opened in the Web Console meanwhile: that page offers the Web Console's tools only
    web_panel = html.unescape(tech.get(f"/web/sessions/{session_id}").text)
    assert not any(panel_offers(web_panel, session_id).values())
    assert tech.post(f"/web/sessions/{session_id}/hold").status_code == 403
