"""Drawing and display settings over real control sockets: what reaches the phone, what not."""

from __future__ import annotations

import html
import json
import time

from sqlalchemy import select

from lens.extensions import db
from lens.sessions.models import SessionEvent
from tests.conftest import Console
from tests.web.test_live import BOUND, Browser, joined_phone, receive_until, session_id_of

ARROW = {"type": "draw", "kind": "arrow", "color": "#1e88e5", "width": 5}
ARROW["points"] = [[0.25, 0.25], [0.75, 0.5]]


def event_kinds(app, session_id: int) -> list[str]:
    with app.app_context():
        query = select(SessionEvent.kind).where(SessionEvent.session_id == session_id)
        return list(db.session.scalars(query))


def test_a_drawing_reaches_the_phone_and_only_the_erase_is_logged(
    app, technician, http_server, controls_connect, subscriptions
):
    tech = Browser(http_server).log_in("tess@example.com")
    phone, session_id = joined_phone(app, http_server, tech, "/console", "Jane Draw")
    phone_ws = controls_connect("/c/ws", phone.http.cookies)
    assert subscriptions.wait_for(f"controls:{session_id}"), "phone socket never subscribed"
    tech_ws = controls_connect("/console/ws", tech.http.cookies, session=session_id)

    tech_ws.send(json.dumps(ARROW))
    message = receive_until(phone_ws, '"draw"', time.monotonic() + BOUND)
    assert message is not None, "the drawing never reached the phone"
    shape = json.loads(message)
    assert shape["from"] == "technician"
    assert shape["points"] == ARROW["points"]
    assert (shape["kind"], shape["color"], shape["width"]) == ("arrow", "#1e88e5", 5)

    tech_ws.send(json.dumps({"type": "erase"}))
    assert receive_until(phone_ws, '"erase"', time.monotonic() + BOUND) is not None
    kinds = event_kinds(app, session_id)
    assert "erase" in kinds
    assert "draw" not in kinds  # a drawing lasts until erased: no log line for each one


def test_a_bad_shape_is_answered_and_the_channel_goes_on(
    app, technician, http_server, controls_connect, subscriptions
):
    tech = Browser(http_server).log_in("tess@example.com")
    phone, session_id = joined_phone(app, http_server, tech, "/console", "Jane Junk")
    phone_ws = controls_connect("/c/ws", phone.http.cookies)
    assert subscriptions.wait_for(f"controls:{session_id}")
    tech_ws = controls_connect("/console/ws", tech.http.cookies, session=session_id)

    tech_ws.send(json.dumps({**ARROW, "points": [[0.1, float("nan")], [0.2, 0.2]]}))
    error = receive_until(tech_ws, '"error"', time.monotonic() + BOUND)
    assert error is not None and json.loads(error)["reason"] == "bad_message"
    tech_ws.send(json.dumps({"type": "freeze", "on": True}))
    # messages arrive in order: had the bad shape been passed on, it would come first
    first = json.loads(phone_ws.receive(timeout=BOUND))
    assert (first["type"], first["on"]) == ("freeze", True)
    assert "draw" not in event_kinds(app, session_id)


def test_the_web_console_cannot_set_the_video_quality(
    app, technician, http_server, controls_connect, subscriptions
):
    tech = Browser(http_server).log_in("tess@example.com")
    phone, session_id = joined_phone(app, http_server, tech, "/web", "Web Jane")
    before = event_kinds(app, session_id)
    phone_ws = controls_connect("/c/ws", phone.http.cookies)
    assert subscriptions.wait_for(f"controls:{session_id}")
    tech_ws = controls_connect("/web/ws", tech.http.cookies, session=session_id)

    tech_ws.send(json.dumps({"type": "quality", "level": "high"}))
    refusal = receive_until(tech_ws, '"error"', time.monotonic() + BOUND)
    assert refusal is not None
    assert json.loads(refusal)["reason"] == "not_allowed"
    assert "not available" in json.loads(refusal)["message"]

    tech_ws.send(json.dumps(ARROW))  # drawing is not a display setting: the Web Console draws
    first = json.loads(phone_ws.receive(timeout=BOUND))
    assert first["type"] == "draw", first
    assert event_kinds(app, session_id) == before  # drawings write no log line


def both_sockets(app, http_server, controls_connect, subscriptions, name: str):
    """Tess's console and a joined phone, each with its control socket open."""
    tech = Browser(http_server).log_in("tess@example.com")
    phone, session_id = joined_phone(app, http_server, tech, "/console", name)
    tech_ws = controls_connect("/console/ws", tech.http.cookies, session=session_id)
    assert subscriptions.wait_for(f"controls:{session_id}")
    phone_ws = controls_connect("/c/ws", phone.http.cookies)
    return tech, session_id, tech_ws, phone_ws


def test_the_phone_answers_a_device_control(
    app, technician, http_server, controls_connect, subscriptions
):
    tech, session_id, tech_ws, phone_ws = both_sockets(
        app, http_server, controls_connect, subscriptions, "Jane Torch"
    )

    phone_ws.send(json.dumps({"type": "capabilities", "torch": False, "cameras": 1}))
    phone_ws.send(json.dumps({"type": "device_result", "control": "torch", "ok": False}))
    answer = receive_until(tech_ws, '"device_result"', time.monotonic() + BOUND)
    assert answer is not None
    assert json.loads(answer)["ok"] is False
    panel = html.unescape(tech.get(f"/console/sessions/{session_id}").text)
    assert "Customer's camera: no flashlight" in panel
    assert "Customer's phone could not change the flashlight" in panel


def test_the_phones_report_reaches_the_console_each_time_and_is_logged_when_it_changes(
    app, technician, http_server, controls_connect, subscriptions
):
    tech, session_id, tech_ws, phone_ws = both_sockets(
        app, http_server, controls_connect, subscriptions, "Jane Report"
    )

    for report in ({"torch": False}, {"torch": False}, {"torch": True}):
        phone_ws.send(json.dumps({"type": "capabilities", "cameras": 1, **report}))
        message = receive_until(tech_ws, '"capabilities"', time.monotonic() + BOUND)
        assert message is not None, "a report did not reach the console"
        assert json.loads(message)["torch"] is report["torch"]

    assert event_kinds(app, session_id).count("capabilities") == 2  # the repeat is not logged


def started_panel(app, console, make_customer, name: str) -> tuple[str, int]:
    """The panel of a session the console started after a phone joined and accepted."""
    pin = console.create_session(name)["pin"]
    session_id = session_id_of(app, pin)
    phone = make_customer()
    phone.join(pin)
    assert phone.accept().status_code == 200
    started = console.post(f"/sessions/{session_id}/start")
    assert started.status_code == 200, started.text
    return started.text, session_id


def test_only_the_technician_console_offers_display_settings(app, console, make_customer):
    panel, session_id = started_panel(app, console, make_customer, "Panel Jane")
    assert 'role="toolbar" aria-label="Video tools"' in panel
    assert 'aria-label="Display settings"' in panel
    for name in ('class="quality-select"', ">Fit<", ">Actual size<", ">Zoom in<", ">Full screen<"):
        assert name in panel
    for name in (">Freeze<", ">Arrow<", ">Erase drawings<", ">Flashlight<", ">Switch camera<"):
        assert name in panel

    web = Console(console.client, "/web")
    web.token = console.token
    assert console.post(f"/sessions/{session_id}/end").status_code == 200  # one active at a time
    panel, _ = started_panel(app, web, make_customer, "Web Jane")
    assert 'aria-label="Video tools"' in panel
    assert 'aria-label="Display settings"' not in panel
    for name in ('class="quality-select"', ">Fit<", ">Zoom in<", ">Full screen<"):
        assert name not in panel
    assert ">Freeze<" in panel and ">Arrow<" in panel
