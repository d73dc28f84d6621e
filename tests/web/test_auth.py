"""Log-in, CSRF, safe redirects, log-out, first-login password change and authorization."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from lens.auth.models import Technician
from lens.extensions import db
from lens.sessions.models import LensSession
from tests.conftest import PASSWORD, Console, add_technician, csrf_from

NEW_PASSWORD = "a brand new long password"


def login_form(client, email: str, password: str, **kwargs):
    page = client.get("/login")
    data = {"email": email, "password": password, "csrf_token": csrf_from(page.text)}
    return client.post("/login", data=data, **kwargs)


def session_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(LensSession))


# --- Log-in ------------------------------------------------------------------------------


def test_login_success_opens_the_console(client, technician):
    response = login_form(client, "tess@example.com", PASSWORD)
    assert response.status_code == 302
    assert response.headers["Location"] == "/console/"
    assert client.get("/console/").status_code == 200


def test_login_email_is_case_insensitive(client, technician):
    assert login_form(client, "  TESS@Example.com ", PASSWORD).status_code == 302


@pytest.mark.parametrize("typed", ["Élodie.Ørsted@example.com", "élodie.ørsted@example.com"])
def test_login_email_with_capitals_beyond_ascii(app, client, typed):
    """SQLite's own lower() lowers ASCII only: this address matched no log-in there (it did
    on PostgreSQL); the app's SQLite lower() is Python's, as PostgreSQL's."""
    add_technician(app, "Élodie Ørsted", "Élodie.Ørsted@example.com")
    response = login_form(client, typed, PASSWORD)
    assert response.status_code == 302 and response.location == "/console/"


@pytest.mark.parametrize(
    ("email", "password"),
    [("tess@example.com", "wrong password"), ("nobody@example.com", PASSWORD)],
)
def test_login_failure_says_so_and_does_not_log_in(client, technician, email, password):
    response = login_form(client, email, password)
    assert response.status_code == 200
    assert "Wrong e-mail or password." in response.text
    assert client.get("/console/").status_code == 302


def test_login_with_empty_fields_is_422(client, technician):
    response = login_form(client, "", "")
    assert response.status_code == 422
    assert client.get("/console/").status_code == 302


def test_inactive_technician_cannot_log_in(app, client):
    add_technician(app, "Ina Inactive", "ina@example.com", active=False)
    response = login_form(client, "ina@example.com", PASSWORD)
    assert response.status_code == 200
    assert "Wrong e-mail or password." in response.text
    assert client.get("/console/").status_code == 302


def test_deactivating_a_logged_in_technician_locks_them_out(app, console, technician):
    assert console.client.get("/console/").status_code == 200
    with app.app_context():
        db.session.get(Technician, technician).active = False
        db.session.commit()
    response = console.client.get("/console/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert console.post("/sessions", {"name": "Ann"}).status_code == 302
    assert session_count(app) == 0


def test_login_is_rate_limited(app, client, technician):
    app.config["LENS_LOGIN_RATE_LIMIT"] = "3 per minute"
    statuses = [login_form(client, "tess@example.com", "guess").status_code for _ in range(4)]
    assert statuses[-1] == 429
    assert statuses[:3] == [200, 200, 200]
    # even the right password waits until the window passes
    assert login_form(client, "tess@example.com", PASSWORD).status_code == 429
    assert client.get("/console/").status_code == 302


# --- CSRF --------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "not-the-token"])
def test_login_without_a_valid_csrf_token_is_400(client, technician, token):
    data = {"email": "tess@example.com", "password": PASSWORD}
    if token is not None:
        client.get("/login")
        data["csrf_token"] = token
    response = client.post("/login", data=data)
    assert response.status_code == 400
    assert "The form has expired" in response.text
    assert client.get("/console/").status_code == 302


@pytest.mark.parametrize("token", ["", "not-the-token"])
def test_console_post_without_a_valid_csrf_token_is_400(app, console, token):
    headers = {"HX-Request": "true"}
    if token:
        headers["X-CSRFToken"] = token
    response = console.client.post("/console/sessions", data={"name": "Ann"}, headers=headers)
    assert response.status_code == 400
    assert response.headers["HX-Retarget"] == "#messages"
    assert "The form has expired" in response.text
    assert session_count(app) == 0


def test_csrf_token_of_another_browser_is_refused(app, console, other_console):
    headers = {"HX-Request": "true", "X-CSRFToken": other_console.token}
    response = console.client.post("/console/sessions", data={"name": "Ann"}, headers=headers)
    assert response.status_code == 400
    assert session_count(app) == 0


# --- Safe next ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example",
        "//evil.example",
        "/\\evil.example",
        "/\\\\evil.example",
        "\\\\evil.example",
        "https:/evil.example",
        "javascript:alert(1)",
        "/\t/evil.example",
        "evil.example",
    ],
)
def test_next_pointing_off_site_goes_to_the_console(client, technician, target):
    response = login_form(client, "tess@example.com", PASSWORD, query_string={"next": target})
    assert response.status_code == 302
    assert response.headers["Location"] == "/console/"


@pytest.mark.parametrize("target", ["/\r\nSet-Cookie: a=b", "/console/\n"])
def test_next_with_a_line_break_goes_to_the_console(app, client, technician, target):
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as production would, not raise
    response = login_form(client, "tess@example.com", PASSWORD, query_string={"next": target})
    assert response.status_code == 302
    assert response.headers["Location"] == "/console/"


@pytest.mark.parametrize("target", ["/console/", "/web/", "/console/sessions/new"])
def test_local_next_is_followed(client, technician, target):
    response = login_form(client, "tess@example.com", PASSWORD, query_string={"next": target})
    assert response.headers["Location"] == target


def test_unauthenticated_console_redirects_to_login_and_back(client, technician):
    response = client.get("/console/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/console/"
    back = client.post(
        "/login?next=/console/",
        data={
            "email": "tess@example.com",
            "password": PASSWORD,
            "csrf_token": csrf_from(client.get("/login").text),
        },
    )
    assert back.headers["Location"] == "/console/"


def test_unauthenticated_console_post_creates_nothing(app, client):
    response = client.post("/console/sessions", data={"name": "Ann"})
    assert response.status_code in (302, 400)
    assert session_count(app) == 0


WEBSOCKET_HANDSHAKE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


@pytest.mark.parametrize("path", ["/console/ws", "/web/ws"])
def test_unauthenticated_console_websocket_is_401(client, path):
    response = client.get(path, headers=WEBSOCKET_HANDSHAKE)
    assert response.status_code == 401


# --- Log-out -----------------------------------------------------------------------------


def test_logout_is_post_only(console):
    assert console.client.get("/logout").status_code == 405
    assert console.client.get("/console/").status_code == 200
    response = console.client.post("/logout", data={"csrf_token": console.token})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert console.client.get("/console/").status_code == 302


def test_logout_needs_the_csrf_token(console):
    assert console.client.post("/logout").status_code == 400
    assert console.client.get("/console/").status_code == 200


# --- First log-in with a one-time password -----------------------------------------------


def test_password_change_is_required_before_the_console(app, client):
    add_technician(app, "Nina New", "nina@example.com", password_change_required=True)
    response = login_form(client, "nina@example.com", PASSWORD)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/account/password")

    for path in ["/console/", "/web/", "/console/sessions/new"]:
        blocked = client.get(path)
        assert blocked.status_code == 302, path
        assert blocked.headers["Location"].startswith("/account/password"), path
    page = client.get("/account/password")
    token = csrf_from(page.text)
    created = client.post("/console/sessions", data={"name": "Ann"}, headers={"X-CSRFToken": token})
    assert created.status_code == 302
    assert session_count(app) == 0

    too_short = client.post(
        "/account/password", data={"password": "short", "confirm": "short", "csrf_token": token}
    )
    assert too_short.status_code == 200
    assert client.get("/console/").status_code == 302

    saved = client.post(
        "/account/password?next=/console/",
        data={
            "current": PASSWORD,
            "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
            "csrf_token": token,
        },
    )
    assert saved.status_code == 302
    assert saved.headers["Location"] == "/console/"
    assert client.get("/console/").status_code == 200

    client.post("/logout", data={"csrf_token": token})
    assert login_form(client, "nina@example.com", PASSWORD).status_code == 200
    fresh = login_form(client, "nina@example.com", NEW_PASSWORD)
    assert fresh.headers["Location"] == "/console/"


def test_password_change_next_is_kept_safe(app, client):
    add_technician(app, "Nina New", "nina@example.com", password_change_required=True)
    login_form(client, "nina@example.com", PASSWORD)
    token = csrf_from(client.get("/account/password").text)
    saved = client.post(
        "/account/password",
        query_string={"next": "//evil.example"},
        data={
            "current": PASSWORD,
            "password": NEW_PASSWORD,
            "confirm": NEW_PASSWORD,
            "csrf_token": token,
        },
    )
    assert saved.headers["Location"] == "/console/"


def test_password_change_asks_for_the_current_password(app, console, technician):
    """A stolen log-in cookie alone cannot take the account over by choosing a password
    (the change asked for the new one only); wrong ones count towards the back-off."""
    page = console.client.get("/account/password")
    assert "Current password" in page.text
    token = csrf_from(page.text)
    change = {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD, "csrf_token": token}
    assert console.client.post("/account/password", data=change).status_code == 200
    answers = [
        console.client.post("/account/password", data={**change, "current": f"guess {n}"})
        for n in range(6)
    ]
    assert [answer.status_code for answer in answers] == [200] * 5 + [429]
    assert "That is not your current password." in answers[0].text
    assert "log-in is paused" in answers[-1].text
    with app.app_context():
        assert db.session.get(Technician, technician).check_password(PASSWORD)  # unchanged
    assert console.client.get("/console/").status_code == 200  # still logged in


def test_password_page_needs_a_login(client):
    response = client.get("/account/password")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


# --- Authorization between technicians --------------------------------------------------


@pytest.fixture
def sessions_of_a(app, console) -> int:
    console.create_session("Customer Of A")
    with app.app_context():
        return db.session.scalar(select(LensSession.id))


def test_other_technician_cannot_see_a_session(sessions_of_a, other_console):
    response = other_console.client.get(
        f"/console/sessions/{sessions_of_a}", headers={"HX-Request": "true"}
    )
    assert response.status_code == 403
    assert "You are not allowed to do this." in response.text
    assert "Customer Of A" not in response.text


@pytest.mark.parametrize("action", ["start", "end"])
def test_other_technician_cannot_act_on_a_session(app, sessions_of_a, other_console, action):
    response = other_console.post(f"/sessions/{sessions_of_a}/{action}")
    assert response.status_code == 403
    with app.app_context():
        lens_session = db.session.get(LensSession, sessions_of_a)
        assert lens_session.state == "created"
        assert [event.kind for event in lens_session.events] == ["created", "pin_issued"]


def test_session_list_shows_only_own_sessions(console, sessions_of_a, other_console):
    assert "Customer Of A" in console.client.get("/console/").text
    listing = other_console.client.get("/console/").text
    assert "Customer Of A" not in listing
    assert f"session-row-{sessions_of_a}" not in listing


def test_unknown_session_is_404(console):
    assert console.client.get("/console/sessions/999999").status_code == 404


def test_web_console_shares_the_checks(app, sessions_of_a, other_console):
    other_web = Console(other_console.client, prefix="/web")
    other_web.token = other_console.token
    assert other_web.post(f"/sessions/{sessions_of_a}/end").status_code == 403
    with app.app_context():
        assert db.session.get(LensSession, sessions_of_a).state == "created"
