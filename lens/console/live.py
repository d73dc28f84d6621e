"""The console's live session list: HTML fragments pushed over the WebSocket."""

from __future__ import annotations

from flask import current_app, render_template

from lens.auth.models import Technician
from lens.console.queries import sessions_for_list
from lens.events.publishing import technician_topic
from lens.extensions import db
from lens.features import allowed_features
from lens.sessions.models import LensSession

WAIT_SECONDS = 5.0


def render_changes(technician: Technician, session_id: int | None) -> str:
    """The list, and the changed session's panel, as out-of-band swaps."""
    html = render_template(
        "console/_session_rows.html",
        sessions=sessions_for_list(technician.id),
        custom_labels=current_app.config["LENS_CUSTOM_FIELDS"],
        oob=True,
    )
    lens_session = db.session.get(LensSession, session_id) if session_id else None
    if lens_session is not None and lens_session.technician_id == technician.id:
        features = allowed_features(lens_session.console, technician.group_permissions())
        for partial in ("console/_session_head.html", "console/_session_log.html"):
            html += render_template(partial, s=lens_session, features=features, oob=True)
    elif lens_session is not None:  # transferred away: its open panel says where it went
        html += render_template(
            "console/_transferred.html", s=lens_session, receiver=lens_session.technician, oob=True
        )
    return html


def stream_session_changes(ws, technician: Technician) -> None:
    """Until the socket closes, send the fragments for every change of the technician's."""
    bus = current_app.extensions["lens.events"]
    subscription = bus.subscribe([technician_topic(technician.id)])
    try:
        # first the list as it is now: a change between the page's render and the
        # subscription above would otherwise be missed
        db.session.rollback()
        ws.send(render_changes(technician, None))
        while ws.connected:
            message = subscription.get(timeout=WAIT_SECONDS)
            if message is None:
                continue
            db.session.rollback()  # end the old snapshot: read what was just committed
            ws.send(render_changes(technician, message.get("session_id")))
    finally:
        subscription.close()
        db.session.remove()
