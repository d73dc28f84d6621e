"""Security headers on every page: every GET route of the URL map, as anonymous, customer,
technician and administrator (lens.security.headers)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient
from sqlalchemy import select

from lens.auth.models import Technician
from lens.extensions import db
from lens.security.headers import DEVICE_PAGES
from lens.sessions.models import LensSession
from tests.conftest import Console, add_admin, totp_code
from tests.security.markup import inline_code

HTTPS = "https://localhost"  # the host the fixtures logged in on: their cookies go along

# The value each route argument gets (a real session, technician, token where one is needed).
# A route with an argument missing here fails the walk: give it a value.
SAMPLE_VALUES = {
    "step": "tutorial",
    "code": "nl",
    "key": "LENS_PIN_VALIDITY_MINUTES",
    "snapshot_id": 1,
    "recording_id": 1,
    "group_id": 1,
    "filename": "css/lens.css",
}
ANY_VALUES = {"ext": "webm", "file_format": None}  # None: the converter's first choice


@dataclass
class Scenario:
    session_id: int
    technician_id: int
    welcome_token: str


@pytest.fixture
def scenario(app: Flask, console: Console, customer) -> Scenario:
    """A session its customer has joined by PIN; the technician is `console`."""
    created = console.create_session("Header Customer")
    assert customer.join(created["pin"]).status_code == 303
    from lens.admin.welcome import welcome_token

    with app.test_request_context():
        lens_session = db.session.scalars(select(LensSession)).one()
        technician = db.session.get(Technician, lens_session.technician_id)
        return Scenario(lens_session.id, technician.id, welcome_token(technician))


def get_routes(app: Flask, scenario: Scenario) -> list[tuple[str, str]]:
    """(endpoint, URL) of every GET route (sockets included: they answer a plain GET too)."""
    values = {
        **SAMPLE_VALUES,
        "session_id": scenario.session_id,
        "technician_id": scenario.technician_id,
    }
    routes = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods:
            continue
        args = {}
        for arg in rule.arguments:
            if arg in ANY_VALUES:
                args[arg] = ANY_VALUES[arg] or sorted(rule._converters[arg].items)[0]
            elif arg == "token":
                # a join link that is no longer valid: a valid one would move the session
                # to whoever walks it first (its page is a redirect to /c, walked anyway)
                welcome = rule.endpoint.startswith("welcome.")
                args[arg] = scenario.welcome_token if welcome else "no-longer-valid"
            else:
                assert arg in values, f"{rule.endpoint}: add a sample value for <{arg}>"
                args[arg] = values[arg]
        with app.test_request_context():
            routes.append((rule.endpoint, url_for(rule.endpoint, **args)))
    return sorted(routes)


def assert_security_headers(response, endpoint: str, secure: bool = True) -> None:
    """Every header lens.security.headers promises, for a response of endpoint."""
    where = f"{endpoint} {response.request.path} ({response.status_code})"
    headers = response.headers
    csp = dict(
        (part.split(" ", 1) + [""])[:2]
        for part in (p.strip() for p in headers.get("Content-Security-Policy", "").split(";"))
        if part
    )
    assert csp.get("script-src") == "'self'", where
    assert csp.get("style-src") == "'self'", where
    assert csp.get("default-src") == "'self'", where
    assert csp.get("object-src") == "'none'", where
    assert csp.get("frame-ancestors") == "'none'", where
    assert csp.get("base-uri") == "'none'", where
    scheme = "wss" if secure else "ws"
    assert f"{scheme}://{response.request.host}" in csp.get("connect-src", "").split(), where
    assert "unsafe" not in headers["Content-Security-Policy"], where
    assert headers.get("X-Frame-Options") == "DENY", where
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    assert headers.get("Referrer-Policy") == "same-origin", where
    assert headers.get("Cross-Origin-Opener-Policy") == "same-origin", where
    policy = dict(p.strip().split("=", 1) for p in headers.get("Permissions-Policy", "").split(","))
    devices = DEVICE_PAGES.get(endpoint, ())
    for device in ("camera", "microphone"):
        assert policy.get(device) == ("(self)" if device in devices else "()"), where
    assert policy.get("geolocation") == "()", where
    if secure:
        assert headers.get("Strict-Transport-Security") == "max-age=31536000", where
    else:
        assert "Strict-Transport-Security" not in headers, where


def walk(client: FlaskClient, routes: list[tuple[str, str]]) -> dict[str, int]:
    """GET every route over HTTPS, check its headers (and a page's markup); status by endpoint."""
    statuses = {}
    for endpoint, url in routes:
        response = client.get(url, base_url=HTTPS)
        assert_security_headers(response, endpoint)
        if response.status_code == 200 and response.mimetype == "text/html":
            assert inline_code(response.text) == [], (endpoint, url)
        statuses[endpoint] = response.status_code
        response.close()
    return statuses


def test_every_page_sends_the_security_headers(app, scenario, console, customer, client):
    routes = get_routes(app, scenario)
    assert len(routes) >= 40
    ada = add_admin(app)
    admin = Console(app.test_client())
    assert admin.login("ada@example.com", code=lambda: totp_code(app, ada)).status_code == 302

    seen = {
        "anonymous": walk(client, routes),
        "customer": walk(customer.client, routes),
        "technician": walk(console.client, routes),
        "admin": walk(admin.client, routes),
    }

    # the walk reached the real pages, not only redirects to the log-in
    assert seen["anonymous"]["customer.start"] == 200
    assert seen["anonymous"]["auth.login"] == 200
    assert seen["customer"]["customer.session_page"] == 200
    assert seen["technician"]["technician_console.index"] == 200
    assert seen["technician"]["web_console.index"] == 200
    assert seen["technician"]["technician_console.session_detail"] == 200
    assert seen["technician"]["admin.technicians"] == 403
    assert seen["technician"]["auth.two_factor"] == 200  # the enrolment page, QR code and all
    assert seen["admin"]["admin.technicians"] == 200
    assert seen["admin"]["admin.settings"] == 200
    assert seen["admin"]["admin.report_session"] == 200
    assert seen["anonymous"]["static"] == 200


def test_the_device_pages_are_pages(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules() if "GET" in rule.methods}
    assert set(DEVICE_PAGES) <= endpoints


def test_error_pages_and_partials_carry_them_too(app, console, client):
    missing = client.get("/no-such-page", base_url=HTTPS)
    assert missing.status_code == 404
    assert_security_headers(missing, "")

    partial = console.client.get(
        "/console/sessions/new", base_url=HTTPS, headers={"HX-Request": "true"}
    )
    assert partial.status_code == 200
    assert_security_headers(partial, "technician_console.new_session")


def test_a_server_error_carries_them(app):
    def broken():
        raise RuntimeError("boom")

    app.add_url_rule("/broken-for-test", "broken", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = app.test_client().get("/broken-for-test", base_url=HTTPS)
    assert response.status_code == 500
    assert_security_headers(response, "broken")


def test_plain_http_gets_no_hsts_and_plain_sockets(app, client):
    response = client.get("/login")
    assert response.status_code == 200
    assert_security_headers(response, "auth.login", secure=False)


def test_hsts_behind_a_trusted_proxy_and_can_be_switched_off(app):
    from lens import network

    app.config["LENS_TRUSTED_PROXIES"] = 1
    network.init_app(app)
    client = app.test_client()
    proxied = client.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert_security_headers(proxied, "auth.login", secure=True)

    app.config["LENS_HSTS_SECONDS"] = 0
    response = client.get("/login", base_url=HTTPS)
    assert "Strict-Transport-Security" not in response.headers


def test_images_may_come_from_the_company_logo_origin_where_it_is_shown(app, console, client):
    app.config["LENS_COMPANY_LOGO_URL"] = "https://cdn.example.com/brand/logo.png"
    start = client.get("/", base_url=HTTPS)
    assert 'src="https://cdn.example.com/brand/logo.png"' in start.text
    img_src = policy_of(start)["img-src"].split()
    assert img_src == ["'self'", "data:", "https://cdn.example.com"]
    # pages without the logo do not widen the policy
    assert (
        "cdn.example.com" not in console.client.get("/console/").headers["Content-Security-Policy"]
    )


def test_a_logo_that_is_not_a_web_address_adds_no_origin(app, client):
    app.config["LENS_COMPANY_LOGO_URL"] = "javascript:alert(1)"
    assert policy_of(client.get("/"))["img-src"] == "'self' data:"


def policy_of(response) -> dict[str, str]:
    parts = response.headers["Content-Security-Policy"].split(";")
    return dict(part.strip().split(" ", 1) for part in parts)
