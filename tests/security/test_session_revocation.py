"""Server-side session revocation: log-out, a password change, deactivation and "Log out
everywhere" void every cookie of the account (copies included) and close its open sockets."""

from __future__ import annotations

import time

import pytest
import requests
from simple_websocket import ConnectionClosed
from sqlalchemy import update

from lens.auth.models import Technician
from lens.events import BusUnavailable
from lens.extensions import db
from tests.conftest import PASSWORD, Console, csrf_from
from tests.web.test_live import Browser

NEW_PASSWORD = "a brand new long password"
BOUND = 5.0  # seconds within which an open socket must be closed


def copy_of(browser: Browser) -> requests.Session:
    """Someone else with the browser's cookies (copied before the log-in ended)."""
    thief = requests.Session()
    thief.cookies.update(browser.http.cookies)
    return thief


def opens_console(base: str, session: requests.Session) -> bool:
    response = session.get(f"{base}/console/", allow_redirects=False, timeout=10)
    return response.status_code == 200


def closed_with_notice(ws, bound: float = BOUND) -> tuple[bool, str]:
    """Whether the socket closed within bound, and the "logged out" push it got first."""
    deadline = time.monotonic() + bound
    notice = ""
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = ws.receive(timeout=left)
        except ConnectionClosed:
            return True, notice
        if message and "You have been logged out" in message:
            notice = message
    return False, notice


def log_out(browser: Browser) -> None:
    assert browser.post("/logout").status_code == 302


def change_password(browser: Browser) -> None:
    token = csrf_from(browser.get("/account/password").text)
    response = browser.http.post(
        browser.base + "/account/password",
        data={
            "current": PASSWORD,
            "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
            "csrf_token": token,
        },
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 302, response.text


def deactivate(app, technician: int, admin) -> None:
    assert admin.post(f"/technicians/{technician}/deactivate", {"hand_to": 0}).status_code == 302


def sign_out_everywhere(app, technician: int, admin) -> None:
    assert admin.post(f"/technicians/{technician}/sign-out").status_code == 302


@pytest.mark.parametrize(
    ("ending", "reason"),
    [
        ("log_out", "You logged out of Lens"),
        ("password", "The password of your account was changed"),
        ("deactivate", "An administrator has deactivated your account"),
        ("everywhere", "An administrator has ended every log-in of your account"),
    ],
)
def test_an_ended_log_in_voids_copied_cookies_and_closes_open_sockets(
    app, admin, technician, http_server, ws_connect, subscriptions, ending, reason
):
    base = f"http://{http_server}"
    tess = Browser(http_server).log_in("tess@example.com")
    other_device = Browser(http_server).log_in("tess@example.com")
    thief = copy_of(tess)
    assert opens_console(base, thief)
    sockets = [ws_connect("/console/ws", tess.http.cookies), ws_connect("/web/ws", thief.cookies)]
    for ws in sockets:
        assert ws.receive(timeout=BOUND)  # the list as it is
    # both sockets listen on the account's topic before the log-in ends
    assert subscriptions.wait_for(f"technician:{technician}", count=2)

    if ending == "log_out":
        log_out(tess)
    elif ending == "password":
        change_password(tess)
    elif ending == "deactivate":
        deactivate(app, technician, admin)
    else:
        sign_out_everywhere(app, technician, admin)

    assert not opens_console(base, thief)  # the copied cookie is refused
    assert not opens_console(base, other_device.http)  # and every other device's
    for ws in sockets:
        closed, notice = closed_with_notice(ws)
        assert closed, "the socket stayed open"
        assert reason in notice
    if ending == "password":  # the browser that changed it stays logged in, with a new cookie
        assert opens_console(base, tess.http)
        assert Console(app.test_client()).login("tess@example.com", NEW_PASSWORD).status_code == 302
    else:
        assert not opens_console(base, tess.http)


def test_a_socket_whose_log_in_ended_is_closed_at_its_next_message(
    app, technician, http_server, ws_connect
):
    """Even if the signed_out push were lost, every message checks the log-in."""
    tess = Browser(http_server).log_in("tess@example.com")
    ws = ws_connect("/console/ws", tess.http.cookies)
    assert ws.receive(timeout=BOUND)
    with app.app_context():  # the version moves on, and nothing is published
        db.session.execute(
            update(Technician)
            .where(Technician.id == technician)
            .values(session_version=Technician.session_version + 1)
        )
        db.session.commit()
    ws.send('{"type": "open", "session": 1}')
    closed, notice = closed_with_notice(ws)
    assert closed and "You have been logged out" in notice


def test_an_idle_socket_notices_within_the_recheck_period(app, technician, http_server, ws_connect):
    app.config["LENS_LOGIN_RECHECK_SECONDS"] = 0.5
    tess = Browser(http_server).log_in("tess@example.com")
    ws = ws_connect("/console/ws", tess.http.cookies)
    assert ws.receive(timeout=BOUND)
    with app.app_context():
        db.session.execute(
            update(Technician).where(Technician.id == technician).values(active=False)
        )
        db.session.commit()
    # no message, no push: the idle beat (every 5 s at most) re-checks the log-in
    closed, notice = closed_with_notice(ws, bound=5 + 2 * BOUND)  # slack for a loaded machine
    assert closed and "You have been logged out" in notice


def test_a_cookie_from_before_log_out_is_refused_by_the_test_client_too(app, console):
    """The same through the Flask test client: the cookie's session version is checked."""
    cookie = console.client.get_cookie("session").value
    assert console.client.post("/logout", headers={"X-CSRFToken": console.token}).status_code == 302
    thief = app.test_client()
    thief.set_cookie("session", cookie)
    assert thief.get("/console/").status_code == 302
    assert Console(app.test_client()).login("tess@example.com", PASSWORD).status_code == 302


def test_ending_log_ins_holds_while_the_event_bus_is_down(app, console, monkeypatch):
    """The version is committed first; a push that cannot go out (Redis down) must not turn
    the password change or the log-out into an error page (it was a 503, and the browser
    that changed its password was logged out too). Sockets close at their re-check."""

    def down(topic, message):
        raise BusUnavailable("Redis is down")

    monkeypatch.setattr(app.extensions["lens.events"], "publish", down)
    page = console.client.get("/account/password")
    changed = console.client.post(
        "/account/password",
        data={
            "current": PASSWORD,
            "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
            "csrf_token": csrf_from(page.text),
        },
    )
    assert changed.status_code == 302
    assert console.client.get("/console/").status_code == 200  # this browser stays logged in
    token = csrf_from(console.client.get("/console/").text)
    logged_out = console.client.post("/logout", headers={"X-CSRFToken": token})
    assert logged_out.status_code == 302 and logged_out.location == "/login"
    assert console.client.get("/console/").status_code == 302
