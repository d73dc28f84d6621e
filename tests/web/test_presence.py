"""Presence over real sockets: the technician is told when the customer's page closed, a
reconnect within the grace period is not reported, and Start waits for the customer."""

from __future__ import annotations

import html
import json
import logging
import re
import threading
import time

from sqlalchemy.exc import OperationalError

from lens.extensions import db
from lens.sessions import lifecycle
from lens.sessions.models import LensSession
from tests.conftest import PageClient
from tests.web.test_live import (
    BOUND,
    Browser,
    console_socket,
    joined_phone,
    phone_socket,
    receive_until,
    session_id_of,
    waiting_phone,
)


def customer_left_at(app, session_id: int):
    with app.app_context():
        return db.session.get(LensSession, session_id).customer_left_at


def row_of(message: str, session_id: int) -> str:
    row = re.search(rf'<tr id="session-row-{session_id}".*?</tr>', message, re.S)
    assert row, message
    return html.unescape(row.group(0))


def test_a_closed_phone_page_is_reported_and_start_waits_for_its_return(
    app, technician, http_server, ws_connect, subscriptions
):
    app.config["LENS_CUSTOMER_GRACE_SECONDS"] = 0.5
    tech, session_id, phone_ws = waiting_phone(
        app, http_server, ws_connect, subscriptions, "Jane Gone"
    )
    console = console_socket(tech, ws_connect, subscriptions, technician)

    began = time.monotonic()
    phone_ws.close()
    message = receive_until(console, "Customer disconnected", began + BOUND)
    assert message is not None, f"no 'Customer disconnected' within {BOUND} s"
    row = row_of(message, session_id)
    assert 'data-customer="away"' in row
    assert re.search(r"<button[^>]*disabled[^>]*>Start</button>", row, re.S), row
    assert customer_left_at(app, session_id) is not None

    # the server refuses Start too, with a clear message, and nothing changes
    refused = tech.post(f"/console/sessions/{session_id}/start")
    assert refused.status_code == 409
    assert "The customer&#39;s page is closed" in refused.text
    with app.app_context():
        assert db.session.get(LensSession, session_id).state == "waiting"
    panel = html.unescape(tech.get(f"/console/sessions/{session_id}").text)
    assert "Customer's page closed" in panel  # the log says when
    assert 'data-customer="away"' in panel


def test_a_departure_the_database_cannot_take_is_logged_not_raised(
    app, technician, http_server, ws_connect, subscriptions, monkeypatch
):
    """The grace period's write runs on its own thread: a database that went away by then
    (an outage, a restart) is a warning with the session's id, not a thread that dies."""
    app.config["LENS_CUSTOMER_GRACE_SECONDS"] = 0.2
    _, session_id, phone_ws = waiting_phone(
        app, http_server, ws_connect, subscriptions, "Jane Outage"
    )

    def database_gone(*args, **kwargs):
        raise OperationalError("UPDATE lens_session", {}, Exception("server closed the connection"))

    monkeypatch.setattr(lifecycle, "customer_left", database_gone)
    died: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda hook: died.append(hook.exc_value))
    warnings: list[str] = []
    warned = threading.Event()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warnings.append(record.getMessage())
            warned.set()

    logger = logging.getLogger("lens.customer.live")
    handler = Collect(logging.WARNING)
    logger.addHandler(handler)
    try:
        phone_ws.close()
        assert warned.wait(BOUND), "no warning about the departure"
    finally:
        logger.removeHandler(handler)
    assert f"customer's departure from session {session_id} not recorded" in warnings[0]
    assert "server closed the connection" in warnings[0]
    assert died == []
    assert customer_left_at(app, session_id) is None  # nothing half-written


def test_a_reopened_phone_page_brings_the_customer_back(
    app, technician, http_server, ws_connect, subscriptions
):
    app.config["LENS_CUSTOMER_GRACE_SECONDS"] = 0.3
    tech = Browser(http_server).log_in("tess@example.com")
    phone, session_id = joined_phone(app, http_server, tech, "/console", "Jane Back")
    first = phone_socket(phone, session_id, ws_connect, subscriptions)
    console = console_socket(tech, ws_connect, subscriptions, technician)

    first.close()
    assert receive_until(console, "Customer disconnected", time.monotonic() + BOUND)

    ws_connect("/c/ws", phone.http.cookies)  # the customer reopens the page
    message = receive_until(console, f'id="session-row-{session_id}"', time.monotonic() + BOUND)
    assert message is not None
    row = row_of(message, session_id)
    assert "Customer connected" in row and 'data-customer="here"' in row
    assert "disabled" not in row
    assert customer_left_at(app, session_id) is None
    assert tech.post(f"/console/sessions/{session_id}/start").status_code == 200
    panel = html.unescape(tech.get(f"/console/sessions/{session_id}").text)
    assert "Customer is back" in panel


def test_a_reconnect_within_the_grace_period_is_not_reported(
    app, technician, http_server, ws_connect, subscriptions
):
    app.config["LENS_CUSTOMER_GRACE_SECONDS"] = 1.5
    tech = Browser(http_server).log_in("tess@example.com")
    phone, session_id = joined_phone(app, http_server, tech, "/console", "Jane Flaky")
    first = phone_socket(phone, session_id, ws_connect, subscriptions)
    console = console_socket(tech, ws_connect, subscriptions, technician)

    first.close()
    second = ws_connect("/c/ws", phone.http.cookies)  # the page's back-off reconnect
    assert second.receive(timeout=BOUND) is not None  # its screen: the socket is served
    # the old socket's grace period passes; nothing may reach the console about it
    assert receive_until(console, "Customer disconnected", time.monotonic() + 3.0) is None
    assert customer_left_at(app, session_id) is None


def test_capabilities_reported_before_the_panel_opened_reach_it_when_it_opens(
    app, technician, http_server, controls_connect, ws_connect, subscriptions
):
    tech = Browser(http_server).log_in("tess@example.com")
    phone, session_id = joined_phone(app, http_server, tech, "/console", "Jane Cameras")
    phone_ws = controls_connect("/c/ws", phone.http.cookies)
    assert subscriptions.wait_for(f"controls:{session_id}")
    assert tech.post(f"/console/sessions/{session_id}/start").status_code == 200
    # the phone reports two cameras while no console has the panel open (Start's answer
    # is still on its way): the report is kept, and the panel gets it when it opens
    phone_ws.send(json.dumps({"type": "capabilities", "torch": True, "cameras": 2}))
    deadline = time.monotonic() + BOUND
    while True:
        with app.app_context():
            tools = db.session.get(LensSession, session_id).tools or {}
        if tools.get("cameras") == 2:
            break
        assert time.monotonic() < deadline, "the report was not kept"
        time.sleep(0.05)  # polling the database: the phone gets no answer to wait for

    console = PageClient(ws_connect("/console/ws", tech.http.cookies), None)
    console.ws.send(json.dumps({"type": "open", "session": session_id}))
    reported = console.receive(timeout=BOUND)
    assert reported is not None, "the panel was not told what the phone reported"
    message = json.loads(reported)
    assert message == {
        "type": "capabilities",
        "from": "customer",
        "session": session_id,
        "torch": True,
        "cameras": 2,
    }
    # and a later report reaches the open panel as it comes
    phone_ws.send(json.dumps({"type": "capabilities", "torch": False, "cameras": 1}))
    later = receive_until(console, '"capabilities"', time.monotonic() + BOUND)
    assert later is not None and json.loads(later)["cameras"] == 1


def test_the_new_session_window_is_told_when_the_customer_accepts(
    app, technician, http_server, ws_connect, subscriptions
):
    tech = Browser(http_server).log_in("tess@example.com")
    pin = tech.create_session("Jane Window")
    session_id = session_id_of(app, pin)
    console = console_socket(tech, ws_connect, subscriptions, technician)
    console.send(json.dumps({"type": "dialog", "session": session_id}))
    line = receive_until(console, f'id="dialog-customer-{session_id}"', time.monotonic() + BOUND)
    assert line is not None and "Waiting for the customer to join" in html.unescape(line)
    assert re.search(r"<button[^>]*disabled[^>]*>Start session</button>", line, re.S), line

    phone = Browser(http_server)
    phone.join(pin)
    assert phone.post("/c/accept").status_code == 200
    deadline = time.monotonic() + BOUND
    while True:
        line = receive_until(console, f'id="dialog-customer-{session_id}"', deadline)
        assert line is not None, "the window never heard that the customer accepted"
        if "Customer connected" in line:
            break
    start = re.search(r"<button[^>]*>Start session</button>", line, re.S).group(0)
    assert "disabled" not in start and f"/console/sessions/{session_id}/start" in start

    # a session that is not this technician's is not watched
    console.send(json.dumps({"type": "dialog", "session": session_id + 1000}))
    refused = receive_until(console, '"not_found"', time.monotonic() + BOUND)
    assert refused is not None
    # the window closed: no more lines for it
    console.send(json.dumps({"type": "dialog", "session": None}))
    assert tech.post(f"/console/sessions/{session_id}/start").status_code == 200
    row = receive_until(console, "Active", time.monotonic() + BOUND)
    assert row is not None and "dialog-customer" not in row
