"""The session lifecycle: every transition is one function that writes a SessionEvent.

Plain Python over the models: no Flask request, WebSocket or aiortc in here. Callers pass
the SQLAlchemy session and the current time; functions flush but never commit, except
where the database itself must decide (the one-active rule).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from lens import features
from lens.auth.models import Technician
from lens.sessions.errors import (
    CustomerAway,
    InvalidTransition,
    LinkNotValid,
    LinkUnknown,
    NotYourSession,
    OneActiveSession,
    OtherDevice,
    PinExpired,
    PinNotValid,
    PinUsed,
    TransferRefused,
)
from lens.sessions.models import (
    HANDLING_STATES,
    LIVE_STATES,
    PRESENCE_STATES,
    Channel,
    LensSession,
    SessionEvent,
    SessionState,
)

S = SessionState

# Which state each action may leave from, and where it goes.
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "join": (frozenset({S.CREATED}), S.CONNECTING),
    "accept": (frozenset({S.CONNECTING}), S.WAITING),
    "start": (frozenset({S.WAITING}), S.ACTIVE),
    "hold": (frozenset({S.ACTIVE}), S.ON_HOLD),
    "resume": (frozenset({S.ON_HOLD}), S.ACTIVE),
    "transfer": (frozenset({S.WAITING, S.ACTIVE, S.ON_HOLD}), S.WAITING),
    "end": (frozenset(LIVE_STATES), S.CLOSED),
    "expire": (frozenset({S.CREATED}), S.EXPIRED),
}

PIN_ATTEMPTS = 50
EXPIRED_PIN_NAMED = timedelta(hours=24)  # how long a late PIN is called expired, not wrong


def technician_actor(technician: Technician) -> str:
    """The log's name for a technician."""
    return f"technician:{technician.id}"


def device_fingerprint(device_key: str) -> str:
    """What the database keeps of a customer's device key: its hash."""
    return hashlib.sha256(device_key.encode()).hexdigest()


def _transition(
    db: Session,
    lens_session: LensSession,
    action: str,
    *,
    actor: str,
    now: datetime,
    detail: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    sources, target = TRANSITIONS[action]
    if lens_session.state not in sources:
        raise InvalidTransition(action, lens_session.state)
    lens_session.state = target
    if target in (S.CLOSED, S.EXPIRED):
        lens_session.pin = None
        lens_session.ended_at = now
    record_event(db, lens_session, action, actor=actor, now=now, detail=detail, data=data)


def record_event(
    db: Session,
    lens_session: LensSession,
    kind: str,
    *,
    actor: str,
    now: datetime,
    detail: str | None = None,
    data: dict[str, Any] | None = None,
) -> SessionEvent:
    """Append one line to the session's log; `data` is what a page needs to say it."""
    event = SessionEvent(
        lens_session=lens_session, kind=kind, actor=actor, at=now, detail=detail, data=data
    )
    db.add(event)
    return event


def _new_pin(db: Session) -> str:
    for _ in range(PIN_ATTEMPTS):
        pin = f"{secrets.randbelow(10**6):06d}"
        if db.scalar(select(LensSession.id).where(LensSession.pin == pin)) is None:
            return pin
    raise RuntimeError("no free PIN found; too many live sessions")


def _new_public_id(db: Session) -> str:
    while True:
        public_id = str(1_000_000 + secrets.randbelow(9_000_000))
        if db.scalar(select(LensSession.id).where(LensSession.public_id == public_id)) is None:
            return public_id


def create_session(
    db: Session,
    *,
    technician: Technician,
    console: str,
    customer_name: str,
    channel: str = Channel.PIN,
    phone: str | None = None,
    email: str | None = None,
    ticket_id: str | None = None,
    custom_fields: Mapping[str, Any] | None = None,
    pin_validity: timedelta,
    now: datetime,
    request_key: str | None = None,
) -> LensSession:
    """Create a session with a fresh PIN and join token, both valid for pin_validity.

    request_key (the form's one-time key) is unique: a second session with the same key
    fails at the flush with an IntegrityError, so a double submit cannot create two.
    """
    lens_session = LensSession(
        public_id=_new_public_id(db),
        customer_name=customer_name,
        phone=phone or None,
        email=email or None,
        ticket_id=ticket_id or None,
        custom_fields=dict(custom_fields or {}),
        permissions=sorted(features.permissions_of(technician)),
        technician=technician,
        console=console,
        channel=channel,
        pin=_new_pin(db),
        pin_expires_at=now + pin_validity,
        join_token=secrets.token_urlsafe(32),
        request_key=request_key or None,
        state=S.CREATED,
        created_at=now,
    )
    db.add(lens_session)
    actor = technician_actor(technician)
    record_event(db, lens_session, "created", actor=actor, now=now, detail=customer_name)
    record_event(db, lens_session, "pin_issued", actor=actor, now=now, detail=lens_session.pin)
    db.flush()
    return lens_session


def _join(db: Session, lens_session: LensSession, device_key: str, via: str, now: datetime) -> bool:
    """Claim the session for this device; False when another join got there first.

    One conditional UPDATE, so that two devices racing with the same PIN or link cannot
    both win, on SQLite (which ignores FOR UPDATE) as on PostgreSQL.
    """
    sources, target = TRANSITIONS["join"]
    claimed = db.execute(
        update(LensSession)
        .where(LensSession.id == lens_session.id, LensSession.state.in_(sources))
        .values(
            state=target,
            customer_device=device_fingerprint(device_key),
            connected_at=now,
            pin=None,  # single use
        )
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        return False
    db.refresh(lens_session)
    record_event(db, lens_session, "join", actor="customer", now=now, detail=via)
    db.flush()
    return True


def join_by_pin(db: Session, pin: str, device_key: str, now: datetime) -> LensSession:
    """The customer typed a PIN: bind the session to their device and use the PIN up."""
    pin = "".join(pin.split())  # "123 456", as the console shows it, is the same PIN
    if len(pin) != 6 or not pin.isdigit():
        raise PinNotValid("a PIN is six digits")
    lens_session = db.scalar(select(LensSession).where(LensSession.pin == pin).with_for_update())
    if lens_session is None:
        if pin_was_used(db, pin, now):
            raise PinUsed("PIN already used")
        if pin_expired_unused(db, pin, now):
            raise PinExpired("expired PIN")
        raise PinNotValid("unknown PIN")
    if lens_session.pin_expires_at <= now:
        expire_session(db, lens_session, now)
        raise PinExpired("expired PIN")
    if not _join(db, lens_session, device_key, "pin", now):
        raise PinUsed("PIN already used")
    return lens_session


def pin_was_used(db: Session, pin: str, now: datetime) -> bool:
    """Whether a customer joined with this PIN within its validity (a used PIN is cleared).

    The PIN is found in its session's log ("pin_issued"); only sessions whose validity has
    not passed are looked at, so a PIN that could be given out again says nothing.
    """
    recent = select(LensSession.id).where(
        LensSession.pin_expires_at > now, LensSession.connected_at.is_not(None)
    )
    issued = select(SessionEvent.id).where(
        SessionEvent.session_id.in_(recent),
        SessionEvent.kind == "pin_issued",
        SessionEvent.detail == pin,
    )
    return db.scalar(issued.limit(1)) is not None


def pin_expired_unused(db: Session, pin: str, now: datetime) -> bool:
    """Whether this PIN was given out and expired unused within EXPIRED_PIN_NAMED.

    A customer who types the right PIN too late is told it expired, not to check the
    digits. Expiry clears the PIN (the sweep does it within seconds), so, as in
    pin_was_used, the PIN is found in its session's log.
    """
    expired = select(LensSession.id).where(
        LensSession.state == S.EXPIRED,
        LensSession.pin_expires_at > now - EXPIRED_PIN_NAMED,
        LensSession.connected_at.is_(None),
    )
    issued = select(SessionEvent.id).where(
        SessionEvent.session_id.in_(expired),
        SessionEvent.kind == "pin_issued",
        SessionEvent.detail == pin,
    )
    return db.scalar(issued.limit(1)) is not None


def join_by_token(db: Session, token: str, device_key: str, now: datetime) -> LensSession:
    """The customer opened a join link; a link works on one device only."""
    lens_session = db.scalar(select(LensSession).where(LensSession.join_token == token))
    if lens_session is None or not token:
        raise LinkUnknown("unknown link")
    if lens_session.customer_device is not None:
        if lens_session.customer_device != device_fingerprint(device_key):
            raise OtherDevice("this link was opened on another device")
        if not lens_session.is_live:
            raise LinkNotValid("session over")
        return lens_session  # the same phone opening its link again
    if lens_session.state != S.CREATED:
        raise LinkNotValid("session over")
    if lens_session.pin_expires_at <= now:
        expire_session(db, lens_session, now)
        raise LinkNotValid("expired link")
    if not _join(db, lens_session, device_key, "link", now):
        raise OtherDevice("this link was just opened on another device")
    return lens_session


def customer_session(db: Session, session_id: int, device_key: str) -> LensSession | None:
    """The session this device joined, or None: a device key opens only its own session."""
    lens_session = db.get(LensSession, session_id)
    if lens_session is None or lens_session.customer_device != device_fingerprint(device_key):
        return None
    return lens_session


def accept_eula(db: Session, lens_session: LensSession, now: datetime) -> LensSession:
    """The customer accepted the licence: the session waits for the technician."""
    lens_session.accepted_at = now
    _transition(db, lens_session, "accept", actor="customer", now=now)
    db.flush()
    return lens_session


def _check_owner(lens_session: LensSession, technician: Technician) -> None:
    if lens_session.technician_id != technician.id:
        raise NotYourSession("this session belongs to another technician")


def active_session_of(db: Session, technician: Technician) -> LensSession | None:
    """The technician's session in hand (active or on hold), if any."""
    return db.scalar(
        select(LensSession).where(
            LensSession.technician_id == technician.id,
            LensSession.state.in_(HANDLING_STATES),
        )
    )


def start_session(
    db: Session,
    lens_session: LensSession,
    technician: Technician,
    now: datetime,
    console: str | None = None,
) -> LensSession:
    """The technician picks the waiting session up; one active session each.

    `console` is the console in use, kept in the log line: the phone's page follows it
    (lens.features.customer_features).

    Commits, so that the database's partial unique index has the last word when two
    Start requests race past the check below.
    """
    _check_owner(lens_session, technician)
    if lens_session.customer_away:
        raise CustomerAway("the customer's page is closed")
    current = active_session_of(db, technician)
    if current is not None and current.id != lens_session.id:
        raise OneActiveSession(current.public_id)
    lens_session.started_at = now
    data = {"console": console} if console is not None else None
    _transition(db, lens_session, "start", actor=technician_actor(technician), now=now, data=data)
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise OneActiveSession("another session became active") from exc
    return lens_session


def hold_session(
    db: Session, lens_session: LensSession, technician: Technician, now: datetime
) -> LensSession:
    """Put the active session on hold."""
    _check_owner(lens_session, technician)
    _transition(db, lens_session, "hold", actor=technician_actor(technician), now=now)
    db.flush()
    return lens_session


def resume_session(
    db: Session, lens_session: LensSession, technician: Technician, now: datetime
) -> LensSession:
    """Take the session off hold."""
    _check_owner(lens_session, technician)
    _transition(db, lens_session, "resume", actor=technician_actor(technician), now=now)
    db.flush()
    return lens_session


def transfer_session(
    db: Session,
    lens_session: LensSession,
    technician: Technician,
    receiver: Technician,
    now: datetime,
) -> LensSession:
    """Hand the session to another technician; it waits in their list for their Start.

    The receiver gets it as waiting, so their own Start is subject to the one-active rule.
    The log's detail names both technicians: "<from>\n<to>".
    """
    _check_owner(lens_session, technician)
    if receiver.id == technician.id:
        raise TransferRefused("a session cannot be transferred to its own technician")
    if not receiver.active:
        raise TransferRefused("the receiving technician's account is not active")
    _transition(
        db,
        lens_session,
        "transfer",
        actor=technician_actor(technician),
        now=now,
        detail=f"{technician.name}\n{receiver.name}",
        data={"from": technician.name, "to": receiver.name},
    )
    lens_session.technician_id = receiver.id
    lens_session.technician = receiver
    # the receiver works with their own group's permissions, as for a session they began
    lens_session.permissions = sorted(features.permissions_of(receiver))
    db.flush()
    return lens_session


def transfer_targets(db: Session, technician: Technician) -> list[tuple[Technician, bool]]:
    """The other active technicians, each with whether they are busy with a session."""
    others = db.scalars(
        select(Technician)
        .where(Technician.active.is_(True), Technician.id != technician.id)
        .order_by(Technician.name)
    )
    busy = set(
        db.scalars(select(LensSession.technician_id).where(LensSession.state.in_(HANDLING_STATES)))
    )
    return [(other, other.id in busy) for other in others]


def end_session(
    db: Session,
    lens_session: LensSession,
    *,
    actor: str,
    reason: str,
    now: datetime,
    technician: Technician | None = None,
) -> LensSession:
    """Close a live session (technician, customer or a time-out)."""
    if technician is not None:
        _check_owner(lens_session, technician)
    lens_session.end_reason = reason
    _transition(db, lens_session, "end", actor=actor, now=now, detail=reason)
    db.flush()
    return lens_session


def expire_session(db: Session, lens_session: LensSession, now: datetime) -> LensSession:
    """The PIN validity passed before the customer came."""
    lens_session.end_reason = "expired"
    _transition(db, lens_session, "expire", actor="system", now=now)
    db.flush()
    return lens_session


def customer_seen(db: Session, session_id: int, now: datetime) -> None:
    """The customer's page is open now. A plain UPDATE: a heartbeat is not a change to show."""
    db.execute(
        update(LensSession)
        .where(LensSession.id == session_id)
        .values(customer_seen_at=now)
        .execution_options(synchronize_session=False)
    )


def customer_arrived(db: Session, session_id: int, link: str, now: datetime) -> bool:
    """The customer's page opened its socket `link`: it is the one that counts now.

    True when the customer had been reported gone: they are back (a log line says so).
    Conditional UPDATEs, so that a page that went away meanwhile cannot be mistaken for this one.
    """
    back = db.execute(
        update(LensSession)
        .where(LensSession.id == session_id, LensSession.customer_left_at.is_not(None))
        .values(customer_left_at=None, customer_link=link, customer_seen_at=now)
        .execution_options(synchronize_session=False)
    )
    if back.rowcount != 1:
        db.execute(
            update(LensSession)
            .where(LensSession.id == session_id)
            .values(customer_link=link, customer_seen_at=now)
            .execution_options(synchronize_session=False)
        )
        return False
    _presence_changed(db, session_id, "customer_back", now)
    return True


def _presence_changed(db: Session, session_id: int, kind: str, now: datetime) -> None:
    """After a presence UPDATE: the lists are told, and a live session's log says `kind`."""
    lens_session = db.get(LensSession, session_id)
    if lens_session is not None:
        db.refresh(lens_session)
        flag_modified(lens_session, "customer_left_at")  # a change the lists show
        if lens_session.state in PRESENCE_STATES:
            record_event(db, lens_session, kind, actor="customer", now=now)


def customer_left(db: Session, session_id: int, link: str, now: datetime) -> bool:
    """The customer's page `link` closed a grace period ago and no other page came since.

    True when that made the customer gone (a log line says so); False when another page
    of theirs came meanwhile (a reconnect), or they were already reported gone.
    """
    left = db.execute(
        update(LensSession)
        .where(
            LensSession.id == session_id,
            LensSession.customer_link == link,
            LensSession.customer_left_at.is_(None),
            LensSession.state.in_(LIVE_STATES),
        )
        .values(customer_left_at=now)
        .execution_options(synchronize_session=False)
    )
    if left.rowcount != 1:
        return False
    _presence_changed(db, session_id, "customer_left", now)
    return True


def expire_due_sessions(
    db: Session,
    now: datetime,
    connect_timeout: timedelta,
    gone_after: timedelta | None = None,
    *,
    waiting_timeout: timedelta | None = None,
    idle_timeout: timedelta | None = None,
) -> int:
    """Expire unused PINs, close joins that never reached Accept, waiting sessions whose
    customer's page has been closed for gone_after, sessions waiting for Start longer than
    waiting_timeout, and active sessions whose log has been quiet for idle_timeout;
    return how many."""
    count = 0
    # rows another sweep (another process) holds are skipped, never ended twice; SQLite
    # has no row locks and serialises writers itself
    unused = (
        select(LensSession)
        .with_for_update(skip_locked=True)
        .where(LensSession.state == S.CREATED, LensSession.pin_expires_at <= now)
    )
    for lens_session in db.scalars(unused):
        expire_session(db, lens_session, now)
        count += 1
    stalled = (
        select(LensSession)
        .with_for_update(skip_locked=True)
        .where(LensSession.state == S.CONNECTING, LensSession.connected_at <= now - connect_timeout)
    )
    for lens_session in db.scalars(stalled):
        end_session(db, lens_session, actor="system", reason="timeout", now=now)
        count += 1
    if gone_after is not None:
        # waiting only: once started, the technician sees the media go and decides
        gone = (
            select(LensSession)
            .with_for_update(skip_locked=True)
            .where(LensSession.state == S.WAITING, LensSession.customer_seen_at <= now - gone_after)
        )
        for lens_session in db.scalars(gone):
            end_session(db, lens_session, actor="system", reason="customer_left", now=now)
            count += 1
    if waiting_timeout:
        waited = select(LensSession).where(
            LensSession.state == S.WAITING, LensSession.accepted_at <= now - waiting_timeout
        )
        for lens_session in db.scalars(waited):
            end_session(db, lens_session, actor="system", reason="waiting_timeout", now=now)
            count += 1
    if idle_timeout:
        last_event = (
            select(func.max(SessionEvent.at))
            .where(SessionEvent.session_id == LensSession.id)
            .correlate(LensSession)
            .scalar_subquery()
        )
        idle = select(LensSession).where(
            LensSession.state == S.ACTIVE, last_event <= now - idle_timeout
        )
        for lens_session in db.scalars(idle):
            end_session(db, lens_session, actor="system", reason="idle_timeout", now=now)
            count += 1
    return count
