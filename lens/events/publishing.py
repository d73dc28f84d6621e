"""Publish a change for every Lens session touched by a commit.

The domain only writes rows; this listener turns committed changes into bus messages so
that no caller can forget to notify the open consoles and customer pages.
"""

from __future__ import annotations

import logging

from flask import current_app, has_app_context
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from lens.events.bus import BusUnavailable
from lens.sessions.models import LensSession, SessionEvent

log = logging.getLogger(__name__)

_KEY = "lens.touched"


def technician_topic(technician_id: int) -> str:
    return f"technician:{technician_id}"


def session_topic(session_id: int) -> str:
    return f"session:{session_id}"


class _Touched:
    """What a transaction changed of one Lens session."""

    def __init__(self) -> None:
        self.technicians: set[int] = set()
        self.changed = False  # a column of the session row (its state, its technician…)
        self.events = False  # a new line in its log
        self.captures = False  # a recording started or stopped (the console's captures panel)


# Columns whose change no list or panel shows: the tools' state, bookkeeping.
QUIET = frozenset({"tools", "updated_at", "customer_seen_at", "customer_link"})


def _shown_columns_changed(lens_session: LensSession) -> bool:
    state = inspect(lens_session)
    return any(
        attr.history.has_changes()
        for attr in state.attrs
        if attr.key not in QUIET and attr.key in state.mapper.columns
    )


def _after_flush(session: Session, flush_context: object) -> None:
    """Note the sessions a flush touched (after it, so that new rows have their ids)."""
    touched: dict[int, _Touched] = session.info.setdefault(_KEY, {})
    for obj in list(session.new) + list(session.dirty):
        if isinstance(obj, LensSession) and obj.id is not None:
            entry = touched.setdefault(obj.id, _Touched())
            history = inspect(obj).attrs.technician_id.history
            entry.technicians.update(t for t in (*history.deleted, obj.technician_id) if t)
            if obj in session.new or _shown_columns_changed(obj):
                entry.changed = True
        elif isinstance(obj, SessionEvent) and obj.lens_session is not None:
            owner = obj.lens_session
            if owner.id is not None:
                entry = touched.setdefault(owner.id, _Touched())
                entry.technicians.add(owner.technician_id)
                entry.events = True
                if obj.kind.startswith("recording_"):
                    entry.captures = True


def _publish(session: Session) -> None:
    touched: dict[int, _Touched] | None = session.info.pop(_KEY, None)
    if not touched or not has_app_context():
        return
    bus = current_app.extensions["lens.events"]
    try:
        for session_id, entry in touched.items():
            if not (entry.changed or entry.events):  # only quiet columns (the tools' state)
                continue
            message = {
                "type": "session",
                "session_id": session_id,
                "changed": entry.changed,
                "events": entry.events,
                "captures": entry.captures,
            }
            bus.publish(session_topic(session_id), message)
            for technician_id in entry.technicians:
                bus.publish(technician_topic(technician_id), message)
    except BusUnavailable:
        # the change is committed; the open pages re-read everything when the bus is back
        # (its listener hands them a resync), so the request that made it does not fail
        log.warning("event bus unavailable: %d session change(s) not pushed", len(touched))


def _forget(session: Session) -> None:
    session.info.pop(_KEY, None)


_installed = False


def install() -> None:
    """Listen on every SQLAlchemy session once per process."""
    global _installed
    if _installed:
        return
    event.listen(Session, "after_flush", _after_flush)
    event.listen(Session, "after_commit", _publish)
    event.listen(Session, "after_rollback", _forget)
    _installed = True
