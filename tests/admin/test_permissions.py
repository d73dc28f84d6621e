"""Each group switch, turned off in the Admin Center, takes the tool away everywhere.

The group is made through the Admin Center's own form; the technician's next session then
lacks the tool in the console's panel, and the web process and the control socket refuse
it. (The sidecar's own refusals, with real aiortc peers: test_sidecar_permissions.py.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from lens import features
from lens.auth.models import Technician, TechnicianGroup
from lens.extensions import db
from lens.sessions.models import LensSession
from tests.captures.conftest import FakeMedia
from tests.conftest import add_technician
from tests.tools.conftest import new_session, snapshot
from tests.web.test_live import BOUND, Browser

# (switch, what in the panel shows the tool, how a page or crafted request uses it)
TOOLS = {
    features.CHAT: ("data-chat-form", ("socket", {"type": "chat", "text": "hi"})),
    features.HOLD: ("/hold", ("post", "/hold")),
    features.DISPLAY_SETTINGS: ("quality-select", ("socket", {"type": "quality", "level": "low"})),
    features.FREEZE_DRAWING: ("freeze-toggle", ("socket", {"type": "freeze", "on": True})),
    features.DEVICE_CONTROLS: ("torch-toggle", ("socket", {"type": "torch", "on": True})),
    features.SNAPSHOT: ("Take snapshot", ("post", "/snapshots")),
    features.RECORDING: ("Start recording", ("post", "/recording/start")),
    features.TRANSFER: ("/transfer", ("post", "/transfer")),
}


def group_form(admin, name: str, off: set[str], recording: str = "allowed") -> dict:
    """What the Admin Center's group form posts: every switch on except `off`."""
    from lens.admin.people import SWITCHES

    data = {"name": name, "recording": recording}
    data.update({f"p_{s}": "y" for s in SWITCHES if s not in off})
    return data


def make_group_in_admin_center(app, admin, name: str, off: set[str], recording="allowed") -> int:
    response = admin.post("/groups/new", group_form(admin, name, off, recording))
    assert response.status_code == 302, response.text
    with app.app_context():
        return db.session.scalar(select(TechnicianGroup.id).where(TechnicianGroup.name == name))


def move_to_group(app, admin, email: str, group_id: int) -> None:
    with app.app_context():
        technician = db.session.scalar(select(Technician).where(Technician.email == email))
        fields = {"name": technician.name, "email": technician.email, "role": technician.role}
        technician_id = technician.id
    response = admin.post(f"/technicians/{technician_id}", {**fields, "group": group_id})
    assert response.status_code == 302, response.text


class FakeSidecar(FakeMedia):
    """The capture fake, with hold and resume too."""

    def hold(self, session_id: int) -> None:
        self._record("hold", session_id)

    def resume(self, session_id: int) -> None:
        self._record("resume", session_id)


@pytest.fixture
def fake_media(app, tmp_path) -> FakeMedia:
    fake = FakeSidecar(Path(app.config["LENS_RECORDINGS_PATH"]))
    app.extensions["lens.media"] = fake
    return fake


@pytest.mark.parametrize("switch", list(TOOLS))
def test_a_switch_turned_off_removes_the_tool_and_the_server_refuses_it(
    app, admin, technician, http_server, controls_connect, subscriptions, fake_media, switch
):
    add_technician(app, "Otto Other", "otto@example.com")
    off = {switch} if switch != features.RECORDING else set()
    recording = "off" if switch == features.RECORDING else "allowed"
    group_id = make_group_in_admin_center(app, admin, f"without {switch}", off, recording)
    move_to_group(app, admin, "tess@example.com", group_id)

    tech = Browser(http_server).log_in("tess@example.com")
    session_id = new_session(app, tech)
    assert tech.post(f"/console/sessions/{session_id}/start").status_code == 200
    panel = tech.get(f"/console/sessions/{session_id}").text
    marker, (how, what) = TOOLS[switch]
    assert marker not in panel
    for other, (other_marker, _use) in TOOLS.items():  # and only that tool is gone
        if other != switch:
            assert other_marker in panel, other

    before = snapshot(app, session_id)
    if how == "post":
        with app.app_context():
            otto = db.session.scalar(select(Technician.id).where(Technician.name == "Otto Other"))
        response = tech.post(f"/console/sessions/{session_id}{what}", {"technician": otto})
        assert response.status_code == 403, response.text
        assert fake_media.calls == []  # the sidecar was never asked
    else:
        tech_ws = controls_connect("/console/ws", tech.http.cookies, session=session_id)
        tech_ws.send(json.dumps(what))
        reply = json.loads(tech_ws.receive(timeout=BOUND))
        assert (reply["type"], reply["reason"]) == ("error", "not_allowed")
    assert snapshot(app, session_id) == before
    with app.app_context():  # what the sidecar is given with the phone's leg lacks it too
        lens_session = db.session.get(LensSession, session_id)
        assert switch not in features.features_of(lens_session, lens_session.console)


@pytest.mark.parametrize(
    ("switch", "attempt"),
    [
        (features.SESSIONS, ("/console/sessions", {"name": "Jane"})),
        (features.CHANNEL_PIN, ("/console/sessions", {"name": "Jane", "channel": "pin"})),
        (features.CHANNEL_LINK, ("/console/sessions", {"name": "Jane", "channel": "link"})),
        (features.CONSOLE_WEB, ("/web/sessions", {"name": "Jane"})),
    ],
)
def test_access_switches_refuse_new_sessions(app, admin, technician, http_server, switch, attempt):
    group_id = make_group_in_admin_center(app, admin, f"without {switch}", {switch})
    move_to_group(app, admin, "tess@example.com", group_id)
    tech = Browser(http_server).log_in("tess@example.com")
    path, data = attempt
    response = tech.post(path, data)
    assert response.status_code == 403, response.text
    with app.app_context():
        assert db.session.scalar(select(LensSession.id)) is None


def test_a_console_the_group_may_not_use_is_refused(app, admin, technician, http_server):
    group_id = make_group_in_admin_center(app, admin, "no web", {features.CONSOLE_WEB})
    move_to_group(app, admin, "tess@example.com", group_id)
    tech = Browser(http_server).log_in("tess@example.com")
    assert tech.get("/console/").status_code == 200
    refused = tech.get("/web/")
    assert refused.status_code == 403
    assert "Ask your administrator" in refused.text


def test_a_change_applies_to_sessions_started_after_it(
    app, admin, technician, http_server, fake_media
):
    tech = Browser(http_server).log_in("tess@example.com")
    before_change = new_session(app, tech, name="Before")
    group_id = make_group_in_admin_center(app, admin, "no hold", {features.HOLD})
    move_to_group(app, admin, "tess@example.com", group_id)
    after_change = new_session(app, tech, name="After")

    assert tech.post(f"/console/sessions/{before_change}/start").status_code == 200
    assert tech.post(f"/console/sessions/{before_change}/hold").status_code == 200
    assert tech.post(f"/console/sessions/{before_change}/end").status_code == 200
    assert tech.post(f"/console/sessions/{after_change}/start").status_code == 200
    assert tech.post(f"/console/sessions/{after_change}/hold").status_code == 403


def test_a_console_session_opened_in_the_web_console_has_no_technician_console_tools(
    app, technician, http_server, controls_connect, subscriptions, fake_media
):
    """Issue 15, item 3: the tools follow the console in use, not where it was created."""
    tech = Browser(http_server).log_in("tess@example.com")
    session_id = new_session(app, tech, prefix="/console")
    assert tech.post(f"/web/sessions/{session_id}/start").status_code == 200
    panel = tech.get(f"/web/sessions/{session_id}").text
    for marker in ("data-chat-form", "/hold", "quality-select", "Take snapshot", "/transfer"):
        assert marker not in panel, marker
    assert "Start recording" not in panel
    assert re.search(r'data-features="([^"]*)"', panel).group(1).split() == [
        features.DEVICE_CONTROLS,
        features.FREEZE_DRAWING,
    ]
    before = snapshot(app, session_id)
    for path in ("/hold", "/snapshots", "/recording/start", "/transfer"):
        assert tech.post(f"/web/sessions/{session_id}{path}").status_code == 403, path
    web_ws = controls_connect("/web/ws", tech.http.cookies, session=session_id)
    for message in ({"type": "chat", "text": "hi"}, {"type": "quality", "level": "low"}):
        web_ws.send(json.dumps(message))
        assert json.loads(web_ws.receive(timeout=BOUND))["reason"] == "not_allowed"
    assert snapshot(app, session_id) == before
    assert fake_media.calls == []
    # the same session in the Technician Console still has them
    assert "data-chat-form" in tech.get(f"/console/sessions/{session_id}").text
