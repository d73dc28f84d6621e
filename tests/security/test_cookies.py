"""Cookies are HttpOnly and SameSite=Lax, and Secure when the site is served over HTTPS
(lens.security.cookies)."""

from __future__ import annotations

from http.cookies import SimpleCookie

from flask_login import login_user

from lens.auth.models import Technician
from lens.extensions import db
from tests.conftest import PASSWORD, csrf_from

HTTPS = "https://lens.example"


def set_cookies(response) -> dict[str, dict[str, str | bool]]:
    """The response's Set-Cookie headers: name -> its attributes (lower-case keys)."""
    found = {}
    for header in response.headers.getlist("Set-Cookie"):
        cookie = SimpleCookie()
        cookie.load(header)
        for name, morsel in cookie.items():
            attributes = {key: morsel[key] for key in morsel if morsel[key]}
            found[name] = attributes
    return found


def log_in(client, base_url: str):
    page = client.get("/login", base_url=base_url)
    return client.post(
        "/login",
        base_url=base_url,
        data={
            "email": "tess@example.com",
            "password": PASSWORD,
            "csrf_token": csrf_from(page.text),
        },
        headers={"Referer": base_url + "/login"},  # Flask-WTF wants one on HTTPS
    )


def test_the_login_cookie_over_https_is_secure_httponly_and_lax(app, technician, client):
    response = log_in(client, HTTPS)
    assert response.status_code == 302
    cookies = set_cookies(response)
    assert set(cookies) == {"session"}  # no remember-me cookie: log-in never sets one
    session = cookies["session"]
    assert session["secure"] is True
    assert session["httponly"] is True
    assert session["samesite"] == "Lax"


def test_over_plain_http_the_cookie_is_not_secure_unless_configured(app, technician, client):
    cookie = set_cookies(log_in(client, "http://localhost"))["session"]
    assert "secure" not in cookie  # a browser would drop a Secure cookie sent over http
    assert cookie["httponly"] is True and cookie["samesite"] == "Lax"

    app.config["SESSION_COOKIE_SECURE"] = True  # LENS_SECURE_COOKIES=1 (a TLS proxy)
    cookie = set_cookies(log_in(app.test_client(), "http://localhost"))["session"]
    assert cookie["secure"] is True


def test_the_phone_device_cookie_is_secure_over_https(app, console, make_customer):
    pin = console.create_session("Cookie Customer")["pin"]
    phone = make_customer().client
    page = phone.get("/", base_url=HTTPS)
    response = phone.post(
        "/",
        base_url=HTTPS,
        data={"pin": pin, "csrf_token": csrf_from(page.text)},
        headers={"Referer": HTTPS + "/"},
    )
    assert response.status_code == 303
    cookie = set_cookies(response)["session"]
    assert cookie["secure"] is True and cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"


def test_the_language_cookie(app, client):
    cookie = set_cookies(client.get("/lang/nl?next=/", base_url=HTTPS))["lens_lang"]
    assert cookie["secure"] is True and cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    plain = set_cookies(client.get("/lang/en?next=/"))["lens_lang"]
    assert "secure" not in plain and plain["httponly"] is True


def test_a_remember_me_cookie_would_be_httponly_and_lax(app, technician):
    app.config["REMEMBER_COOKIE_SECURE"] = True  # as LENS_SECURE_COOKIES=1 sets it
    with app.test_request_context("/login", method="POST", base_url=HTTPS):
        login_user(db.session.get(Technician, technician), remember=True)
        response = app.process_response(app.make_response("logged in"))
    cookie = set_cookies(response)["remember_token"]
    assert cookie["httponly"] is True and cookie["samesite"] == "Lax"
    assert cookie["secure"] is True
