"""Fixtures for the Admin Center: an administrator's browser (test client) and a technician."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from lens.auth.models import Technician, TechnicianGroup
from lens.extensions import db
from tests.conftest import Console, add_admin, csrf_from, totp_code


class Admin:
    """A logged-in administrator's browser."""

    def __init__(self, client: FlaskClient, app: Flask, admin_id: int) -> None:
        self.client = client
        self.app = app
        self.admin_id = admin_id
        self.token = ""

    def login(self, email: str = "ada@example.com") -> Admin:
        con = Console(self.client, prefix="/console")
        response = con.login(email, code=lambda: totp_code(self.app, self.admin_id))
        assert response.status_code == 302, response.text
        self.token = csrf_from(self.client.get("/admin/technicians").text)
        return self

    def get(self, path: str, **kwargs):
        return self.client.get("/admin" + path, **kwargs)

    def post(self, path: str, data: dict | None = None, **kwargs):
        return self.client.post(
            "/admin" + path, data={"csrf_token": self.token, **(data or {})}, **kwargs
        )


@pytest.fixture
def admin_id(app: Flask) -> int:
    return add_admin(app)


@pytest.fixture
def admin(app: Flask, admin_id: int) -> Admin:
    return Admin(app.test_client(), app, admin_id).login()


def make_group(app: Flask, name: str, permissions) -> int:
    with app.app_context():
        group = TechnicianGroup(name=name, permissions=sorted(permissions))
        db.session.add(group)
        db.session.commit()
        return group.id


def put_in_group(app: Flask, technician_id: int, group_id: int | None) -> None:
    with app.app_context():
        db.session.get(Technician, technician_id).group_id = group_id
        db.session.commit()
