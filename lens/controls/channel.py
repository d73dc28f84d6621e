"""The control channel over flask-sock: each side's socket, relayed through the event bus.

A message from one side is checked (lens.controls.messages), handled (a handler may store
it, e.g. chat), logged as a SessionEvent, and published on the session's control topic;
each side's socket passes on what is meant for it. Several web processes work alike with
the Redis bus.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import select

from lens.controls.messages import (
    CUSTOMER,
    MAX_CHAT,
    REGISTRY,
    TECHNICIAN,
    ControlMessage,
    ControlRefused,
    check_feature,
    parse_message,
)
from lens.controls.state import TRACKED, ToolState
from lens.database import DatabaseBusy, retrying
from lens.extensions import db
from lens.features import features_of
from lens.sessions import lifecycle
from lens.sessions.models import LIVE_STATES, LensSession, SessionEvent
from lens.timeutil import now_utc

log = logging.getLogger(__name__)

Handler = Callable[[LensSession, str, dict[str, Any]], dict[str, Any]]


class ControlHandlers:
    """What the app does with each kind of message beyond passing it on (built in init_app)."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.echoed: set[str] = set()  # kinds both sides see (chat), whoever sent them

    def add(self, kind: str, handler: Handler, *, echo: bool = False) -> None:
        """Store or act on `kind` with handler; with echo the sender gets it back too."""
        self.handlers[kind] = handler
        if echo:
            self.echoed.add(kind)

    def delivers(self, side: str, message: dict[str, Any]) -> bool:
        """Whether side's page receives a published message."""
        sender, kind = message.get("from", ""), message.get("type", "")
        other = CUSTOMER if side == TECHNICIAN else TECHNICIAN
        return sender == other or kind in self.echoed


def control_handlers(app=None) -> ControlHandlers:
    """The app's handlers (lens.factory puts them in app.extensions)."""
    return (app or current_app).extensions["lens.control_handlers"]


def controls_topic(session_id: int) -> str:
    return f"controls:{session_id}"


def refusal_text(reason: str) -> str:
    if reason == "not_allowed":
        return _("This tool is not available in this session.")
    if reason == "session_over":
        return _("The session has ended.")
    if reason == "too_long":
        return _("The message is too long: at most %(count)d characters.", count=MAX_CHAT)
    if reason == "empty":
        return _("Type a message first.")
    if reason == "not_open":
        return _("Open the session first.")
    if reason == "busy":
        return _("The server is busy. Your message was not sent; try again.")
    return _("That message could not be sent.")


def receive_control(
    session_id: int,
    side: str,
    actor: str,
    allowed: frozenset[str],
    message: ControlMessage | dict[str, Any],
    console: str | None = None,
) -> dict[str, Any] | None:
    """Store, log and publish one message from a page; the error to send back, if any.

    A page's message was checked by its schema (lens.sockets.messages); a dict (from code
    that is not a page) is checked here by the same models. The session's features decide
    whether it may be used.

    `console` is the technician's console in use (the customer's side: the session's own).

    A busy database is waited for (LENS_DB_BUSY_SECONDS); if it stays busy the sender is
    told to try again and nothing was stored or passed on.
    """
    app = current_app._get_current_object()
    try:
        if isinstance(message, ControlMessage):
            kind, payload = message.type, message.payload()
            if side not in REGISTRY[kind].senders:
                raise ControlRefused("bad_message")
            check_feature(kind, allowed)
        else:
            kind, payload = parse_message(message, side, allowed)
        published = retrying(
            db.session,
            lambda: handle(session_id, side, actor, kind, payload, console),
            app.config["LENS_DB_BUSY_SECONDS"],
        )
    except ControlRefused as exc:
        return refusal(exc.reason)
    except DatabaseBusy:
        return refusal("busy")
    app.extensions["lens.events"].publish(controls_topic(session_id), published)
    return None


def refusal(reason: str) -> dict[str, Any]:
    """The error message a page gets for a refused control message."""
    return {"type": "error", "reason": reason, "message": refusal_text(reason)}


def check_still_allowed(
    lens_session: LensSession, side: str, actor: str, kind: str, console: str | None = None
) -> None:
    """Refuse what the session no longer permits: a socket outlives transfers.

    A technician's socket speaks only for the session's technician now (not one who
    transferred it away), and a feature is checked again by lens.features.features_of
    (a transfer gives the session the receiver's permissions).
    """
    technician = lens_session.technician
    if side == TECHNICIAN and actor != lifecycle.technician_actor(technician):
        raise ControlRefused("not_allowed")
    feature = REGISTRY[kind].feature
    allowed = features_of(lens_session, console or lens_session.console)
    if feature is not None and feature not in allowed:
        raise ControlRefused("not_allowed")


def handle(
    session_id: int,
    side: str,
    actor: str,
    kind: str,
    payload: dict[str, Any],
    console: str | None = None,
) -> dict[str, Any]:
    """Store and log one checked message; return what to publish."""
    db.session.rollback()  # read the session as it is now
    lens_session = db.session.get(LensSession, session_id)
    if lens_session is None or lens_session.state not in LIVE_STATES:
        raise ControlRefused("session_over")
    check_still_allowed(lens_session, side, actor, kind, console)
    handler = control_handlers().handlers.get(kind)
    if handler is not None:
        payload = handler(lens_session, actor, payload)
    if kind in TRACKED:
        lens_session.tools = (
            ToolState.from_column(lens_session.tools).after(kind, payload).to_column()
        )
    logged = kind not in UNLOGGED
    if logged and (kind not in REPORTS or _last_data(lens_session, kind) != payload):
        lifecycle.record_event(
            db.session,
            lens_session,
            kind,
            actor=actor,
            now=now_utc(),
            detail=json.dumps(payload, ensure_ascii=False)[:500],
            data=payload,
        )
    db.session.commit()
    return {"type": kind, "from": side, **payload}


# Kept elsewhere or not worth a log line: chat is in the chat history; a drawing lasts only
# until it is erased. Neither writes a log row (each would reach every open console).
UNLOGGED = frozenset({"chat", "draw"})

# What the phone reports about itself (again on each start): logged when it changes.
REPORTS = frozenset({"capabilities"})


def _last_data(lens_session: LensSession, kind: str) -> dict[str, Any] | None:
    return db.session.scalar(
        select(SessionEvent.data)
        .where(SessionEvent.session_id == lens_session.id, SessionEvent.kind == kind)
        .order_by(SessionEvent.id.desc())
        .limit(1)
    )
