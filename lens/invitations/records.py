"""Invitations on the session's record: create a session once per form, send, log the outcome.

Plain Python over the models: the caller (a view) passes the database session, the values
from the form and a callable that does the actual sending.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lens.invitations.mask import mask_destination
from lens.invitations.models import Invitation, InvitationOutcome
from lens.invitations.sending import send_with_timeout
from lens.sessions import lifecycle
from lens.sessions.models import Channel, LensSession
from lens.timeutil import now_utc

EVENT_KINDS = {
    InvitationOutcome.SENT: "invite_sent",
    InvitationOutcome.FAILED: "invite_failed",
    InvitationOutcome.SHOWN: "invite_shown",
}
MAX_ERROR_LENGTH = 500


def masked(channel: str, destination: str) -> str:
    """The destination as lists and logs show it; a link has none."""
    if channel in (Channel.SMS, Channel.EMAIL) and destination:
        return mask_destination(channel, destination)
    return ""


def event_detail(channel: str, masked_destination: str, error: str | None) -> str:
    """The log line's detail: "<channel> <masked destination>", then the error on a new line."""
    head = f"{channel} {masked_destination}".rstrip()
    return f"{head}\n{error}" if error else head


def record_invitation(
    db: Session,
    lens_session: LensSession,
    *,
    channel: str,
    destination: str,
    outcome: InvitationOutcome,
    actor: str,
    now: datetime,
    error: str | None = None,
) -> Invitation:
    """Keep the invitation with its outcome and write it to the session log."""
    hidden = masked(channel, destination)
    error = error[:MAX_ERROR_LENGTH] if error else None
    invitation = Invitation(
        lens_session=lens_session,
        channel=channel,
        destination=destination,
        masked_destination=hidden,
        created_at=now,
        outcome=outcome,
        error=error,
    )
    db.add(invitation)
    lifecycle.record_event(
        db,
        lens_session,
        EVENT_KINDS[outcome],
        actor=actor,
        now=now,
        detail=event_detail(channel, hidden, error),
        data={"channel": channel, "to": hidden, "error": error},
    )
    db.flush()
    return invitation


def deliver_invitation(
    db: Session,
    lens_session: LensSession,
    *,
    channel: str,
    destination: str,
    send: Callable[[], object],
    timeout: float,
    actor: str,
    clock: Callable[[], datetime] = now_utc,
) -> Invitation:
    """Run send (waiting at most timeout seconds) and record what became of it.

    A failure is an outcome, not an exception: the session and its PIN stay valid.
    """
    result = send_with_timeout(send, timeout)
    return record_invitation(
        db,
        lens_session,
        channel=channel,
        destination=destination,
        outcome=InvitationOutcome.SENT if result.ok else InvitationOutcome.FAILED,
        error=result.error,
        actor=actor,
        now=clock(),
    )


def session_for_request_key(db: Session, request_key: str) -> LensSession | None:
    """The session a New session form with this one-time key already created, if any."""
    if not request_key:
        return None
    return db.scalar(select(LensSession).where(LensSession.request_key == request_key))


def create_session_once(
    db: Session, *, request_key: str | None, **fields: Any
) -> tuple[LensSession, bool]:
    """Create the session for a form submit, or find the one its key already made.

    Returns (session, created). Commits, so that the unique key decides between two
    requests that race (a double click): the loser finds the winner's session.
    """
    if request_key:
        existing = session_for_request_key(db, request_key)
        if existing is not None:
            return existing, False
    try:
        lens_session = lifecycle.create_session(db, request_key=request_key, **fields)
        db.commit()
    except IntegrityError:
        db.rollback()
        existing = session_for_request_key(db, request_key or "")
        if existing is None:
            raise
        return existing, False
    return lens_session, True
