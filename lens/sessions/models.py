"""The Lens session and its log."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lens.auth.models import Technician
from lens.extensions import db
from lens.timeutil import now_utc

if TYPE_CHECKING:
    from lens.invitations.models import Invitation


class SessionState(StrEnum):
    """The states of DESIGN.md's session diagram."""

    CREATED = "created"
    CONNECTING = "connecting"
    WAITING = "waiting"
    ACTIVE = "active"
    ON_HOLD = "on_hold"
    EXPIRED = "expired"
    CLOSED = "closed"


LIVE_STATES = frozenset(
    {
        SessionState.CREATED,
        SessionState.CONNECTING,
        SessionState.WAITING,
        SessionState.ACTIVE,
        SessionState.ON_HOLD,
    }
)
HANDLING_STATES = frozenset({SessionState.ACTIVE, SessionState.ON_HOLD})
# Where the customer's presence is shown: once the customer has accepted, until the end.
PRESENCE_STATES = frozenset({SessionState.WAITING, SessionState.ACTIVE, SessionState.ON_HOLD})

# The one-active rule lives in the database too: at most one row per technician in a
# handling state. SQLite and PostgreSQL both support partial unique indexes.
_HANDLING_SQL = text("state IN ('active', 'on_hold')")


class Channel(StrEnum):
    """How the customer was invited."""

    PIN = "pin"
    SMS = "sms"
    EMAIL = "email"
    LINK = "link"


class LensSession(db.Model):
    """One support session between a technician and a customer's phone."""

    __tablename__ = "lens_session"
    __table_args__ = (
        Index(
            "uq_lens_session_one_active_per_technician",
            "technician_id",
            unique=True,
            sqlite_where=_HANDLING_SQL,
            postgresql_where=_HANDLING_SQL,
        ),
        Index("ix_lens_session_technician_state", "technician_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(12), unique=True)
    customer_name: Mapped[str] = mapped_column(String(120))
    phone: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(254))
    ticket_id: Mapped[str | None] = mapped_column(String(64))
    custom_fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The group's permissions when the session began (lens.features): an Admin Center
    # change applies to sessions started after it. NULL on sessions from before the copy.
    permissions: Mapped[list[str] | None] = mapped_column(JSON)
    technician_id: Mapped[int] = mapped_column(ForeignKey("technician.id"))
    console: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(10))
    # The PIN while it can still be used; cleared when used, expired or closed, so that a
    # plain unique index keeps live PINs unique (NULLs never collide).
    pin: Mapped[str | None] = mapped_column(String(6), unique=True)
    pin_expires_at: Mapped[datetime]
    join_token: Mapped[str] = mapped_column(String(64), unique=True)
    # The New session form's one-time key: a repeated POST finds this session, not a new one.
    request_key: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)
    customer_device: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=SessionState.CREATED)
    end_reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=now_utc)
    connected_at: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    # When the customer's page last said it was open (its status socket, every half minute):
    # a waiting session whose customer is long gone is closed by the sweep.
    customer_seen_at: Mapped[datetime | None]
    # Presence: the id of the customer's page socket that came last (a reconnect replaces
    # it), and when that page went away for longer than the grace period (None: it is there,
    # or never opened). The lists and panels show a session whose customer left.
    customer_link: Mapped[str | None] = mapped_column(String(32))
    customer_left_at: Mapped[datetime | None]
    # What the tools left on the phone (lens.controls.state.ToolState); a change of it is
    # not a change of the session that the lists show.
    tools: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=dict)
    # the media sidecar the session's legs go to, when several serve the site (lens.sidecars)
    media_sidecar: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=now_utc, onupdate=now_utc)

    technician: Mapped[Technician] = relationship()
    events: Mapped[list[SessionEvent]] = relationship(
        back_populates="lens_session", order_by="SessionEvent.id", cascade="all, delete-orphan"
    )
    # Defined in lens.invitations.models, which the app factory imports.
    invitations: Mapped[list[Invitation]] = relationship(
        back_populates="lens_session", order_by="Invitation.id", cascade="all, delete-orphan"
    )

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def customer_away(self) -> bool:
        """The customer's page has closed (past the grace period) and has not come back."""
        return self.customer_left_at is not None and self.state in PRESENCE_STATES

    @property
    def custom_field(self) -> str:
        """The first custom field's value, for the session list's column."""
        values = list((self.custom_fields or {}).values())
        return str(values[0]) if values else ""


class SessionEvent(db.Model):
    """One line of a session's log: who did what, when."""

    __tablename__ = "session_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("lens_session.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=now_utc)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(Text)
    # What the log line says, as data (lens.console.log_text reads it): a tool's setting,
    # an invitation's channel and masked destination, a transfer's two technicians.
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    lens_session: Mapped[LensSession] = relationship(back_populates="events")
