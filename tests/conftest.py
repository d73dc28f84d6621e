"""Shared fixtures: an app on a temporary SQLite file, clients, technicians, log-in."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from lens import create_app
from lens.auth.models import Technician
from lens.events import InProcessBus
from lens.extensions import db, limiter

TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|"X-CSRFToken": "([^"]+)"')
PASSWORD = "correct horse battery"


@pytest.fixture
def app(tmp_path, monkeypatch) -> Iterator[Flask]:
    monkeypatch.setenv("LENS_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'lens.db'}",
            "LENS_PASSWORD_METHOD": "pbkdf2:sha256:1",
            "LENS_EVENT_BUS": InProcessBus(),
            "RATELIMIT_STORAGE_URI": "memory://",
            "SERVER_NAME": None,
        }
    )
    with app.app_context():
        db.create_all()
        limiter.reset()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


def csrf_from(html: str) -> str:
    """The CSRF token a page carries (form field or HTMX header)."""
    match = TOKEN.search(html)
    assert match, "page has no CSRF token"
    return match.group(1) or match.group(2)


def add_technician(app: Flask, name: str, email: str, **fields) -> int:
    with app.app_context():
        technician = Technician(name=name, email=email, **fields)
        technician.set_password(PASSWORD, "pbkdf2:sha256:1")
        db.session.add(technician)
        db.session.commit()
        return technician.id


class Console:
    """A logged-in technician's browser, through the test client."""

    def __init__(self, client: FlaskClient, prefix: str = "/console") -> None:
        self.client = client
        self.prefix = prefix
        self.token = ""

    def login(self, email: str, password: str = PASSWORD):
        page = self.client.get("/login")
        response = self.client.post(
            "/login",
            data={"email": email, "password": password, "csrf_token": csrf_from(page.text)},
        )
        if response.status_code == 302:
            self.token = csrf_from(self.client.get(self.prefix + "/").text)
        return response

    def post(self, path: str, data: dict | None = None, **kwargs):
        headers = {"HX-Request": "true", "X-CSRFToken": self.token}
        return self.client.post(self.prefix + path, data=data or {}, headers=headers, **kwargs)

    def create_session(self, name: str = "Jane Customer", **fields) -> dict:
        response = self.post("/sessions", {"name": name, **fields})
        assert response.status_code == 201, response.text
        pin = re.search(r'data-pin="(\d{6})"', response.text).group(1)
        return {"pin": pin, "response": response}


@pytest.fixture
def technician(app: Flask) -> int:
    return add_technician(app, "Tess Technician", "tess@example.com")


@pytest.fixture
def console(client: FlaskClient, technician: int) -> Console:
    con = Console(client)
    assert con.login("tess@example.com").status_code == 302
    return con
