"""Fixtures for screen capture and recording: a fake sidecar client and started sessions."""

from __future__ import annotations

import fractions
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import pytest
from flask import Flask
from sqlalchemy import func, select

from lens import features
from lens.auth.models import Technician, TechnicianGroup
from lens.captures.models import Recording, Snapshot
from lens.extensions import db
from lens.sessions.models import LensSession, SessionEvent
from lens.signaling.control import MediaRefused, MediaUnavailable
from tests.conftest import Console, Customer


def pattern_picture(width: int, height: int, codec: str, pixel_format: str) -> bytes:
    """A real picture of a test pattern, encoded by codec in pixel_format."""
    with av.open(f"testsrc2=size={width}x{height}:rate=1", format="lavfi") as source:
        picture = next(source.decode(video=0)).reformat(format=pixel_format)
    encoder = av.CodecContext.create(codec, "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, pixel_format
    encoder.time_base = fractions.Fraction(1, 1)
    picture.pts = 0
    return b"".join(bytes(p) for p in [*encoder.encode(picture), *encoder.encode(None)])


def make_png(width: int, height: int) -> bytes:
    """A real PNG of a test pattern, as the sidecar would send it."""
    return pattern_picture(width, height, "png", "rgb24")


def make_jpeg(width: int, height: int) -> bytes:
    """A real JPEG of a test pattern, as a phone's camera would give it."""
    return pattern_picture(width, height, "mjpeg", "yuvj420p")


@dataclass
class FakeMedia:
    """Stands in for the sidecar's client: records each call; can be down or refuse."""

    recordings_root: Path
    size: tuple[int, int] = (352, 288)
    down: bool = False
    refuse: bool = False
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def _record(self, *call: Any) -> None:
        if self.down:
            raise MediaUnavailable("connection refused")
        if self.refuse:
            raise MediaRefused("the session's feature set does not include it")
        self.calls.append(call)

    def snapshot(self, session_id: int) -> tuple[bytes, int, int]:
        self._record("snapshot", session_id)
        return make_png(*self.size), *self.size

    def recording(self, session_id: int, action: str, path: str | None = None) -> dict:
        self._record("recording", session_id, action)
        if action == "start":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(b"\x1aE\xdf\xa3" + b"\0" * 4096)  # a WebM's first bytes
            return {"recording": True, "path": path}
        return {"recording": False, "duration": 12.5, "size": 4100}

    def close(self, session_id: int) -> None:
        self._record("close", session_id)


@pytest.fixture
def media(app: Flask) -> FakeMedia:
    fake = FakeMedia(Path(app.config["LENS_RECORDINGS_PATH"]))
    app.extensions["lens.media"] = fake
    return fake


def session_id_of(app: Flask, pin: str) -> int:
    with app.app_context():
        return db.session.scalar(select(LensSession.id).where(LensSession.pin == pin))


def started_phone(
    app: Flask, console: Console, make_customer, name: str = "Jane Customer", **phone
) -> tuple[int, Customer]:
    """A session of the console's technician, joined, accepted and started, and its phone
    (`phone`: make_customer's arguments)."""
    pin = console.create_session(name)["pin"]
    session_id = session_id_of(app, pin)
    customer = make_customer(**phone)
    assert customer.join(pin).status_code in (200, 302, 303)
    assert customer.accept().status_code == 200
    assert console.post(f"/sessions/{session_id}/start").status_code == 200
    return session_id, customer


def started_session(app: Flask, console: Console, make_customer) -> int:
    """A session of the console's technician, joined, accepted and started."""
    return started_phone(app, console, make_customer)[0]


@pytest.fixture
def active(app, console, make_customer, media) -> int:
    """An active Technician Console session."""
    return started_session(app, console, make_customer)


def restrict(app: Flask, email: str, without: set[str]) -> None:
    """Put the technician in a group with every permission but `without`."""
    with app.app_context():
        group = TechnicianGroup(name=f"without {'+'.join(sorted(without))}")
        group.permissions = sorted(features.ALL - without)
        technician = db.session.scalar(select(Technician).where(Technician.email == email))
        technician.group = group
        db.session.commit()


def counts(app: Flask, session_id: int) -> tuple[int, int, int]:
    """Events, snapshots and recordings of the session."""
    with app.app_context():
        return tuple(
            db.session.scalar(select(func.count()).where(model.session_id == session_id))
            for model in (SessionEvent, Snapshot, Recording)
        )
