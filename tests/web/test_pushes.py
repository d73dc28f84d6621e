"""What a page's socket is sent: only what changed, and nothing for a panel that is not open."""

from __future__ import annotations

import json
import re
import time

from lens.controls.state import ToolState
from tests.tools.conftest import new_session
from tests.web.test_live import BOUND, Browser

ARROW = {"type": "draw", "kind": "arrow", "color": "#e53935", "width": 4,
         "points": [[0.1, 0.1], [0.5, 0.5]]}  # fmt: skip
PANEL_OR_LIST = re.compile(r'id="session-(rows|row-\d+|head-\d+|log-\d+|detail-\d+)"')


def record_publishes(app) -> list[tuple[str, dict]]:
    bus = app.extensions["lens.events"]
    seen: list[tuple[str, dict]] = []
    publish = bus.publish

    def recording(topic, message):
        seen.append((topic, message))
        publish(topic, message)

    bus.publish = recording
    return seen


def next_json(client, kind: str) -> dict:
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        raw = client.receive(timeout=max(0.05, deadline - time.monotonic()))
        if raw and json.loads(raw).get("type") == kind:
            return json.loads(raw)
    raise AssertionError(f"no {kind} message")


def test_a_chat_line_and_a_drawing_push_no_list_or_panel_html(
    app, technician, http_server, controls_connect, subscriptions
):
    tech = Browser(http_server).log_in("tess@example.com")
    session_id = new_session(app, tech, name="Jane Push")
    assert tech.post(f"/console/sessions/{session_id}/start").status_code == 200
    console = controls_connect("/console/ws", tech.http.cookies, session=session_id)
    phone = controls_connect("/c/ws", tech.phone.http.cookies)
    assert subscriptions.wait_for(f"controls:{session_id}", count=2)
    console.pushes.clear()
    published = record_publishes(app)

    phone.send(json.dumps({"type": "chat", "text": "Here is the router"}))
    line = next_json(console, "chat")
    assert line["html"].startswith('<li class="chat-line chat-customer"')
    assert "Here is the router" in line["html"]
    console.send(json.dumps(ARROW))
    assert next_json(phone, "draw")["points"] == ARROW["points"]
    console.send(json.dumps({"type": "chat", "text": "Thanks"}))
    next_json(console, "chat")  # its own echo: everything before it has been handled

    # nothing about the list or the panel was published, so nothing could be pushed
    assert [topic for topic, _ in published] == [f"controls:{session_id}"] * 3
    assert not [push for push in console.pushes if PANEL_OR_LIST.search(push)]


def test_a_tool_use_appends_one_log_line_and_a_state_change_one_row(
    app, technician, http_server, controls_connect, subscriptions
):
    tech = Browser(http_server).log_in("tess@example.com")
    session_id = new_session(app, tech, name="Jane Log")
    assert tech.post(f"/console/sessions/{session_id}/start").status_code == 200
    console = controls_connect("/console/ws", tech.http.cookies, session=session_id)
    console.pushes.clear()

    console.send(json.dumps({"type": "freeze", "on": True}))
    appended = console.receive_push("Picture frozen")
    assert appended.startswith(f'<ol hx-swap-oob="beforeend:#session-log-{session_id}">')
    assert appended.count("<li") == 1
    assert "session-rows" not in appended and "session-head" not in appended

    console.pushes.clear()
    assert tech.post(f"/console/sessions/{session_id}/end").status_code == 200
    ended = console.receive_push(f'id="session-row-{session_id}"')
    assert 'id="session-rows"' not in ended  # the row, not the list
    assert f'id="session-head-{session_id}"' in ended  # the panel is open: its head too
    assert "Session ended" in console.receive_push("Session ended")


def test_a_console_with_no_panel_open_gets_no_panel_fragments(
    app, technician, http_server, ws_connect, subscriptions
):
    tech = Browser(http_server).log_in("tess@example.com")
    ws = ws_connect("/console/ws", tech.http.cookies)
    assert subscriptions.wait_for(f"technician:{technician}")
    assert ws.receive(timeout=BOUND).startswith('<tbody id="session-rows"')
    session_id = new_session(app, tech, name="Jane Closed Panel")
    assert tech.post(f"/console/sessions/{session_id}/start").status_code == 200
    deadline = time.monotonic() + BOUND
    pushes = []
    while not any('data-state="active"' in p for p in pushes) and time.monotonic() < deadline:
        pushes.append(ws.receive(timeout=BOUND) or "")
    assert any('data-state="active"' in p for p in pushes)
    assert not [p for p in pushes if "session-head-" in p or "session-log-" in p]


def test_the_tools_state_follows_the_messages_and_ignores_junk():
    state = ToolState.from_column(None)
    assert state == ToolState()
    state = state.after("freeze", {"on": True}).after("draw", {}).after("quality", {"level": "low"})
    assert (state.frozen, state.drawings, state.quality) == (True, True, "low")
    state = state.after("erase", {}).after("capabilities", {"torch": True, "cameras": 2})
    assert (state.drawings, state.torch, state.cameras) == (False, True, 2)
    assert ToolState.from_column(state.to_column()) == state
    junk = {"frozen": "yes", "quality": "ultra", "cameras": 99, "drawings": 1}
    assert ToolState.from_column(junk) == ToolState()
