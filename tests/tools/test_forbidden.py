"""Every forbidden tool use, refused by the server with nothing changed in the database.

Two ways to lack a tool: a session started in the Web Console (no chat, display settings,
hold, capture or transfer there), and a Technician Console session of a technician whose
group lacks the permission. Each action is tried the way a page (or a crafted request)
would: HTTP, a control-socket message from either side, and the sidecar's control API.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from lens import features
from lens.extensions import db
from lens.features import features_of
from lens.media.testing import start_phone
from lens.sessions.models import LensSession
from lens.signaling.control import MediaControl, MediaRefused
from tests.conftest import add_technician
from tests.media.conftest import SECRET, running_sidecar
from tests.tools.conftest import new_session, restrict, set_state, snapshot
from tests.web.test_live import BOUND, Browser, receive_until

# (how the tool is missing, the console's prefix, the permission the group lacks)
LIMITS = {
    "web console": ("/web", None),
    "group without chat": ("/console", features.CHAT),
    "group without hold": ("/console", features.HOLD),
    "group without transfer": ("/console", features.TRANSFER),
    "group without display settings": ("/console", features.DISPLAY_SETTINGS),
}


def limited(app, http_server, limit: str) -> tuple[Browser, str, set[str]]:
    """Tess, logged in, limited as named; returns her browser, prefix and missing tools."""
    prefix, lacking = LIMITS[limit]
    if lacking:
        restrict(app, "tess@example.com", {lacking})
    missing = set(features.ALL) if lacking is None else {lacking}
    return Browser(http_server).log_in("tess@example.com"), prefix, missing


def limits_without(feature: str) -> list[str]:
    return [name for name, (_, lacking) in LIMITS.items() if lacking in (None, feature)]


@pytest.fixture
def otto(app) -> int:
    return add_technician(app, "Otto Other", "otto@example.com")


def assert_refused(response, before, app, session_id):
    assert response.status_code == 403, response.text
    assert "not available in this session" in response.text
    assert snapshot(app, session_id) == before


@pytest.mark.parametrize("limit", limits_without(features.HOLD))
def test_hold_and_resume_are_refused(app, technician, http_server, media, limit):
    tech, prefix, _ = limited(app, http_server, limit)
    session_id = new_session(app, tech, prefix)
    assert tech.post(f"{prefix}/sessions/{session_id}/start").status_code == 200

    before = snapshot(app, session_id)
    assert_refused(tech.post(f"{prefix}/sessions/{session_id}/hold"), before, app, session_id)
    set_state(app, session_id, "on_hold")  # as if held before the group lost the permission
    before = snapshot(app, session_id)
    assert_refused(tech.post(f"{prefix}/sessions/{session_id}/resume"), before, app, session_id)
    assert media.calls == []  # the sidecar was never asked


@pytest.mark.parametrize("limit", limits_without(features.TRANSFER))
def test_transfer_is_refused(app, technician, otto, http_server, media, limit):
    tech, prefix, _ = limited(app, http_server, limit)
    session_id = new_session(app, tech, prefix)
    before = snapshot(app, session_id)

    listing = tech.get(f"{prefix}/sessions/{session_id}/transfer")
    assert listing.status_code == 403
    response = tech.post(f"{prefix}/sessions/{session_id}/transfer", {"technician": otto})
    assert_refused(response, before, app, session_id)
    assert media.calls == []


@pytest.mark.parametrize("limit", list(LIMITS))
def test_the_panel_offers_only_what_is_allowed(app, technician, http_server, limit):
    tech, prefix, missing = limited(app, http_server, limit)
    session_id = new_session(app, tech, prefix)
    assert tech.post(f"{prefix}/sessions/{session_id}/start").status_code == 200
    panel = tech.get(f"{prefix}/sessions/{session_id}").text
    offered = {
        features.CHAT: "data-chat-form" in panel,
        features.HOLD: f"/sessions/{session_id}/hold" in panel,
        features.TRANSFER: f"/sessions/{session_id}/transfer" in panel,
    }
    for feature, shown in offered.items():
        assert shown == (feature not in missing), feature
    phone_page = tech.phone.get("/c").text
    assert ("data-chat-form" in phone_page) == (features.CHAT not in missing)


@pytest.mark.parametrize("limit", limits_without(features.CHAT))
def test_chat_is_refused_on_both_sockets(
    app, technician, http_server, controls_connect, subscriptions, limit
):
    tech, prefix, _ = limited(app, http_server, limit)
    session_id = new_session(app, tech, prefix)
    phone_ws = controls_connect("/c/ws", tech.phone.http.cookies)
    assert subscriptions.wait_for(f"controls:{session_id}")
    tech_ws = controls_connect(f"{prefix}/ws", tech.http.cookies, session=session_id)
    before = snapshot(app, session_id)

    for ws in (tech_ws, phone_ws):
        ws.send(json.dumps({"type": "chat", "text": "hello"}))
        reply = json.loads(ws.receive(timeout=BOUND))
        assert (reply["type"], reply["reason"]) == ("error", "not_allowed")
        assert reply["message"] == "This tool is not available in this session."
    assert snapshot(app, session_id) == before
    # nothing reached either side: the next message each receives is a later, allowed one
    tech_ws.send(json.dumps({"type": "freeze", "on": True}))
    assert json.loads(phone_ws.receive(timeout=BOUND))["type"] == "freeze"


@pytest.mark.parametrize("limit", limits_without(features.DISPLAY_SETTINGS))
def test_video_quality_is_refused(
    app, technician, http_server, controls_connect, subscriptions, limit
):
    tech, prefix, _ = limited(app, http_server, limit)
    session_id = new_session(app, tech, prefix)
    phone_ws = controls_connect("/c/ws", tech.phone.http.cookies)
    assert subscriptions.wait_for(f"controls:{session_id}")
    tech_ws = controls_connect(f"{prefix}/ws", tech.http.cookies, session=session_id)
    before = snapshot(app, session_id)

    tech_ws.send(json.dumps({"type": "quality", "level": "high"}))
    reply = json.loads(tech_ws.receive(timeout=BOUND))
    assert (reply["type"], reply["reason"]) == ("error", "not_allowed")
    assert snapshot(app, session_id) == before
    assert receive_until(phone_ws, '"quality"', time.monotonic() + 0.5) is None


def test_a_group_change_applies_to_sessions_started_after_it(
    app, technician, http_server, controls_connect, subscriptions
):
    tech = Browser(http_server).log_in("tess@example.com")
    session_id = new_session(app, tech, name="Before")
    restrict(app, "tess@example.com", {features.CHAT})
    later_id = new_session(app, tech, name="After")

    tech_ws = controls_connect("/console/ws", tech.http.cookies, session=session_id)
    tech_ws.send(json.dumps({"type": "chat", "text": "still allowed"}))
    assert json.loads(tech_ws.receive(timeout=BOUND))["type"] == "chat"

    later_ws = controls_connect("/console/ws", tech.http.cookies, session=later_id)
    before = snapshot(app, later_id)
    later_ws.send(json.dumps({"type": "chat", "text": "not in this one"}))
    assert json.loads(later_ws.receive(timeout=BOUND))["reason"] == "not_allowed"
    assert snapshot(app, later_id) == before


@pytest.mark.media
@pytest.mark.parametrize("limit", limits_without(features.HOLD))
def test_the_sidecar_refuses_hold_for_the_sessions_features(
    app, technician, http_server, vp8_clip, limit
):
    """The phone's leg carries the session's features; the sidecar refuses hold by them."""
    tech, prefix, _ = limited(app, http_server, limit)
    session_id = new_session(app, tech, prefix)
    with app.app_context():
        lens_session = db.session.get(LensSession, session_id)
        session_features = features_of(lens_session, lens_session.console)
    assert features.HOLD not in session_features

    async def scenario() -> None:
        async with asyncio.timeout(30), running_sidecar() as sidecar:
            sid = str(session_id)
            phone = await start_phone(
                sidecar.http,
                sidecar.base_url,
                SECRET,
                sid,
                vp8_clip,
                features=sorted(session_features),
            )
            for action in ("hold", "resume"):
                status, body = await sidecar.call("POST", f"/sessions/{sid}/{action}")
                assert status == 403 and "hold" in body["error"]
            # and through the web process's own client, as the hold view would call it
            control = MediaControl(sidecar.base_url, SECRET, timeout=5)
            with pytest.raises(MediaRefused):
                await asyncio.to_thread(control.hold, session_id)
            status, state = await sidecar.call("GET", f"/sessions/{sid}")
            assert (status, state["on_hold"]) == (200, False)
            await phone.pc.close()

    before = snapshot(app, session_id)
    asyncio.run(scenario())
    assert snapshot(app, session_id) == before
