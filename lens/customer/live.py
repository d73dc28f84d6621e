"""The customer's status screen, pushed over the WebSocket."""

from __future__ import annotations

from flask import current_app, render_template

from lens.events.publishing import session_topic
from lens.extensions import db
from lens.sessions.models import LensSession, SessionState

WAIT_SECONDS = 5.0


def stream_status(ws, session_id: int) -> None:
    """Send the status screen whenever the state changes, until the session or socket ends."""
    bus = current_app.extensions["lens.events"]
    subscription = bus.subscribe([session_topic(session_id)])
    last_state = None

    def push() -> bool:
        """Send the screen if the state changed; False once the session is over."""
        nonlocal last_state
        db.session.rollback()  # read what was just committed
        lens_session = db.session.get(LensSession, session_id)
        if lens_session is None:
            return False
        if lens_session.state != last_state:
            last_state = lens_session.state
            if lens_session.state != SessionState.CONNECTING:  # the join steps are the page's
                ws.send(render_template("customer/_status.html", s=lens_session, oob=True))
        return lens_session.is_live

    try:
        # first the state as it is: a change before the subscription is not lost
        live = push()
        while live and ws.connected:
            if subscription.get(timeout=WAIT_SECONDS) is not None:
                live = push()
    finally:
        subscription.close()
        db.session.remove()
