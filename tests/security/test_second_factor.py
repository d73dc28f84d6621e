"""TOTP second factor: enrolment with a server-rendered QR code, the log-in's code step,
codes good once, required for administrators, optional for technicians."""

from __future__ import annotations

import re

import pyotp
import pytest
from sqlalchemy import select

from lens.admin.models import AuditEntry
from lens.auth import totp
from lens.auth.models import ROLE_ADMIN, LoginThrottle, Technician
from lens.auth.views import PENDING
from lens.extensions import db
from lens.timeutil import now_utc
from tests.conftest import (
    ADMIN_TOTP_SECRET,
    PASSWORD,
    Console,
    add_admin,
    add_technician,
    csrf_from,
    totp_code,
)

KEY = re.compile(r"data-totp-key>([A-Z2-7 ]+)<")


def secret_shown(page: str) -> str:
    return "".join(KEY.search(page).group(1).split())


def post_code(client, path: str, code: str):
    token = csrf_from(client.get(path).text)
    return client.post(path, data={"code": code, "csrf_token": token})


def enrol(client) -> str:
    page = client.get("/account/two-factor")
    secret = secret_shown(page.text)
    response = client.post(
        "/account/two-factor",
        data={"code": pyotp.TOTP(secret).now(), "csrf_token": csrf_from(page.text)},
    )
    assert response.status_code == 302, response.text
    return secret


def password_step(client, email: str, password: str = PASSWORD):
    token = csrf_from(client.get("/login").text)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


# --- enrolment ---------------------------------------------------------------------------


def test_a_technician_enrols_with_the_qr_code_or_the_key(app, console, technician):
    page = console.client.get("/account/two-factor")
    assert page.status_code == 200
    # the QR code is inline SVG made on the server: no script, no image from elsewhere
    assert '<svg role="img" aria-label="QR code for your authenticator app"' in page.text
    assert "<script>" not in page.text.split("</head>")[1]
    secret = secret_shown(page.text)
    assert len(secret) == 32
    token = csrf_from(page.text)
    wrong = console.client.post("/account/two-factor", data={"code": "000000", "csrf_token": token})
    assert wrong.status_code == 422 and "That code is not right" in wrong.text
    assert secret_shown(wrong.text) == secret  # the same secret until it is confirmed
    right = console.client.post(
        "/account/two-factor", data={"code": pyotp.TOTP(secret).now(), "csrf_token": token}
    )
    assert right.status_code == 302
    assert console.client.get("/console/").status_code == 200  # this browser stays logged in
    with app.app_context():
        tess = db.session.get(Technician, technician)
        assert tess.totp_secret and secret not in tess.totp_secret  # sealed, not plain
        assert totp.unseal(tess.totp_secret, app.config["SECRET_KEY"]) == secret
    assert "Two-step verification is on" in console.client.get("/account/two-factor").text


def test_an_enrolment_left_unfinished_is_not_handed_to_the_next_log_in(app, client, technician):
    """A secret shown but not confirmed stays with its log-in: after a log-out, the next
    account in this browser must not be shown the secret the first user may have scanned."""
    add_technician(app, "Otto Other", "otto@example.com")
    browser = Console(client)
    browser.login("tess@example.com")
    first = secret_shown(client.get("/account/two-factor").text)
    assert secret_shown(client.get("/account/two-factor").text) == first  # kept until confirmed
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/console/").text)})
    assert browser.login("otto@example.com").status_code == 302
    assert secret_shown(client.get("/account/two-factor").text) != first


def test_the_page_that_shows_the_secret_is_not_cached(console):
    """Back after a log-out must not show the secret to the next user of the computer."""
    page = console.client.get("/account/two-factor")
    wrong = console.client.post(
        "/account/two-factor", data={"code": "000000", "csrf_token": csrf_from(page.text)}
    )
    for response in (page, wrong):
        assert "data-totp-key" in response.text
        assert "no-store" in response.headers.get("Cache-Control", "")


def test_the_sealed_secret_needs_the_sites_key():
    sealed = totp.seal(ADMIN_TOTP_SECRET, "the site's key")
    assert totp.unseal(sealed, "the site's key") == ADMIN_TOTP_SECRET
    with pytest.raises(totp.SecretUnreadable):
        totp.unseal(sealed, "another key")


# --- logging in with a code ----------------------------------------------------------------


def test_log_in_asks_for_the_code_and_takes_each_code_once(app, client, technician):
    first = Console(app.test_client())
    first.login("tess@example.com")
    secret = enrol(first.client)
    response = password_step(client, "tess@example.com")
    assert response.status_code == 302 and response.location == "/login/code"
    assert client.get("/console/").status_code == 302  # not logged in yet
    wrong = post_code(client, "/login/code", "12345x")
    assert wrong.status_code == 200 and "That code is not right" in wrong.text
    with app.app_context():  # the enrolment used the current step: the next one is free
        step = db.session.get(Technician, technician).totp_last_step
    code = pyotp.TOTP(secret).generate_otp(step + 1)
    accepted = post_code(client, "/login/code", code)
    assert accepted.status_code == 302 and accepted.location == "/console/"
    assert client.get("/console/").status_code == 200
    # the same code again, in another browser: refused (a code is good once)
    other = app.test_client()
    assert password_step(other, "tess@example.com").location == "/login/code"
    replay = post_code(other, "/login/code", code)
    assert replay.status_code == 200 and "That code is not right" in replay.text
    assert other.get("/console/").status_code == 302


def test_the_code_step_cannot_be_skipped(app, client, technician):
    first = Console(app.test_client())
    first.login("tess@example.com")
    enrol(first.client)
    assert password_step(client, "tess@example.com").location == "/login/code"
    for path in ("/console/", "/web/", "/account/password", "/account/two-factor"):
        assert client.get(path).status_code == 302, path


def test_wrong_codes_count_towards_the_back_off(app, client, technician):
    first = Console(app.test_client())
    first.login("tess@example.com")
    enrol(first.client)
    assert password_step(client, "tess@example.com").location == "/login/code"
    statuses = [post_code(client, "/login/code", "000000").status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    with app.app_context():
        assert db.session.scalar(select(LoginThrottle.failures)) == 6


def test_a_code_step_left_too_long_starts_again(app, client, technician):
    first = Console(app.test_client())
    first.login("tess@example.com")
    enrol(first.client)
    assert password_step(client, "tess@example.com").location == "/login/code"
    with client.session_transaction() as browser_session:  # as if 5 minutes had passed
        pending = browser_session[PENDING]
        browser_session[PENDING] = dict(pending, at=pending["at"] - 301)
    response = client.get("/login/code")
    assert response.status_code == 302 and response.location == "/login"


def test_codes_in_other_digits_are_answered_not_a_server_error(app, client, technician):
    """Digits other than ASCII's (hmac.compare_digest raised TypeError on them: a 500);
    full-width ones, from a Japanese or Chinese keyboard, are read as the digits they are."""
    first = Console(app.test_client())
    first.login("tess@example.com")
    secret = enrol(first.client)
    assert password_step(client, "tess@example.com").location == "/login/code"
    for other in ("\u0661\u0662\u0663\u0664\u0665\u0666", "12345\u00b2"):  # Arabic-Indic, ²
        refused = post_code(client, "/login/code", other)
        assert refused.status_code == 200 and "That code is not right" in refused.text
    with app.app_context():
        step = db.session.get(Technician, technician).totp_last_step
    code = pyotp.TOTP(secret).generate_otp(step + 1)
    full_width = "".join(chr(ord(digit) + 0xFEE0) for digit in code)
    accepted = post_code(client, "/login/code", full_width)
    assert accepted.status_code == 302 and accepted.location == "/console/"


def test_a_technician_may_turn_it_off_with_a_code(app, console, technician):
    secret = enrol(console.client)
    with app.app_context():
        step = db.session.get(Technician, technician).totp_last_step
    token = csrf_from(console.client.get("/account/two-factor").text)
    wrong = console.client.post(
        "/account/two-factor/off", data={"code": "000000", "csrf_token": token}
    )
    assert wrong.status_code == 422
    off = console.client.post(
        "/account/two-factor/off",
        data={"code": pyotp.TOTP(secret).generate_otp(step + 1), "csrf_token": token},
    )
    assert off.status_code == 302
    with app.app_context():
        assert db.session.get(Technician, technician).totp_secret is None


def test_wrong_codes_to_turn_it_off_count_towards_the_back_off(app, console, technician):
    """A stolen cookie must not be a way to guess codes without limit (they were not
    counted here, only the per-address rate limit applied)."""
    secret = enrol(console.client)
    with app.app_context():
        step = db.session.get(Technician, technician).totp_last_step
    token = csrf_from(console.client.get("/account/two-factor").text)
    statuses = [
        console.client.post(
            "/account/two-factor/off", data={"code": "000000", "csrf_token": token}
        ).status_code
        for _ in range(6)
    ]
    assert statuses == [422] * 5 + [429]
    paused = console.client.post(
        "/account/two-factor/off",
        data={"code": pyotp.TOTP(secret).generate_otp(step + 1), "csrf_token": token},
    )
    assert paused.status_code == 429 and "log-in is paused" in paused.text
    with app.app_context():
        assert db.session.get(Technician, technician).totp_secret is not None
        assert db.session.scalar(select(LoginThrottle.failures)) == 6


# --- administrators -------------------------------------------------------------------------


def test_an_administrator_must_enrol_before_anything_else(app, client):
    add_technician(app, "Ada Admin", "ada@example.com", role=ROLE_ADMIN)
    response = password_step(client, "ada@example.com")
    assert response.status_code == 302 and response.location.startswith("/account/two-factor")
    for path in ("/admin/technicians", "/console/", "/web/", "/admin/settings", "/"):
        page = client.get(path)
        assert page.status_code == 302 and page.location.startswith("/account/two-factor"), path
    token = csrf_from(client.get("/account/two-factor").text)
    changed = client.post("/admin/groups/new", data={"name": "Field", "csrf_token": token})
    assert changed.status_code == 403
    page = client.get("/account/two-factor")
    assert "Administrators must use two-step verification" in page.text
    enrol(client)
    assert client.get("/admin/technicians").status_code == 200


def test_an_administrator_cannot_turn_it_off(app, admin):
    token = csrf_from(admin.client.get("/account/two-factor").text)
    response = admin.client.post(
        "/account/two-factor/off",
        data={"code": totp_code(app, admin.admin_id), "csrf_token": token},
    )
    assert response.status_code == 403
    with app.app_context():
        assert db.session.get(Technician, admin.admin_id).has_second_factor


def test_an_administrator_resets_a_lost_phone(app, admin, technician):
    tess = Console(app.test_client())
    tess.login("tess@example.com")
    enrol(tess.client)
    page = admin.get(f"/technicians/{technician}")
    assert "Two-step verification is on." in page.text
    assert admin.post(f"/technicians/{technician}/two-factor/reset").status_code == 302
    with app.app_context():
        assert db.session.get(Technician, technician).totp_secret is None
        entry = db.session.scalar(select(AuditEntry).where(AuditEntry.field == "two_step"))
        assert (entry.before, entry.after) == ("on", "off")
    assert tess.client.get("/console/").status_code == 302  # logged out: log in again
    assert admin.post(f"/technicians/{admin.admin_id}/two-factor/reset").status_code == 302
    with app.app_context():  # not their own: another administrator does that
        assert db.session.get(Technician, admin.admin_id).has_second_factor


def test_codes_of_the_next_step_are_taken_for_clock_drift():
    secret = totp.new_secret()
    now = now_utc()
    step = pyotp.TOTP(secret).timecode(now.replace(tzinfo=__import__("datetime").UTC))
    for offset, expected in ((-1, step - 1), (0, step), (1, step + 1), (2, None)):
        code = pyotp.TOTP(secret).generate_otp(step + offset)
        assert totp.matching_step(secret, code, now) == expected
    assert totp.matching_step(secret, "12345", now) is None
    assert totp.matching_step(secret, "abcdef", now) is None


def test_add_admin_makes_an_administrator_who_logs_in_with_a_code(app, client):
    ada = add_admin(app)
    response = Console(client).login("ada@example.com", code=lambda: totp_code(app, ada))
    assert response.status_code == 302
    assert client.get("/admin/technicians").status_code == 200


def test_the_command_line_resets_a_lost_phone(app, runner):
    ada = add_admin(app)
    result = runner.invoke(args=["lens", "reset-two-factor", "--email", "ADA@example.com"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert db.session.get(Technician, ada).totp_secret is None
    unknown = runner.invoke(args=["lens", "reset-two-factor", "--email", "x@example.com"])
    assert unknown.exit_code != 0 and "no technician" in unknown.output
