"""A chat message, kept with its session."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lens.auth.models import Technician
from lens.extensions import db
from lens.sessions.models import LensSession
from lens.timeutil import now_utc


class ChatMessage(db.Model):
    """One line of a session's chat, written by the technician or the customer."""

    __tablename__ = "chat_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("lens_session.id"), index=True)
    author: Mapped[str] = mapped_column(String(16))  # "technician" or "customer"
    technician_id: Mapped[int | None] = mapped_column(ForeignKey("technician.id"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=now_utc)

    lens_session: Mapped[LensSession] = relationship()
    technician: Mapped[Technician | None] = relationship()

    @property
    def author_name(self) -> str | None:
        """The technician's name; None for the customer."""
        return self.technician.name if self.technician else None


def session_chat(session_id: int):
    """The session's chat, oldest first."""
    return select(ChatMessage).where(ChatMessage.session_id == session_id).order_by(ChatMessage.id)
