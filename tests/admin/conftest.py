"""Helpers for the Admin Center's tests (the administrator's fixtures are in tests/conftest.py)."""

from __future__ import annotations

from flask import Flask

from lens.auth.models import Technician, TechnicianGroup
from lens.extensions import db


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
