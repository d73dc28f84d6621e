"""The customer's status screen, pushed over the WebSocket."""

from __future__ import annotations

from flask import current_app, render_template

from lens.events.publishing import session_topic
from lens.extensions import db
from lens.sessions.models import LensSession, SessionState

WAIT_SECONDS = 5.0


def stream_status(ws, session_id: int) -> None:
    """Until the socket closes or the session ends, send the status screen on each change."""
    bus = current_app.extensions["lens.events"]
    subscription = bus.subscribe([session_topic(session_id)])
    last_state = None
    try:
        while ws.connected:
            message = subscription.get(timeout=WAIT_SECONDS)
            if message is None:
                continue
            db.session.rollback()
            lens_session = db.session.get(LensSession, session_id)
            if lens_session is None or lens_session.state == last_state:
                continue
            last_state = lens_session.state
            if lens_session.state == SessionState.CONNECTING:
                continue
            ws.send(render_template("customer/_status.html", s=lens_session, oob=True))
    finally:
        subscription.close()
        db.session.remove()
