"""Fixtures for the session tools: a fake sidecar client, restricted groups, started sessions."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from flask import Flask
from sqlalchemy import func, select

from lens import features
from lens.auth.models import Technician, TechnicianGroup
from lens.chat.models import ChatMessage
from lens.extensions import db
from lens.media.testing import EncodedClip, encode_vp8_clip
from lens.sessions.models import LensSession, SessionEvent
from lens.signaling.control import MediaUnavailable
from tests.web.test_live import Browser, session_id_of


@dataclass
class FakeMedia:
    """Stands in for the sidecar's client: records each call, or fails like a dead sidecar."""

    down: bool = False
    calls: list[tuple[str, int]] = field(default_factory=list)

    def _record(self, name: str, session_id: int) -> None:
        if self.down:
            raise MediaUnavailable("connection refused")
        self.calls.append((name, session_id))

    def hold(self, session_id: int) -> None:
        self._record("hold", session_id)

    def resume(self, session_id: int) -> None:
        self._record("resume", session_id)

    def close(self, session_id: int) -> None:
        self._record("close", session_id)


@pytest.fixture(scope="session")
def vp8_clip() -> EncodedClip:
    """Half a second of VP8 for a phone peer on a real sidecar."""
    return encode_vp8_clip(seconds=0.5, keyframe_every=15)


@pytest.fixture
def media(app: Flask) -> FakeMedia:
    fake = FakeMedia()
    app.extensions["lens.media"] = fake
    return fake


def restrict(app: Flask, email: str, without: set[str]) -> None:
    """Put the technician in a group that has every permission but `without`."""
    with app.app_context():
        group = TechnicianGroup(name=f"without {'+'.join(sorted(without))} for {email}")
        group.permissions = sorted(features.ALL - without)
        technician = db.session.scalar(select(Technician).where(Technician.email == email))
        technician.group = group
        db.session.commit()


def new_session(app: Flask, tech: Browser, prefix: str = "/console", name: str = "Jane") -> int:
    """A session of tech's whose customer has joined and accepted; returns its id."""
    response = tech.post(f"{prefix}/sessions", {"name": name})
    assert response.status_code == 201, response.text
    pin = re.search(r'data-pin="(\d{6})"', response.text).group(1)
    session_id = session_id_of(app, pin)
    phone = Browser(tech.base.removeprefix("http://"))
    phone.join(pin)
    assert phone.post("/c/accept").status_code == 200
    tech.phone = phone  # the last customer's browser, for tests that use the phone's side
    return session_id


def set_state(app: Flask, session_id: int, state: str) -> None:
    """Arrange a state directly (e.g. on hold in a console that cannot put it there)."""
    with app.app_context():
        db.session.get(LensSession, session_id).state = state
        db.session.commit()


def snapshot(app: Flask, session_id: int) -> tuple:
    """What a refused action must leave as it was: state, owner, log and chat."""
    with app.app_context():
        lens_session = db.session.get(LensSession, session_id)
        events = db.session.scalar(
            select(func.count()).where(SessionEvent.session_id == session_id)
        )
        chats = db.session.scalar(select(func.count()).where(ChatMessage.session_id == session_id))
        return (lens_session.state, lens_session.technician_id, events, chats)


def chat_texts(app: Flask, session_id: int) -> list[tuple[str, str]]:
    with app.app_context():
        rows = db.session.scalars(
            select(ChatMessage).where(ChatMessage.session_id == session_id).order_by(ChatMessage.id)
        )
        return [(row.author, row.text) for row in rows]
