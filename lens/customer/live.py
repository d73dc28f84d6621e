"""The customer's status screen, pushed over the WebSocket."""

from __future__ import annotations

import logging
import time

from flask import current_app, render_template
from sqlalchemy.exc import SQLAlchemyError

from lens.captures.records import open_recording
from lens.events.publishing import session_topic
from lens.extensions import db
from lens.sessions import lifecycle
from lens.sessions.models import LensSession, SessionState
from lens.timeutil import now_utc

log = logging.getLogger(__name__)

WAIT_SECONDS = 5.0
SEEN_EVERY_SECONDS = 30.0  # well inside LENS_CUSTOMER_GONE_MINUTES


def stream_status(ws, session_id: int) -> None:
    """Send the status screen whenever the state changes, until the session or socket ends."""
    bus = current_app.extensions["lens.events"]
    subscription = bus.subscribe([session_topic(session_id)])
    last_seen = None

    def push() -> bool:
        """Send the screen if the state (or recording) changed; False once the session is over."""
        nonlocal last_seen
        db.session.rollback()  # read what was just committed
        lens_session = db.session.get(LensSession, session_id)
        if lens_session is None:
            return False
        # the customer is told while the session is being recorded
        seen = (lens_session.state, open_recording(db.session, session_id) is not None)
        if seen != last_seen:
            last_seen = seen
            if lens_session.state != SessionState.CONNECTING:  # the join steps are the page's
                ws.send(render_template("customer/_status.html", s=lens_session, oob=True))
        return lens_session.is_live

    seen_at = 0.0

    def still_here() -> None:
        """Tell the sweep that the customer's page is open, every SEEN_EVERY_SECONDS."""
        nonlocal seen_at
        if time.monotonic() - seen_at >= SEEN_EVERY_SECONDS:
            seen_at = time.monotonic()
            try:
                lifecycle.customer_seen(db.session, session_id, now_utc())
                db.session.commit()
            except SQLAlchemyError:  # a busy database: the next beat comes in half a minute
                db.session.rollback()
                log.warning("could not mark session %s seen", session_id, exc_info=True)

    try:
        # first the state as it is: a change before the subscription is not lost
        live = push()
        while live and ws.connected:
            still_here()
            if subscription.get(timeout=WAIT_SECONDS) is not None:
                live = push()
    finally:
        subscription.close()
        db.session.remove()
