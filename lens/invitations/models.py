"""What was sent to whom: one Invitation row per SMS, e-mail or link given to a customer."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lens.extensions import db
from lens.sessions.models import LensSession
from lens.timeutil import now_utc


class InvitationOutcome(StrEnum):
    """What became of an invitation."""

    SENT = "sent"  # the SMS provider or the e-mail server accepted it
    FAILED = "failed"  # refused, unreachable or too slow; error says why
    SHOWN = "shown"  # handed to the technician: a mailto: link, a join link to copy


class Invitation(db.Model):
    """One invitation of a session: channel, destination, time and outcome."""

    __tablename__ = "invitation"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("lens_session.id"), index=True)
    channel: Mapped[str] = mapped_column(String(10))
    # The full address, for the record; lists and logs show only masked_destination.
    destination: Mapped[str] = mapped_column(String(254), default="")
    masked_destination: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=now_utc)
    outcome: Mapped[str] = mapped_column(String(10))
    error: Mapped[str | None] = mapped_column(Text)

    lens_session: Mapped[LensSession] = relationship(back_populates="invitations")
