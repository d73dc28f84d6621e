"""What the consoles list."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Select, or_, select

from lens.extensions import db
from lens.sessions.models import LIVE_STATES, LensSession
from lens.timeutil import now_utc

RECENT = timedelta(hours=1)


def technician_sessions(technician_id: int, now: datetime) -> Select[tuple[LensSession]]:
    """The technician's live sessions and those that ended within the last hour."""
    return (
        select(LensSession)
        .where(
            LensSession.technician_id == technician_id,
            or_(LensSession.state.in_(LIVE_STATES), LensSession.ended_at >= now - RECENT),
        )
        .order_by(LensSession.created_at.desc())
    )


def sessions_for_list(technician_id: int) -> list[LensSession]:
    """The rows of a technician's session list, now."""
    return list(db.session.scalars(technician_sessions(technician_id, now_utc())))
