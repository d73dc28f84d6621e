"""Per-account log-in throttling: exponential back-off after repeated failures.

Failures are counted per e-mail address as typed (normalised), whether or not an account
has it, so an unknown address is throttled exactly like a known one and the answers do not
tell them apart. The count lives in the database, so every web process and host shares it;
each failure is one atomic upsert (INSERT … ON CONFLICT DO UPDATE … RETURNING), and the lock
only ever moves later, so concurrent failures cannot lose a count or shorten a back-off.

While an address is locked no password (or code) is checked at all: the right one is
refused too, until the back-off has passed. An attempt is counted as a failure *before* its
password is checked, in the same atomic step that sees whether the address is locked
(`claim_attempt`); otherwise every attempt that arrived while the slow hash of the first
was running would pass the lock check together, and each back-off would let any number of
concurrent guesses through. A right password is then cleared by the complete log-in, or
taken back while the log-in waits for its code (`take_back`).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, or_, select, update
from sqlalchemy.orm import Session

from lens.auth.models import LoginThrottle


@dataclass(frozen=True)
class Backoff:
    """How failures turn into waits: `free` failures, then base·2ⁿ seconds, up to `cap`."""

    free: int = 5
    base_seconds: float = 30.0
    cap_seconds: float = 3600.0
    # a failure older than this starts the count again
    window: timedelta = timedelta(hours=24)

    def wait_after(self, failures: int) -> timedelta | None:
        """The back-off after the given number of failures in a row (None: no wait yet)."""
        over = failures - self.free
        if over <= 0:
            return None
        seconds = self.base_seconds * 2 ** min(over - 1, 32)
        return timedelta(seconds=min(seconds, self.cap_seconds))


def throttle_key(email: str, secret: str) -> str:
    """The row's key for an e-mail address: a keyed hash (no stranger's address is stored)."""
    normalised = email.strip().lower().encode()
    return hmac.new(secret.encode(), b"lens-login:" + normalised, hashlib.sha256).hexdigest()


def locked_until(db: Session, key: str, now: datetime) -> datetime | None:
    """When the address's back-off ends, if it has not yet."""
    until = db.scalar(select(LoginThrottle.locked_until).where(LoginThrottle.key == key))
    return until if until is not None and until > now else None


def _insert(db: Session):
    if db.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(LoginThrottle)


@dataclass(frozen=True)
class Claim:
    """One log-in attempt at an address: let through (and counted), or refused while locked."""

    admitted: bool
    # admitted: the back-off this attempt starts if it fails (None: none); refused: the end
    # of the back-off that refused it
    locked_until: datetime | None = None


def claim_attempt(db: Session, key: str, now: datetime, backoff: Backoff) -> Claim:
    """Count an attempt as a failure, unless the address is locked: one atomic step.

    The caller commits before it checks the password, so that attempts made meanwhile see
    the count (and the lock it may have started)."""
    stale = now - backoff.window
    unlocked = or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until <= now)
    upsert = (
        _insert(db)
        .values(key=key, failures=1, last_failure_at=now, locked_until=None)
        .on_conflict_do_update(
            index_elements=[LoginThrottle.key],
            set_={
                "failures": case(
                    (LoginThrottle.last_failure_at < stale, 1),
                    else_=LoginThrottle.failures + 1,
                ),
                "last_failure_at": now,
            },
            where=unlocked,  # locked: nothing changes, nothing is returned
        )
        .returning(LoginThrottle.failures)
    )
    failures = db.execute(upsert).scalar_one_or_none()
    if failures is None:
        until = locked_until(db, key, now)
        # (None: the row went between the two statements, a complete log-in cleared it)
        return Claim(admitted=False, locked_until=until or now)
    wait = backoff.wait_after(failures)
    if wait is None:
        return Claim(admitted=True)
    until = now + wait
    db.execute(
        update(LoginThrottle)
        .where(
            LoginThrottle.key == key,
            or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until < until),
        )
        .values(locked_until=until)
        .execution_options(synchronize_session=False)
    )
    return Claim(admitted=True, locked_until=locked_until(db, key, now))


def take_back(db: Session, key: str, claim: Claim) -> None:
    """An admitted attempt whose password was right, waiting for its code: not a failure."""
    values: dict = {"failures": LoginThrottle.failures - 1}
    if claim.locked_until is not None:  # the lock it started goes too
        values["locked_until"] = case(
            (LoginThrottle.locked_until == claim.locked_until, None),
            else_=LoginThrottle.locked_until,
        )
    db.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key == key, LoginThrottle.failures > 0)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def clear_failures(db: Session, key: str) -> None:
    """A complete log-in: the address starts from zero again."""
    db.execute(
        delete(LoginThrottle)
        .where(LoginThrottle.key == key)
        .execution_options(synchronize_session=False)
    )


def forget_old_failures(db: Session, now: datetime, backoff: Backoff) -> int:
    """Delete rows whose last failure is older than the window and whose lock has passed."""
    result = db.execute(
        delete(LoginThrottle)
        .where(
            LoginThrottle.last_failure_at < now - backoff.window,
            or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until < now),
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0
