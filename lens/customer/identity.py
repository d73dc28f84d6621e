"""Which device is this, and which session did it join (kept in the signed cookie)."""

from __future__ import annotations

import secrets

from flask import g, session

from lens.extensions import db
from lens.sessions import lifecycle
from lens.sessions.models import LensSession

_DEVICE = "lens_device"
_JOINED = "lens_joined"


def device_key() -> str:
    """This browser's random device key, made on first visit."""
    key = session.get(_DEVICE)
    if not key:
        key = secrets.token_urlsafe(32)
        session[_DEVICE] = key
        session.permanent = True
    return key


def remember_joined(lens_session: LensSession) -> None:
    """This device now belongs to lens_session."""
    session[_JOINED] = lens_session.id


def joined_session() -> LensSession | None:
    """The session this device joined, if the device key still matches it."""
    session_id = session.get(_JOINED)
    if not isinstance(session_id, int) or not session.get(_DEVICE):
        return None
    lens_session = lifecycle.customer_session(db.session, session_id, session[_DEVICE])
    if lens_session is not None:
        g.lens_session_id = lens_session.id  # the log lines of this request name it (lens.logs)
    return lens_session
