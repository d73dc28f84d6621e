"""Fixtures for the security tests: a small site with everyone the authorization matrix names,
and the web process as users meet it (gunicorn, gevent worker: tests/webtier's make_site).

Technicians are logged in through the test client's session (Flask-Login's login_user
in a request, its cookie handed to the client), not through the log-in form; the
administrator, whose second step cannot be skipped, logs in with tests/conftest.py's shared
TOTP helper.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from flask import Flask
from flask import session as flask_session
from flask.testing import FlaskClient
from flask_login import login_user
from hypothesis import settings
from sqlalchemy import select

from lens import features
from lens.auth.models import Technician, TechnicianGroup
from lens.extensions import db
from lens.sessions.models import LensSession
from tests.conftest import Console, Customer, add_admin, add_technician, csrf_from, totp_code
from tests.security.junk import Tracebacks
from tests.webtier.conftest import make_site

__all__ = ["make_site"]

# In CI the property tests draw the same examples on every run (a red CI is then a change,
# not a new random draw); elsewhere each run draws new ones and keeps failures to replay.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ANONYMOUS = "anonymous"
CUSTOMER_A = "customer_a"
CUSTOMER_B = "customer_b"
TECHNICIAN = "technician"
OTHER_TECHNICIAN = "other_technician"
WEB_CONSOLE_USER = "web_console_user"
ADMIN = "admin"
ROLES = (
    ANONYMOUS,
    CUSTOMER_A,
    CUSTOMER_B,
    TECHNICIAN,
    OTHER_TECHNICIAN,
    WEB_CONSOLE_USER,
    ADMIN,
)


def log_in(app: Flask, client: FlaskClient, technician_id: int) -> None:
    """Give client the session cookie of a log-in (whatever a log-in stores in it)."""
    with app.test_request_context():
        login_user(db.session.get(Technician, technician_id))
        values = dict(flask_session)
        db.session.remove()
    with client.session_transaction() as stored:
        stored.update(values)


@dataclass
class World:
    """Session A (technician's) and session B (other technician's), each with its phone
    joined and the licence accepted (waiting); a Web Console user; an administrator."""

    app: Flask
    ids: dict[str, int] = field(default_factory=dict)  # technicians by role
    clients: dict[str, FlaskClient] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # each client's CSRF token
    session_a: int = 0
    session_b: int = 0

    def cookie(self, role: str) -> str:
        """The role's Cookie header, for a live server's socket."""
        cookie = self.clients[role].get_cookie("session")
        return f"session={cookie.value}" if cookie is not None else ""


def _new_session(app: Flask, console: Console, customer: Customer, name: str) -> int:
    pin = console.create_session(name)["pin"]
    with app.app_context():
        session_id = db.session.scalar(select(LensSession.id).where(LensSession.pin == pin))
    assert customer.join(pin).status_code == 303
    assert customer.accept().status_code == 200
    return session_id


@pytest.fixture
def world(app: Flask) -> World:
    world = World(app)
    world.ids[TECHNICIAN] = add_technician(app, "Tess Technician", "tess@example.com")
    world.ids[OTHER_TECHNICIAN] = add_technician(app, "Otto Other", "otto@example.com")
    world.ids[ADMIN] = add_admin(app)  # two-step verification on, as admins must have it
    with app.app_context():
        web_only = TechnicianGroup(
            name="Web Console only",
            permissions=sorted(features.ALL - {features.CONSOLE_TECHNICIAN}),
        )
        db.session.add(web_only)
        db.session.commit()
        group_id = web_only.id
    world.ids[WEB_CONSOLE_USER] = add_technician(
        app, "Wendy Web", "wendy@example.com", group_id=group_id
    )
    for role in ROLES:
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"198.51.100.{10 + ROLES.index(role)}"
        world.clients[role] = client
        if role == ADMIN:  # the second step cannot be skipped: the shared helper answers it
            response = Console(client).login(
                "ada@example.com", code=lambda: totp_code(app, world.ids[ADMIN])
            )
            assert response.status_code == 302, response.text
        if role in world.ids:
            if role != ADMIN:
                log_in(app, client, world.ids[role])
            prefix = "/web/" if role == WEB_CONSOLE_USER else "/console/"
            world.tokens[role] = csrf_from(client.get(prefix).text)
        else:
            world.tokens[role] = csrf_from(client.get("/").text)
    for owner, phone, attr in (
        (TECHNICIAN, CUSTOMER_A, "session_a"),
        (OTHER_TECHNICIAN, CUSTOMER_B, "session_b"),
    ):
        console = Console(world.clients[owner])
        console.token = world.tokens[owner]
        customer = Customer(world.clients[phone], world.clients[phone].environ_base["REMOTE_ADDR"])
        customer._token = world.tokens[phone]
        setattr(world, attr, _new_session(app, console, customer, f"Customer of {owner}"))
    return world


@pytest.fixture
def tracebacks() -> Iterator[Tracebacks]:
    """Log records that carry a traceback, from any logger and thread, during the test."""
    handler = Tracebacks()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)
